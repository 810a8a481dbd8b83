"""A write-ahead journal that makes each ingest write all-or-nothing, even when the process is killed.

Before a writer upserts a group of items it appends `begin` (the collection and the ids per space) to its own
journal file and fsyncs it; after the last upsert it appends `commit` and fsyncs again, and only then reports
the group's files as added. Recovery deletes the ids of every begun-but-uncommitted group of writers that are
gone, so a file killed half-way is not in the store at all and the next ingest adds it whole (ids are made from
content hashes, so upserting them again makes no duplicates).

Each writer holds an exclusive lock (flock) on its file while it lives; the kernel drops it when the process
dies, however it dies, so recovery never touches the work of a writer that is still running.

A file too big for one group commits in several (`PartialFile`): the groups it has committed outlive its
writer, recorded under `parts/`, so a later ingest of the same file adds only the rest.
"""

from __future__ import annotations

import bisect
import errno
import fcntl
import io
import json
import os
import uuid
from pathlib import Path
from dataclasses import dataclass, field
from typing import BinaryIO, Mapping, Sequence

from .errors import MediaError, MMError, NotFound
from .files import fsync_path
from .safe_io import CHUNK, MAX_RECORD_BYTES, open_regular
from .store import Store

SUFFIX = ".journal"
PARTS_SUFFIX = ".parts"


def journal_dir(data_dir: Path) -> Path:
    """Where the journals of the writers of a data dir live (local even when the store is a Chroma server)."""
    return Path(data_dir) / "journal"


class Journal:
    """One writer's journal: `directory/<random>.journal`, locked until `close()`.

    Use as a context manager; leaving it rolls back a group left open by an exception (or leaves it to
    `recover` if the store can't be reached) and removes the file.
    """

    def __init__(self, directory: Path, store: Store):
        self.store = store
        directory.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex
        tmp = directory / f"{name}.tmp"
        self._fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        # Locked before it gets the name recovery looks for, so recovery can never take a live writer's file.
        self.path = directory / f"{name}{SUFFIX}"
        os.replace(tmp, self.path)
        fsync_path(directory)
        self._open: dict[int, tuple[str, dict[str, list[str]]]] = {}
        self._next = 0

    def begin(self, collection: str, ids: Mapping[str, Sequence[str]]) -> int:
        """Record, durably, that the items `ids` ({space: [id, ...]}) of `collection` are about to be written.

        Returns the group's number, for `commit`.
        """
        self._next += 1
        entry = (collection, {space: list(v) for space, v in ids.items() if v})
        self._append({"begin": self._next, "collection": entry[0], "ids": entry[1]})
        self._open[self._next] = entry
        return self._next

    def commit(self, group: int) -> None:
        """Record, durably, that every item of the group is written: from now on it stays."""
        self._append({"commit": group})
        del self._open[group]

    def close(self) -> None:
        """Roll back groups still open, then remove the journal; if the rollback fails, leave it to `recover`."""
        if self._fd < 0:
            return
        try:
            for group, (collection, ids) in list(self._open.items()):
                _roll_back(self.store, collection, ids)
                self.commit(group)  # rolled back: nothing of it is left to undo
        finally:
            if not self._open:
                self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.close()
        except Exception:
            if exc[0] is None:
                raise
            # else the original error matters more; the journal stays for `recover`

    def _append(self, record: dict) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        if os.write(self._fd, line) != len(line):  # a short write (disk full) must not pass for a record
            raise OSError(errno.ENOSPC, f"could not write the ingest journal {self.path}")
        os.fsync(self._fd)


def recover(store: Store, directory: Path) -> int:
    """Roll back the unfinished writes of every writer of `directory` that is gone; returns how many groups.

    Safe to call at any time and from any number of processes: journals of live writers are locked and skipped.
    Raises StoreError when the store can't be reached (the journals stay for the next call), MMError for a journal
    that is not one (see `open_groups`).
    """
    if not directory.is_dir():
        return 0
    removed = 0
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        try:
            journal = open_journal(path)
        except FileNotFoundError:  # another recovery got there first
            continue
        with journal:
            try:
                fcntl.flock(journal.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its writer is alive
                continue
            if os.fstat(journal.fileno()).st_nlink == 0:  # recovered and removed by another process since we opened it
                continue
            for collection, ids in open_groups(path, journal).values():
                _roll_back(store, collection, ids)
                removed += 1
            path.unlink()
    return removed


def open_groups(path: Path, journal: BinaryIO | None = None) -> dict[int, tuple[str, dict[str, list[str]]]]:
    """The groups a journal file began and did not commit: {number: (collection, {space: ids})}; read from
    `journal` (`open_journal(path)`, left open) when given.

    A torn line (the writer was killed while appending it) is ignored: it was never fsynced, so nothing that
    depends on it has happened yet. The file is read a line at a time, through `mmcore.safe_io`: a data dir may
    come from someone else's backup.

    Raises:
        FileNotFoundError: there is no such journal (any more).
        MMError: it is not a regular file, has a line longer than MAX_RECORD_BYTES or a record no journal writes,
            or its unfinished groups add up to more than MAX_RECORD_BYTES.
    """
    if journal is None:
        with open_journal(path) as journal:
            return open_groups(path, journal)
    groups: dict[int, tuple[str, dict[str, list[str]]]] = {}
    sizes: dict[int, int] = {}  # bytes of each open group's record: what reading the journal holds
    lines = io.BufferedReader(journal, CHUNK)
    try:
        while line := lines.readline(MAX_RECORD_BYTES + 1):
            if len(line) > MAX_RECORD_BYTES:
                raise _not_a_journal(path, f"it has a line longer than {MAX_RECORD_BYTES >> 20} MB")
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):  # torn
                continue
            if not isinstance(record, dict):
                raise _not_a_journal(path, f"it holds a record that is not an object: {line[:80]!r}")
            if "begin" in record:
                number, collection, ids = record.get("begin"), record.get("collection"), record.get("ids")
                if not (isinstance(number, int) and isinstance(collection, str) and isinstance(ids, dict) and all(
                        isinstance(space, str) and isinstance(v, list) and all(isinstance(i, str) for i in v)
                        for space, v in ids.items())):
                    raise _not_a_journal(path, f"it holds a 'begin' record unlike mmscope's: {line[:80]!r}")
                groups[number], sizes[number] = (collection, ids), len(line)
                if sum(sizes.values()) > MAX_RECORD_BYTES:
                    raise _not_a_journal(path, f"its unfinished writes take more than {MAX_RECORD_BYTES >> 20} MB")
            elif "commit" in record and isinstance(record["commit"], int):
                groups.pop(record["commit"], None)
                sizes.pop(record["commit"], None)
    except OSError as e:
        raise _not_a_journal(path, f"it could not be read ({e.strerror or e})") from None
    finally:
        lines.detach()  # the caller's file stays open: recovery holds its lock until the journal is removed
    return groups


def open_journal(path: Path) -> BinaryIO:
    """The journal file `path` opened for reading (through `mmcore.safe_io.open_regular`).

    Raises:
        FileNotFoundError: there is none (any more). MMError: it is not a regular file or can't be opened.
    """
    if not os.path.lexists(path):
        raise FileNotFoundError(errno.ENOENT, "no such journal", str(path))
    try:
        return open_regular(path)
    except MediaError as e:
        raise _not_a_journal(path, e.reason) from None


def _not_a_journal(path: Path, reason: str) -> MMError:
    return MMError(f"The ingest journal {path} can't be used: {reason}. mmscope did not write it this way; remove it "
                   "(an ingest it recorded as unfinished then keeps the items it stored) and try again.")


def _roll_back(store: Store, collection: str, ids: Mapping[str, Sequence[str]]) -> None:
    for space, space_ids in ids.items():
        try:
            target = store.open(collection, space)
        except NotFound:  # killed before its first write created it
            continue
        target.delete(list(space_ids))  # deleting ids that were never written is a no-op


@dataclass
class PartialFile:
    """A file partly committed to a collection: which of its items (by index, in reading order) are in.

    Kept in `journal/parts/<collection>/<source hash>.parts`, one JSON line each, fsynced: first what the file is
    and how it was read (`header`), then the index ranges [start, end) of each group once that group has
    committed, and the journal of each writer that took it on. It is written before the file's first group
    begins and removed after its last group commits, so while it exists the file is only partly in the store.
    """

    path: Path
    header: dict
    committed: list[tuple[int, int]] = field(default_factory=list)
    writers: list[str] = field(default_factory=list)
    abandoned: bool = False  # its items are being removed: never resume it

    @classmethod
    def path_for(cls, directory: Path, collection: str, source_hash: str) -> Path:
        return directory / "parts" / collection / f"{source_hash}{PARTS_SUFFIX}"

    @classmethod
    def load(cls, path: Path) -> "PartialFile | None":
        """The record at `path`, or None when there is none (a torn last line is ignored, as in a journal)."""
        try:
            with open_journal(path) as f:
                data = f.read(MAX_RECORD_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise _not_a_journal(path, f"it could not be read ({e.strerror or e})") from None
        if len(data) > MAX_RECORD_BYTES:
            raise _not_a_journal(path, f"it is over {MAX_RECORD_BYTES:,} bytes")
        lines = data.splitlines()
        record = None
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if "header" in entry:
                record = cls(path, entry["header"])
            elif record is not None and "part" in entry:
                record.committed += [(a, b) for a, b in entry["part"]]
            elif record is not None and "writer" in entry:
                record.writers.append(entry["writer"])
            elif record is not None and "abandoned" in entry:
                record.abandoned = True
        if record is not None:
            record.committed.sort()
        return record

    @classmethod
    def start(cls, path: Path, header: dict, writer: str) -> "PartialFile":
        """A new record (replacing any old one), durable before this returns."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(_line({"header": header}) + _line({"writer": writer}))
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
        return cls(path, header, writers=[writer])

    @property
    def collection(self) -> str:
        return self.path.parent.name

    @property
    def items(self) -> int:
        return sum(b - a for a, b in self.committed)

    def is_committed(self, index: int) -> bool:
        at = bisect.bisect_right(self.committed, (index, float("inf"))) - 1
        return at >= 0 and self.committed[at][0] <= index < self.committed[at][1]

    def took_on(self, writer: str) -> None:
        """Record that the writer with journal file `writer` goes on with this file."""
        self._append({"writer": writer})
        self.writers.append(writer)

    def add(self, ranges: Sequence[tuple[int, int]]) -> None:
        """Record, durably, that the items of `ranges` are committed."""
        self._append({"part": [list(r) for r in ranges]})
        self.committed = sorted(self.committed + [tuple(r) for r in ranges])

    def abandon(self) -> None:
        """Record, durably, that the file's items are about to be removed (a crash then leaves it to remove,
        never to resume with what is left)."""
        self._append({"abandoned": True})
        self.abandoned = True

    def remove(self) -> None:
        """The file is whole (or wholly gone): forget it."""
        self.path.unlink(missing_ok=True)

    def _append(self, entry: dict) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:  # another writer (of a Chroma server) finished the file meanwhile
            return
        try:
            line = _line(entry)
            if os.write(fd, line) != len(line):
                raise OSError(errno.ENOSPC, f"could not write {self.path}")
            os.fsync(fd)
        finally:
            os.close(fd)


def partial_files(directory: Path) -> list[PartialFile]:
    """Every file partly committed, by any writer of this journal directory (see `PartialFile`)."""
    found = sorted((directory / "parts").glob(f"*/*{PARTS_SUFFIX}")) if directory.is_dir() else []
    return [record for record in map(PartialFile.load, found) if record is not None]


def writer_alive(directory: Path, writer: str) -> bool:
    """Whether the writer with journal file `writer` (in `directory`) is still running: its file is locked."""
    try:
        f = open_journal(directory / writer)
    except FileNotFoundError:
        return False
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True


def _line(entry: dict) -> bytes:
    return (json.dumps(entry, separators=(",", ":")) + "\n").encode()

