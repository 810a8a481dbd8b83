"""A copy of each collection's rows (mmcore.rows: metadata, document and write token of every item) as the store
held them at one version and tags token, in `<data dir>/cache/rows/<collection key>/<version>.<tags>/`.

Chroma reads metadata at about 100 µs an item: a 100k collection's in 12-13 s, every time a map, an export or a
review lists its items. The copy gives them in under a second, and the few rows a search shows in microseconds, so
a `search --like` needs no Chroma at all. A copy is written whole from a read of every item (`ItemCollection.all`)
or taken over from a staged import once that is in Chroma, and believed only while the collection has the version
and tags token it is named after: every write and every change of tags moves one of them. A collection keeps only
its newest copy.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import uuid
from pathlib import Path
from typing import Sequence

from .errors import MediaError
from .files import write_folder_atomically
from .rows import Rows, open_rows, write_rows

ROWS_DIR = Path("cache") / "rows"
_TOKEN = re.compile(r"[0-9A-Za-z_-]{1,64}")  # versions and tags tokens are hex; anything else gets no copy


class RowCache:
    """The row copies under `root`; each copy opened once per process."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._opened: dict[str, tuple[Path, Rows]] = {}  # by collection: its newest copy opened
        self._lock = threading.Lock()

    def current(self, key: str, version: str, tags: str) -> Rows | None:
        """The copy of collection `key` at `version` and `tags`, or None when there is none (or it can't be read)."""
        folder = self._folder(key, version, tags)
        if folder is None:
            return None
        with self._lock:
            if (opened := self._opened.get(key)) is not None and opened[0] == folder:
                return opened[1]
        try:
            rows = open_rows(folder)
        except MediaError:
            return None  # none, or one that isn't whole: the store is asked, and its next read writes it again
        with self._lock:
            self._opened[key] = (folder, rows)
        return rows

    def save(self, key: str, version: str, tags: str, ids: Sequence[str], metadatas: Sequence[dict],
             documents: Sequence[str | None], writes: Sequence[str]) -> None:
        """Keep these rows as collection `key`'s at `version` and `tags`, in place of its older copies."""
        self._replace(key, version, tags, lambda tmp: write_rows(tmp, ids, metadatas, documents, writes))

    def adopt(self, key: str, version: str, tags: str, folder: Path) -> None:
        """Take the rows of `folder` (a staged import, now in Chroma) as collection `key`'s copy: linked, not copied."""
        def link(tmp: Path) -> None:
            for name in ("ids.npy", "rows.jsonl", "offsets.npy", "order.npy"):
                if not (folder / name).exists():
                    continue  # order.npy of a staging from before it was written: sorted when read
                try:
                    os.link(folder / name, tmp / name)
                except OSError:  # another file system, or links refused: a copy
                    shutil.copyfile(folder / name, tmp / name)

        self._replace(key, version, tags, link)

    def remove(self, key: str) -> None:
        """Drop every copy of collection `key` (it was deleted)."""
        self._prune(self.root / key, keep=None)

    def _replace(self, key: str, version: str, tags: str, write) -> None:
        folder = self._folder(key, version, tags)
        if folder is None or folder.exists():
            return
        try:
            write_folder_atomically(folder, write)
        except OSError:
            return  # a read-only data dir, a full disk, or another process wrote it first: only a cache
        self._prune(folder.parent, keep=folder.name)

    def _prune(self, parent: Path, keep: str | None) -> None:
        """Remove `parent`'s copies but `keep`: renamed aside first, so a reader sees a copy whole or not at all (one
        that has it open reads on)."""
        if not parent.is_dir():
            return
        for old in parent.iterdir():
            if old.name != keep and not old.name.startswith("."):
                aside = parent / f".{old.name}.gone.{uuid.uuid4().hex}"
                try:
                    os.rename(old, aside)
                except OSError:
                    continue
                shutil.rmtree(aside, ignore_errors=True)

    def _folder(self, key: str, version: str, tags: str) -> Path | None:
        if not (_TOKEN.fullmatch(version) and _TOKEN.fullmatch(tags)) or "/" in key or key.startswith("."):
            return None
        return self.root / key / f"{version}.{tags}"
