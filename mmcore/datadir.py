"""What a data dir says about itself: the schema version of the mmscope that wrote it (`mmscope.json`), and the
lock that keeps its embedded Chroma store to one writing process at a time (`chroma/.mmscope.lock`).

A process that wants the lock while the background index builder holds it (mmcore.pending) waits for it.

The lock is an OS file lock (flock, through filelock.FileLock): the kernel drops it when its process ends, however
it ends, so it never goes stale. It is taken on a process's first write and only then; reading never locks. Within
one process every claim on the same data dir shares one FileLock, which counts them and holds the flock from the
first to the last (flock locks of two open files would exclude each other).
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import sys
import threading
import time
import weakref
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from . import __version__
from .errors import MediaError, NewerDataDir, StoreError, StoreLocked
from .files import write_atomically
from .pending import BUILDER_COMMAND
from .safe_io import read_json, regular_fd

SCHEMA = 1  # raise when the layout of the data dir or its items' metadata changes incompatibly
SCHEMA_FILE = "mmscope.json"
LOCK_FILE = Path("chroma") / ".mmscope.lock"
SERVER_HINT = "run a Chroma server (`chroma run --path DIR`) and point every process at it with MMCORE_CHROMA_HOST and MMCORE_CHROMA_PORT"


def read_schema(data_dir: Path) -> dict | None:
    """The data dir's record ({"schema": int, "written_by": str}), or None when it has none (yet)."""
    path = Path(data_dir) / SCHEMA_FILE
    if not os.path.lexists(path):
        return None
    try:
        record = read_json(path)
        int(record["schema"])
        return record
    except (MediaError, ValueError, KeyError, TypeError) as e:
        reason = e.reason if isinstance(e, MediaError) else e
        raise StoreError(f"{path} can't be read ({reason}); restore it from a backup, or remove it if this data dir was "
                         f"made by mmscope {__version__} or older.") from None


def check_schema(data_dir: Path) -> None:
    """Refuse a data dir written by a newer mmscope. One without a record is taken to be ours (schema 1).

    Raises:
        NewerDataDir: its schema is newer than this version's.
    """
    record = read_schema(data_dir)
    if record and int(record["schema"]) > SCHEMA:
        raise NewerDataDir(
            f"{data_dir} was written by {record.get('written_by', 'a newer mmscope')} (data schema {record['schema']}); "
            f"this is mmscope {__version__} (data schema {SCHEMA}), which can't use it safely. Upgrade mmscope, or "
            "point MMCORE_DATA_DIR at another data dir."
        )


def stamp_schema(data_dir: Path) -> None:
    """Record this version's schema in the data dir, unless it holds a record already (raises NewerDataDir for a newer one)."""
    check_schema(data_dir)
    path = Path(data_dir) / SCHEMA_FILE
    if path.exists():
        return
    write_atomically(path, (json.dumps({"schema": SCHEMA, "written_by": f"mmscope {__version__}"}) + "\n").encode())


class WriteClaim:
    """A process's right to write a data dir, claimed by calling it before each write (cheap after the first).

    The first call checks and stamps the schema and, for an embedded store, takes the store's lock, which it holds
    until `release()` or until the claim is garbage-collected. A Chroma server takes many writers: no lock then.

    Raises (on calling):
        StoreLocked: another process holds the lock.
        NewerDataDir: a newer mmscope wrote the data dir.
    """

    def __init__(self, data_dir: Path, embedded: bool = True):
        self.data_dir = Path(data_dir)
        self.embedded = embedded
        self._held: weakref.finalize | None = None
        self._stamped = False
        self._mutex = threading.Lock()

    def __call__(self) -> None:
        if self._stamped and (self._held or not self.embedded):
            return
        with self._mutex:
            if self.embedded and not self._held:
                path = _take(self.data_dir)
                self._held = weakref.finalize(self, _give_back, path)  # holds the path, not the claim
            if not self._stamped:
                stamp_schema(self.data_dir)
                self._stamped = True

    def release(self) -> None:
        """Give the lock back (once every claim of this process on the data dir has); a later call claims it again."""
        with self._mutex:
            if self._held:
                self._held()
            self._held = None


@contextmanager
def write_lock(data_dir: Path) -> Iterator[None]:
    """Hold the embedded store's lock for a while (a backup, a restore), shared with this process's claims.

    Raises:
        StoreLocked: another process holds it.
    """
    path = _take(Path(data_dir))
    try:
        yield
    finally:
        _give_back(path)


_locks: dict[Path, FileLock] = {}  # lock file -> this process's one lock on it, counting the claims that hold it
# Reentrant: a forgotten claim's release runs from the garbage collector, which may start inside _take on this thread.
_locks_mutex = threading.RLock()


def lock_path(data_dir: Path) -> Path:
    return Path(data_dir) / LOCK_FILE


def _take(data_dir: Path) -> Path:
    path = lock_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path = path.parent.resolve() / path.name  # the lock file itself is never followed (O_NOFOLLOW, see _open_lock)
    with _locks_mutex:
        lock = _locks.get(path)
        if lock is None:
            lock = _locks[path] = FileLock(path, thread_local=False, blocking=False, fallback_to_soft=False,
                                           preserve_lock_file=True, on_acquired=_record_holder)
        if not lock.is_locked and os.path.lexists(path):
            os.close(_open_lock(path, os.O_RDONLY))  # refuses a link, a FIFO or a device, naming it
        while True:
            try:
                lock.acquire()
                return path
            except Timeout:
                holder = lock_holder(data_dir)
                if holder is None:  # only another process's look at who holds it (lock_holder's shared lock)
                    time.sleep(0.01)
                    continue
                if BUILDER_COMMAND not in holder.get("command", ""):
                    raise StoreLocked(_locked_message(data_dir, path)) from None
                time.sleep(0.2)  # the background index builder: it ends once its staged items are in (mmcore.pending)
            except OSError as e:  # a link or a FIFO put there since the check
                raise StoreError(f"{path}: could not be locked ({e.strerror or e}). That is not the lock file mmscope "
                                 "makes: remove it, then try again.") from None


def _record_holder(fd: int) -> None:
    """Who holds the lock, written into the lock file as the flock is taken (lock_holder reads it)."""
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped in since the check
        raise StoreError("The store's lock file is not a regular file, so not the lock file mmscope makes: remove it, then try again.")
    holder = {"pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": _command()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)


def _give_back(path: Path) -> None:
    with _locks_mutex:
        lock = _locks[path]
        if lock.lock_counter == 1:  # the last claim: the record goes before the lock does
            with suppress(StoreError, OSError):
                fd = _open_lock(path, os.O_WRONLY)
                try:
                    os.ftruncate(fd, 0)
                finally:
                    os.close(fd)
        lock.release()


def lock_holder(data_dir: Path) -> dict | None:
    """Who holds the embedded store's lock, as they recorded it ({pid, since, command}), or None when nobody does."""
    path = lock_path(data_dir)
    if not os.path.lexists(path):
        return None
    fd = _open_lock(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return json.loads(os.read(fd, 4096) or b"{}")
            except ValueError:  # caught between its lock and its record
                return {}
        return None
    finally:
        os.close(fd)  # also drops the probe's shared lock


def _open_lock(path: Path, flags: int) -> int:
    """The lock file opened, never followed: a copied data dir could hold a FIFO there (a plain open would hang) or
    a link to a file of yours (which the lock's record would overwrite).

    Raises:
        StoreError: it is not a regular file.
    """
    try:
        return regular_fd(path, flags=flags | os.O_NOFOLLOW)
    except MediaError as e:
        raise StoreError(f"{e}. That is not the lock file mmscope makes: remove it, then try again.") from None


def _locked_message(data_dir: Path, path: Path) -> str:
    holder = lock_holder(data_dir) or {}
    who = f"process {holder['pid']} ({holder.get('command', '?')}, writing since {holder.get('since', '?')})" if "pid" in holder else "another process"
    return (f"The store in {data_dir} is being written by {who}. An embedded store takes one writing process at a "
            f"time: stop that one and try again, or {SERVER_HINT}. Reading it works meanwhile.")


def _command() -> str:
    try:
        command = Path("/proc/self/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = " ".join([sys.executable, *sys.argv])
    return command[:300]
