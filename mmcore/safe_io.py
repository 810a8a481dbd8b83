"""The two doors to paths a user names: `read_bounded` (and `open_regular`) for every file mmscope reads from
one, `write_output` for every file it writes to one.

A read is bounded by what is read, never by what the file says about itself: `stat().st_size` is 0 for devices,
FIFOs and /proc files, so a size check alone lets `/dev/zero` fill the memory. Only regular files are opened, and
without blocking (a FIFO without a writer hangs a plain open); their kind is checked again on the open descriptor,
so nothing swapped in between gets through. A write never lands inside the data dir (it could overwrite the
Chroma store), never replaces a file unless asked to, and goes to a temporary file beside the target first,
renamed into place once whole.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import MediaError, MMError

CHUNK = 1 << 20
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def kind_of(mode: int) -> str:
    """What a file is, in words, from its `st_mode`: "a regular file", "a character device", ..."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((words for is_kind, words in _KINDS if is_kind(mode)), "not a regular file")


def open_regular(path: str | Path, name: str | None = None) -> BinaryIO:
    """`path` (symlinks followed) opened for reading, unbuffered, if it is a regular file.

    The kind is checked before the open, so no device is ever opened (opening some has effects), and again on
    the open descriptor, so a file swapped in between is caught too; O_NONBLOCK keeps a FIFO from hanging the open.

    Raises:
        MediaError: named `name` (default: the path): missing, unreadable, or not a regular file.
    """
    name = str(path) if name is None else name
    try:
        _check_regular(os.stat(path).st_mode, name)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise MediaError(name, f"could not be read ({e.strerror or e})") from None
    try:
        _check_regular(os.fstat(fd).st_mode, name)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: str | Path, limit: int, variable: str, name: str | None = None) -> bytes:
    """The bytes of the regular file `path`, refused when there are more than `limit` of them.

    The limit holds whatever the file's size says: reading stops once past `limit`, so a /proc file that claims
    0 bytes and reads as gigabytes costs at most the limit and one chunk. `variable` names the setting that raises the limit, for the message.

    Raises:
        MediaError: named `name` (default: the path): missing, unreadable, not a regular file, or over the limit.
    """
    name = str(path) if name is None else name
    with open_regular(path, name) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise MediaError(name, f"the file is {_amount(size)}, over the {_amount(limit)} limit (raise {variable} to accept it)")
        parts, total = [], 0
        ask = max(size + 1, CHUNK)  # the whole file in one read when its size is true; the extra shows if it isn't
        try:
            while total <= limit:  # so at most limit + CHUNK bytes are ever held
                part = f.read(ask)  # whole chunks: some /proc files refuse reads of odd sizes
                if not part:
                    break
                parts.append(part)
                total, ask = total + len(part), CHUNK
        except OSError as e:
            raise MediaError(name, f"could not be read ({e.strerror or e})") from None
    if total > limit:
        raise MediaError(name, f"more than {_amount(limit)} came out of it (its size says {_amount(size)}), over the "
                         f"{_amount(limit)} limit (raise {variable} to accept it)")
    return b"".join(parts)  # one part (the usual case) is returned as is, not copied


def output_target(path: str | Path, data_dir: str | Path, force: bool = False) -> Path:
    """Where a write to the user-named `path` lands (symlinks and `..` resolved), once it is allowed there.

    Raises:
        MMError: the target lies inside `data_dir` (even through a symlink; never allowed, even with `force`), is
            there already and `force` is not given, or is something other than a regular file (a folder, a device).
    """
    given = Path(path)
    try:
        target, data_dir = given.expanduser().resolve(), Path(data_dir).expanduser().resolve()
    except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop
        raise MMError(f"{given}: can't tell where it leads ({e}); nothing was written.") from None
    if target.is_relative_to(data_dir):
        via = f" (it leads to {target})" if target != given.expanduser().absolute() else ""
        raise MMError(f"{given} is inside the data dir {data_dir}{via}, which holds the store and media: writing there "
                      "could destroy them. Name a file outside the data dir; nothing was written.")
    if target.exists():
        kind = kind_of(target.stat().st_mode)
        if kind != "a regular file":
            raise MMError(f"{given} is {kind}, not a file: name a file to write; nothing was written.")
        if not force:
            raise MMError(f"{given} exists already: add --force to replace it, or name a new file; nothing was written.")
    return target


def write_output(path: str | Path, data_dir: str | Path, content: bytes | Callable[[BinaryIO], None],
                 force: bool = False) -> Path:
    """Write `content` (bytes, or a function that writes to the open file) to the user-named `path`, allowed as
    `output_target` says, through a temporary file in the target's folder that is fsynced and then renamed over
    it: the target is whole or untouched. On any failure the temporary file is removed.

    Returns `path` as given.

    Raises:
        MMError: as `output_target`, or the file can't be written. Whatever `content` raises passes through.
    """
    target = output_target(path, data_dir, force)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise MMError(f"{path}: could not be written ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            content(f) if callable(content) else f.write(content)
            f.flush()
            os.fsync(f.fileno())
        output_target(path, data_dir, force)  # again: a file may have appeared there meanwhile
        os.replace(tmp, target)
    except OSError as e:
        raise MMError(f"{path}: could not be written ({e.strerror or e}); nothing was written.") from None
    finally:
        tmp.unlink(missing_ok=True)
    return Path(path)


def _check_regular(mode: int, name: str) -> None:
    if not stat.S_ISREG(mode):
        raise MediaError(name, f"not a regular file but {kind_of(mode)}; only regular files are read")


def _amount(n: int) -> str:
    return f"{n / 2**20:,.0f} MB" if n >= 2**20 else f"{n:,} bytes"
