"""Items with their metadata, tags, map coordinates, clusters and outlier scores as CSV, JSON or Parquet."""

from __future__ import annotations

import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import MMError
from .ingest import LOCATOR_KEYS
from .files import stored_path
from .safe_io import output_target, write_output
from .workspace import Workspace

FORMATS = ("csv", "json", "parquet")
DROPPED = ("snippet",)  # the full `document` is exported instead
ANALYSIS_COLUMNS = ("x", "y", "cluster", "cluster_name", "cluster_stability", "probability", "outlier_score")
FIRST = ("id", "source", "modality", "mime", "added_at", *LOCATOR_KEYS, "tags", "document", "original", "thumbnail")


def export_items(
    ws: Workspace, collection: str | None, space: str, fmt: str, path: str | Path, analysis=None,
    names: dict[int, str] | None = None, force: bool = False,
) -> Path:
    """Write one row per item of a collection's space to `path`, which may not lie inside the data dir and is
    replaced only with `force` (see `mmcore.safe_io.write_output`).

    Columns: id, source, modality, mime, added_at (ISO 8601, UTC), locator fields, tags ("|"-joined in CSV,
    a list in JSON and Parquet), document, original and thumbnail (absolute paths), then every other metadata
    key. With `analysis` (any object with `ids`, `xy`, `labels`, `probabilities`, `outlier_scores` and
    optionally `names` and `stabilities` ({label: stability})), also x, y, cluster, cluster_name, cluster_stability,
    probability and outlier_score, joined by id (empty
    for items the analysis doesn't cover). `names` ({label: name}, e.g. from `mmcore.analysis.naming.
    cluster_names`) wins over the analysis's own; unnamed clusters are "cluster N", noise is "noise". A
    metadata key named like one of those columns is kept as `meta_<key>`. `analysis` may also be a table
    with those columns and `id` (`mmcore.analysis.frame.analysis_frame`: a taxonomy's clusters and names).

    Raises:
        MMError: unknown format, `path` inside the data dir or there already without `force`, or the file can't
            be written. NotFound: no such collection in that space.
    """
    if fmt not in FORMATS:
        raise MMError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    output_target(path, ws.settings.data_dir, force)  # before the work: a refusal costs nothing
    name = collection or ws.settings.collection
    return write_output(path, ws.settings.data_dir, export_bytes(items_frame(ws, name, space, analysis, names), fmt), force)


def items_frame(
    ws: Workspace, collection: str, space: str, analysis=None, names: dict[int, str] | None = None
) -> pd.DataFrame:
    """The table `export_items` writes, before formatting. Raises NotFound: no such collection in that space."""
    items = ws.store.open(collection, space).all(with_vectors=False)
    root = ws.files.root
    taken = set(ANALYSIS_COLUMNS) if analysis is not None else set()
    rows = []
    for id_, meta, doc in zip(items.ids, items.metadatas, items.documents):
        row: dict[str, Any] = {"id": id_}
        for key, value in meta.items():
            row[f"meta_{key}" if key in taken else key] = value
        row["tags"] = list(meta.get("tags") or [])
        row["document"] = doc
        for key in ("original", "thumbnail"):
            path = stored_path(root, meta.get(key))
            row[key] = None if path is None else str(path)
        rows.append(row)
    # object dtype keeps each value's own type (an int stays an int beside a missing one) for `_uniform`
    frame = pd.DataFrame(rows, columns=list(FIRST) if not rows else None, dtype=object)
    if analysis is not None:
        frame = _join(frame, analysis, names)
    first = [c for c in (*FIRST, *ANALYSIS_COLUMNS) if c in frame.columns]
    return frame[first + sorted(c for c in frame.columns if c not in first)]


def export_bytes(frame: pd.DataFrame, fmt: str) -> bytes:
    """A table of items (from `items_frame` or `mmcore.analysis.frame.analysis_frame`) in a file format.

    Tags are a list in JSON and Parquet and "|"-joined in CSV; `added_at` becomes ISO 8601 (UTC); JSON is a
    list of objects, with null where a value is missing (never NaN).

    Raises:
        MMError: unknown format.
    """
    if fmt not in FORMATS:
        raise MMError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    table = frame.drop(columns=[c for c in DROPPED if c in frame.columns])
    table = pd.DataFrame({column: _uniform(table[column]) for column in table.columns}, index=table.index)
    if "added_at" in table:
        table["added_at"] = pd.Series([_iso(t) for t in table["added_at"]], index=table.index, dtype=object)
    if fmt == "csv":
        for column in table.columns:
            if table[column].map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any():
                table[column] = table[column].map(lambda v: "|".join(map(str, v)) if _is_list(v) else v)
        return table.to_csv(index=False).encode()
    if fmt == "json":
        records = [{k: _plain(v) for k, v in row.items()} for row in table.to_dict(orient="records")]
        return json.dumps(records, ensure_ascii=False, indent=1, allow_nan=False).encode()
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _join(frame: pd.DataFrame, analysis, names: dict[int, str] | None) -> pd.DataFrame:
    if isinstance(analysis, pd.DataFrame):
        columns = analysis[["id", *ANALYSIS_COLUMNS]].astype({"cluster": "Int64"})
        return frame.merge(columns, on="id", how="left")
    names = names if names is not None else getattr(analysis, "names", None) or {}
    labels = [int(label) for label in analysis.labels]
    stabilities = getattr(analysis, "stabilities", None) or {}
    stabilities = stabilities() if callable(stabilities) else stabilities  # an Analysis computes its own
    columns = pd.DataFrame({
        "id": list(analysis.ids),
        "x": np.asarray(analysis.xy, dtype=float)[:, 0],
        "y": np.asarray(analysis.xy, dtype=float)[:, 1],
        "cluster": pd.array(labels, dtype="Int64"),
        "cluster_name": [names.get(label, "noise" if label < 0 else f"cluster {label}") for label in labels],
        "cluster_stability": [stabilities.get(label, np.nan) for label in labels],
        "probability": np.asarray(analysis.probabilities, dtype=float),
        "outlier_score": np.asarray(analysis.outlier_scores, dtype=float),
    })
    return frame.merge(columns, on="id", how="left")


def _uniform(column: pd.Series) -> pd.Series:
    """One type per column, so Parquet can store it: whole numbers as nullable Int64 (not floats with .0),
    missing numbers as null (not NaN), and a column that mixes kinds as text."""
    if column.dtype.kind == "f" and column.isna().any():
        return column.astype("Float64")  # missing as null, not NaN
    values = [v for v in column if not _missing(v)]
    if not values or column.dtype.kind in "fiub":
        return column
    kinds = {"list" if _is_list(v) else "bool" if isinstance(v, (bool, np.bool_)) else
             "int" if isinstance(v, (int, np.integer)) else "float" if isinstance(v, (float, np.floating)) else "str"
             for v in values}
    if kinds == {"int"}:
        return column.astype("Int64")
    if kinds <= {"int", "float"}:
        return column.astype("Float64")
    if len(kinds) == 1:
        return column
    return column.map(lambda v: None if _missing(v) else "|".join(map(str, v)) if _is_list(v) else str(v)).astype(object)


def _iso(t) -> str | None:
    return None if _missing(t) else datetime.fromtimestamp(int(t), timezone.utc).isoformat()


def _plain(value):
    """A JSON-ready value: numpy scalars and arrays as Python ones, NaN and NA as null."""
    if _is_list(value):
        return [_plain(v) for v in value]
    if _missing(value):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _is_list(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def _missing(value) -> bool:
    return not _is_list(value) and (value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)))
