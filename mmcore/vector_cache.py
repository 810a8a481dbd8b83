"""A local copy of each collection's ids and vectors: analysis reads 100k vectors in milliseconds, not seconds.

One snapshot per (collection, space) in `<data dir>/cache/vectors/<collection>.<space>/<version>/`: ids.npy
(sorted), writes.npy (each item's write token) and vectors.npy (float32, memory-mapped when read). Every
write to a collection gives it a new version, so a snapshot named after the current version is the store's
content. When the version moved on, the newest snapshot is brought up to date: the store lists ids and write
tokens (no vectors), and only items that are new or were written again since (another token) are fetched;
deleted ones drop out. The write token is the item's Chroma `uri`, set by `ItemCollection.add` to the version
its write made and the item's modality: a re-added id always gets a new one, even when its deletion was never
seen here.

A snapshot is read through `mmcore.safe_io.load_npy`, held to what the collection can have (see `_bounds`): the data
dir may come from someone else's backup. One that isn't such is removed and read from the store again.
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import MediaError
from .safe_io import load_npy
from .store import ItemCollection, Items

PAGE = 10_000  # ids per store request: one page of ids and uris must stay under SQLite's variable limit
# Bytes allowed per row of ids.npy and writes.npy (numpy stores every string as wide as the longest, 4 bytes a
# character): ids of up to 1,024 characters on average. mmscope's own ids and write tokens are under 64.
MAX_STRING_BYTES = 4 * 1024


@dataclass(frozen=True)
class Vectors:
    """A collection's ids, sorted, and their vectors (float32 [n, dim]; read-only, maybe memory-mapped)."""

    ids: list[str]
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Snapshot:
    """One saved version of a collection: ids (str, sorted), their write tokens and vectors."""

    ids: np.ndarray
    writes: np.ndarray  # str: "<version>:<modality>" ("<version>" or "" for items written before that)
    vectors: np.ndarray

    def modalities(self) -> np.ndarray:
        """Each item's modality as its write recorded it ("" where it didn't)."""
        if not len(self.writes):  # numpy's partition fails on an empty array (an emptied collection's snapshot)
            return np.zeros(0, dtype=str)
        return np.char.partition(self.writes.astype(str), ":")[:, 2]


def vector_cache_dir(data_dir: Path) -> Path:
    """Where a data dir's vector snapshots live."""
    return data_dir / "cache" / "vectors"


def read_vectors(collection: ItemCollection, cache_dir: Path) -> Vectors:
    """Every item's id and vector, in id order, as the store holds them now.

    From the snapshot of the collection's current version when there is one; otherwise the newest snapshot is
    refreshed (see the module docstring) and kept, unless a write to the collection ran meanwhile.

    Raises:
        StoreError and Chroma's errors: the store can't be read.
    """
    folder = cache_dir / collection.key
    version = collection.version
    bounds = _bounds(collection)
    snapshot = _load(folder / version, bounds)
    if snapshot is None:
        snapshot = _refresh(collection, _newest(folder, bounds))
        if collection.version == version:  # nothing was written while we listed: it is this version's content
            _save(folder, version, snapshot)
    return Vectors(snapshot.ids.tolist(), snapshot.vectors)


def current_snapshot(collection: ItemCollection, cache_dir: Path, version: str | None = None) -> Snapshot | None:
    """The saved snapshot of the collection's current `version` (read from the store when not given), or None.
    The store's items are not read."""
    return _load(cache_dir / collection.key / (version or collection.version), _bounds(collection))


def items_with_vectors(collection: ItemCollection, cache_dir: Path) -> Items:
    """Every item with its metadata and document from the store and its vector from the cache, in id order."""
    items = collection.all(with_vectors=False)
    cached = read_vectors(collection, cache_dir)
    if cached.ids != items.ids:  # a write ran between the two reads
        return collection.all(with_vectors=True)
    return replace(items, vectors=cached.vectors)


def _refresh(collection: ItemCollection, base: Snapshot | None) -> Snapshot:
    dim = collection.space.dim if collection.space else 0
    if base is None or base.vectors.shape[1] != dim:  # nothing to reuse: one pass with the vectors
        ids, writes, vectors = _page_through(collection, ["writes", "vectors"], dim)
        ids, writes = np.asarray(ids, dtype=str), np.asarray(writes, dtype=str)
    else:
        listed, listed_writes, _ = _page_through(collection, ["writes"], dim)
        ids, writes = np.asarray(listed, dtype=str), np.asarray(listed_writes, dtype=str)
        row = {id_: i for i, id_ in enumerate(base.ids.tolist())}
        source = np.array([row.get(id_, -1) for id_ in listed], dtype=np.int64)
        same = source >= 0
        same[same] = base.writes[source[same]] == writes[same]
        vectors = np.empty((len(ids), dim), dtype=np.float32)
        vectors[same] = base.vectors[source[same]]
        present = np.ones(len(ids), dtype=bool)
        missing = np.flatnonzero(~same)
        for start in range(0, len(missing), PAGE):
            rows = missing[start : start + PAGE]
            fetched = collection.vectors_of(ids[rows].tolist())
            for i in rows:  # one deleted since the listing is left out (and the version check keeps all this unsaved)
                if ids[i] in fetched:
                    vectors[i] = fetched[ids[i]]
                else:
                    present[i] = False
        ids, writes, vectors = ids[present], writes[present], vectors[present]
    order = np.argsort(ids, kind="stable")
    return Snapshot(ids[order], writes[order], vectors[order])


def _page_through(collection: ItemCollection, fields: list[str], dim: int) -> tuple[list[str], list[str], np.ndarray]:
    ids: list[str] = []
    writes: list[str] = []
    vectors: list[np.ndarray] = []
    for page in collection.pages(fields, PAGE):
        ids += page.ids
        writes += page.writes
        if "vectors" in fields and page.ids:
            vectors.append(np.asarray(page.vectors, dtype=np.float32))
    stacked = np.concatenate(vectors) if vectors else np.zeros((0, dim), dtype=np.float32)
    return ids, writes, stacked


def _bounds(collection: ItemCollection) -> tuple[int, int] | None:
    """(rows, dimension) a snapshot of `collection` may have, or None when its space records no dimension (then no
    snapshot is read). Rows: the store's count now, and as many again for items an older snapshot holds that were
    deleted since (past that, reusing the snapshot saves less than reading the store afresh costs)."""
    return (2 * collection.count(), collection.space.dim) if collection.space else None


def _load(folder: Path, bounds: tuple[int, int] | None) -> Snapshot | None:
    """The snapshot saved in `folder`, or None when there is none or it isn't one the collection can have; such a
    one (torn, crafted, of another collection's size) is removed, so a good one can take its place."""
    if bounds is None or not folder.is_dir():
        return None
    rows, dim = bounds
    try:
        ids = load_npy(folder / "ids.npy", rows * MAX_STRING_BYTES)
        writes = load_npy(folder / "writes.npy", rows * MAX_STRING_BYTES)
        vectors = load_npy(folder / "vectors.npy", rows * dim * 4, mmap=True)
        if not (ids.ndim == writes.ndim == 1 and ids.dtype.kind == writes.dtype.kind == "U"
                and vectors.shape == (len(ids), dim) and vectors.dtype == np.float32 and len(writes) == len(ids)):
            raise MediaError(str(folder), "not a snapshot of this collection")
    except MediaError:  # also a snapshot another reader is removing (an older version): reading the store is right
        shutil.rmtree(folder, ignore_errors=True)
        return None
    return Snapshot(ids, writes, vectors)


def _newest(folder: Path, bounds: tuple[int, int] | None) -> Snapshot | None:
    """The most recently saved snapshot, whatever its version."""
    try:
        saved = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.stat().st_mtime)
    except OSError:
        return None
    for path in reversed(saved):
        if (snapshot := _load(path, bounds)) is not None:
            return snapshot
    return None


def _save(folder: Path, version: str, snapshot: Snapshot) -> None:
    """Written in a temporary folder and renamed into place, then older snapshots are removed (readers that
    still map their files keep them until they let go). A failure only costs the next read a refresh."""
    tmp = folder / f".{uuid.uuid4().hex}"
    try:
        tmp.mkdir(parents=True)
        np.save(tmp / "ids.npy", snapshot.ids)
        np.save(tmp / "writes.npy", snapshot.writes)
        np.save(tmp / "vectors.npy", np.ascontiguousarray(snapshot.vectors, dtype=np.float32))
        tmp.rename(folder / version)
    except OSError:  # another reader saved this version first, or the disk said no
        shutil.rmtree(tmp, ignore_errors=True)
        return
    for other in folder.iterdir():
        try:  # a temporary folder may be another reader's save in progress, unless it is old
            done = other.name != version and (not other.name.startswith(".") or time.time() - other.stat().st_mtime > 3600)
        except OSError:  # removed meanwhile
            continue
        if done:
            shutil.rmtree(other, ignore_errors=True)


def record_added(collection: ItemCollection, cache_dir: Path, before: str | None, ids: Sequence[str], writes: Sequence[str],
                 vectors: np.ndarray, rows: np.ndarray, after: str) -> bool:
    """After a writer added items (`ids`, their write tokens, and their vectors: `vectors[rows]`) to a collection that was
    at version `before` (None: it was empty) and left it at `after`, save the snapshot of `after` from what it wrote:
    the first analysis then reads its vectors in milliseconds instead of listing them back from the store (seconds
    at 100k).

    Saved only when it is exact: the collection is still at `after` and the snapshot of `before` is on disk (or
    the collection was empty). Returns whether it was saved.
    """
    folder = cache_dir / collection.key
    if collection.version != after:  # written again since: the next read refreshes from the store
        return False
    dim = vectors.shape[1]
    base = Snapshot(np.zeros(0, dtype=str), np.zeros(0, dtype=str), np.zeros((0, dim), dtype=np.float32)) if before is None \
        else _load(folder / before, _bounds(collection))
    if base is None or base.vectors.shape[1] != dim:
        return False
    all_ids = np.concatenate([base.ids, np.asarray(ids, dtype=str)])
    order = np.argsort(all_ids, kind="stable")
    at = np.empty_like(order)
    at[order] = np.arange(len(order))  # where each item lands in id order
    merged = np.empty((len(all_ids), dim), dtype=np.float32)
    merged[at[: len(base.ids)]] = base.vectors
    step = 1 << 14
    for start in range(0, len(rows), step):  # in blocks: no second copy of every vector at once
        merged[at[len(base.ids) + start : len(base.ids) + start + step]] = vectors[rows[start : start + step]]
    _save(folder, after, Snapshot(all_ids[order], np.concatenate([base.writes, np.asarray(writes, dtype=str)])[order], merged))
    return True
