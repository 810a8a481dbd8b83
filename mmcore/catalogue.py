"""The embedded store's catalogue (each collection's name, id, metadata and count) kept beside it, so that a command
that reads no items (`info`, a cached `analyze`) answers without starting Chroma: `import chromadb` alone costs
about 0.8 s of CPU, most of such a command's run.

A process that opens Chroma writes the catalogue as Chroma gives it, with the signature of Chroma's SQLite files
at that moment (inode, size, modification time in ns). It is believed only while the files still have that
signature: every write to the store changes it (and so does every process that opens Chroma: opening writes), and
then Chroma is asked, and the catalogue written again. `LazyClient` is the Chroma client that does this.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import weakref
from contextlib import contextmanager
from pathlib import Path

from .errors import MediaError
from .files import write_atomically
from .safe_io import read_json

FILE = Path("cache") / "catalogue.json"
DATABASE = "chroma.sqlite3"


def signature(chroma_dir: Path) -> list[list[int]] | None:
    """What identifies the state of Chroma's SQLite database and its write-ahead log, or None without one."""
    found = []
    for name in (DATABASE, f"{DATABASE}-wal"):
        try:
            st = os.stat(Path(chroma_dir) / name)
        except FileNotFoundError:
            if name == DATABASE:
                return None
            continue
        found.append([st.st_ino, st.st_size, st.st_mtime_ns])
    return found


def _read(path: Path) -> dict | None:
    """The catalogue file's record ({"signature", "catalogue": {"max_batch": int, "collections": {chroma name: {"id",
    "metadata", "count"}}}}), or None when it is missing or not one."""
    try:
        record = read_json(path)
        int(record["catalogue"]["max_batch"])
        return record if isinstance(record["catalogue"]["collections"], dict) else None
    except (MediaError, ValueError, KeyError, TypeError):
        return None


def save(data_dir: Path, catalogue: dict, taken: list | None, builder: dict | None = None) -> None:
    """Write the catalogue read while the store had signature `taken`, if it still has it (nothing wrote between);
    with the mark of the index `builder` that holds the store's lock (see LazyClient.building)."""
    if taken is None or taken != signature(Path(data_dir) / "chroma"):
        return
    record = {"signature": taken, "catalogue": catalogue} | ({"builder": builder} if builder else {})
    try:
        write_atomically(Path(data_dir) / FILE, json.dumps(record).encode())
    except OSError:
        pass  # a read-only data dir: commands just start Chroma


def _write_at_exit(client: "weakref.ref[LazyClient]") -> None:
    try:
        if (alive := client()) is not None:
            alive.write_catalogue()
    except Exception:  # noqa: BLE001 - a process on its way out; the next one asks Chroma
        pass


class CataloguedCollection:
    """A collection as the catalogue describes it: its name, id, metadata and count at hand, anything else asked
    of the real Chroma collection (opened on first use)."""

    def __init__(self, client: "LazyClient", name: str, entry: dict):
        self._client, self.name, self.id, self.metadata = client, name, entry["id"], entry["metadata"]

    def count(self) -> int:
        catalogue = self._client.catalogue()  # asked again: another process (or this one) may have written since
        if catalogue is not None and self.name in catalogue["collections"]:
            return int(catalogue["collections"][self.name]["count"])
        return self._real().count()

    def _real(self):
        return self._client.real.get_collection(self.name, embedding_function=None)

    def __getattr__(self, attribute: str):
        return getattr(self._real(), attribute)


class LazyClient:
    """The embedded store's Chroma client, started only when something needs more than the catalogue."""

    def __init__(self, data_dir: Path, connect):
        self.data_dir, self._connect, self._real = Path(data_dir), connect, None
        self._record: tuple[tuple, dict | None] | None = None  # the catalogue file as last parsed, by its stat
        self._starting = threading.Lock()  # threads of one search may all need Chroma at once: it starts once
        self._builder: dict | None = None  # this process's mark while it builds the index (`building`)

    @property
    def started(self) -> bool:
        return self._real is not None

    @property
    def real(self):
        if self._real is None:
            with self._starting:
                if self._real is None:
                    real = self._connect()
                    self._write_catalogue(real)
                    self._real = real
                    atexit.register(_write_at_exit, weakref.ref(self))  # for the next process to read
        return self._real

    def write_catalogue(self) -> None:
        """Write the catalogue as Chroma gives it now."""
        self._write_catalogue(self.real)

    def _write_catalogue(self, real) -> None:
        taken = signature(self.data_dir / "chroma")
        entries = {raw.name: {"id": str(raw.id), "metadata": raw.metadata or {}, "count": raw.count()}
                   for raw in real.list_collections()}
        save(self.data_dir, {"max_batch": real.get_max_batch_size(), "collections": entries}, taken, self._builder)

    @contextmanager
    def building(self):
        """Around the index builder's upserts of staged items, which change no collection's name, id or metadata
        (and that collection's count is read from its staging meanwhile): readers believe the catalogue all along,
        by the builder's mark in it while the builder holds the store's lock, not by the database's state, which
        every upsert changes. After, a catalogue is written afresh, without the mark. Only for the lock's holder."""
        from .datadir import lock_holder

        self._builder = lock_holder(self.data_dir)
        record = None if self.started else _read(self.data_dir / FILE)
        try:
            if record is not None and record["signature"] == signature(self.data_dir / "chroma"):
                # Marked before Chroma is opened (opening writes to its database): readers starting now, an analysis
                # right after the import that started this builder, never see a catalogue they may not believe.
                save(self.data_dir, record["catalogue"], record["signature"], self._builder)
            else:
                self._write_catalogue(self.real)
            yield
        finally:
            self._builder = None
            self._write_catalogue(self.real)

    def catalogue(self) -> dict | None:
        """The catalogue, while this process hasn't started Chroma and it describes the store."""
        if self.started:
            return None
        path = self.data_dir / FILE
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._record is None or self._record[0] != stamp:  # parsed once per version of the file, not per call
            self._record = (stamp, _read(path))
        record = self._record[1]
        if record is None:
            return None
        if record["signature"] == signature(self.data_dir / "chroma") or self._builder_at_work(record.get("builder")):
            return record["catalogue"]
        return None

    def _builder_at_work(self, builder) -> bool:
        """Whether the index builder that marked the catalogue still holds the store's lock."""
        if not builder:
            return False
        from .datadir import lock_holder

        return lock_holder(self.data_dir) == builder

    def get_max_batch_size(self) -> int:
        if (catalogue := self.catalogue()) is not None:
            return int(catalogue["max_batch"])
        return self.real.get_max_batch_size()

    def list_collections(self):
        if (catalogue := self.catalogue()) is not None:
            return [CataloguedCollection(self, name, entry) for name, entry in catalogue["collections"].items()]
        return self.real.list_collections()

    def get_collection(self, name: str, **kwargs):
        if (catalogue := self.catalogue()) is not None:
            if name not in catalogue["collections"]:
                raise LookupError(f"Collection {name} does not exist.")  # as Chroma says it
            return CataloguedCollection(self, name, catalogue["collections"][name])
        return self.real.get_collection(name, **kwargs)

    def __getattr__(self, attribute: str):
        return getattr(self.real, attribute)
