"""A named taxonomy made from clusters: renames, merges and splits on top of one fit, saved with the
collection (`<data dir>/taxonomy/<collection>.<space>.json`) and written back to items as `taxon:` tags.

Cluster labels only mean something within the fit that made them (`Analysis.fit_key`). After a refit the
label-based edits (merges, splits) no longer apply; names are carried over to the new clusters that match
the old ones (mutual majority of their items), so an analyst's vocabulary survives new data.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MediaError, MMError
from ..files import write_atomically
from ..safe_io import read_json
from ..store import ItemCollection
from .clusters import NOISE
from .maps import Analysis

TAG_PREFIX = "taxon:"


@dataclass
class Taxonomy:
    """Edits keyed by cluster label, valid on the fit named `fit`. Every edit takes the analysis it is made
    on; `save()` writes the file. Not thread-safe: the last save wins."""

    path: Path
    fit: str = ""
    names: dict[int, str] = field(default_factory=dict)  # label -> the analyst's name for it
    merged: dict[int, int] = field(default_factory=dict)  # label -> the label it was merged into
    splits: dict[str, int] = field(default_factory=dict)  # item id -> its new label after a split
    members: dict[int, list[str]] = field(default_factory=dict)  # named label -> its item ids, to carry names over a refit

    @property
    def edited(self) -> bool:
        return bool(self.names or self.merged or self.splits)

    def applies_to(self, analysis: Analysis) -> bool:
        """False when the edits were made on another fit (the map was refitted since): then `apply` keeps
        the new clusters as they are and only carries names over (see `carried_names`)."""
        return not self.edited or self.fit == analysis.fit_key

    def apply(self, analysis: Analysis, auto_names: dict[int, str]) -> tuple[np.ndarray, dict[int, str]]:
        """Effective labels (aligned with analysis.ids) and names: auto names unless renamed.

        Args:
            analysis: the current map; auto_names: its automatic names (naming.cluster_names).
        """
        labels = np.array(analysis.labels, dtype=int)
        names = dict(auto_names)
        if not self.edited:
            return labels, names
        if not self.applies_to(analysis):
            names.update(self.carried_names(analysis))
            return labels, names
        if self.splits:
            for i, id_ in enumerate(analysis.ids):
                if id_ in self.splits:
                    labels[i] = self.splits[id_]
        for label in self.merged:
            labels[labels == label] = self._root(label)
        names.update(self.names)
        return labels, names

    def carried_names(self, analysis: Analysis) -> dict[int, str]:
        """Names from an older fit for the clusters of `analysis` that match a named old cluster: most of the
        new cluster's items were in the old one and most of the old one's items are in the new one."""
        if self.fit == analysis.fit_key:
            return {}
        index = {id_: i for i, id_ in enumerate(analysis.ids)}
        sizes = Counter(analysis.labels.tolist())
        carried = {}
        for old, ids in self.members.items():
            rows = [index[i] for i in ids if i in index]
            counts = Counter(int(label) for label in analysis.labels[rows] if label != NOISE)
            if not counts or old not in self.names:
                continue
            new, shared = counts.most_common(1)[0]
            if 2 * shared > len(rows) and 2 * shared > sizes[new]:
                carried[new] = self.names[old]
        return carried

    def rename(self, analysis: Analysis, label: int, name: str) -> None:
        """Name a cluster (a merged label names the cluster it was merged into).

        Raises:
            MMError: the name is empty, or there is no such cluster on this map.
        """
        if not name.strip():
            raise MMError("A cluster name can't be empty: type a name, or keep the automatic one.")
        self._bind(analysis)
        self._check(analysis, [self._root(label)])
        self.names[self._root(label)] = name.strip()
        self._remember(analysis)

    def merge(self, analysis: Analysis, labels: list[int], into: int) -> None:
        """Merge clusters `labels` into cluster `into`, which keeps its label and name.

        Raises:
            MMError: a label is noise or not a cluster of this map.
        """
        self._bind(analysis)
        into = self._root(into)
        roots = {self._root(label) for label in labels} - {into}
        self._check(analysis, [into, *roots])
        for label in roots:
            self.merged[label] = into
            self.names.pop(label, None)
        self._remember(analysis)

    def split(self, analysis: Analysis, label: int, collection: ItemCollection, auto_names: dict[int, str]) -> list[int]:
        """Split a cluster in two by k-means on its members' vectors (read from `collection`); the parts get
        new labels above every label in use, named "<old name> 1" and "<old name> 2". Returns the new labels.

        Raises:
            MMError: no such cluster, fewer than 4 members, or members too alike to part.
            NotFound: a member was deleted from the collection since the map was made.
        """
        from sklearn.cluster import KMeans

        self._bind(analysis)
        self._check(analysis, [label])
        effective, names = self.apply(analysis, auto_names)
        members = [analysis.ids[i] for i in np.flatnonzero(effective == label)]
        if len(members) < 4:
            raise MMError(f"{names.get(label, f'Cluster {label}')!r} has {len(members)} items: too few to split.")
        vectors = np.stack([item["vector"] for start in range(0, len(members), 5000)
                            for item in collection.get(members[start : start + 5000], with_vectors=True)])
        parts = KMeans(n_clusters=2, n_init=4, random_state=0).fit_predict(vectors)
        if len(set(parts.tolist())) < 2:
            raise MMError(f"The items of {names.get(label, f'cluster {label}')!r} are too alike to split.")
        first = max([int(effective.max()), *self.splits.values(), *self.names, *self.merged]) + 1
        base = names.get(label, f"cluster {label}")
        new = [first, first + 1]
        for id_, part in zip(members, parts):
            self.splits[id_] = new[int(part)]
        self.names.pop(label, None)
        self.names.update({new[0]: f"{base} 1", new[1]: f"{base} 2"})
        self._remember(analysis)
        return new

    def reset(self) -> None:
        """Forget every edit (saved by `save()`)."""
        self.names, self.merged, self.splits, self.members, self.fit = {}, {}, {}, {}, ""

    def save(self) -> None:
        """Write the edits atomically (temp file + rename).

        Raises:
            MMError: the data dir isn't writable.
        """
        data = {"fit": self.fit, "names": {str(k): v for k, v in self.names.items()},
                "merged": {str(k): v for k, v in self.merged.items()}, "splits": self.splits,
                "members": {str(k): v for k, v in self.members.items()}}
        try:
            write_atomically(self.path, json.dumps(data).encode())
        except OSError as e:
            raise MMError(f"Could not save the taxonomy to {self.path}: {e}. Check that the data dir is writable.") from e

    def _bind(self, analysis: Analysis) -> None:
        if not self.applies_to(analysis):  # edits of an older fit can't be read against new labels: keep names
            carried = self.carried_names(analysis)
            self.reset()
            self.names = carried
        self.fit = analysis.fit_key

    def _check(self, analysis: Analysis, labels: list[int]) -> None:
        present = set(self.apply(analysis, {})[0].tolist())
        for label in labels:
            if label == NOISE:
                raise MMError("Noise is not a cluster: it can't be renamed, merged or split.")
            if label not in present:
                raise MMError(f"There is no cluster {label} on this map any more: reload the page.")

    def _remember(self, analysis: Analysis) -> None:
        labels, _ = self.apply(analysis, {})
        self.members = {label: [analysis.ids[i] for i in np.flatnonzero(labels == label)] for label in self.names}
        self.members = {label: ids for label, ids in self.members.items() if ids}

    def _root(self, label: int) -> int:
        seen = set()
        while label in self.merged and label not in seen:
            seen.add(label)
            label = self.merged[label]
        return label


def taxonomy_path(data_dir: Path, collection: str, space: str) -> Path:
    """Where a collection's space keeps its taxonomy (its modification time tells caches it changed)."""
    return Path(data_dir) / "taxonomy" / f"{collection}.{space}.json"


def load_taxonomy(ws, collection: str, space: str) -> Taxonomy:
    """The saved taxonomy of a collection's space (empty when none was saved).

    Args:
        ws: the Workspace (or its data dir); collection, space: whose taxonomy.
    Raises:
        MMError: the file exists but can't be read (not a regular file, over MAX_RECORD_BYTES, not a taxonomy).
    """
    path = taxonomy_path(ws.settings.data_dir if hasattr(ws, "settings") else ws, collection, space)
    if not os.path.lexists(path):
        return Taxonomy(path)
    try:
        data = read_json(path, name=path.name)
        return Taxonomy(
            path, data.get("fit", ""), {int(k): str(v) for k, v in data.get("names", {}).items()},
            {int(k): int(v) for k, v in data.get("merged", {}).items()},
            {str(k): int(v) for k, v in data.get("splits", {}).items()},
            {int(k): list(v) for k, v in data.get("members", {}).items()},
        )
    except MediaError as e:
        raise MMError(f"The taxonomy file {path} is unreadable ({e.reason}): fix it, or delete it to start over.") from None
    except (ValueError, TypeError, AttributeError) as e:
        raise MMError(f"The taxonomy file {path} is unreadable ({e}): fix it, or delete it to start over.") from None


def export_taxonomy(analysis: Analysis, labels: np.ndarray, names: dict[int, str]) -> dict:
    """The effective taxonomy as plain data for JSON: {"collection", "space", "items", "noise", "clusters":
    [{label, name, size, ids}] largest first}.

    Args:
        analysis: the map; labels, names: what `Taxonomy.apply` returned for it.
    """
    clusters = []
    for label in set(labels.tolist()) - {NOISE}:
        ids = [analysis.ids[i] for i in np.flatnonzero(labels == label)]
        clusters.append({"label": int(label), "name": names.get(label, f"cluster {label}"), "size": len(ids), "ids": ids})
    clusters.sort(key=lambda c: (-c["size"], c["label"]))
    return {"collection": analysis.collection, "space": analysis.space, "items": len(analysis.ids),
            "noise": int((labels == NOISE).sum()), "clusters": clusters}


def save_as_tags(collection: ItemCollection, analysis: Analysis, labels: np.ndarray, names: dict[int, str]) -> int:
    """Tag every clustered item `taxon:<its cluster's name>` and remove its other `taxon:` tags (noise items
    keep none). Items added since the analysis are left as they are. Returns how many items were tagged.

    Args:
        collection: the analysed collection; analysis, labels, names: the map and `Taxonomy.apply`'s result.
    Raises:
        StoreError: the store refused the update.
    """
    items = collection.all(with_vectors=False)
    old_tags = {t for m in items.metadatas for t in (m.get("tags") or []) if t.startswith(TAG_PREFIX)}
    present = set(items.ids)
    groups: dict[str, list[str]] = {}  # one update per tag: items of a cluster all get the same change
    for id_, label in zip(analysis.ids, labels):
        if id_ in present:
            tag = "" if label == NOISE else TAG_PREFIX + names.get(int(label), f"cluster {label}")
            groups.setdefault(tag, []).append(id_)
    for tag, ids in groups.items():
        collection.update_tags(ids, add=[tag] if tag else [], remove=sorted(old_tags - {tag}))
    return sum(len(ids) for tag, ids in groups.items() if tag)
