"""Facets of the items table (cross-filtered counts and histograms) and the Gallery's filters and orders."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from mmcore.analysis.facets import Facet, FacetFilters, facets, histogram, keep_mask, value_counts
from mmcore.analysis.frame import SORTS, filter_items, metadata_rows, sort_items, table_view
from mmcore.search import Filters

DAY = 86_400
START = 1_733_270_400  # 2024-12-04 00:00 UTC


def table() -> pd.DataFrame:
    """12 items: 3 clusters and noise, images and texts, tags, a number and a date per item."""
    return pd.DataFrame({
        "id": [f"i{i}" for i in range(12)],
        "x": np.arange(12.0), "y": np.zeros(12),
        "cluster": [0, 0, 0, 0, 0, 1, 1, 1, 2, 2, -1, -1],
        "cluster_name": ["gulls"] * 5 + ["terns"] * 3 + ["<i>boats</i>"] * 2 + ["noise"] * 2,
        "probability": np.ones(12), "outlier_score": np.linspace(0, 1, 12),
        "modality": ["image", "image", "text", "image", "text", "image", "image", "text", "image", "text", "image", "text"],
        "source": [f"f{i}.{'png' if i % 2 == 0 else 'txt'}" for i in range(12)],
        "tags": [["sea"], ["sea", "bird"], [], ["bird"], ["sea"], [], ["bird"], ["sea", "bird"], [], [], ["sea"], []],
        "added_at": [START + DAY * (i // 4) for i in range(12)],  # 3 days, 4 items each
        "width": [640.0, 480.0, np.nan, 320.0, np.nan, 800.0, 640.0, np.nan, 1024.0, np.nan, 100.0, np.nan],
        "camera": ["a", "b", None, "a", None, "a", "b", None, "c", None, "a", None],
    })


def test_facets_cover_clusters_kinds_tags_scores_dates_and_metadata():
    found = {f.column: f.kind for f in facets(table())}
    assert found == {"cluster": "category", "modality": "category", "tags": "tags", "outlier_score": "number",
                     "added_at": "date", "width": "category", "camera": "category"}  # 7 whole widths: few values
    assert Facet("width", "number") in facets(table().assign(width=np.arange(12) * 100.0 + 0.5))
    assert "added_at" not in {f.column for f in facets(table().assign(added_at=START))}  # one date: nothing to pick


def test_counts_are_cross_filtered_by_the_other_facets_only():
    frame = table()
    picked = FacetFilters(values={"modality": ("image",)})
    clusters = value_counts(frame, "cluster", picked)
    assert [(v, label, n) for v, label, n in clusters] == [(0, "gulls", 3), (1, "terns", 2), (2, "<i>boats</i>", 1), (-1, "noise", 1)]
    kinds = value_counts(frame, "modality", picked)  # its own filter doesn't narrow its own counts
    assert [(v, n) for v, _, n in kinds] == [("image", 7), ("text", 5)]
    both = FacetFilters(values={"modality": ("text",), "cluster": (2,)})
    assert [(v, n) for v, _, n in value_counts(frame, "modality", both)] == [("image", 1), ("text", 1)]
    assert dict((v, n) for v, _, n in value_counts(frame, "cluster", both))[1] == 1  # listed still, counted in texts
    tags = value_counts(frame, "tags", FacetFilters(values={"cluster": (0,)}))
    assert [(v, n) for v, _, n in tags] == [("sea", 3), ("bird", 2)]


def test_picked_values_stay_listed_when_other_facets_leave_none():
    frame = table()
    filters = FacetFilters(values={"camera": ("c",), "modality": ("text",)})
    cameras = {v: n for v, _, n in value_counts(frame, "camera", filters)}
    assert cameras == {"a": 0, "b": 0, "c": 0}


def test_keep_mask_combines_values_tags_and_ranges():
    frame = table()
    filters = FacetFilters(values={"tags": ("sea", "bird")}, ranges={"outlier_score": (0.0, 0.5)})
    assert list(frame["id"][keep_mask(frame, filters)]) == ["i1"]  # i7 has both tags but scores 0.64
    assert keep_mask(frame, filters, skip="outlier_score").sum() == 2
    assert not FacetFilters().active and filters.active
    ranged = keep_mask(frame, FacetFilters(ranges={"width": (300, 700)}))
    assert list(frame["id"][ranged]) == ["i0", "i1", "i3", "i6"]  # no width: left out


def test_histograms_keep_their_bins_and_count_what_the_other_facets_keep():
    frame = table()
    everything = histogram(frame, "outlier_score", bins=4)
    assert list(everything["count"]) == [3, 3, 3, 3] and everything["start"].iloc[0] == 0.0
    images = histogram(frame, "outlier_score", FacetFilters(values={"modality": ("image",)}), bins=4)
    assert list(images["start"]) == list(everything["start"]) and images["count"].sum() == 7
    dates = histogram(frame.assign(added_at=START + np.arange(12) * 3600), "added_at", bins=3)
    assert list(dates["label"]) == ["2024-12-04"] * 3 and dates["count"].sum() == 12


def test_gallery_filters_agree_with_search_filters_item_by_item():
    frame = table()
    cases = [
        Filters(),
        Filters(modalities=("text",)),
        Filters(tags=("sea", "bird")),
        Filters(sources=("f0.png", "f3.txt")),
        Filters(added_from=date(2024, 12, 5)),
        Filters(added_from=date(2024, 12, 4), added_to=date(2024, 12, 5), modalities=("image",)),
        Filters(equals={"camera": "a"}),
        Filters(equals={"width": 640}),
    ]
    for filters in cases:
        expected = [row["id"] for row in frame.to_dict("records")
                    if filters.matches({k: v for k, v in row.items() if not (isinstance(v, float) and np.isnan(v)) and v is not None})]
        assert list(filter_items(frame, filters)["id"]) == expected, filters


def test_gallery_orders():
    frame = table()
    assert list(sort_items(frame, "outlier score")["id"][:2]) == ["i11", "i10"]
    newest = sort_items(frame, "newest first")
    assert newest["added_at"].is_monotonic_decreasing and list(newest["id"][:4]) == ["i10", "i11", "i8", "i9"]
    assert list(sort_items(frame, "oldest first")["id"][:4]) == ["i0", "i1", "i2", "i3"]
    assert sort_items(frame, "cluster")["cluster_name"].is_monotonic_increasing
    assert set(SORTS) == {"newest first", "oldest first", "cluster", "outlier score", "source name"}


def test_table_view_and_metadata_rows_read_as_people_read():
    view = table_view(table())
    assert list(view.columns) == ["id", "source", "cluster_name", "modality", "outlier_score", "added_at", "tags"]
    assert view["tags"][1] == "sea, bird" and str(view["added_at"][4].date()) == "2024-12-05"
    rows = dict(metadata_rows({"added_at": START, "tags": ["a", "b"], "camera": "<b>x</b>"}))
    assert rows == {"added_at": "2024-12-04 00:00:00 UTC", "tags": "a, b", "camera": "<b>x</b>"}
