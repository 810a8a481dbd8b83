"""Embedding spaces: one model = one vector space. `get_space` loads each once per process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from ..config import Settings
from ..errors import MMError
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

    Every space embeds text (queries); `modalities` says what else it takes. A space with "image" has
    `embed_images(images: Sequence[PIL.Image])`; one with "audio" has `embed_audio(waves: Sequence[np.ndarray])`,
    mono float32 waves at its `sampling_rate`.
    """

    info: SpaceInfo
    modalities: frozenset[str]
    max_text_tokens: int

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def token_spans(self, text: str) -> list[tuple[int, int]]: ...


KNOWN_SPACES = ("clip", "clap")

_models: LoadedOnce[Space] = LoadedOnce()


def get_space(name: str, settings: Settings) -> Space:
    """The space `name` with the model the settings name, loaded on first use and shared after.

    Raises:
        MMError: `name` is not a known space, or settings.backend is not a known backend.
        ModelUnavailable: the model can't be found locally or downloaded; BackendUnavailable (a ModelUnavailable):
            the backend can't run on this machine.
    """
    from .backends import check_backend

    if name not in KNOWN_SPACES:
        raise MMError(f"unknown space {name!r}; known spaces: {', '.join(KNOWN_SPACES)}")
    check_backend(settings.backend)
    return _models.get(_key(name, settings), lambda: _load(name, settings))


def _load(name: str, settings: Settings) -> Space:
    if name == "clap":  # CLAP runs eagerly whatever MMCORE_BACKEND says; its SpaceInfo records "torch"
        from .clap import ClapSpace

        return ClapSpace.load(_model(name, settings), device=settings.device, batch_size=settings.batch_size)
    from .clip import ClipSpace

    return ClipSpace.load(_model(name, settings), device=settings.device, batch_size=settings.batch_size, backend=settings.backend)


def is_loaded(name: str, settings: Settings) -> bool:
    return _models.is_loaded(_key(name, settings))


def load_failure(name: str, settings: Settings) -> str | None:
    """Why the last attempt to load this space's model failed, or None (loaded, or not tried yet)."""
    return _models.failure(_key(name, settings))


def _model(name: str, settings: Settings) -> str:
    return settings.clap_model if name == "clap" else settings.clip_model


def _key(name: str, settings: Settings) -> tuple:
    backend = settings.backend if name == "clip" else "torch"
    return (name, _model(name, settings), settings.device, settings.batch_size, backend)


def normalize(vectors: np.ndarray) -> np.ndarray:
    """float32 rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
