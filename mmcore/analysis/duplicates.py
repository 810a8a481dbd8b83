"""Near-duplicates: pairs above a cosine threshold per modality pair, grouped into sets, and a review queue."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MMError
from ..store import ItemCollection, Items

MIN_THRESHOLD, MAX_THRESHOLD = 0.1, 1.0
DEFAULT_SAME = 0.95
DEFAULT_IMAGE_TEXT = 0.40  # CLIP's text-image similarities run far lower than image-image ones
BLOCK = 2048


@dataclass(frozen=True)
class Thresholds:
    """Cosine similarity at or above which two items count as near-duplicates, per (unordered) modality pair."""

    image_image: float = DEFAULT_SAME
    text_text: float = DEFAULT_SAME
    image_text: float = DEFAULT_IMAGE_TEXT
    default: float = DEFAULT_SAME

    def __post_init__(self):
        for name, value in vars(self).items():
            if not MIN_THRESHOLD <= value <= MAX_THRESHOLD:
                raise MMError(f"duplicate threshold {name} must be between {MIN_THRESHOLD} and {MAX_THRESHOLD}, got {value}")

    def for_pair(self, a: str, b: str) -> float:
        pair = tuple(sorted((a, b)))
        return {("image", "image"): self.image_image, ("text", "text"): self.text_text,
                ("image", "text"): self.image_text}.get(pair, self.default)


@dataclass(frozen=True)
class DuplicateSet:
    ids: list[str]  # the suggested keeper (earliest added) first
    pairs: list[tuple[str, str, float]]
    max_score: float
    modalities: tuple[str, ...]

    @property
    def key(self) -> str:
        return hashlib.sha1("\n".join(sorted(self.ids)).encode()).hexdigest()[:16]


def find_duplicates(items: Items, thresholds: Thresholds = Thresholds(), k: int = 10) -> list[DuplicateSet]:
    """Near-duplicate sets among items (with vectors), best first.

    Blocked matrix products keep memory at BLOCK x n floats; each item looks at its k nearest others.
    """
    n = len(items)
    if n < 2:
        return []
    vectors = np.asarray(items.vectors, dtype=np.float32)
    modalities = [m.get("modality", "") for m in items.metadatas]
    lowest = min(vars(thresholds).values())
    k = min(k, n - 1)
    pairs: dict[tuple[int, int], float] = {}
    for start in range(0, n, BLOCK):
        block = vectors[start : start + BLOCK] @ vectors.T
        rows = np.arange(block.shape[0])
        block[rows, rows + start] = -np.inf  # never an item with itself
        nearest = np.argpartition(-block, k - 1, axis=1)[:, :k]
        for r, columns in enumerate(nearest):
            i = start + r
            for j in columns:
                score = float(block[r, j])
                if score >= lowest and score >= thresholds.for_pair(modalities[i], modalities[j]):
                    pairs[(min(i, j), max(i, j))] = score
    return _group(items, pairs, modalities)


def _group(items: Items, pairs: dict[tuple[int, int], float], modalities: list[str]) -> list[DuplicateSet]:
    parent = list(range(len(items)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i, j in pairs:
        groups.setdefault(root(i), [])
    for i in {i for pair in pairs for i in pair}:
        groups[root(i)].append(i)
    sets = []
    for members in groups.values():
        members.sort(key=lambda i: (items.metadatas[i].get("added_at", 0), items.ids[i]))
        inside = set(members)
        set_pairs = [(items.ids[i], items.ids[j], s) for (i, j), s in pairs.items() if i in inside]
        sets.append(DuplicateSet(
            ids=[items.ids[i] for i in members], pairs=sorted(set_pairs, key=lambda p: -p[2]),
            max_score=max(s for _, _, s in set_pairs), modalities=tuple(sorted({modalities[i] for i in members})),
        ))
    return sorted(sets, key=lambda s: (-s.max_score, s.ids[0]))


def keep_one(collection: ItemCollection, duplicates: DuplicateSet, keep_id: str, action: str = "tag") -> list[str]:
    """Keep `keep_id`; tag the others `duplicate` and `duplicate-of:<keep_id>` or delete them. Returns them.

    Raises:
        MMError: keep_id is not in the set, or the action is unknown.
    """
    if keep_id not in duplicates.ids:
        raise MMError(f"{keep_id!r} is not in this duplicate set")
    others = [i for i in duplicates.ids if i != keep_id]
    if action == "tag":
        collection.update_tags(others, add=["duplicate", f"duplicate-of:{keep_id}"])
    elif action == "delete":
        collection.delete(others)
    else:
        raise MMError(f"unknown duplicate action {action!r}: use 'tag' or 'delete'")
    return others


class Reviews:
    """Sets an analyst marked "not duplicates", kept in `<data dir>/reviews/<collection>.<space>.json`."""

    def __init__(self, data_dir: Path, collection: str, space: str):
        self.path = Path(data_dir) / "reviews" / f"{collection}.{space}.json"

    def dismissed(self) -> set[str]:
        try:
            return set(json.loads(self.path.read_text()).get("not_duplicates", []))
        except (OSError, ValueError):
            return set()

    def dismiss(self, duplicates: DuplicateSet) -> None:
        keys = sorted(self.dismissed() | {duplicates.key})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            json.dump({"not_duplicates": keys}, f)
        os.replace(tmp, self.path)


def review_queue(collection: ItemCollection, reviews: Reviews, thresholds: Thresholds = Thresholds()) -> list[DuplicateSet]:
    """Duplicate sets still to review: dismissed sets and items already tagged `duplicate` left out."""
    items = collection.all(with_vectors=True)
    keep = [i for i, m in enumerate(items.metadatas) if "duplicate" not in (m.get("tags") or [])]
    if len(keep) < len(items):
        items = Items([items.ids[i] for i in keep], items.vectors[keep], [items.metadatas[i] for i in keep],
                      [items.documents[i] for i in keep])
    dismissed = reviews.dismissed()
    return [s for s in find_duplicates(items, thresholds) if s.key not in dismissed]
