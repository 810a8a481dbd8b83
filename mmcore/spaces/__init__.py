"""Embedding spaces: one model = one vector space. `get_space` loads each once per process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from ..config import Settings
from ..errors import ModelUnavailable
from ..models import LoadedOnce


@dataclass(frozen=True)
class SpaceInfo:
    """What a collection records about the model that made its vectors, and checks on every write/query.

    `backend` names what ran the model (see mmcore.spaces.backends); a collection that compatible backends wrote
    to records them all, joined by "+" in the order they first wrote.
    """

    space: str
    model_id: str
    revision: str
    dim: int
    backend: str = "torch"


class Space(Protocol):
    """A loaded model that turns chunks into float32, L2-normalised vectors of one space.

    Small on purpose (in the spirit of Chroma's one-method EmbeddingFunction): `embed` takes a batch of chunks of
    the modalities its family declares (mmcore.spaces.registry), `embed_query` one query of a kind it accepts
    ("text": [a str], "image": [a PIL image], "audio": a sound's windows, mono float32 at its `sampling_rate`).
    Families built from towers get both from mmcore.spaces.embed.Towers. A space that embeds text items also has
    `token_spans(text)` and `max_text_tokens`, which cut texts into windows it can take whole.
    """

    info: SpaceInfo

    def embed(self, chunks: Sequence) -> np.ndarray: ...

    def embed_query(self, kind: str, payloads: Sequence) -> np.ndarray: ...


_models: LoadedOnce[Space] = LoadedOnce()


def get_space(name: str, settings: Settings) -> Space:
    """The space `name` with the model the settings name, loaded on first use and shared after.

    Raises:
        MMError: `name` is not a known space, or settings.backend is not a known backend.
        ModelUnavailable: the space is off (its variable is unset), or its model can't be found locally or
            downloaded; BackendUnavailable (a ModelUnavailable): the backend can't run on this machine.
    """
    from .backends import check_backend

    spec = require(name)
    model = settings.model_for(name)
    if not model:
        raise ModelUnavailable(f"The {spec.title} space is off: {spec.turn_on}.")
    check_backend(settings.backend)
    return _models.get(_key(name, settings), lambda: spec.load(model, settings))


def is_loaded(name: str, settings: Settings) -> bool:
    return _models.is_loaded(_key(name, settings))


def load_failure(name: str, settings: Settings) -> str | None:
    """Why the last attempt to load this space's model failed, or None (loaded, or not tried yet)."""
    return _models.failure(_key(name, settings))


def backend_of(name: str, settings: Settings) -> str:
    """What runs the space's model: MMCORE_BACKEND for families that honour it, else torch."""
    spec = spec_of(name)
    return settings.backend if spec is not None and spec.backends else "torch"


def _key(name: str, settings: Settings) -> tuple:
    spec = spec_of(name)
    connection = spec.connection() if spec is not None and spec.connection is not None else None
    return (name, settings.model_for(name), settings.device, settings.batch_size, backend_of(name, settings), connection)


def normalize(vectors: np.ndarray) -> np.ndarray:
    """float32 rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


from .registry import require, spec_of  # noqa: E402  (after SpaceInfo and normalize: the families import them)

# The families: each module registers itself. A new family is one module here plus its tests.
from . import clip, clap, siglip, xclip, doc, twelvelabs, bind, imagebind  # noqa: E402,F401
