"""Facets of an items table: counts per value, histograms of numbers and dates, and the filters they set.

Facets cross-filter: each facet counts the items that every *other* facet's filter keeps, so picking a value in one
shows how the others split within it (and a facet never hides its own alternatives).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .colors import color_options, column_kind, format_value

MAX_VALUES = 50  # values listed by a category facet, most frequent first
BINS = 24


@dataclass(frozen=True)
class Facet:
    column: str
    kind: str  # "category", "tags", "number" or "date"


@dataclass(frozen=True)
class FacetFilters:
    """What the facets keep: for a category or tags column the values picked (an item with any of them; for tags,
    with all of them), for a number or date column an inclusive range."""

    values: dict[str, tuple] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return any(self.values.values()) or bool(self.ranges)


def facets(frame: pd.DataFrame) -> list[Facet]:
    """The facets worth showing for a table: cluster, modality, tags, outlier score, then metadata."""
    found = []
    for column in color_options(frame):
        if column == "probability":
            continue
        kind = column_kind(frame[column], column)
        if kind == "category" and frame[column].nunique(dropna=True) < 2 and column != "cluster":
            continue  # one value everywhere: nothing to filter
        found.append(Facet(column, kind))
    if "tags" in frame and frame["tags"].map(bool).any():
        found.insert(2, Facet("tags", "tags"))
    return found


def keep_mask(frame: pd.DataFrame, filters: FacetFilters, skip: str | None = None) -> np.ndarray:
    """Rows that every facet filter keeps (leaving out the one on `skip`)."""
    keep = np.ones(len(frame), dtype=bool)
    for column, picked in filters.values.items():
        if column == skip or not picked or column not in frame:
            continue
        if column == "tags":
            wanted = set(picked)
            keep &= frame["tags"].map(lambda tags: wanted <= set(tags or ())).to_numpy(dtype=bool)
        else:
            keep &= frame[column].isin(list(picked)).to_numpy()
    for column, (lo, hi) in filters.ranges.items():
        if column == skip or column not in frame:
            continue
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        keep &= (values >= lo) & (values <= hi)
    return keep


def value_counts(frame: pd.DataFrame, column: str, filters: FacetFilters = FacetFilters()) -> list[tuple[object, str, int]]:
    """(value, label, count) of a category or tags facet: the column's most frequent values (and any picked), each
    counted over the rows the other facets keep, most frequent first. The values stay the same while other facets
    change (a count may drop to 0), so a widget listing them keeps its choices."""
    everything, counts = _counts(frame, column), _counts(frame[keep_mask(frame, filters, skip=column)], column)
    values = list(everything.index[:MAX_VALUES])
    values += [v for v in filters.values.get(column, ()) if v not in values]
    names = _cluster_names(frame) if column == "cluster" else {}
    listed = [(_py(v), names.get(v, format_value(v, column)), int(counts.get(v, 0)), int(everything.get(v, 0))) for v in values]
    listed.sort(key=lambda e: (-e[2], -e[3], column == "cluster" and e[0] == -1, e[1]))  # noise last among equals
    return [(value, label, count) for value, label, count, _ in listed]


def _counts(rows: pd.DataFrame, column: str) -> pd.Series:
    if column == "tags":
        return rows["tags"].explode().dropna().value_counts()
    return rows[column].value_counts(dropna=True)


def histogram(frame: pd.DataFrame, column: str, filters: FacetFilters = FacetFilters(), bins: int = BINS) -> pd.DataFrame:
    """Counts of a number or date column in `bins` equal bins over its whole range (so the bars stay put while other
    facets change), counted over the rows the other facets keep: columns `start`, `end`, `label`, `count`."""
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    present = ~np.isnan(values)
    if not present.any():
        return pd.DataFrame(columns=["start", "end", "label", "count"])
    lo, hi = float(values[present].min()), float(values[present].max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    kept = values[keep_mask(frame, filters, skip=column) & present]
    counts, _ = np.histogram(kept, bins=edges)
    return pd.DataFrame({"start": edges[:-1], "end": edges[1:], "label": [format_value(e, column) for e in edges[:-1]],
                         "count": counts.astype(int)})


def value_range(frame: pd.DataFrame, column: str) -> tuple[float, float]:
    values = pd.to_numeric(frame[column], errors="coerce").dropna()
    return (float(values.min()), float(values.max())) if len(values) else (0.0, 0.0)


def _cluster_names(frame: pd.DataFrame) -> dict:
    first = frame.drop_duplicates("cluster")
    return {int(c): (str(n) if c >= 0 else "noise") for c, n in zip(first["cluster"], first["cluster_name"])}


def _py(value):
    """numpy scalars as Python values (widget options and filters compare them with table values)."""
    return value.item() if isinstance(value, np.generic) else value

