"""A named taxonomy made from clusters: renames, merges and splits on top of one fit, saved with the
collection (`<data dir>/taxonomy/<collection>.<space>.json`) and written back to items as `taxon:` tags."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MMError
from ..store import ItemCollection
from .clusters import NOISE
from .maps import Analysis

TAG_PREFIX = "taxon:"


@dataclass
class Taxonomy:
    """Edits keyed by cluster label; `fit` names the map fit they were made on (labels change on refit)."""

    path: Path
    fit: str = ""
    names: dict[int, str] = field(default_factory=dict)
    merged: dict[int, int] = field(default_factory=dict)  # label -> the label it was merged into
    splits: dict[str, int] = field(default_factory=dict)  # item id -> its new label after a split

    @property
    def edited(self) -> bool:
        return bool(self.names or self.merged or self.splits)

    def applies_to(self, analysis: Analysis) -> bool:
        """False when the edits were made on another fit (the map was refitted since)."""
        return not self.edited or self.fit == analysis.fit_key

    def apply(self, analysis: Analysis, auto_names: dict[int, str]) -> tuple[np.ndarray, dict[int, str]]:
        """Effective labels (aligned with analysis.ids) and names: auto names unless renamed."""
        labels = np.array(analysis.labels, dtype=int)
        names = dict(auto_names)
        if not self.edited or not self.applies_to(analysis):
            return labels, names
        for i, id_ in enumerate(analysis.ids):
            if id_ in self.splits:
                labels[i] = self.splits[id_]
        for label in list(self.merged):
            labels[labels == label] = self._root(label)
        names.update(self.names)
        return labels, names

    def rename(self, analysis: Analysis, label: int, name: str) -> None:
        if not name.strip():
            raise MMError("A cluster name can't be empty.")
        self._bind(analysis)
        self.names[self._root(label)] = name.strip()

    def merge(self, analysis: Analysis, labels: list[int], into: int) -> None:
        self._bind(analysis)
        for label in labels:
            if label != into and label != NOISE:
                self.merged[label] = into

    def split(self, analysis: Analysis, label: int, vectors_by_id: dict[str, np.ndarray], auto_names: dict[int, str]) -> list[int]:
        """Split a cluster in two (k-means on its members' vectors); returns the two new labels.

        Raises:
            MMError: the cluster has fewer than 4 members.
        """
        from sklearn.cluster import KMeans

        self._bind(analysis)
        effective, names = self.apply(analysis, auto_names)
        members = [analysis.ids[i] for i in np.flatnonzero(effective == label)]
        if len(members) < 4:
            raise MMError(f"Cluster {label} has {len(members)} items: too few to split.")
        parts = KMeans(n_clusters=2, n_init=4, random_state=0).fit_predict(np.stack([vectors_by_id[i] for i in members]))
        first = max([int(effective.max()), *self.splits.values(), *self.names, *self.merged]) + 1
        base = names.get(label, f"cluster {label}")
        new = [first, first + 1]
        for id_, part in zip(members, parts):
            self.splits[id_] = new[int(part)]
        self.names.update({new[0]: f"{base} 1", new[1]: f"{base} 2"})
        return new

    def reset(self) -> None:
        self.names, self.merged, self.splits, self.fit = {}, {}, {}, ""

    def save(self) -> None:
        data = {"fit": self.fit, "names": {str(k): v for k, v in self.names.items()},
                "merged": {str(k): v for k, v in self.merged.items()}, "splits": self.splits}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, self.path)

    def _bind(self, analysis: Analysis) -> None:
        if not self.applies_to(analysis):
            self.reset()  # edits of an older fit can't be read against new labels
        self.fit = analysis.fit_key

    def _root(self, label: int) -> int:
        seen = set()
        while label in self.merged and label not in seen:
            seen.add(label)
            label = self.merged[label]
        return label


def load_taxonomy(data_dir: Path, collection: str, space: str) -> Taxonomy:
    path = Path(data_dir) / "taxonomy" / f"{collection}.{space}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return Taxonomy(path)
    return Taxonomy(
        path, data.get("fit", ""), {int(k): v for k, v in data.get("names", {}).items()},
        {int(k): int(v) for k, v in data.get("merged", {}).items()}, {k: int(v) for k, v in data.get("splits", {}).items()},
    )


def export_taxonomy(analysis: Analysis, labels: np.ndarray, names: dict[int, str]) -> dict:
    """{"collection", "space", "clusters": [{label, name, size, ids}]} of the effective taxonomy."""
    clusters = []
    for label in sorted(set(labels.tolist()) - {NOISE}):
        ids = [analysis.ids[i] for i in np.flatnonzero(labels == label)]
        clusters.append({"label": int(label), "name": names.get(label, f"cluster {label}"), "size": len(ids), "ids": ids})
    return {"collection": analysis.collection, "space": analysis.space, "clusters": clusters}


def save_as_tags(collection: ItemCollection, analysis: Analysis, labels: np.ndarray, names: dict[int, str]) -> int:
    """Tag every clustered item `taxon:<its cluster's name>`, replacing earlier `taxon:` tags. Returns how
    many items were tagged."""
    items = collection.all(with_vectors=False)
    old_tags = {t for m in items.metadatas for t in (m.get("tags") or []) if t.startswith(TAG_PREFIX)}
    present = set(items.ids)
    groups: dict[str, list[str]] = {}
    for id_, label in zip(analysis.ids, labels):
        if id_ in present:
            tag = "" if label == NOISE else TAG_PREFIX + names.get(int(label), f"cluster {label}")
            groups.setdefault(tag, []).append(id_)
    for tag, ids in groups.items():
        collection.update_tags(ids, add=[tag] if tag else [], remove=sorted(old_tags - {tag}))
    return sum(len(ids) for tag, ids in groups.items() if tag)
