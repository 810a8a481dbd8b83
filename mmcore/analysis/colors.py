"""How a map colours its points by a column: categories from a Glasbey palette, numbers and dates on a colour bar.

Every colouring is one small integer per point (a code) and a colour scale that turns codes into colours, so a
figure can carry every column's colouring at once (one byte a point each) and switch between them in the browser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import colorcet
import numpy as np
import pandas as pd
import plotly.colors

# Glasbey colours (maximally distinct to the eye, in order) with chroma of at least 20 and lightness at most 70:
# none is grey (noise keeps grey for itself) and every one is visible on white.
PALETTE: list[str] = list(colorcet.palette["glasbey_dark"])
NOISE_COLOR = "rgba(156, 163, 175, 0.35)"  # grey and faint: noise sits behind the clusters
MISSING_COLOR = "rgba(156, 163, 175, 0.6)"
OTHER_LABEL = "other"
MAX_CATEGORIES = 40  # more distinct values than this are drawn as the 39 most common and "other"
MAX_INTEGER_CATEGORIES = 12  # whole numbers with this few values (a digit's label, a page) read better as categories
STEPS = 250  # a number or date is drawn in one of this many colours (a colour bar needs no more)
MISSING = STEPS  # the code of a point without a value
CONTINUOUS_SCALE = plotly.colors.sequential.Viridis  # perceptually uniform, readable in grey, colour-blind safe
SKIP = {"id", "x", "y", "z", "snippet", "document", "thumbnail", "tags", "source_hash", "original", "cluster_name",
        "source", "mime", "char_start", "char_end"}


@dataclass(frozen=True)
class Coloring:
    """One column's colouring: `codes[i]` is point i's colour as a position on `colorscale` (from `cmin` to `cmax`).

    `legend` lists (label, colour, count) for categories, biggest first; `ticks` lists (code, label) along the colour
    bar of a number or date (empty for categories)."""

    column: str
    kind: str  # "category", "number" or "date"
    codes: np.ndarray  # uint8 [n]
    colorscale: list[list]
    cmin: float
    cmax: float
    legend: list[tuple[str, str, int]] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)

    @property
    def continuous(self) -> bool:
        return self.kind != "category"


def color_options(frame: pd.DataFrame) -> list[str]:
    """Columns worth colouring by: cluster, modality, scores, then metadata with numbers, dates or few values."""
    options = [c for c in ("cluster", "modality", "outlier_score", "probability") if c in frame]
    for column in frame.columns:
        if column in SKIP or column in options:
            continue
        values = frame[column].dropna()
        if values.empty or values.map(lambda v: isinstance(v, (list, dict))).any():
            continue
        if _numeric(values) or values.nunique() <= MAX_CATEGORIES:
            options.append(column)
    return options


def is_date(column: str) -> bool:
    """Columns holding Unix seconds: `added_at` and other `*_at` fields."""
    return column == "added_at" or column.endswith("_at")


def column_kind(values: pd.Series, column: str) -> str:
    """"date", "number" or "category" for a column's values (as they are coloured and faceted)."""
    present = values.dropna()
    if column in ("cluster", "modality") or present.empty or not _numeric(present):
        return "category"
    distinct = present.nunique()
    if distinct <= 1:
        return "category"  # one value: a legend entry says more than a colour bar
    if is_date(column):
        return "date"
    whole = bool((present.astype(float) % 1 == 0).all())
    return "category" if whole and distinct <= MAX_INTEGER_CATEGORIES else "number"


def coloring(frame: pd.DataFrame, column: str) -> Coloring:
    """How to colour the frame's points by `column` (any column; a missing one is one grey category)."""
    if column not in frame:
        return _categorical(column, pd.Series(["?"] * len(frame)), None)
    values = frame[column]
    kind = column_kind(values, column)
    if kind == "category":
        names = None
        if column == "cluster" and "cluster_name" in frame:
            first = frame.drop_duplicates("cluster")
            names = dict(zip(first["cluster"].tolist(), first["cluster_name"].tolist()))
        return _categorical(column, values, names)
    return _continuous(column, values, kind)


def format_value(value, column: str) -> str:
    """A value as a person reads it: dates as YYYY-MM-DD (with the time when it matters), numbers compactly."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "none"
    if is_date(column) and _numeric(pd.Series([value])):
        return _date(float(value), with_time=False)
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def _categorical(column: str, values: pd.Series, names: dict | None) -> Coloring:
    counts = values.value_counts(dropna=False)
    noise = column == "cluster"
    order = [v for v in counts.index if not (noise and v == -1) and not _missing(v)]  # biggest first
    shown, rest = order[: MAX_CATEGORIES - 1], order[MAX_CATEGORIES - 1 :]
    if len(order) == MAX_CATEGORIES:
        shown, rest = order, []
    legend, colors = [], []
    code_of = {}
    for i, value in enumerate(shown):
        code_of[value] = i
        label = str(names.get(value, value)) if names is not None else format_value(value, column)
        colors.append(PALETTE[i % len(PALETTE)])
        legend.append((label, colors[-1], int(counts[value])))
    tail = len(shown)
    if rest:
        colors.append(MISSING_COLOR)
        legend.append((f"{OTHER_LABEL} ({len(rest)} values)", MISSING_COLOR, int(counts[rest].sum())))
    missing = int(values.isna().sum()) if not noise else int((values == -1).sum())
    if missing:
        label = "noise" if noise else "none"
        colors.append(NOISE_COLOR if noise else MISSING_COLOR)
        legend.append((label, colors[-1], missing))
    codes = np.full(len(values), tail, dtype=np.uint8)  # "other" until found
    mapped = values.map(code_of)
    known = mapped.notna().to_numpy()
    codes[known] = mapped[known].to_numpy(dtype=np.int64)
    if missing:
        gone = (values == -1).to_numpy() if noise else values.isna().to_numpy()
        codes[gone] = len(colors) - 1
    return Coloring(column, "category", codes, _steps(colors), -0.5, len(colors) - 0.5, legend)


def _continuous(column: str, values: pd.Series, kind: str) -> Coloring:
    numbers = pd.to_numeric(values, errors="coerce").astype(float).to_numpy()
    present = ~np.isnan(numbers)
    lo, hi = float(np.nanmin(numbers)), float(np.nanmax(numbers))
    codes = np.full(len(numbers), MISSING, dtype=np.uint8)
    codes[present] = np.round((numbers[present] - lo) / (hi - lo) * (STEPS - 1)).astype(np.uint8)
    # Codes 0..STEPS-1 run along the ramp; the missing code sits past its end, in a thin grey band of its own.
    end = (STEPS - 1) / STEPS
    ramp = CONTINUOUS_SCALE
    scale = [[end * i / (len(ramp) - 1), c] for i, c in enumerate(ramp)]
    scale += [[(STEPS - 0.5) / STEPS, MISSING_COLOR], [1.0, MISSING_COLOR]]
    ticks = [((v - lo) / (hi - lo) * (STEPS - 1), label) for v, label in _tick_values(lo, hi, kind)]
    return Coloring(column, kind, codes, scale, 0.0, float(STEPS), ticks=ticks)


def _tick_values(lo: float, hi: float, kind: str, count: int = 5) -> list[tuple[float, str]]:
    values = np.linspace(lo, hi, count)
    if kind == "date":
        with_time = hi - lo < 3 * 86400
        return [(float(v), _date(float(v), with_time)) for v in values]
    return [(float(v), f"{v:.3g}") for v in values]


def _date(seconds: float, with_time: bool) -> str:
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d")


def _steps(colors: list[str]) -> list[list]:
    """A colour scale on which code i (from -0.5 to len - 0.5) is exactly colors[i]."""
    n = len(colors)
    if n == 1:
        return [[0.0, colors[0]], [1.0, colors[0]]]
    scale = []
    for i, color in enumerate(colors):
        scale += [[i / n, color], [(i + 1) / n, color]]
    return scale


def _numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))
