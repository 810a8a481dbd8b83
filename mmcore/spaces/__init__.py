"""Embedding spaces: one model = one vector space. `get_space` loads each once per process."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from ..config import Settings
from ..errors import MMError


@dataclass(frozen=True)
class SpaceInfo:
    """What a collection records about the model that made its vectors, and checks on every write/query."""

    space: str
    model_id: str
    revision: str
    dim: int


class Space(Protocol):
    """A loaded model that turns chunks into float32, L2-normalised vectors of one space."""

    info: SpaceInfo
    modalities: frozenset[str]
    max_text_tokens: int

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_images(self, images: Sequence) -> np.ndarray: ...

    def token_spans(self, text: str) -> list[tuple[int, int]]: ...


KNOWN_SPACES = ("clip",)

_loaded: dict[tuple, Space] = {}
_lock = threading.Lock()


def get_space(name: str, settings: Settings) -> Space:
    """The space `name` with the model the settings name, loaded on first use and shared after.

    Raises:
        MMError: `name` is not a known space.
        ModelUnavailable: the model can't be found locally or downloaded.
    """
    if name not in KNOWN_SPACES:
        raise MMError(f"unknown space {name!r}; known spaces: {', '.join(KNOWN_SPACES)}")
    key = (name, settings.clip_model, settings.device, settings.batch_size)
    with _lock:
        if key not in _loaded:
            from .clip import ClipSpace

            _loaded[key] = ClipSpace.load(settings.clip_model, device=settings.device, batch_size=settings.batch_size)
        return _loaded[key]


def is_loaded(name: str, settings: Settings) -> bool:
    return (name, settings.clip_model, settings.device, settings.batch_size) in _loaded


def normalize(vectors: np.ndarray) -> np.ndarray:
    """float32 rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
