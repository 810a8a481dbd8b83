"""The Map figure: lean at 50,000 points with every colouring aboard, a Glasbey palette, colour bars for numbers and
dates, cluster names at robust centres; selections and hovers map back to items through row numbers."""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import plotly.io
from PIL import Image

from mmcore.analysis.colors import MISSING, NOISE_COLOR, PALETTE, STEPS, coloring
from mmcore.analysis.figures import EYE_DIRECTION, MAX_LABELS, camera_eye, cluster_labels, map_figure, plotly_text, point_preview, selected_ids
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


def typed(spec) -> np.ndarray:
    """A typed array spec (as plotly.py writes it, or as we write it into the menu's arguments) as numpy."""
    return np.frombuffer(base64.b64decode(spec["bdata"]), {"u1": "u1", "u2": "<u2", "i4": "<i4", "f4": "<f4"}[spec["dtype"]])


def menu(spec: dict) -> dict:
    """The "Colour by" menu's buttons by label."""
    return {b["label"]: b for b in spec["layout"]["updatemenus"][0]["buttons"]}


def test_fifty_thousand_points_with_every_colouring_stay_under_two_megabytes():
    frame = frame_of(50_000)
    frame["added_at"] = 1_700_000_000 + np.arange(50_000) * 60
    spec = plotly.io.to_json(map_figure(frame), validate=False)
    assert len(menu(json.loads(spec))) == 5  # cluster, modality, outlier score, probability, added at
    assert len(spec) < 2_000_000  # 1.4 MB: points 0.8 MB + one byte a point per colouring; 12.6 MB with hover text


def test_points_go_out_as_typed_arrays_of_rows():
    frame = frame_of(300)
    points = next(t for t in sent(map_figure(frame))["data"] if t["name"] == "items")
    assert points["x"]["dtype"] == "f4" and points["y"]["dtype"] == "f4" and points["customdata"]["dtype"] == "u2"
    assert "hovertext" not in points and "text" not in points
    rows = typed(points["customdata"])
    assert sorted(rows) == list(range(len(frame)))  # every item once, as its row
    np.testing.assert_allclose(typed(points["x"]), frame["x"].to_numpy()[rows], rtol=1e-6)
    noise = frame["cluster"].to_numpy()[rows] < 0
    assert noise[: noise.sum()].all()  # noise first: drawn under the clusters


def test_every_colouring_switches_in_the_browser_from_codes_sent_once():
    frame = frame_of(400)
    frame["added_at"] = 1_700_000_000 + np.arange(400) * 3600
    spec = sent(map_figure(frame, "cluster"))
    names = [t["name"] for t in spec["data"]]
    items = names.index("items")
    rows = typed(spec["data"][items]["customdata"])
    buttons = menu(spec)
    assert list(buttons) == ["cluster", "modality", "outlier score", "probability", "added at"]
    for label, column in [("cluster", "cluster"), ("modality", "modality"), ("outlier score", "outlier_score"),
                          ("added at", "added_at")]:
        data, layout, traces = buttons[label]["args"]
        assert traces[0] == items
        codes = typed(data["marker.color"][0])
        np.testing.assert_array_equal(codes, coloring(frame, column).codes[rows])
        # the legend entries of this column, and only those, are shown
        shown = [names[t] for t, visible in zip(traces[1:], data["visible"][1:]) if visible]
        assert shown == [f"{label} ({count:,})" for label, _, count in coloring(frame, column).legend]
        assert data["marker.showscale"][0] == coloring(frame, column).continuous
        assert bool(layout.get("annotations")) == (column == "cluster")  # names on the map only for clusters


def test_palette_stays_distinct_for_forty_clusters_and_noise_is_grey_and_faint():
    lab = np.array([_lab(c) for c in PALETTE[:40]])
    gaps = np.sqrt(((lab[:, None] - lab[None]) ** 2).sum(-1))[np.triu_indices(40, 1)]
    assert gaps.min() > 12  # CIE76: every pair tells apart at a glance (the old 20-colour list repeated after 20)
    grey = np.array(_lab("#9ca3af"))  # the noise colour, before its transparency
    assert np.sqrt(((lab - grey) ** 2).sum(-1)).min() > 15  # no colour passes for noise (which is faint too)
    assert len(set(PALETTE[:40])) == 40
    assert NOISE_COLOR.startswith("rgba(") and float(NOISE_COLOR.rstrip(")").split(",")[-1]) < 0.5


def _lab(hex_color: str) -> tuple[float, float, float]:
    """sRGB (D65) to CIE Lab."""
    rgb = np.array([int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    f = lambda t: np.where(t > 0.008856, np.cbrt(t), 7.787 * t + 16 / 116)  # noqa: E731
    fx, fy, fz = f(xyz / np.array([0.95047, 1.0, 1.08883]))
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def test_legend_lists_clusters_biggest_first_with_their_names_escaped_and_noise_last():
    frame = pd.DataFrame({
        "id": [str(i) for i in range(10)], "x": np.arange(10.0), "y": np.zeros(10),
        "cluster": [3, 3, 3, 0, -1, 7, 7, 7, 7, -1],
        "cluster_name": ["gulls"] * 3 + ["<b>harbour</b>", "noise", *["terns & co"] * 4, "noise"],
        "probability": np.ones(10), "outlier_score": np.zeros(10), "modality": ["image"] * 10,
    })
    colour = coloring(frame, "cluster")
    assert [(label, n) for label, _, n in colour.legend] == [("terns & co", 4), ("gulls", 3), ("<b>harbour</b>", 1), ("noise", 2)]
    assert colour.legend[-1][1] == NOISE_COLOR and colour.codes[4] == colour.codes[9] == 3
    names = [t["name"] for t in sent(map_figure(frame))["data"] if t.get("legendgroup") == "cluster"]
    assert names == ["terns &amp; co (4)", "gulls (3)", "&lt;b&gt;harbour&lt;/b&gt; (1)", "noise (2)"]  # plotly's HTML


def test_numbers_and_dates_get_a_colour_bar_and_one_date_a_legend_entry():
    frame = frame_of(200)
    frame["added_at"] = 1_733_300_000 + np.arange(200) * 86_400  # 200 days
    dates = coloring(frame, "added_at")
    assert dates.kind == "date" and dates.continuous and not dates.legend
    assert dates.ticks[0][1] == "2024-12-04" and dates.ticks[-1][1] == "2025-06-21" and dates.ticks[-1][0] == STEPS - 1
    assert dates.codes.min() == 0 and dates.codes.max() == STEPS - 1 and np.all(np.diff(dates.codes.astype(int)) >= 0)
    bar = next(t for t in sent(map_figure(frame, "added_at"))["data"] if t["name"] == "items")["marker"]
    assert bar["showscale"] and bar["colorbar"]["ticktext"][0] == "2024-12-04"
    frame["added_at"] = 1_733_300_000  # one upload: one colour, named in a legend
    one = coloring(frame, "added_at")
    assert one.kind == "category" and [(label, n) for label, _, n in one.legend] == [("2024-12-04", 200)]
    frame["label"] = np.arange(200) % 10  # a digit: few whole numbers read as categories
    assert coloring(frame, "label").kind == "category" and len(coloring(frame, "label").legend) == 10
    frame.loc[5, "outlier_score"] = np.nan
    assert coloring(frame, "outlier_score").codes[5] == MISSING


def test_cluster_names_sit_on_a_crescent_not_at_its_empty_middle():
    angle = np.linspace(0, np.pi, 300)
    crescent = np.column_stack([np.cos(angle), np.sin(angle)])  # its mean, (0, 0.64), is far from every point
    blob = np.random.default_rng(1).normal((4, 0), 0.1, (100, 2))
    xy = np.vstack([crescent, blob])
    frame = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "cluster": [0] * 300 + [1] * 100,
                          "cluster_name": ["crescent"] * 300 + ["blob"] * 100})
    labels = cluster_labels(frame)
    assert [label["text"] for label in labels] == ["crescent", "blob"]  # biggest first
    centre = np.array([labels[0]["x"], labels[0]["y"]])
    assert np.linalg.norm(crescent - centre, axis=1).min() < 1e-6  # a member of the crescent
    assert np.linalg.norm(centre - crescent.mean(axis=0)) > 0.3


def test_at_eighty_clusters_names_never_pile_up():
    rng = np.random.default_rng(2)
    centres = rng.uniform(0, 10, (80, 2))
    sizes = rng.integers(5, 60, 80)
    xy = np.vstack([rng.normal(c, 0.05, (n, 2)) for c, n in zip(centres, sizes)])
    cluster = np.repeat(np.arange(80), sizes)
    frame = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "cluster": cluster,
                          "cluster_name": [f"cluster number {c} with a long name" for c in cluster]})
    labels = cluster_labels(frame, width_px=760, height_px=680)
    assert 5 <= len(labels) <= MAX_LABELS
    assert all(len(label["text"]) <= 28 for label in labels)
    per_px = max(np.ptp(xy[:, 0]) / 760, np.ptp(xy[:, 1]) / 680)
    for i, a in enumerate(labels):  # no two boxes (6.5 px a character, 18 px high) overlap
        for b in labels[i + 1 :]:
            wide = (len(a["text"]) + len(b["text"])) * 6.5 / 2 * per_px
            assert abs(a["x"] - b["x"]) >= wide or abs(a["y"] - b["y"]) >= 18 * per_px
    assert labels[0]["size"] == sizes.max()  # the biggest cluster is always named


def test_filters_fade_points_out_and_a_map_selection_is_drawn_again():
    frame = frame_of(100)
    shown = (frame["modality"] == "image").to_numpy()
    spec = sent(map_figure(frame, shown=shown, selected=list(frame["id"][[1, 2]])))
    faded = next(t for t in spec["data"] if t["name"] == "filtered out")
    items = next(t for t in spec["data"] if t["name"] == "items")
    assert len(typed(faded["x"])) == (~shown).sum() and "customdata" not in faded and faded["hoverinfo"] == "skip"
    rows = typed(items["customdata"])
    assert set(rows) == set(np.flatnonzero(shown))
    assert sorted(rows[items["selectedpoints"]]) == [1, 2]


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


def test_preview_names_the_value_the_map_is_coloured_by():
    frame = frame_of(6)
    frame["added_at"] = 1_733_300_000
    assert point_preview(frame, 2, "modality")["caption"].endswith(" · modality image")
    assert point_preview(frame, 2, "added_at")["caption"].endswith(" · added at 2024-12-04")
    assert point_preview(frame, 2, "cluster")["caption"] == point_preview(frame, 2)["caption"]


HOSTILE = "<a href='http://evil.example/p'>p</a> <span style='fill:url(http://evil.example/s#a)'>s</span> <b>b</b>&amp;"


def test_names_reach_the_legend_menu_and_labels_as_text_not_plotly_html():
    """Plotly draws names as a small HTML (links, styles that can fetch a URL): cluster names, metadata keys and
    values go out as entities, which plotly shows as the characters themselves."""
    frame = frame_of(60).assign(cluster_name=lambda f: [f"{HOSTILE} {c}" for c in f["cluster"]],
                                **{f"key {HOSTILE}": [f"value {HOSTILE} {i % 3}" for i in range(60)],
                                   f"score {HOSTILE}": np.linspace(0, 1, 60)})
    figure = map_figure(frame, "cluster")
    shown = [trace.name for trace in figure.data]
    shown += [button.label for menu in figure.layout.updatemenus for button in menu.buttons]
    shown += [a.text for a in figure.layout.annotations]
    shown += [t.legendgrouptitle.text for t in figure.data if t.legendgrouptitle and t.legendgrouptitle.text]
    assert any(plotly_text(HOSTILE)[:20] in text for text in shown if text), shown
    assert all("<" not in text and ">" not in text for text in shown if text), shown
    assert plotly_text("a < b & c > d") == "a &lt; b &amp; c &gt; d"
    assert plotly_text("x" * 100) == "x" * 59 + "…"  # a legend of long names would leave the map no room


def seen_from(eye, xyz: np.ndarray) -> np.ndarray:
    """Where plotly's perspective camera (45 degrees high, looking at the cube's centre) draws each point, in
    units of the view's half-height."""
    low, high = xyz.min(axis=0), xyz.max(axis=0)
    cube = ((xyz - low) / (high - low) - 0.5)
    eye = np.asarray(eye)
    forward = -eye / np.linalg.norm(eye)
    right = np.cross(forward, [0, 0, 1]) / np.linalg.norm(np.cross(forward, [0, 0, 1]))
    up = np.cross(right, forward)
    depth = (cube - eye) @ forward
    return np.stack([cube @ right, cube @ up], axis=1) / depth[:, None] / np.tan(np.pi / 8)


def test_the_3d_camera_comes_close_to_a_ball_and_keeps_a_full_cube_whole():
    rng = np.random.default_rng(0)
    ball = rng.normal(size=(3000, 3))
    ball /= np.linalg.norm(ball, axis=1, keepdims=True) / rng.random((3000, 1)) ** (1 / 3)
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=float)
    for cloud in (ball, corners):
        eye = camera_eye(cloud)
        assert np.allclose(np.asarray(eye) / np.linalg.norm(eye), EYE_DIRECTION)  # the same view, nearer or farther
        drawn = seen_from(eye, cloud)
        assert np.abs(drawn).max() <= 1.0, "a point is cut at the edge of the view"
    assert np.linalg.norm(camera_eye(ball)) < 0.7 * np.linalg.norm(camera_eye(corners))
    span = np.ptp(seen_from(camera_eye(ball), ball), axis=0).max() / 2
    assert span > 0.7, f"the ball spans only {span:.2f} of the view"
    three_d = map_figure(frame_of(500).assign(z=rng.normal(size=500)), three_d=True)
    assert np.linalg.norm(list(three_d.layout.scene.camera.eye.to_plotly_json().values())) < 2.0


def test_the_map_while_a_fit_goes_on_shows_its_shape_then_outliers_then_clusters():
    from types import SimpleNamespace

    from mmcore.analysis.figures import partial_figure

    rng = np.random.default_rng(0)
    xy = rng.normal(size=(50, 2)).astype(np.float32)
    labels = np.where(np.arange(50) % 5 == 0, -1, np.arange(50) % 3)
    scores = rng.random(50).astype(np.float32)
    shape = partial_figure(SimpleNamespace(xy=xy, done=("map",), labels=np.full(50, -1), outlier_scores=np.zeros(50)))
    assert [len(t.x) for t in shape.data] == [50] and isinstance(shape.data[0].marker.color, str)
    outliers = partial_figure(SimpleNamespace(xy=xy, done=("map", "outliers"), labels=np.full(50, -1), outlier_scores=scores))
    assert np.allclose(outliers.data[0].marker.color, scores)
    clusters = partial_figure(SimpleNamespace(xy=xy, done=("map", "outliers", "clusters"), labels=labels, outlier_scores=scores))
    final = coloring(pd.DataFrame({"cluster": labels}), "cluster")
    assert list(clusters.data[0].marker.color) == list(final.codes), "the colours the finished map gives them"
