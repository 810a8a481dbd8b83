"""Near-duplicates: pairs of items at or above a cosine threshold per modality pair, grouped into sets, and
the review queue over them.

Front door: `review_queue` (the sets still to review in a collection), `keep_one` and `dismiss` (the two
review outcomes). `find_duplicates` is the computation under them, on items already in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, fields
from itertools import combinations_with_replacement
from pathlib import Path
from typing import Sequence

import numpy as np
from cachetools import LRUCache

from ..errors import MediaError, MMError
from ..files import write_atomically
from ..safe_io import read_json
from ..spaces.registry import Calibration, calibration
from ..store import ItemCollection, Items
from ..vector_cache import items_with_vectors, vector_cache_dir
from ..workspace import Workspace

# The defaults of a space without a family (imported vectors); a family's own come from its calibration.
DEFAULT_IMAGE_IMAGE = DEFAULT_TEXT_TEXT = DEFAULT_OTHER = Calibration().duplicate
DEFAULT_IMAGE_TEXT = Calibration().image_text
MIN_THRESHOLD, MAX_THRESHOLD = 0.1, 1.0  # below 0.1 nearly every pair matches and the queue is one huge set
DEFAULT_K, MIN_K, MAX_K = 10, 1, 100
SLACK = 1e-6  # float32 rounding: a copy scored 0.9999999 is still "at or above" a threshold of 1.0
BLOCK_ROWS = 2048
BLOCK_FLOATS = 1 << 25  # similarities held at once (128 MB): big collections get fewer rows per block
DUPLICATE_TAG = "duplicate"
DUPLICATE_OF = "duplicate-of:"
ACTIONS = ("tag", "delete")

_PAIR_FIELDS = {
    frozenset({"image"}): "image_image",
    frozenset({"text"}): "text_text",
    frozenset({"image", "text"}): "image_text",
}


@dataclass(frozen=True)
class Thresholds:
    """Cosine similarity at or above which two items are near-duplicates, per unordered modality pair;
    `default` covers every pair not named (audio, video, imported vectors without a modality...)."""

    image_image: float = DEFAULT_IMAGE_IMAGE
    text_text: float = DEFAULT_TEXT_TEXT
    image_text: float = DEFAULT_IMAGE_TEXT
    default: float = DEFAULT_OTHER

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not MIN_THRESHOLD <= value <= MAX_THRESHOLD:
                raise MMError(f"The {f.name.replace('_', '-')} duplicate threshold must be a cosine similarity between "
                              f"{MIN_THRESHOLD} and {MAX_THRESHOLD}, got {value!r}.")

    @classmethod
    def for_space(cls, space: str) -> "Thresholds":
        """The thresholds the space's family is calibrated for (mmcore.spaces.registry.Calibration)."""
        own = calibration(space)
        return cls(image_image=own.duplicate, text_text=own.duplicate, image_text=own.image_text, default=own.duplicate)

    def for_pair(self, a: str, b: str) -> float:
        """The threshold for an item of modality `a` and one of modality `b` (in either order)."""
        a, b = VISUAL.get(a, a), VISUAL.get(b, b)
        return getattr(self, _PAIR_FIELDS.get(frozenset((a, b)), "default"))


VISUAL = {"page": "image", "video": "image"}  # pictures too, CLIP scores them as images


@dataclass(frozen=True)
class DuplicateSet:
    """Items that are near-duplicates of one another, directly or through a chain of pairs.

    ids: the suggested keeper first (the earliest added; ties, and items without a date, by id), then the
    others in the same order. pairs: (id_a, id_b, cosine) for each pair found, best first, id_a before id_b
    in `ids`. modalities: the distinct modalities of the members, sorted.
    """

    ids: tuple[str, ...]
    pairs: tuple[tuple[str, str, float], ...]
    max_score: float
    modalities: tuple[str, ...]

    @property
    def key(self) -> str:
        """Stable for the same members, whatever their order: a name for the set in widgets and files."""
        return hashlib.sha1("\n".join(sorted(self.ids)).encode()).hexdigest()[:16]

    def best_score(self, item_id: str) -> float:
        """The highest similarity of `item_id` to another member."""
        return max(s for a, b, s in self.pairs if item_id in (a, b))


@dataclass(frozen=True)
class Reviewed:
    """What a review did: `action` is "tag", "delete" or "dismiss"; `others` the items it touched
    (everyone but the keeper, or every member for "dismiss")."""

    action: str
    kept: str | None
    others: tuple[str, ...]


def similar_pairs(
    vectors: np.ndarray, modalities: Sequence[str], thresholds: Thresholds, k: int = DEFAULT_K
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row pairs (i, j, cosine) at or above the threshold of their modality pair, as three arrays.

    The vectors are L2-normalised here; each unordered pair is scored once, never an item with itself, by
    blocked matrix products (rows grouped by modality, each block against the columns after it). Each row
    keeps its best `k` partners among the later rows of each modality: a clump of identical items still
    joins into one set (every member links to a later one), at bounded cost.
    """
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    v = v / np.where(norms > 0, norms, 1)
    kinds = sorted(set(modalities))
    codes = np.array([kinds.index(m) for m in modalities] if kinds else [], dtype=int)
    order = np.argsort(codes, kind="stable")
    v = v[order]
    bounds = np.searchsorted(codes[order], np.arange(len(kinds) + 1))
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for a, b in combinations_with_replacement(range(len(kinds)), 2):
        threshold = thresholds.for_pair(kinds[a], kinds[b])
        start, end = bounds[a], bounds[a + 1]
        while start < end:
            first_col = start if a == b else bounds[b]
            width = bounds[b + 1] - first_col
            stop = min(end, start + int(np.clip(BLOCK_FLOATS // max(width, 1), 64, BLOCK_ROWS)))
            sims = v[start:stop] @ v[first_col : bounds[b + 1]].T
            if a == b:  # only later columns: each pair once, and never an item with itself
                sims[np.tril_indices(stop - start, 0, width)] = -np.inf
            rows, cols, scores = _best_above(sims, threshold - SLACK, k)
            found.append((order[start + rows], order[first_col + cols], scores))
            start = stop
    if not found:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int), np.zeros(0, dtype=np.float32)
    return tuple(np.concatenate(part) for part in zip(*found))


def _best_above(sims: np.ndarray, threshold: float, k: int):
    """(row, column, score) of each row's best `k` entries at or above `threshold`."""
    # Most rows have no partner at all: a row maximum is the cheapest pass to rule them out (a full-block
    # np.nonzero costs a third of the matrix product).
    candidates = np.flatnonzero(sims.max(axis=1) >= threshold)
    sub = sims[candidates]
    mask = sub >= threshold
    crowded = np.count_nonzero(mask, axis=1) > k
    mask[crowded] = False
    rows, cols = np.nonzero(mask)
    if crowded.any():  # more than k above the threshold: the k largest are all above it
        heavy = np.flatnonzero(crowded)
        top = np.argpartition(sub[heavy], -k, axis=1)[:, -k:]
        rows, cols = np.concatenate([rows, np.repeat(heavy, k)]), np.concatenate([cols, top.ravel()])
    return candidates[rows], cols, sub[rows, cols]


def find_duplicates(items: Items, thresholds: Thresholds = Thresholds(), k: int = DEFAULT_K) -> list[DuplicateSet]:
    """Near-duplicate sets among `items` (with vectors), highest similarity first.

    Args:
        items: ids, vectors and metadata (`modality` picks the threshold; `added_at` the suggested keeper).
        thresholds: per modality pair. k: partners kept per item and modality (see `similar_pairs`).
    Raises:
        MMError: k is out of range.
    """
    return _sets(*_found(items, thresholds, k)[:2])


def _found(items: Items, thresholds: Thresholds, k: int):
    """(pairs by id, {id: (added_at, id, modality)} for the ids in pairs, item count)."""
    if not MIN_K <= k <= MAX_K:
        raise MMError(f"Duplicates: k (partners kept per item) must be between {MIN_K} and {MAX_K}, got {k}.")
    modalities = [str(m.get("modality") or "") for m in items.metadatas]
    i, j, s = (x.tolist() for x in similar_pairs(items.vectors, modalities, thresholds, k)) if len(items) > 1 else ([], [], [])
    pairs = [(items.ids[a], items.ids[b], round(min(float(c), 1.0), 6)) for a, b, c in zip(i, j, s)]
    touched = {x for pair in zip(i, j) for x in pair}
    info = {items.ids[x]: (_added(items.metadatas[x]), items.ids[x], modalities[x]) for x in touched}
    return pairs, info, len(items)


def _added(meta: dict) -> float:
    value = meta.get("added_at")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("inf")


def _sets(pairs: list[tuple[str, str, float]], info: dict) -> list[DuplicateSet]:
    """Union-find over the pairs: one DuplicateSet per connected group."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, _ in pairs:
        parent[root(a)] = root(b)
    groups: dict[str, list] = {}
    for pair in pairs:
        groups.setdefault(root(pair[0]), []).append(pair)
    sets = []
    for group in groups.values():
        members = sorted({x for a, b, _ in group for x in (a, b)}, key=lambda x: info[x][:2])
        rank = {x: n for n, x in enumerate(members)}
        ordered = sorted(((a, b, s) if rank[a] < rank[b] else (b, a, s) for a, b, s in group),
                         key=lambda p: (-p[2], rank[p[0]], rank[p[1]]))
        sets.append(DuplicateSet(tuple(members), tuple(ordered), ordered[0][2], tuple(sorted({info[x][2] for x in members}))))
    return sorted(sets, key=lambda d: (-d.max_score, d.ids[0]))


def keep_one(collection: ItemCollection, duplicates: DuplicateSet, keep_id: str, action: str = "tag") -> Reviewed:
    """Keep `keep_id` and tag every other member `duplicate` and `duplicate-of:<keep_id>` ("tag"), or
    delete them from the collection ("delete": their original files stay on disk).

    Raises:
        MMError: `keep_id` is not a member, or the action is neither "tag" nor "delete".
        StoreError: the store refused the change.
    """
    if keep_id not in duplicates.ids:
        raise MMError(f"Item {keep_id!r} is not in this duplicate set; keep one of: {', '.join(duplicates.ids)}.")
    if action not in ACTIONS:
        raise MMError(f"Unknown duplicate action {action!r}: use 'tag' or 'delete'.")
    others = tuple(i for i in duplicates.ids if i != keep_id)
    if action == "tag":
        collection.update_tags(others, add=[DUPLICATE_TAG, DUPLICATE_OF + keep_id])
    else:
        before = collection.version
        collection.delete(others)
        _carry_over(collection, before, set(others))
    return Reviewed(action, keep_id, others)


def dismiss(ws: Workspace, collection: ItemCollection, duplicates: DuplicateSet) -> Reviewed:
    """Record that the members of `duplicates` are not duplicates of one another: no pair of them comes
    back in `review_queue`, at any threshold. A new item that matches one of them still does.

    Raises:
        MMError: the reviews file is unreadable or can't be written.
    """
    _Dismissals.of(ws, collection).add(duplicates.ids)
    return Reviewed("dismiss", None, tuple(duplicates.ids))


def review_queue(
    ws: Workspace, collection: ItemCollection, thresholds: Thresholds | None = None, k: int = DEFAULT_K
) -> list[DuplicateSet]:
    """The duplicate sets of a collection still to review, highest similarity first: items tagged
    `duplicate` and pairs dismissed with `dismiss` are left out. `thresholds` default to those of the
    collection's space (`Thresholds.for_space`).

    Similarities are computed once per collection version, thresholds and k, and kept in memory: tagging
    and dismissing only regroup the pairs, and deleting through `keep_one` carries them over.

    Raises:
        MMError: k is out of range, or the reviews file is unreadable. StoreError: the store can't be read.
    """
    if thresholds is None:
        thresholds = Thresholds.for_space(collection.space.space if collection.space else "")
    pairs, info = _memoised(collection, thresholds, k, vector_cache_dir(ws.settings.data_dir))
    if not pairs:
        return []
    tagged = set(collection.all(with_vectors=False, where={"tags": {"$contains": DUPLICATE_TAG}}).ids)
    dismissed = _Dismissals.of(ws, collection).by_member()
    none: frozenset = frozenset()
    left = [(a, b, s) for a, b, s in pairs
            if a not in tagged and b not in tagged and not dismissed.get(a, none) & dismissed.get(b, none)]
    return _sets(left, info)


class _Dismissals:
    """Sets reviewed as "not duplicates": member lists in `<data dir>/reviews/<collection>.<space>.json`.

    Members rather than set keys: the pairs stay dismissed when a new item joins their set or other
    thresholds regroup it, while the new item still comes up for review.
    """

    _lock = threading.Lock()  # one Streamlit process serves every session

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def of(cls, ws: Workspace, collection: ItemCollection) -> "_Dismissals":
        space = collection.space.space if collection.space else "unknown"
        return cls(ws.settings.data_dir / "reviews" / f"{collection.name}.{space}.json")

    def sets(self) -> list[list[str]]:
        if not os.path.lexists(self.path):
            return []
        try:
            data = read_json(self.path)
            return [list(map(str, ids)) for ids in data["not_duplicates"]]
        except (MediaError, ValueError, KeyError, TypeError) as e:
            reason = e.reason if isinstance(e, MediaError) else e
            raise MMError(f"The duplicate reviews in {self.path} can't be read ({reason}); fix or delete that file "
                          "(deleting it brings back the sets marked 'not duplicates').") from None

    def by_member(self) -> dict[str, frozenset[int]]:
        """Each dismissed item with the numbers of the dismissed sets it belongs to."""
        member: dict[str, set[int]] = {}
        for n, ids in enumerate(self.sets()):
            for id_ in ids:
                member.setdefault(id_, set()).add(n)
        return {id_: frozenset(ns) for id_, ns in member.items()}

    def add(self, ids: Sequence[str]) -> None:
        with self._lock:
            sets = self.sets() + [sorted(ids)]
            try:
                write_atomically(self.path, json.dumps({"not_duplicates": sets}, indent=0).encode())
            except OSError as e:
                raise MMError(f"Could not save the duplicate review to {self.path}: {e}") from e


# Pairs by (collection id, version, thresholds, k): the review queue of a big collection is recomputed only
# when its items change, not on every click of a review.
_MEMO: LRUCache = LRUCache(8)  # used under _memo_lock
_memo_lock = threading.Lock()


def _memoised(collection: ItemCollection, thresholds: Thresholds, k: int, cache_dir: Path):
    key = (collection.uid, collection.version, thresholds, k)
    with _memo_lock:
        hit = _MEMO.get(key)
    if hit is None:
        hit = _found(items_with_vectors(collection, cache_dir), thresholds, k)
        _remember(key, hit)
    return hit[0], hit[1]


def _remember(key, value) -> None:
    with _memo_lock:
        _MEMO[key] = value


def _carry_over(collection: ItemCollection, before: str, deleted: set[str]) -> None:
    """After a delete, the remembered pairs minus the deleted items are those of the new version, unless
    someone else changed the collection meanwhile (then the count tells, and it is recomputed)."""
    after, count = collection.version, collection.count()
    with _memo_lock:
        stale = [key for key in _MEMO if key[:2] == (collection.uid, before)]
        entries = [(key, _MEMO.pop(key)) for key in stale]
    for key, (pairs, info, n) in entries:
        if count == n - len(deleted):
            kept = [p for p in pairs if p[0] not in deleted and p[1] not in deleted]
            _remember((key[0], after, *key[2:]), (kept, info, count))
