"""Plotly figures of a map (WebGL, so 50,000 points stay smooth)."""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

NOISE_COLOR = "#c7cbd1"
PALETTE = [
    "#4f46e5", "#e11d48", "#059669", "#d97706", "#0891b2", "#7c3aed", "#65a30d", "#db2777", "#2563eb", "#ea580c",
    "#0d9488", "#9333ea", "#ca8a04", "#dc2626", "#16a34a", "#4338ca", "#be185d", "#0369a1", "#b45309", "#15803d",
]
MAX_CATEGORIES = 40
CONTINUOUS = ("outlier_score", "probability")
MAX_THUMBNAIL_BYTES = 256_000  # stored thumbnails are a few KB; never inline a stray big file
MAX_LABEL_CHARS = 60  # a legend of longer names leaves the map no room; the hover card shows the whole name


def color_options(frame: pd.DataFrame) -> list[str]:
    """Columns worth colouring by: cluster, modality, scores, and metadata with few values or numbers."""
    skip = {"id", "x", "y", "z", "snippet", "document", "thumbnail", "tags", "source_hash", "original", "cluster_name"}
    options = ["cluster", "modality", "outlier_score", "probability"]
    for column in frame.columns:
        if column in skip or column in options:
            continue
        values = frame[column].dropna()
        if values.empty:
            continue
        if pd.api.types.is_numeric_dtype(values) or values.nunique() <= MAX_CATEGORIES:
            options.append(column)
    return options


def map_figure(frame: pd.DataFrame, color_by: str = "cluster", highlight: set[str] | frozenset = frozenset(), three_d: bool = False) -> go.Figure:
    """A scatter of the items (x, y[, z]) coloured by a column; `highlight` ids are drawn on top, ringed.

    Lean enough for 50,000 points: every point carries its row in `frame` as customdata (see `selected_ids` and
    `point_preview`), numbers go out as base64 typed arrays, and the hover label is only the trace's name.
    """
    Scatter = go.Scatter3d if three_d else go.Scattergl
    size = _marker_size(len(frame), three_d)
    rows = np.arange(len(frame), dtype=np.int32)
    coords = _coords(frame, three_d)  # once: selecting each trace's points from these arrays, not the whole frame

    def at(part) -> dict:
        return {axis: values[part] for axis, values in coords.items()}

    figure = go.Figure()
    values = frame[color_by] if color_by in frame else pd.Series(["?"] * len(frame))
    continuous = color_by in CONTINUOUS or (pd.api.types.is_numeric_dtype(values) and values.nunique() > MAX_CATEGORIES)
    if continuous:
        label, digits = plotly_text(color_by.replace("_", " ")), ":.2f" if pd.api.types.is_float_dtype(values) else ""
        figure.add_trace(Scatter(
            **coords, mode="markers", customdata=rows,
            # the column's name (a metadata key) comes in through the trace's name, never as template text
            hovertemplate=f"%{{fullData.name}} %{{marker.color{digits}}}<extra></extra>",
            marker=dict(size=size, color=values.fillna(0).to_numpy(np.float32), colorscale="Viridis", showscale=True,
                        colorbar=dict(title=label, thickness=12)),
            name=label, showlegend=False,
        ))
    else:
        categories = _categories(frame, color_by)
        for i, (value, label) in enumerate(categories):
            part = (values == value if value is not None else values.isna()).to_numpy()
            is_noise = color_by == "cluster" and value == -1
            figure.add_trace(Scatter(
                **at(part), mode="markers", customdata=rows[part], name=label,
                hovertemplate="%{fullData.name}<extra></extra>",
                marker=dict(size=size * (0.7 if is_noise else 1), color=NOISE_COLOR if is_noise else PALETTE[i % len(PALETTE)],
                            opacity=0.5 if is_noise else 0.85),
            ))
    if highlight:
        part = frame["id"].isin(highlight).to_numpy()
        figure.add_trace(Scatter(
            **at(part), mode="markers", customdata=rows[part], name="search hits",
            hovertemplate="search hit<extra></extra>",
            marker=dict(size=size * 2.6, color="rgba(0,0,0,0)", line=dict(color="#111827", width=2)),
        ))
    figure.update_layout(
        height=640, margin=dict(l=0, r=0, t=10, b=0), legend=dict(itemsizing="constant", font=dict(size=11)),
        dragmode="lasso", plot_bgcolor="white", hoverlabel=dict(bgcolor="white", font_size=12),
        font=dict(family='"Source Sans", sans-serif'),  # the app's font (the page draws it without Streamlit's theme)
    )
    if not three_d:
        figure.update_xaxes(visible=False)
        figure.update_yaxes(visible=False, scaleanchor="x")
    else:
        figure.update_scenes(xaxis_visible=False, yaxis_visible=False, zaxis_visible=False)
    return figure


def plotly_text(text: object) -> str:
    """`text` (a cluster name, a metadata key or value) for a legend, hover label or title, shown as itself, cut
    to MAX_LABEL_CHARS.

    Plotly draws those strings as its own small HTML: `<a href>` links, `<span style>` (whose CSS can fetch a
    URL), `<b>`, `<br>`; and it decodes entities. As entities, `<`, `>` and `&` start no tag and show as
    themselves."""
    text = str(text)
    if len(text) > MAX_LABEL_CHARS:
        text = text[: MAX_LABEL_CHARS - 1] + "…"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def selected_ids(frame: pd.DataFrame, points: Iterable[Mapping]) -> list[str]:
    """The item ids of a map selection's points (their customdata is their row in `frame`), each once."""
    rows = {p["customdata"] for p in points if isinstance(p.get("customdata"), int) and 0 <= p["customdata"] < len(frame)}
    return list(frame["id"].iloc[sorted(rows)])


def point_preview(frame: pd.DataFrame, row: object) -> dict | None:
    """What the map's hover card shows for the point at `row` (its customdata): the thumbnail as a data: URI,
    else ("" for none) the text snippet; the source as title; cluster and outlier score as caption.

    None for a row that isn't one (a stale hover from before the map changed).
    """
    if not isinstance(row, int) or not 0 <= row < len(frame):
        return None
    item = frame.iloc[row]
    image = _data_uri(item["thumbnail"])
    return {
        "row": row,
        "image": image,
        "text": "" if image else str(item["snippet"] or ""),
        "title": str(item["source"]),
        "caption": f"{item['cluster_name']} · outlier {item['outlier_score']:.2f}",
    }


def _data_uri(path: object) -> str:
    """A stored thumbnail (a few KB of WebP) inline, so the card needs no file server; "" when missing."""
    if not isinstance(path, str) or not path:
        return ""
    file = Path(path)
    try:
        if file.stat().st_size > MAX_THUMBNAIL_BYTES:
            return ""
        data = file.read_bytes()
    except OSError:
        return ""
    mime = mimetypes.guess_type(file.name)[0] or "image/webp"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _coords(frame: pd.DataFrame, three_d: bool) -> dict:
    axes = ("x", "y", "z") if three_d else ("x", "y")
    return {axis: frame[axis].to_numpy(np.float32) for axis in axes}  # float32: half the bytes, plenty for a map


def _categories(frame: pd.DataFrame, column: str) -> list[tuple[object, str]]:
    """(value, legend label) in a stable order: clusters by number with their names, noise last."""
    if column not in frame:
        return [("?", "?")]
    if column == "cluster":
        first = frame.drop_duplicates("cluster")
        names = dict(zip(first["cluster"].tolist(), first["cluster_name"].tolist()))
        ordered = sorted(names, key=lambda c: (c < 0, c))
        return [(c, plotly_text(f"{c}: {names[c]}") if c >= 0 else "noise") for c in ordered]
    counts = frame[column].value_counts(dropna=False)
    values = list(counts.index[:MAX_CATEGORIES])
    return [(v if not (isinstance(v, float) and np.isnan(v)) else None, plotly_text(v)) for v in values]


def _marker_size(n: int, three_d: bool) -> float:
    base = 9 if n < 1000 else 6 if n < 10_000 else 4 if n < 50_000 else 3
    return base * (0.6 if three_d else 1.0)
