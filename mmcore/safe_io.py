"""The two doors to paths a user names: `read_bounded` (and `open_regular`) for every file mmscope reads from
one, `write_output` for every file it writes to one. The files mmscope keeps in its data dir (caches, journals,
taxonomies) are read through the same door, with `load_npy`, `load_npz` and `read_json` on top: a data dir may
come from someone else's backup, so its files are hostile input too.

A read is bounded by what is read, never by what the file says about itself: `stat().st_size` is 0 for devices,
FIFOs and /proc files, so a size check alone lets `/dev/zero` fill the memory. Only regular files are opened, and
without blocking (a FIFO without a writer hangs a plain open); their kind is checked again on the open descriptor,
so nothing swapped in between gets through. A write never lands inside the data dir (it could overwrite the
Chroma store), never replaces a file unless asked to, and goes to a temporary file beside the target first,
renamed into place once whole.
"""

from __future__ import annotations

import io
import json
import math
import os
import secrets
import stat
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from .errors import MediaError, MMError

CHUNK = 1 << 20
# The most bytes read from one of the data dir's own small files whose size doesn't follow from a collection's (a
# taxonomy, cluster names, duplicate reviews, the vocabulary, the schema record, one line of a journal). They hold
# a few ids or words per item: tens of MB for a million items. A larger one was not written by mmscope.
MAX_RECORD_BYTES = 256 << 20
_NPY_HEADER = 1 << 16  # the most a .npy header takes that numpy reads without being told to trust it (10,000 bytes)
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"))


def kind_of(mode: int) -> str:
    """What a file is, in words, from its `st_mode`: "a regular file", "a character device", ..."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((words for is_kind, words in _KINDS if is_kind(mode)), "not a regular file")


def open_regular(path: str | Path, name: str | None = None) -> BinaryIO:
    """`path` (symlinks followed) opened for reading, unbuffered, if it is a regular file (see `regular_fd`).

    Raises:
        MediaError: named `name` (default: the path): missing, unreadable, or not a regular file.
    """
    return os.fdopen(regular_fd(path, name), "rb", buffering=0)


def regular_fd(path: str | Path, name: str | None = None, flags: int = os.O_RDONLY) -> int:
    """A descriptor of `path` opened with `flags`, if it is a regular file; with O_CREAT one is made if none is
    there, and with O_NOFOLLOW a symlink is refused (else followed).

    The kind is checked before the open, so no device is ever opened (opening some has effects), and again on
    the open descriptor, so a file swapped in between is caught too; O_NONBLOCK keeps a FIFO from hanging the open.

    Raises:
        MediaError: named `name` (default: the path): missing, unreadable, or not a regular file.
    """
    name = str(path) if name is None else name
    try:
        try:
            _check_regular((os.lstat if flags & os.O_NOFOLLOW else os.stat)(path).st_mode, name)
        except FileNotFoundError:
            if not flags & os.O_CREAT:
                raise
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise MediaError(name, f"could not be read ({e.strerror or e})") from None
    try:
        _check_regular(os.fstat(fd).st_mode, name)
        os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: str | Path, limit: int, variable: str | None, name: str | None = None) -> bytes:
    """The bytes of the regular file `path`, refused when there are more than `limit` of them.

    The limit holds whatever the file's size says: reading stops once past `limit`, so a /proc file that claims
    0 bytes and reads as gigabytes costs at most the limit and one chunk. `variable` names the setting that raises
    the limit, for the message (None for a limit no setting raises).

    Raises:
        MediaError: named `name` (default: the path): missing, unreadable, not a regular file, or over the limit.
    """
    name = str(path) if name is None else name
    with open_regular(path, name) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise MediaError(name, f"the file is {_amount(size)}, over the {_amount(limit)} limit{_raise(variable)}")
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
                         f"{_amount(limit)} limit{_raise(variable)}")
    return b"".join(parts)  # one part (the usual case) is returned as is, not copied


def read_json(path: str | Path, limit: int = MAX_RECORD_BYTES, name: str | None = None):
    """The JSON value of the regular file `path`, read through `read_bounded` (at most `limit` bytes).

    Raises:
        MediaError: named `name` (default: the path): as `read_bounded`, or not UTF-8 JSON.
    """
    name = str(path) if name is None else name
    data = read_bounded(path, limit, None, name)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:  # RecursionError: "[[[[..." nested past the parser's depth
        raise MediaError(name, f"not readable JSON ({str(e) or type(e).__name__})") from None


def read_npy(data: bytes | bytearray, name: str) -> np.ndarray:
    """The array of a .npy file's bytes, viewed in place (writable when `data` is a bytearray), never unpickled.

    Its header's shape is believed only when the bytes after it hold that many values: np.load allocates whatever
    a header claims before it reads, so a 100-byte file could ask for terabytes.

    Raises:
        MediaError: named `name`: not a .npy array, objects (a pickle), or more values than its bytes hold.
    """
    buffer = io.BytesIO(bytes(memoryview(data)[:_NPY_HEADER]))  # only the header: the values are never copied
    shape, fortran_order, dtype = _npy_header(buffer, name)
    count, held = math.prod(shape), len(data) - buffer.tell()
    if count * dtype.itemsize > held:
        raise MediaError(name, f"its header declares shape {shape} of {dtype} ({count * dtype.itemsize:,} bytes) but "
                         f"only {held:,} bytes follow it; the file is cut short or not a .npy array")
    array = np.frombuffer(data, dtype=dtype, count=count, offset=buffer.tell())
    return array.reshape(shape, order="F" if fortran_order else "C")


def load_npy(path: str | Path, limit: int, name: str | None = None, mmap: bool = False) -> np.ndarray:
    """The array of the .npy file `path` (a regular file, see `open_regular`), never unpickled, refused when its
    header declares more than `limit` bytes of values or other than the bytes the file holds after it.

    With `mmap` the values are mapped read-only (memory only for the pages used), else read into memory.

    Raises:
        MediaError: named `name` (default: the path): missing, not a regular file, unreadable, objects, or a
            header that disagrees with the file or declares more than `limit` bytes.
    """
    name = str(path) if name is None else name
    with open_regular(path, name) as f:
        shape, fortran_order, dtype = _npy_header(f, name)
        offset, size = f.tell(), os.fstat(f.fileno()).st_size
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > limit:
            raise MediaError(name, f"its header declares shape {shape} of {dtype} ({_amount(nbytes)}), over the "
                             f"{_amount(limit)} such a file may hold here")
        if nbytes != size - offset:
            raise MediaError(name, f"its header declares shape {shape} of {dtype} ({nbytes:,} bytes) but {size - offset:,} "
                             "bytes follow it; the file is cut short or not a .npy array")
        order = "F" if fortran_order else "C"
        if mmap and nbytes:  # an empty file can't be mapped
            try:
                return np.memmap(f, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)
            except (OSError, ValueError) as e:
                raise MediaError(name, f"could not be mapped ({e})") from None
        values = bytearray(nbytes)  # no more than the file holds (checked above): the read below fills it
        with memoryview(values) as view:
            done = 0
            try:
                while done < nbytes and (n := f.readinto(view[done : done + CHUNK])):
                    done += n
            except OSError as e:
                raise MediaError(name, f"could not be read ({e.strerror or e})") from None
        if done < nbytes:
            raise MediaError(name, f"ended after {offset + done:,} bytes while being read; its size said {size:,}")
    return np.frombuffer(values, dtype=dtype).reshape(shape, order=order)


def load_npz(path: str | Path, limit: int, name: str | None = None) -> dict[str, np.ndarray]:
    """The arrays of the .npz file `path` (a regular file of at most `limit` bytes), by member name without .npy.

    A zip member can inflate to far more than its compressed size, and its header can lie about that: the members'
    declared sizes must add up to at most `limit` before any is inflated, each is inflated no further than it
    declares, a chunk at a time, and each is read as `read_npy` does. Only stored and deflated
    members are read (bzip2 and LZMA decompressors can't be held to a size), never unpickled.

    Raises:
        MediaError: named `name` (default: the path): as `read_bounded`, not a zip archive of .npy members,
            encrypted, or members that declare or inflate to more than `limit` bytes in all or to other than they declare.
    """
    name = str(path) if name is None else name
    with open_regular(path, name) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise MediaError(name, f"the file is {_amount(size)}, over the {_amount(limit)} such a file may hold here")
        arrays: dict[str, np.ndarray] = {}
        try:
            with zipfile.ZipFile(f) as archive:
                members = archive.infolist()
                declared = sum(m.file_size for m in members)
                if declared > limit:
                    raise MediaError(name, f"its members declare {_amount(declared)} uncompressed, over the "
                                     f"{_amount(limit)} such a file may hold here")
                for member in members:
                    if not member.filename.endswith(".npy") or member.is_dir():
                        raise MediaError(name, f"holds {member.filename!r}, not a .npy array")
                    if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or member.flag_bits & 1:
                        raise MediaError(name, f"{member.filename!r} is encrypted or compressed in a way that is not read")
                    values = bytearray(member.file_size)
                    with archive.open(member) as inflating:
                        done = 0
                        while part := inflating.read(CHUNK):
                            if done + len(part) > member.file_size:
                                raise MediaError(name, f"{member.filename!r} inflates past the {member.file_size:,} "
                                                 "bytes it declares")
                            values[done : done + len(part)] = part
                            done += len(part)
                    if done != member.file_size:
                        raise MediaError(name, f"{member.filename!r} holds {done:,} bytes, not the "
                                         f"{member.file_size:,} it declares")
                    arrays[member.filename[: -len(".npy")]] = read_npy(values, f"{name} ({member.filename})")
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
                RuntimeError, UnicodeDecodeError) as e:
            raise MediaError(name, f"not a readable .npz archive ({e})") from None
    return arrays


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


def _npy_header(f: BinaryIO, name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the .npy file `f` is at the start of, read up to its values; never objects."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
        if header is None:
            raise ValueError(f"format version {version[0]}.{version[1]} holds only structured data")
        shape, fortran_order, dtype = header(f)
    except (ValueError, EOFError, SyntaxError, TypeError, OSError) as e:
        raise MediaError(name, f"not a readable .npy array ({e})") from None
    if dtype.hasobject:
        raise MediaError(name, "holds Python objects (a pickle), which are never loaded")
    return shape, fortran_order, dtype


def _check_regular(mode: int, name: str) -> None:
    if not stat.S_ISREG(mode):
        raise MediaError(name, f"not a regular file but {kind_of(mode)}; only regular files are read")


def _raise(variable: str | None) -> str:
    return f" (raise {variable} to accept it)" if variable else " for such a file"


def _amount(n: int) -> str:
    return f"{n / 2**20:,.0f} MB" if n >= 2**20 else f"{n:,} bytes"
