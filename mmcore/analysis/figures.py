"""Plotly figures of a map (WebGL, so 50,000 points stay smooth), coloured by any column without a server round trip.

The figure carries every colouring at once (one byte a point each, see `colors`): its "Colour by" menu restyles the
points in the browser. Points carry their row in the items table as customdata (see `selected_ids`, `point_preview`).
"""

from __future__ import annotations

import base64
import html
import mimetypes
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .colors import Coloring, color_options, coloring
from ..spaces.registry import spec_of

MAX_THUMBNAIL_BYTES = 256_000  # stored thumbnails are a few KB; never inline a stray big file
MAX_LABELS = 30  # cluster names drawn on the map, biggest clusters first
LABEL_CHARS = 28
FADED_COLOR = "rgba(203, 208, 216, 0.35)"  # points the filters leave out
HEIGHT = 680
PLOT_WIDTH = 760  # about the map's width in pixels beside its legend, in the page's wide layout
MENU_X = 0.0  # the "Colour by" menu sits at the top left, the legend at the right, clear of the toolbar
MAX_LABEL_CHARS = 60  # a legend of longer names leaves the map no room; the hover card shows the whole name


def default_coloring(space: str) -> str:
    """What a space's map is coloured by first: by kind of media where the space binds sounds and pictures (which
    sounds sit near which scenes), else by cluster."""
    spec = spec_of(space)
    return "modality" if spec is not None and spec.binds else "cluster"


def map_figure(
    frame: pd.DataFrame,
    color_by: str = "cluster",
    highlight: Iterable[str] = frozenset(),
    three_d: bool = False,
    shown: np.ndarray | None = None,
    options: list[str] | None = None,
    selected: Iterable[str] = (),
) -> go.Figure:
    """A scatter of the items (x, y[, z]) that switches between colourings in the browser.

    Args:
        color_by: the colouring shown first (one of `options`).
        highlight: ids drawn ringed on top (search hits, rows picked in a table).
        shown: a mask of the rows the filters keep (None: all); the others are drawn faint, behind, and can't be
            hovered or selected.
        options: the columns to offer in the "Colour by" menu (default `color_options(frame)`).
        selected: ids of a selection made on the map, drawn selected (the others dimmed) when the figure is redrawn.
    """
    options = [c for c in (options or color_options(frame)) if c in frame] or ["cluster"]
    color_by = color_by if color_by in options else options[0]
    keep = np.ones(len(frame), dtype=bool) if shown is None else np.asarray(shown, dtype=bool)
    Scatter = go.Scatter3d if three_d else go.Scattergl
    size = _marker_size(int(keep.sum()), three_d)
    coords = _coords(frame, three_d)
    colorings = {c: coloring(frame, c) for c in options}
    rows = np.flatnonzero(keep).astype(np.uint16 if len(frame) <= 65536 else np.int32)  # 2 bytes a point where enough
    # Noise (and other grey points) first, so the clusters are drawn over them.
    if "cluster" in frame:
        noise = frame["cluster"].to_numpy()[rows] < 0
        rows = np.concatenate([rows[noise], rows[~noise]])

    figure = go.Figure()
    if not keep.all():
        out = ~keep
        figure.add_trace(Scatter(**{a: v[out] for a, v in coords.items()}, mode="markers", hoverinfo="skip",
                                 marker=dict(size=size * 0.8, color=FADED_COLOR), showlegend=False, name="filtered out"))
    main = len(figure.data)
    active = colorings[color_by]
    figure.add_trace(Scatter(
        **{a: v[rows] for a, v in coords.items()}, mode="markers", customdata=rows, name="items", showlegend=False,
        hoverinfo="none",  # the hover card (ui.map_hover) shows the item; plotly still reports the hover
        marker=dict(size=size, line=dict(width=0), **_marker(active, rows)),
    ))
    chosen = frame["id"].iloc[rows].isin(set(selected)).to_numpy()
    if chosen.any():
        figure.data[main].selectedpoints = np.flatnonzero(chosen).tolist()
    legend_traces: dict[str, list[int]] = {}
    dummy_colors: list[str] = []
    for column, colour in colorings.items():
        legend_traces[column] = []
        for label, color, count in colour.legend:
            legend_traces[column].append(len(figure.data))
            dummy_colors.append(color)
            figure.add_trace(Scatter(
                **{a: [None] for a in coords}, mode="markers", name=f"{plotly_text(label)} ({count:,})",
                marker=dict(size=10, color=color), legendgroup=column, visible=column == color_by, hoverinfo="skip",
                legendgrouptitle=dict(text=plotly_text(column.replace("_", " "))),
            ))
    ringed = frame["id"].isin(set(highlight)).to_numpy() & keep
    if ringed.any():
        part = np.flatnonzero(ringed).astype(rows.dtype)
        figure.add_trace(Scatter(
            **{a: v[part] for a, v in coords.items()}, mode="markers", customdata=part, name="picked", showlegend=False,
            hoverinfo="none", marker=dict(size=size * 2.6, color="rgba(0,0,0,0)", line=dict(color="#111827", width=2)),
        ))

    labels = _label_annotations(frame, coords, keep, three_d)
    figure.update_layout(
        height=HEIGHT, margin=dict(l=0, r=0, t=44, b=0), dragmode="lasso", plot_bgcolor="white", showlegend=True,
        legend=dict(itemsizing="constant", font=dict(size=11), x=1.0, xanchor="left", y=1, yanchor="top",
                    itemclick=False, itemdoubleclick=False),  # legend entries stand for colours, not traces to hide
        hoverlabel=dict(bgcolor="white", font_size=12), uirevision="map",
        font=dict(family='"Source Sans", sans-serif'),  # the app's font (the page draws it without Streamlit's theme)
        updatemenus=[dict(
            type="dropdown", direction="down", x=MENU_X, xanchor="left", y=1.0, yanchor="bottom", pad=dict(b=6),
            active=options.index(color_by), showactive=True, bgcolor="white", bordercolor="#d1d5db", font=dict(size=12),
            buttons=[_button(column, colorings[column], rows, main, legend_traces, dummy_colors, labels, three_d)
                     for column in options],
        )],
        **_annotations(labels if color_by == "cluster" else [], three_d),
    )
    if not three_d:
        figure.update_xaxes(visible=False)
        figure.update_yaxes(visible=False, scaleanchor="x")
    else:
        # The whole plot area, each axis scaled to the same cube, and the camera as close as this cloud allows
        # (plotly's default eye, 2.2 cube widths away, leaves the cloud a small blot in the middle).
        eye = camera_eye(frame[["x", "y", "z"]].to_numpy(dtype=np.float64))
        figure.update_scenes(xaxis_visible=False, yaxis_visible=False, zaxis_visible=False, aspectmode="cube",
                             domain=dict(x=[0, 1], y=[0, 1]), camera=dict(eye=dict(x=eye[0], y=eye[1], z=eye[2])))
    return figure


EYE_DIRECTION = np.array([1.1, 1.1, 0.75]) / np.linalg.norm([1.1, 1.1, 0.75])  # from the front right, a little above
FILL = 0.9  # of the view's half-height that the farthest point may reach


def partial_figure(partial) -> go.Figure:
    """The map while a fit goes on (an unfinished `Analysis`): the 2D map alone, then coloured by outlier score once
    those are in, then by cluster (noise grey) once the clusters are: what an analyst can look at meanwhile."""
    xy, done = partial.xy, set(partial.done)
    if "clusters" in done:  # in the colours the finished map gives them
        colour = coloring(pd.DataFrame({"cluster": partial.labels}), "cluster")
        name, marker = "clusters", _marker(colour, np.arange(len(xy)))
    elif "outliers" in done:
        name, marker = "outlier score", {"color": partial.outlier_scores, "colorscale": "Reds", "opacity": 0.7,
                                         "colorbar": {"title": {"text": "outlier score"}, "thickness": 12}}
    else:
        name, marker = "items", {"color": "#8a8f98", "opacity": 0.6}
    figure = go.Figure()
    figure.add_scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", hoverinfo="skip", name=name, marker={**marker, "size": 3})
    figure.update_layout(height=560, margin={"l": 0, "r": 0, "t": 0, "b": 0}, xaxis_visible=False, yaxis_visible=False,
                         showlegend=False)
    return figure


def camera_eye(xyz: np.ndarray) -> tuple[float, float, float]:
    """Plotly's scene camera eye for a cloud drawn in a cube (aspectmode "cube"): the nearest along EYE_DIRECTION at
    which every point stays within FILL of the view (plotly's perspective camera: 45 degrees high; the plot is
    never taller than wide), so the cloud fills the canvas whatever its shape, and corners are never cut."""
    if len(xyz) < 2:
        return tuple(float(v) for v in EYE_DIRECTION * 2)
    low, high = xyz.min(axis=0), xyz.max(axis=0)
    cube = ((xyz - low) / np.where(high > low, high - low, 1.0) - 0.5) * 1.1  # a unit cube, plus autorange's margin
    right = np.cross(-EYE_DIRECTION, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, -EYE_DIRECTION)
    reach = FILL * np.tan(np.pi / 8)
    # A point p seen from d * direction lies at (p.right, p.up) / (d - p.direction) on the screen: solved for d.
    sideways = np.maximum(np.abs(cube @ right), np.abs(cube @ up))
    distance = float(np.clip(np.max(cube @ EYE_DIRECTION + sideways / reach), 1.0, 3.0))
    return tuple(float(v) for v in EYE_DIRECTION * distance)


def _marker(colour: Coloring, rows: np.ndarray) -> dict:
    spec = dict(color=colour.codes[rows], colorscale=colour.colorscale, cmin=colour.cmin, cmax=colour.cmax,
                showscale=colour.continuous)
    if colour.continuous:
        spec["colorbar"] = _colorbar(colour)
    return spec


def _colorbar(colour: Coloring) -> dict:
    return dict(title=dict(text=plotly_text(colour.column.replace("_", " ")), side="right"), thickness=12, len=0.8, y=0.5,
                tickvals=[t for t, _ in colour.ticks], ticktext=[plotly_text(label) for _, label in colour.ticks])


def _button(column: str, colour: Coloring, rows: np.ndarray, main: int, legend_traces: dict[str, list[int]],
            dummy_colors: list[str], labels: list[dict], three_d: bool) -> dict:
    """A menu entry that restyles the points with this colouring, shows its legend and, for clusters, the names.

    One update for the points and the legend entries: a value per trace, and null resets an attribute, so the
    legend entries get their own colours back and nothing else of the points' marker."""
    dummies = [i for indices in legend_traces.values() for i in indices]
    traces = [main] + dummies
    marker = _marker(colour, rows)
    data = {
        "marker.color": [_typed(marker["color"])] + dummy_colors,
        "marker.colorscale": [marker["colorscale"]] + [None] * len(dummies),
        "marker.cmin": [marker["cmin"]] + [None] * len(dummies),
        "marker.cmax": [marker["cmax"]] + [None] * len(dummies),
        "marker.showscale": [marker["showscale"]] + [False] * len(dummies),
        "marker.colorbar": [marker.get("colorbar", {})] + [None] * len(dummies),
        "visible": [True] + [i in legend_traces[column] for i in dummies],
    }
    layout = _annotations(labels if column == "cluster" else [], three_d)
    return dict(label=plotly_text(column.replace("_", " ")), method="update", args=[data, layout, traces])


def _typed(values: np.ndarray) -> dict:
    """A numpy array as plotly.js's typed array spec (plotly.py encodes arrays only where they are dict values)."""
    values = np.ascontiguousarray(values)
    dtype = {"uint8": "u1", "uint16": "u2", "int32": "i4", "float32": "f4"}[str(values.dtype)]
    return {"dtype": dtype, "bdata": base64.b64encode(values.tobytes()).decode()}


def cluster_labels(frame: pd.DataFrame, coords: Mapping[str, np.ndarray] | None = None, keep: np.ndarray | None = None,
                   max_labels: int = MAX_LABELS, width_px: int = PLOT_WIDTH, height_px: int = HEIGHT) -> list[dict]:
    """Where to write cluster names: at each cluster's medoid (a member point, so a crescent's name sits on the
    crescent), biggest clusters first, leaving out a name whose box would overlap one already placed.

    Returns dicts with the axes of `coords` (x, y[, z]), `text` (the name, shortened) and `size` (members).
    Box sizes assume 12 px text on a plot of about `width_px` x `height_px` with equal scales on x and y.
    """
    if coords is None:
        coords = _coords(frame, "z" in frame)
    keep = np.ones(len(frame), dtype=bool) if keep is None else keep
    clusters = frame["cluster"].to_numpy()
    names = frame["cluster_name"].astype(str).to_numpy()
    axes = list(coords)
    points = np.column_stack([coords[a] for a in axes]).astype(np.float64)
    if len(points) == 0:
        return []
    span = np.maximum(np.ptp(points[:, :2], axis=0), 1e-9)
    per_px = max(span[0] / width_px, span[1] / height_px)  # data units per pixel on both axes
    ids, sizes = np.unique(clusters[(clusters >= 0) & keep], return_counts=True)
    placed: list[tuple[float, float, float, float]] = []
    labels = []
    rng = np.random.default_rng(0)
    for cluster in ids[np.argsort(-sizes, kind="stable")]:
        members = np.flatnonzero((clusters == cluster) & keep)
        centre = points[members[_medoid(points[members], rng)]]
        text = names[members[0]]
        text = text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"
        # The label's half box in data units: about 6.5 px a character and 18 px a line.
        half_w, half_h = (len(text) * 6.5 + 6) / 2 * per_px, 18 / 2 * per_px
        if any(abs(centre[0] - x) < half_w + w and abs(centre[1] - y) < half_h + h for x, y, w, h in placed):
            continue
        placed.append((centre[0], centre[1], half_w, half_h))
        labels.append({**{a: float(centre[i]) for i, a in enumerate(axes)}, "text": text, "size": int(len(members))})
        if len(labels) == max_labels:
            break
    return labels


def _medoid(points: np.ndarray, rng, sample: int = 200) -> int:
    """The index of the member closest to all others (on a sample of a big cluster)."""
    pick = rng.choice(len(points), sample, replace=False) if len(points) > sample else np.arange(len(points))
    part = points[pick]
    distances = np.sqrt(((part[:, None, :] - part[None, :, :]) ** 2).sum(-1)).sum(1)
    return int(pick[np.argmin(distances)])


def _label_annotations(frame: pd.DataFrame, coords: dict, keep: np.ndarray, three_d: bool) -> list[dict]:
    if "cluster" not in frame or "cluster_name" not in frame:
        return []
    style = dict(showarrow=False, font=dict(size=12, color="#111827"), bgcolor="rgba(255,255,255,0.72)", borderpad=2)
    return [{**{a: label[a] for a in coords}, "text": plotly_text(label["text"]), **style}
            for label in cluster_labels(frame, coords, keep)]


def _annotations(labels: list[dict], three_d: bool) -> dict:
    if three_d:
        return {"scene.annotations": labels}
    return {"annotations": [{**label, "xref": "x", "yref": "y"} for label in labels]}


def plotly_text(text: object) -> str:
    """`text` (a cluster name, a metadata key or value) for a legend, label or title, shown as itself, cut to
    MAX_LABEL_CHARS.

    Plotly draws those strings as its own small HTML: `<a href>` links, `<span style>` (whose CSS can fetch a
    URL), `<b>`, `<br>`; and it decodes entities. As entities, `<`, `>` and `&` start no tag and show as
    themselves."""
    text = str(text)
    if len(text) > MAX_LABEL_CHARS:
        text = text[: MAX_LABEL_CHARS - 1] + "…"
    return html.escape(text, quote=False)


def selected_ids(frame: pd.DataFrame, points: Iterable[Mapping]) -> list[str]:
    """The item ids of a map selection's points (their customdata is their row in `frame`), each once."""
    rows = {p["customdata"] for p in points if isinstance(p.get("customdata"), int) and 0 <= p["customdata"] < len(frame)}
    return list(frame["id"].iloc[sorted(rows)])


def point_preview(frame: pd.DataFrame, row: object, color_by: str | None = None) -> dict | None:
    """What the map's hover card shows for the point at `row` (its customdata): the thumbnail as a data: URI,
    else ("" for none) the text snippet; the source as title; cluster and outlier score as caption, and the value
    of the column the map is coloured by.

    None for a row that isn't one (a stale hover from before the map changed).
    """
    if not isinstance(row, int) or not 0 <= row < len(frame):
        return None
    from .colors import format_value

    item = frame.iloc[row]
    image = _data_uri(item["thumbnail"])
    caption = f"{item['cluster_name']} · outlier {item['outlier_score']:.2f}"
    if color_by and color_by in frame and color_by not in ("cluster", "outlier_score"):
        caption += f" · {color_by.replace('_', ' ')} {format_value(item[color_by], color_by)}"
    return {"row": row, "image": image, "text": "" if image else str(item["snippet"] or ""), "title": str(item["source"]),
            "caption": caption}


def _data_uri(path: object) -> str:
    """A stored thumbnail (a few KB of WebP) inline, so the card needs no file server; "" when missing."""
    if not isinstance(path, str) or not path:
        return ""
    from ..errors import MediaError
    from ..safe_io import read_bounded

    file = Path(path)
    try:
        data = read_bounded(file, MAX_THUMBNAIL_BYTES, "MAX_THUMBNAIL_BYTES")  # a path in metadata could name a device
    except MediaError:
        return ""
    mime = mimetypes.guess_type(file.name)[0] or "image/webp"
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _coords(frame: pd.DataFrame, three_d: bool) -> dict:
    axes = ("x", "y", "z") if three_d else ("x", "y")
    return {axis: frame[axis].to_numpy(np.float32) for axis in axes}  # float32: half the bytes, plenty for a map


def _marker_size(n: int, three_d: bool) -> float:
    base = 9 if n < 1000 else 6 if n < 10_000 else 4 if n < 50_000 else 3
    return base * (0.6 if three_d else 1.0)
