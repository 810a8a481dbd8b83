"""Plotly figures of a map (WebGL, so 50,000 points stay smooth)."""

from __future__ import annotations

import html

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

    Every point carries its item id as customdata, so selections map back to items.
    """
    Scatter = go.Scatter3d if three_d else go.Scattergl
    size = _marker_size(len(frame), three_d)
    hover = _hover_text(frame)
    figure = go.Figure()
    values = frame[color_by] if color_by in frame else pd.Series(["?"] * len(frame))
    continuous = color_by in CONTINUOUS or (pd.api.types.is_numeric_dtype(values) and values.nunique() > MAX_CATEGORIES)
    if continuous:
        figure.add_trace(Scatter(
            **_coords(frame, three_d), mode="markers", customdata=frame["id"], hovertext=hover, hoverinfo="text",
            marker=dict(size=size, color=values.fillna(0), colorscale="Viridis", showscale=True,
                        colorbar=dict(title=color_by.replace("_", " "), thickness=12)),
            name=color_by, showlegend=False,
        ))
    else:
        categories = _categories(frame, color_by)
        for i, (value, label) in enumerate(categories):
            part = values == value if value is not None else values.isna()
            sub = frame[part.to_numpy()]
            is_noise = color_by == "cluster" and value == -1
            figure.add_trace(Scatter(
                **_coords(sub, three_d), mode="markers", customdata=sub["id"], hovertext=hover[part.to_numpy()],
                hoverinfo="text", name=label,
                marker=dict(size=size * (0.7 if is_noise else 1), color=NOISE_COLOR if is_noise else PALETTE[i % len(PALETTE)],
                            opacity=0.5 if is_noise else 0.85),
            ))
    if highlight:
        sub = frame[frame["id"].isin(highlight)]
        figure.add_trace(Scatter(
            **_coords(sub, three_d), mode="markers", customdata=sub["id"], hovertext=_hover_text(sub), hoverinfo="text",
            name="search hits", marker=dict(size=size * 2.6, color="rgba(0,0,0,0)", line=dict(color="#111827", width=2)),
        ))
    figure.update_layout(
        height=640, margin=dict(l=0, r=0, t=10, b=0), legend=dict(itemsizing="constant", font=dict(size=11)),
        dragmode="lasso", plot_bgcolor="white", hoverlabel=dict(bgcolor="white", font_size=12),
    )
    if not three_d:
        figure.update_xaxes(visible=False)
        figure.update_yaxes(visible=False, scaleanchor="x")
    else:
        figure.update_scenes(xaxis_visible=False, yaxis_visible=False, zaxis_visible=False)
    return figure


def _coords(frame: pd.DataFrame, three_d: bool) -> dict:
    coords = {"x": frame["x"].to_numpy(), "y": frame["y"].to_numpy()}
    if three_d:
        coords["z"] = frame["z"].to_numpy()
    return coords


def _categories(frame: pd.DataFrame, column: str) -> list[tuple[object, str]]:
    """(value, legend label) in a stable order: clusters by number with their names, noise last."""
    if column not in frame:
        return [("?", "?")]
    if column == "cluster":
        names = dict(zip(frame["cluster"], frame["cluster_name"]))
        ordered = sorted(set(frame["cluster"]), key=lambda c: (c < 0, c))
        return [(c, f"{c}: {names[c]}" if c >= 0 else "noise") for c in ordered]
    counts = frame[column].value_counts(dropna=False)
    values = list(counts.index[:MAX_CATEGORIES])
    return [(v if not (isinstance(v, float) and np.isnan(v)) else None, str(v)) for v in values]


def _hover_text(frame: pd.DataFrame) -> np.ndarray:
    def one(row) -> str:
        lines = [f"<b>{html.escape(str(row.source))}</b>", f"{html.escape(str(row.cluster_name))} · outlier {row.outlier_score:.2f}"]
        if row.snippet:
            lines.append(html.escape(row.snippet[:100]))
        return "<br>".join(lines)

    return np.array([one(row) for row in frame.itertuples()], dtype=object)


def _marker_size(n: int, three_d: bool) -> float:
    base = 9 if n < 1000 else 6 if n < 10_000 else 4 if n < 50_000 else 3
    return base * (0.6 if three_d else 1.0)
