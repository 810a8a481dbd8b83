"""Nearest items under metadata filters, fast at 100k items whether a filter keeps most items or few.

Chroma answers an unfiltered top-k over 100k vectors in milliseconds, but with a `where` filter it first
lists every matching item, at about 4 µs per match (a filter keeping a third of 100k items: 150 ms, two
thirds: 280 ms). A filtered query here goes the first of these ways that can answer it:

1. Scores over the collection's vector cache (mmcore.vector_cache), when it holds the current version, with
   the items that fail the filters masked out: a float16 pass over all of them, then exact float32 scores for
   the best few (ROUGH_POOL per result). An item's modality is known from the cache itself (its write
   token); the ids meeting any other condition are listed once per collection content and filter and kept.
2. The nearest CANDIDATES items, unfiltered, checked against the filters (`accept`: the same conditions as
   the `where`). When k of them pass, they are the answer: every item further away scores lower.
3. Chroma's own filtered query. After 2 or 3, the vector cache is brought up to date in the background.
"""

from __future__ import annotations

import atexit
import json
import sys
import threading
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from cachetools import LRUCache

from .store import ItemCollection, Match
from .vector_cache import Snapshot, current_snapshot, read_vectors

CANDIDATES = 200  # unfiltered neighbours checked against the filters before anything costlier
KEPT = 4  # snapshots kept in memory, each with a float16 copy of its vectors (100 MB per 100k items)
MASKS_KEPT = 16  # filters' masks kept per snapshot
ROUGH_POOL = 4  # rows per result kept from the float16 pass for exact scoring (its error is ~1e-3)

Accept = Callable[[dict], bool]


def nearest(
    collection: ItemCollection,
    vector: np.ndarray,
    k: int,
    where: dict | None = None,
    accept: Accept | None = None,
    exclude: Sequence[str] = (),
    cache_dir: Path | None = None,
) -> list[Match]:
    """The `k` items nearest to `vector` that meet `where` (which `accept` decides for one item's metadata).

    Raises as ItemCollection.query.
    """
    if where is None or accept is None:
        return collection.query(vector, k, where, exclude)
    if cache_dir:
        version, tags = collection.versions()
        snapshot = _snapshot(collection, cache_dir, version)
        if snapshot is not None:
            vector = np.asarray(vector, dtype=np.float32).reshape(-1)
            return _exact(collection, snapshot, vector, k, _mask(collection, snapshot, where, tags), exclude)
        _refresh_later(collection, cache_dir)
    wanted = max(CANDIDATES, k + len(exclude))
    near = collection.query(vector, wanted)
    passed = [m for m in near if m.id not in exclude and accept(m.metadata)]
    if len(passed) >= k or len(near) < wanted:  # enough, or that was every item
        return passed[:k]
    return collection.query(vector, k, where, exclude)


def vector_of(collection: ItemCollection, id_: str, cache_dir: Path | None = None) -> np.ndarray:
    """The stored vector of item `id_`: from the vector cache when it holds the current version, else the store.

    Raises:
        NotFound: the collection has no such item.
    """
    if cache_dir and (loaded := _snapshot(collection, cache_dir, collection.version)) is not None:
        row = int(np.searchsorted(loaded.ids, id_))
        if row < len(loaded.ids) and loaded.ids[row] == id_:
            return np.array(loaded.vectors[row], dtype=np.float32)
    return collection.get([id_], with_vectors=True)[0]["vector"]


class _Loaded:
    """A snapshot as queries use it: ids, vectors, each item's modality, and masks of filters met.

    Scored with torch when the process has it loaded already (the app, a query a model embedded), with numpy
    otherwise: importing torch costs a command-line `search --like` over a second, and numpy's exact float32
    pass over 100k vectors about 20 ms. In a process with a model, numpy's BLAS threads would spin on after each
    product and slow the model's text tower, which runs on torch's threads, about threefold (43 -> 90 ms).
    """

    def __init__(self, snapshot: Snapshot):
        self.ids = snapshot.ids
        self.vectors = snapshot.vectors
        self.modalities = snapshot.modalities()
        self.modality_known = bool(np.all(self.modalities != ""))  # items written before it was recorded: ""
        self.masks: LRUCache[tuple, np.ndarray] = LRUCache(MASKS_KEPT)
        self._torch = None  # (vectors, a float16 copy), made on the first query scored with torch

    def scores(self, rows: np.ndarray, query: np.ndarray, pool: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, their cosine with `query`): all of `rows`, or the `pool` best of them after a float16 pass."""
        if "torch" not in sys.modules:
            chosen = self.vectors if len(rows) == len(self.ids) else self.vectors[rows]
            return rows, np.asarray(chosen, dtype=np.float32) @ query
        import torch

        with _lock:
            if self._torch is None:
                with warnings.catch_warnings():  # the memory-mapped vectors are read-only, and never written through
                    warnings.simplefilter("ignore", UserWarning)
                    vectors = torch.from_numpy(self.vectors)
                self._torch = vectors, vectors.half()  # in memory, half the bytes: a first pass 5x faster than float32
            vectors, rough = self._torch
        q = torch.from_numpy(query)
        if len(rows) > max(pool, len(self.ids) // 8):  # a float16 pass over every vector, then the best rows exactly
            rows = rows[np.argpartition(-torch.mv(rough, q.half()).float().numpy()[rows], pool)[:pool]]
        return rows, torch.mv(vectors[torch.from_numpy(rows)], q).numpy()


_loaded: LRUCache[tuple, _Loaded] = LRUCache(KEPT)  # used under _lock
_refreshing: set[str] = set()
_lock = threading.Lock()
_refreshers: list[threading.Thread] = []


@atexit.register
def _finish_refreshes() -> None:
    # A daemon thread still inside Chroma's native code when the interpreter tears down crashes the process
    # (a one-shot CLI search exits right after starting one): let it finish and leave its cache written.
    for thread in list(_refreshers):
        thread.join()


def _snapshot(collection: ItemCollection, cache_dir: Path, version: str) -> _Loaded | None:
    key = (str(cache_dir), collection.uid, version)
    with _lock:
        if (loaded := _loaded.get(key)) is not None:
            return loaded
    snapshot = current_snapshot(collection, cache_dir, version)
    if snapshot is None:
        return None
    loaded = _Loaded(snapshot)
    with _lock:
        _loaded[key] = loaded
    return loaded


def _exact(collection: ItemCollection, loaded: _Loaded, vector: np.ndarray, k: int, mask: np.ndarray, exclude: Sequence[str]) -> list[Match]:
    """The `k` rows of `mask` nearest to `vector`, less `exclude`."""
    mask = mask.copy()  # the kept one must not lose the excluded
    for row, id_ in zip(np.searchsorted(loaded.ids, list(exclude)), exclude):
        if row < len(mask) and loaded.ids[row] == id_:
            mask[row] = False
    rows, scores = loaded.scores(np.flatnonzero(mask), vector, ROUGH_POOL * k + 64)
    top = np.argpartition(-scores, k)[:k] if len(scores) > k else np.arange(len(scores))
    top = top[np.argsort(-scores[top], kind="stable")]
    ids = loaded.ids[rows[top]].tolist()
    items = collection.get(ids) if ids else []
    return [Match(id_, float(scores[i]), item["metadata"], item["document"]) for id_, i, item in zip(ids, top, items)]


def _mask(collection: ItemCollection, loaded: _Loaded, where: dict, tags: str) -> np.ndarray:
    """Rows of the snapshot that meet `where`, kept per snapshot, tags token and filter."""
    key = (tags, json.dumps(where, sort_keys=True, default=str))
    with _lock:
        if (mask := loaded.masks.get(key)) is not None:
            return mask
    mask = np.ones(len(loaded.ids), dtype=bool)
    rest = []
    for clause in where.get("$and", [where]):
        allowed = _modalities(clause) if loaded.modality_known else None
        if allowed is None:
            rest.append(clause)
        else:  # known from the snapshot itself
            mask &= np.isin(loaded.modalities, allowed)
    if rest:  # listed by the store: the ids meeting the other conditions
        ids = collection.ids(rest[0] if len(rest) == 1 else {"$and": rest})
        mask &= np.isin(loaded.ids, np.asarray(ids, dtype=loaded.ids.dtype)) if ids else False
    with _lock:
        loaded.masks[key] = mask
    return mask


def _modalities(clause: dict) -> list[str] | None:
    """The modalities a `{"modality": {"$in": [...]}}` or `{"modality": {"$eq": ...}}` clause allows."""
    condition = clause.get("modality") if set(clause) == {"modality"} else None
    if isinstance(condition, dict) and set(condition) == {"$in"}:
        return list(condition["$in"])
    if isinstance(condition, dict) and set(condition) == {"$eq"}:
        return [condition["$eq"]]
    return None


def _refresh_later(collection: ItemCollection, cache_dir: Path) -> None:
    """Bring the vector cache up to date in a background thread (one per collection at a time)."""
    key = f"{cache_dir}/{collection.uid}"
    with _lock:
        if key in _refreshing:
            return
        _refreshing.add(key)

    def run() -> None:
        try:
            read_vectors(collection, cache_dir)
        except Exception:  # only a cache: the next query tries again
            pass
        finally:
            with _lock:
                _refreshing.discard(key)
                _refreshers.remove(threading.current_thread())

    thread = threading.Thread(target=run, name="vector-cache-refresh", daemon=True)
    with _lock:
        _refreshers.append(thread)
    thread.start()
