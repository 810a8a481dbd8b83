"""The front door: one Workspace per process ties settings to the store, the models and the media files."""

from __future__ import annotations

import threading

from .config import Settings
from .datadir import WriteClaim, check_schema
from .errors import StoreLocked
from .files import MediaFiles
from .journal import journal_dir, recover
from .spaces import Space, get_space
from .store import ItemCollection, Store, open_client


class Workspace:
    """Settings plus lazily opened, shared heavy objects (Chroma client, models). Thread-safe.

    The first write claims the data dir (mmcore.datadir.WriteClaim): with an embedded store no other process
    may write it until `close()`, or until this process ends. Workspaces of one process share that claim.
    """

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings.from_env()
        self.files = MediaFiles(self.settings.data_dir / "media")
        self.claim = WriteClaim(self.settings.data_dir, embedded=not self.settings.chroma_host)
        self._store: Store | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> Store:
        """The store, opened on first use. Raises NewerDataDir when a newer mmscope wrote the data dir."""
        with self._lock:
            if self._store is None:
                check_schema(self.settings.data_dir)
                store = Store(open_client(self.settings), before_write=self.claim)
                try:
                    recover(store, journal_dir(self.settings.data_dir))  # a crashed ingest's unfinished files never show
                except StoreLocked:
                    pass  # another process writes the store: rolling back is left to it (its next ingest recovers)
                self._store = store
            return self._store

    def space(self, name: str = "clip") -> Space:
        return get_space(name, self.settings)

    def collection(self, name: str | None = None, space: str = "clip", create: bool = True) -> ItemCollection:
        """The named (or default) collection of `space`, checked against the space's current model."""
        return self.store.collection(name or self.settings.collection, self.space(space).info, create=create)

    def close(self) -> None:
        """Let other processes write the data dir (once every workspace of this process on it is closed).

        Reading still works afterwards, and a later write claims the data dir again.
        """
        self.claim.release()

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
