"""Originals and thumbnails on disk, named by content hash, never by the uploaded file name."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


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
            _write_atomically(path, lambda f: f.write(data))
        return path

    def save_thumbnail(self, source_hash: str, image) -> Path:
        path = self.thumbnail_path(source_hash)
        if not path.exists():
            _write_atomically(path, lambda f: image.save(f, format="WEBP", quality=80))
        return path


def _write_atomically(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
