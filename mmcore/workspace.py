"""The front door: one Workspace per process ties settings to the store, the models and the media files."""

from __future__ import annotations

import threading
from pathlib import Path

from .catalogue import LazyClient
from .config import Settings
from .datadir import WriteClaim, check_schema
from .errors import NotFound, StoreLocked
from .files import MediaFiles
from .journal import journal_dir, recover
from .multivector import sidecar_root
from .pending import PENDING_DIR
from .row_cache import ROWS_DIR, RowCache
from .spaces import Space, get_space
from .spaces.registry import DEFAULT_SPACE, enabled, specs
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
                row_cache = RowCache(self.settings.data_dir / ROWS_DIR)
                if self.settings.chroma_host:
                    store = Store(open_client(self.settings), before_write=self.claim,
                                  sidecar_root=sidecar_root(self.settings.data_dir), row_cache=row_cache)
                else:  # Chroma starts only when something needs more than its catalogue (mmcore.catalogue)
                    settings = self.settings  # not self: the client must not keep the workspace (and its claim) alive
                    client = LazyClient(settings.data_dir, lambda: open_client(settings))
                    store = Store(client, before_write=self.claim, pending_root=self.settings.data_dir / PENDING_DIR,
                                  sidecar_root=sidecar_root(self.settings.data_dir), row_cache=row_cache)
                try:
                    recover(store, journal_dir(self.settings.data_dir))  # a crashed ingest's unfinished files never show
                except StoreLocked:
                    pass  # another process writes the store: rolling back is left to it (its next ingest recovers)
                self._store = store
            return self._store

    def space(self, name: str = DEFAULT_SPACE) -> Space:
        return get_space(name, self.settings)

    def space_names(self) -> list[str]:
        """The spaces whose model is configured, in registry order."""
        return [spec.name for spec in enabled(self.settings)]

    def collection(self, name: str | None = None, space: str = DEFAULT_SPACE, create: bool = True) -> ItemCollection:
        """The named (or default) collection of `space`, checked against the space's current model."""
        return self.store.collection(name or self.settings.collection, self.space(space).info, create=create)

    def use_recorded_models(self, collection: str | None = None) -> list[str]:
        """Where a space's model is left at its default (its family's default hub id, or off for an optional family),
        use the local folder that the collection records as its model, if that folder still exists: a collection
        made with MMCORE_CLIP_MODEL=folder then needs the variable only once. Returns a note per model taken so
        (for the CLI to print)."""
        name = collection or self.settings.collection
        notes = []
        for spec in specs():
            space, variable = spec.name, spec.variable
            if self.settings.model_for(space) != spec.default_model:
                continue
            try:
                recorded = self.store.open(name, space).space
            except NotFound:
                continue
            if recorded is not None and Path(recorded.model_id).is_dir():
                self.settings = self.settings.with_model(space, recorded.model_id)
                notes.append(f"note: using the {spec.title} model that made collection {name!r}: {recorded.model_id} "
                             f"({variable} is not set)")
        return notes

    def close(self) -> None:
        """Let other processes write the data dir (once every workspace of this process on it is closed).

        Reading still works afterwards, and a later write claims the data dir again.
        """
        self.claim.release()

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
