"""Items with their metadata, tags, map coordinates, clusters and outlier scores as CSV, JSON or Parquet."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .errors import MMError

FORMATS = ("csv", "json", "parquet")
DROPPED = ("snippet",)  # the full `document` is exported instead


def export_bytes(frame: pd.DataFrame, fmt: str) -> bytes:
    """The table from `mmcore.analysis.frame.analysis_frame` in a file format.

    Tags are a list in JSON and Parquet and "|"-joined in CSV; `added_at` becomes ISO 8601 (UTC).

    Raises:
        MMError: unknown format.
    """
    if fmt not in FORMATS:
        raise MMError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    table = frame.drop(columns=[c for c in DROPPED if c in frame.columns]).copy()
    if "added_at" in table:
        table["added_at"] = [
            datetime.fromtimestamp(int(t), timezone.utc).isoformat() if pd.notna(t) else None for t in table["added_at"]
        ]
    if fmt == "csv":
        table["tags"] = ["|".join(tags) for tags in table["tags"]]
        return table.to_csv(index=False).encode()
    if fmt == "json":
        records = json.loads(table.to_json(orient="records"))  # pandas writes NaN as null: valid JSON
        return json.dumps(records, ensure_ascii=False, indent=1).encode()
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    return buffer.getvalue()


def export_file(frame: pd.DataFrame, fmt: str, path: Path) -> Path:
    """Write `export_bytes` to `path` atomically enough for a user's file (write, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(export_bytes(frame, fmt))
    tmp.replace(path)
    return path
