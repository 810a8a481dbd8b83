"""One table of a collection's items with their map coordinates, clusters and outlier scores."""

from __future__ import annotations

import pandas as pd

from ..files import stored_path
from ..store import ItemCollection
from .maps import Analysis

SNIPPET_CHARS = 160


def analysis_frame(
    collection: ItemCollection, analysis: Analysis, names: dict[int, str] | None = None, media_root=None, labels=None
) -> pd.DataFrame:
    """Items in the analysis's order: id, x, y, cluster, cluster_name, cluster_stability (NaN for noise and for
    clusters a taxonomy merged or split), probability, outlier_score, modality,
    source, snippet, thumbnail (absolute path, or "" for none: pandas 3 would turn None into NaN), tags, and every other metadata key.

    `labels` overrides the analysis's cluster labels (a taxonomy's effective ones). Items deleted since the
    analysis are left out; items added since it aren't in it (analyze again).
    """
    labels = analysis.labels if labels is None else labels
    stabilities = analysis.stabilities(labels)
    items = collection.all(with_vectors=False)
    by_id = {id_: (meta, doc) for id_, meta, doc in zip(items.ids, items.metadatas, items.documents)}
    names = names or {}
    rows = []
    for i, id_ in enumerate(analysis.ids):
        if id_ not in by_id:
            continue
        meta, doc = by_id[id_]
        label = int(labels[i])
        thumb = meta.get("thumbnail")
        rows.append({
            **{k: v for k, v in meta.items() if k not in ("tags", "thumbnail")},
            "id": id_,
            "x": float(analysis.xy[i, 0]),
            "y": float(analysis.xy[i, 1]),
            "cluster": label,
            "cluster_name": names.get(label, "noise" if label < 0 else f"cluster {label}"),
            "cluster_stability": stabilities.get(label, float("nan")),
            "probability": float(analysis.probabilities[i]),
            "outlier_score": float(analysis.outlier_scores[i]),
            "modality": meta.get("modality", ""),
            "source": meta.get("source", id_),
            "snippet": (doc or "")[:SNIPPET_CHARS],
            "document": doc or "",
            "thumbnail": str(stored_path(media_root, thumb) or "") if media_root is not None else "",
            "tags": list(meta.get("tags") or []),
        })
    first = ["id", "x", "y", "cluster", "cluster_name", "cluster_stability", "probability", "outlier_score", "modality", "source",
             "snippet",
             "document", "thumbnail", "tags"]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=first)
    return frame[first + [c for c in frame.columns if c not in first]]


def with_3d(frame: pd.DataFrame, ids: list[str], xyz) -> pd.DataFrame:
    """The frame with x, y, z taken from a 3D map of the same items (`ids` in `xyz`'s row order)."""
    position = {id_: i for i, id_ in enumerate(ids)}
    rows = [position[i] for i in frame["id"]]
    return frame.assign(x=xyz[rows, 0], y=xyz[rows, 1], z=xyz[rows, 2])
