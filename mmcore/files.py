"""Originals and thumbnails on disk, named by content hash, never by the uploaded file name; that name is
only kept, escaped (`display_name`), as the items' `source` metadata."""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import BinaryIO, Callable

from .errors import MediaError
from .safe_io import read_bounded

MAX_NAME_CHARS = 255
# Stored thumbnails are WebP of at most 320 px a side: tens of KB. One past these isn't ours, and decoding it (the
# pages do) could take whatever memory its header asks for.
MAX_THUMBNAIL_BYTES = 1 << 20
MAX_THUMBNAIL_SIDE = 2048
# Control characters (NUL, newlines, escape), bidirectional overrides (which can show "gnp.exe" as "exe.png")
# and lone surrogates (an undecodable name on disk), none of which a name should carry into metadata.
_HIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_TAIL_CHARS = 32  # kept from the end of a long name, so its extension survives


def display_name(name: str) -> str:
    """`name` as shown and recorded: as given, but with hidden characters written as escapes (NUL as \\x00,
    U+202E as \\u202e) and no longer than MAX_NAME_CHARS, the middle of a longer one cut out."""
    escaped = _HIDDEN.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), name)
    if len(escaped) > MAX_NAME_CHARS:
        escaped = escaped[: MAX_NAME_CHARS - _TAIL_CHARS - 1] + "…" + escaped[-_TAIL_CHARS:]
    return escaped


def stored_path(root: Path, relative: str | None) -> Path | None:
    """The absolute path of an original or thumbnail that an item's metadata names relative to the media folder
    `root`, or None when it names none or a path outside that folder: a crafted or restored store could name
    `/dev/zero` or `../../secret`, which the pages would then read."""
    if not relative or not isinstance(relative, str):
        return None
    parts = Path(relative).parts
    if Path(relative).is_absolute() or ".." in parts or not parts:
        return None
    return Path(root) / relative


def read_stored(root: Path, path: str | Path | None, limit: int) -> bytes | None:
    """The bytes of the stored original or thumbnail at `path` (as `stored_path` gave it), or None when there is
    nothing to show: no path, one that leads outside the media folder `root` through a link, not a regular file,
    unreadable, or more than `limit` bytes. Read through `mmcore.safe_io.read_bounded`: a data dir copied from
    someone else could hold a FIFO or a link to /dev/zero named like a thumbnail, and Streamlit reads a path
    it is given whole."""
    if not path:
        return None
    try:
        if not Path(path).resolve().is_relative_to(Path(root).resolve()):
            return None
        return read_bounded(path, limit, None)
    except (MediaError, OSError, RuntimeError):  # RuntimeError: a symlink loop
        return None


def read_thumbnail(root: Path, path: str | Path | None) -> bytes | None:
    """The bytes of a stored thumbnail (see `read_stored`), or None unless it is an image of at most
    MAX_THUMBNAIL_BYTES and MAX_THUMBNAIL_SIDE pixels a side (its header is read, nothing decoded)."""
    return read_image(root, path, MAX_THUMBNAIL_BYTES, MAX_THUMBNAIL_SIDE, MAX_THUMBNAIL_SIDE**2)


def read_image(root: Path, path: str | Path | None, limit: int, max_side: int, max_pixels: int) -> bytes | None:
    """The bytes of a stored image (see `read_stored`), or None unless it is an image of at most `limit` bytes,
    `max_side` pixels a side and `max_pixels` pixels in all (its header is read, nothing decoded)."""
    from PIL import Image, UnidentifiedImageError

    data = read_stored(root, path, limit)
    if data is None:
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            fits = max(image.size) <= max_side and image.size[0] * image.size[1] <= max_pixels
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    return data if fits else None


class MediaFiles:
    """`root/originals/ab/<hash><ext>` and `root/thumbs/ab/<hash>.webp`, written atomically."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def original_path(self, source_hash: str, ext: str) -> Path:
        return self.root / "originals" / source_hash[:2] / f"{source_hash}{ext}"

    def thumbnail_path(self, source_hash: str) -> Path:
        return self.root / "thumbs" / source_hash[:2] / f"{source_hash}.webp"

    def save_original(self, source_hash: str, ext: str, data: bytes) -> Path:
        path = self.original_path(source_hash, ext)
        if not path.exists():
            write_atomically(path, data)
        return path

    def save_thumbnail(self, source_hash: str, image) -> Path:
        path = self.thumbnail_path(source_hash)
        if not path.exists():
            write_atomically(path, lambda f: image.save(f, format="WEBP", quality=80, method=0))  # 3x faster, 15% bigger
        return path


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's contents (a folder's: its entries, such as a rename into it) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_folder_atomically(folder: Path, write: Callable[[Path], None]) -> None:
    """`folder` made whole, durably, or not at all: `write(tmp)` fills a hidden folder beside it (".<name>.<random>"),
    whose files and itself are flushed to the disk before it is renamed to `folder`, and the parent after; a crash
    never leaves `folder` torn. Fails (OSError) when `folder` exists with anything in it. On any failure the hidden
    folder is removed."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        write(tmp)
        for f in tmp.iterdir():
            fsync_path(f)
        fsync_path(tmp)
        os.rename(tmp, folder)
        fsync_path(folder.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_atomically(path: Path, content: bytes | Callable[[BinaryIO], None]) -> None:
    """`path` replaced, whole, by `content` (bytes, or a function that writes to the open file): written to a temporary
    file beside it (".tmp-...") and renamed over it, so a reader sees the old file or the new one, never a torn one,
    and whatever was there (a FIFO, a link to a file elsewhere) is replaced, never written through. On any failure the
    temporary file is removed.

    Raises:
        OSError: the file can't be written. Whatever `content` raises passes through.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            content(f) if callable(content) else f.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
