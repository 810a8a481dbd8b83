"""Items staged on disk before they are in Chroma: a bulk import returns in seconds, the index builds behind it.

Chroma's embedded store costs about 1 ms of CPU per 512-d vector to upsert, most of it its HNSW index, and it can't
defer that index (bench/RESULTS.md). So an import into an empty collection of an embedded store writes its items
to `<data dir>/pending/<collection key>/` (vectors.npy beside the rows of mmcore.rows), touches the collection's version and
hands the upserts to a background process (`python -m mmcore index --background`).

While the folder exists it *is* the collection's content (the collection was empty): reads that need no Chroma
filter (counts, pages, items by id, the vector cache) are answered from it, so the first analysis starts at once.
Everything else (a filtered read, a nearest-neighbour query, any write) first waits until every staged item is in
Chroma, so no search ever sees a half-built index. The folder is made whole by a rename and removed only after
its last upsert; upserts repeat safely, so a builder that dies is simply followed by the next one.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import MediaError
from .files import write_folder_atomically
from .rows import MAX_ROWS_BYTES, Rows, open_rows, unreadable, write_rows
from .safe_io import load_npy

PENDING_DIR = "pending"
BUILDER_COMMAND = "mmcore index --background"  # how the background builder names itself in the store's lock record


class Staged(Rows):
    """A collection's staged items, in the order they were imported: their rows (mmcore.rows) and `vectors`
    (float32 [n, dim], memory-mapped)."""

    vectors: np.ndarray


class Pending:
    """The staging folder of one collection (`root/<key>`); loads once per version of the folder."""

    def __init__(self, root: Path, key: str):
        self.folder = Path(root) / key
        self._loaded: tuple[int, Staged] | None = None

    def exists(self) -> bool:
        return self.folder.is_dir()

    def load(self) -> Staged | None:
        """The staged items, or None when there are none (any more)."""
        try:
            stamp = self.folder.stat().st_ino
        except FileNotFoundError:
            return None
        if self._loaded and self._loaded[0] == stamp:
            return self._loaded[1]
        try:
            staged = open_rows(self.folder, Staged)
            vectors = load_npy(self.folder / "vectors.npy", MAX_ROWS_BYTES, mmap=True)
        except MediaError as e:
            if not self.folder.exists():
                return None  # settled meanwhile
            raise unreadable(self.folder, e) from None
        if vectors.ndim != 2 or vectors.dtype != np.float32 or len(staged) != vectors.shape[0]:
            raise unreadable(self.folder, "ids.npy and vectors.npy disagree")
        staged.vectors = vectors
        self._loaded = (stamp, staged)
        return staged

    def stage(self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[dict],
              documents: Sequence[str | None], writes: Sequence[str]) -> None:
        """Write the items whole, or not at all (mmcore.files.write_folder_atomically); refused while a staging is
        there already: never two at once."""
        def write(folder: Path) -> None:
            write_rows(folder, ids, metadatas, documents, writes)
            np.save(folder / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32))

        write_folder_atomically(self.folder, write)

    def discard(self) -> None:
        """Remove the folder: renamed aside first, so no reader ever sees it half removed."""
        aside = self.folder.parent / f".{self.folder.name}.gone.{uuid.uuid4().hex}"
        try:
            os.rename(self.folder, aside)
        except FileNotFoundError:
            return
        shutil.rmtree(aside, ignore_errors=True)
        self._loaded = None


def staged_keys(root: Path) -> list[str]:
    """The keys of the collections with staged items under `root`."""
    root = Path(root)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
