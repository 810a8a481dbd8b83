"""The front door: one Workspace per process ties settings to the store, the models and the media files."""

from __future__ import annotations

import threading

from .config import Settings
from .files import MediaFiles
from .spaces import Space, get_space
from .store import ItemCollection, Store, open_client


class Workspace:
    """Settings plus lazily opened, shared heavy objects (Chroma client, models). Thread-safe."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings.from_env()
        self.files = MediaFiles(self.settings.data_dir / "media")
        self._store: Store | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        with self._lock:
            if self._store is None:
                self._store = Store(open_client(self.settings))
            return self._store

    def space(self, name: str = "clip") -> Space:
        return get_space(name, self.settings)

    def collection(self, name: str | None = None, space: str = "clip", create: bool = True) -> ItemCollection:
        """The named (or default) collection of `space`, checked against the space's current model."""
        return self.store.collection(name or self.settings.collection, self.space(space).info, create=create)
