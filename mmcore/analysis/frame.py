"""One table of a collection's items with their map coordinates, clusters and outlier scores."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd

from ..files import stored_path
from ..store import ItemCollection
from ..search import Filters
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
             "snippet", "document", "thumbnail", "tags"]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=first)
    return frame[first + sorted(c for c in frame.columns if c not in first)]  # the store's metadata keys come in no set order


def with_3d(frame: pd.DataFrame, ids: list[str], xyz) -> pd.DataFrame:
    """The frame with x, y, z taken from a 3D map of the same items (`ids` in `xyz`'s row order)."""
    position = {id_: i for i, id_ in enumerate(ids)}
    rows = [position[i] for i in frame["id"]]
    return frame.assign(x=xyz[rows, 0], y=xyz[rows, 1], z=xyz[rows, 2])


TABLE_COLUMNS = ["id", "source", "cluster_name", "modality", "outlier_score", "added_at", "tags", "snippet"]


def table_view(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns of an items table worth reading beside the map, as people read them: the date added as a
    timestamp, tags as one comma-separated string. Keeps the frame's index (its rows)."""
    view = frame[[c for c in TABLE_COLUMNS if c in frame]].copy()
    if "added_at" in view:
        view["added_at"] = pd.to_datetime(pd.to_numeric(view["added_at"], errors="coerce"), unit="s", utc=True)
    if "tags" in view:
        view["tags"] = view["tags"].map(lambda tags: ", ".join(tags or ()))
    return view


SORTS = {  # name: (columns, ascending) for sort_items
    "newest first": (["added_at", "source"], [False, True]),
    "oldest first": (["added_at", "source"], [True, True]),
    "cluster": (["cluster_name", "probability"], [True, False]),
    "outlier score": (["outlier_score"], [False]),
    "source name": (["source", "id"], [True, True]),
}


def filter_items(frame: pd.DataFrame, filters: Filters) -> pd.DataFrame:
    """The rows of an items table that meet the filters: the same conditions as `Filters.matches` on an item's
    metadata, decided for the whole table at once."""
    keep = np.ones(len(frame), dtype=bool)
    if filters.modalities:
        keep &= frame["modality"].isin(filters.modalities).to_numpy()
    if filters.sources:
        keep &= frame["source"].isin(filters.sources).to_numpy()
    if filters.tags:
        wanted = set(filters.tags)
        keep &= frame["tags"].map(lambda tags: wanted <= set(tags or ())).to_numpy(dtype=bool)
    first, last = filters.added_bounds()
    if first is not None or last is not None:
        added = pd.to_numeric(frame.get("added_at", pd.Series(np.nan, index=frame.index)), errors="coerce").to_numpy(float)
        keep &= (added >= (first if first is not None else -np.inf)) & (added <= (last if last is not None else np.inf))
    for key, value in filters.equals.items():
        one = Filters(equals={key: value})
        column = frame[key] if key in frame else pd.Series([None] * len(frame))
        keep &= np.array([not _absent(v) and one.matches({key: v}) for v in column], dtype=bool)
    return frame[keep]


def sort_items(frame: pd.DataFrame, how: str) -> pd.DataFrame:
    """The table in one of the SORTS orders (missing values last)."""
    columns, ascending = SORTS[how]
    present = [c for c in columns if c in frame]
    if not present:
        return frame
    return frame.sort_values(present, ascending=[a for c, a in zip(columns, ascending) if c in frame], kind="stable",
                             na_position="last")


def _absent(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def metadata_rows(meta: dict) -> list[tuple[str, str]]:
    """An item's metadata as (field, value) text for people, sorted by field: dates written out, lists joined."""
    from .colors import format_value, is_date

    rows = []
    for key in sorted(meta):
        value = meta[key]
        if isinstance(value, (list, tuple)):
            text = ", ".join(map(str, value))
        elif is_date(key) and isinstance(value, (int, float)) and not isinstance(value, bool):
            text = format_value(value, key) + datetime.fromtimestamp(value, tz=timezone.utc).strftime(" %H:%M:%S UTC")
        else:
            text = str(value)
        rows.append((key, text))
    return rows
