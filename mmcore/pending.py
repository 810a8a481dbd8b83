"""Items staged on disk before they are in Chroma: a bulk import returns in seconds, the index builds behind it.

Chroma's embedded store costs about 1 ms of CPU per 512-d vector to upsert, most of it its HNSW index, and it can't
defer that index (bench/RESULTS.md). So an import into an empty collection of an embedded store writes its items
to `<data dir>/pending/<collection key>/` (ids.npy, vectors.npy, rows.jsonl), touches the collection's version and
hands the upserts to a background process (`python -m mmcore index --background`).

While the folder exists it *is* the collection's content (the collection was empty): reads that need no Chroma
filter (counts, pages, items by id, the vector cache) are answered from it, so the first analysis starts at once.
Everything else (a filtered read, a nearest-neighbour query, any write) first waits until every staged item is in
Chroma, so no search ever sees a half-built index. The folder is made whole by a rename and removed only after
its last upsert; upserts repeat safely, so a builder that dies is simply followed by the next one.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from functools import cached_property
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np

from .errors import MediaError, StoreError
from .files import write_folder_atomically
from .safe_io import load_npy, open_regular

PENDING_DIR = "pending"
BUILDER_COMMAND = "mmcore index --background"  # how the background builder names itself in the store's lock record
MAX_ROWS_BYTES = 8 * 2**30  # what a staged file may hold, against a data dir from someone else's backup


class Staged:
    """A collection's staged items, in the order they were imported: ids and vectors (float32 [n, dim],
    memory-mapped) read at once, their metadata, documents and write tokens when first asked for."""

    def __init__(self, folder: Path, ids: list[str], vectors: np.ndarray, rows: BinaryIO):
        self.folder, self.ids, self.vectors = folder, ids, vectors
        self._file = rows  # open from the start: the folder may be settled and removed before the rows are read

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def row_of(self) -> dict[str, int]:
        return {id_: i for i, id_ in enumerate(self.ids)}

    @cached_property
    def _rows(self) -> list[list]:
        chunks, size = [], 0
        with self._file as f:
            while (chunk := f.read(1 << 24)) and size <= MAX_ROWS_BYTES:
                chunks.append(chunk)
                size += len(chunk)
        try:
            if size > MAX_ROWS_BYTES:
                raise ValueError("rows.jsonl is too big")
            rows = [json.loads(line) for line in b"".join(chunks).decode().splitlines()]
        except (ValueError, UnicodeDecodeError) as e:
            raise _unreadable(self.folder, e) from None
        if len(rows) != len(self.ids):
            raise _unreadable(self.folder, "rows.jsonl and ids.npy differ in length")
        return rows

    @cached_property
    def metadatas(self) -> list[dict]:
        return [r[0] for r in self._rows]

    @cached_property
    def documents(self) -> list[str | None]:
        return [r[1] for r in self._rows]

    @cached_property
    def writes(self) -> list[str]:  # each item's write token (mmcore.vector_cache)
        return [r[2] for r in self._rows]


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
            ids = load_npy(self.folder / "ids.npy", MAX_ROWS_BYTES).tolist()
            vectors = load_npy(self.folder / "vectors.npy", MAX_ROWS_BYTES, mmap=True)
            rows = open_regular(self.folder / "rows.jsonl")
        except MediaError as e:
            if not self.folder.exists():
                return None  # settled meanwhile
            raise _unreadable(self.folder, e) from None
        if vectors.ndim != 2 or vectors.dtype != np.float32 or len(ids) != vectors.shape[0]:
            raise _unreadable(self.folder, "ids.npy and vectors.npy disagree")
        staged = Staged(self.folder, ids, vectors, rows)
        self._loaded = (stamp, staged)
        return staged

    def stage(self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[dict],
              documents: Sequence[str | None], writes: Sequence[str]) -> None:
        """Write the items whole, or not at all (mmcore.files.write_folder_atomically); refused while a staging is
        there already: never two at once."""
        def write(folder: Path) -> None:
            np.save(folder / "ids.npy", np.asarray(list(ids), dtype=str))
            np.save(folder / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32))
            with open(folder / "rows.jsonl", "w", encoding="utf-8") as f:
                for row in zip(metadatas, documents, writes):
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")

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


def _unreadable(folder: Path, reason) -> StoreError:
    return StoreError(f"The staged items in {folder} can't be read ({reason}); remove that folder and import the "
                      "vectors again.")


def staged_keys(root: Path) -> list[str]:
    """The keys of the collections with staged items under `root`."""
    root = Path(root)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []
