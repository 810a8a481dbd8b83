"""The Map figure: lean at 50,000 points, selections and hovers map back to items through row numbers."""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import plotly.io
from PIL import Image

from mmcore.analysis.figures import map_figure, plotly_text, point_preview, selected_ids
from mmcore.files import MediaFiles

SNIPPET = "A black dog runs through the long grass beside a wooden fence while a child in a red coat watches the path"


def frame_of(n: int, thumbnail: str = "") -> pd.DataFrame:
    """A Map frame like analysis_frame's: every third item text, 20 clusters and noise, long dataset paths."""
    rng = np.random.default_rng(0)
    text = np.arange(n) % 3 == 0
    clusters = rng.integers(-1, 20, n)
    return pd.DataFrame({
        "id": [f"{i:032x}:{'chunk-0' if t else 'image'}" for i, t in enumerate(text)],
        "x": rng.normal(size=n), "y": rng.normal(size=n), "cluster": clusters,
        "cluster_name": [f"cluster {c} · harbour · gulls" if c >= 0 else "noise" for c in clusters],
        "probability": rng.random(n), "outlier_score": rng.random(n),
        "modality": np.where(text, "text", "image"),
        "source": [f"flickr8k-300/images/{1_000_000_000 + i}_abcdef.{'txt' if t else 'jpg'}" for i, t in enumerate(text)],
        "snippet": [f"{SNIPPET} {i}" if t else "" for i, t in enumerate(text)],
        "thumbnail": ["" if t else thumbnail for t in text],
    })


def sent(figure) -> dict:
    """The figure as st.plotly_chart sends it to the browser."""
    return json.loads(plotly.io.to_json(figure, validate=False))


def test_fifty_thousand_points_stay_under_five_megabytes():
    spec = plotly.io.to_json(map_figure(frame_of(50_000)), validate=False)
    assert len(spec) < 5_000_000  # 1 MB now; 12.6 MB with per-point ids and hover text


def test_points_go_out_as_typed_arrays_of_rows():
    frame = frame_of(300)
    traces = sent(map_figure(frame))["data"]
    assert all(t["x"]["dtype"] == "f4" and t["y"]["dtype"] == "f4" and t["customdata"]["dtype"] == "i4" for t in traces)
    assert not any("hovertext" in t or "text" in t for t in traces)
    rows = np.concatenate([np.frombuffer(base64.b64decode(t["customdata"]["bdata"]), "<i4") for t in traces])
    assert sorted(rows) == list(range(len(frame)))  # every item once, as its row
    figure = map_figure(frame)
    for trace in figure.data:
        np.testing.assert_allclose(trace.x, frame["x"].to_numpy()[trace.customdata], rtol=1e-6)


def test_continuous_colour_and_highlight_carry_rows_too():
    frame = frame_of(100)
    figure = map_figure(frame, "outlier_score", highlight={frame["id"][7], frame["id"][42]})
    everything, hits = figure.data
    assert list(everything.customdata) == list(range(100))
    assert list(hits.customdata) == [7, 42]
    assert everything.marker.color.dtype == np.float32


def test_selected_points_map_back_to_ids():
    frame = frame_of(10)
    points = [{"customdata": 0}, {"customdata": 4}, {"customdata": 4}, {"customdata": 99}, {"x": 1.0}, {"customdata": "x"}]
    assert selected_ids(frame, points) == [frame["id"][0], frame["id"][4]]  # row 0 counts; a ring twice is once
    assert selected_ids(frame, []) == []


def test_preview_of_an_image_inlines_its_thumbnail(tmp_path):
    path = MediaFiles(tmp_path).save_thumbnail("ab" * 20, Image.new("RGB", (64, 48), (40, 110, 190)))
    frame = frame_of(6, thumbnail=str(path))
    preview = point_preview(frame, 1)
    assert preview["image"].startswith("data:image/webp;base64,")
    assert base64.b64decode(preview["image"].split(",", 1)[1]) == path.read_bytes()
    assert preview["text"] == "" and preview["title"] == frame["source"][1] and preview["row"] == 1
    assert preview["caption"] == f"{frame['cluster_name'][1]} · outlier {frame['outlier_score'][1]:.2f}"


def test_preview_of_a_text_item_or_a_missing_thumbnail_or_a_stale_row(tmp_path):
    frame = frame_of(6, thumbnail=str(tmp_path / "gone.webp"))
    text = point_preview(frame, 3)
    assert text["image"] == "" and text["text"] == f"{SNIPPET} 3" and text["title"].endswith(".txt")
    assert point_preview(frame, 1)["image"] == ""  # a thumbnail deleted on disk: no picture
    assert point_preview(frame, 6) is None and point_preview(frame, None) is None and point_preview(frame, -1) is None


HOSTILE = "<a href='http://evil.example/p'>p</a> <span style='fill:url(http://evil.example/s#a)'>s</span> <b>b</b>&amp;"


def test_names_reach_the_legend_and_hover_as_text_not_plotly_html():
    """Plotly draws names as a small HTML (links, styles that can fetch a URL): cluster names, metadata values
    and keys go out as entities, which plotly shows as the characters themselves."""
    frame = frame_of(60).assign(cluster_name=lambda f: [f"{HOSTILE} {c}" for c in f["cluster"]],
                                **{f"key {HOSTILE}": [f"value {HOSTILE} {i % 3}" for i in range(60)]})
    for column, start in (("cluster", f"0: {HOSTILE}"), (f"key {HOSTILE}", f"value {HOSTILE}")):
        names = [trace.name for trace in map_figure(frame, column).data]
        assert all("<" not in name and ">" not in name for name in names)
        assert any(name.startswith(plotly_text(start)[:-1]) for name in names), names
    continuous = map_figure(frame.assign(**{f"score {HOSTILE}": np.linspace(0, 1, 60)}), f"score {HOSTILE}").data[0]
    assert "evil" not in continuous.hovertemplate  # the name is never template text
    assert continuous.name == continuous.marker.colorbar.title.text == plotly_text(f"score {HOSTILE}")
    assert plotly_text("a < b & c > d") == "a &lt; b &amp; c &gt; d"
    assert plotly_text("x" * 100) == "x" * 59 + "…"  # a legend of long names would leave the map no room
