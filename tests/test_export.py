"""Export of a collection's items as CSV, JSON and Parquet, with and without analysis columns."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmcore.config import Settings
from mmcore.errors import MMError
from mmcore.export import export_items
from mmcore.vectors import import_vectors
from mmcore.workspace import Workspace


@dataclass
class FakeAnalysis:
    """What export needs from an analysis; leaves item "d" out, as one added after the analysis ran."""

    ids: list[str] = field(default_factory=lambda: ["c", "a", "b"])
    xy: np.ndarray = field(default_factory=lambda: np.array([[3.0, 30.0], [1.0, 10.0], [2.0, 20.0]]))
    labels: np.ndarray = field(default_factory=lambda: np.array([-1, 0, 1]))
    probabilities: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.9, 0.8]))
    outlier_scores: np.ndarray = field(default_factory=lambda: np.array([0.7, 0.1, 0.2]))
    names: dict[int, str] = field(default_factory=lambda: {0: "reds"})


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    folder = tmp_path_factory.mktemp("in")
    np.save(folder / "v.npy", np.random.default_rng(1).normal(size=(4, 5)))
    Image.new("RGB", (20, 20), (250, 0, 0)).save(folder / "red.png")
    (folder / "meta.csv").write_text(
        "id,label,tags,text,image,x\n"
        "a,1,red|warm,,red.png,left\n"
        "b,2,cold,\"a cold, blue day\",,\n"
        "c,3,,,,\n"
        "d,4,,,,right\n"
    )
    ws = Workspace(Settings(data_dir=tmp_path_factory.mktemp("data")))
    import_vectors(ws, folder / "v.npy", folder / "meta.csv", collection="ex")
    return ws


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_every_format_reads_back_with_analysis_columns(ws, tmp_path, fmt):
    path = export_items(ws, "ex", "custom", fmt, tmp_path / f"out.{fmt}", analysis=FakeAnalysis())
    rows = read_back(path, fmt)
    assert [r["id"] for r in rows] == ["a", "b", "c", "d"]
    a, b, c, d = rows
    tags = (lambda r: r["tags"].split("|") if r["tags"] else []) if fmt == "csv" else (lambda r: list(r["tags"]))
    assert [tags(r) for r in rows] == [["red", "warm"], ["cold"], [], []]
    assert b["document"] == "a cold, blue day" and a["modality"] == "image" and d["modality"] == "vector"
    assert a["thumbnail"].endswith(".webp") and a["original"].endswith(".png")
    when = datetime.fromisoformat(a["added_at"])
    assert when.tzinfo is not None and when.utcoffset().total_seconds() == 0
    assert abs((datetime.now(timezone.utc) - when).total_seconds()) < 600
    typed = (lambda v: v) if fmt != "csv" else (lambda v: None if v == "" else float(v))
    assert [typed(r["x"]) for r in rows] == [1.0, 2.0, 3.0, None]
    assert [typed(r["cluster"]) for r in rows] == [0, 1, -1, None]
    assert fmt != "csv" or (c["cluster"], c["label"]) == ("-1", "3")  # whole numbers stay whole beside a gap
    assert [r["cluster_name"] or None for r in rows] == ["reds", "cluster 1", "noise", None]
    assert typed(a["probability"]) == pytest.approx(0.9) and typed(c["outlier_score"]) == pytest.approx(0.7)
    assert a["meta_x"] == "left" and d["meta_x"] == "right"  # the item's own `x` is kept beside the map's
    assert [typed(r["label"]) for r in rows] == [1, 2, 3, 4] and [typed(r["row"]) for r in rows] == [0, 1, 2, 3]


def test_without_analysis_only_item_columns(ws, tmp_path):
    rows = read_back(export_items(ws, "ex", "custom", "json", tmp_path / "plain.json"), "json")
    assert len(rows) == 4 and not {"y", "cluster", "cluster_name", "meta_x"} & set(rows[0])
    assert [r["x"] for r in rows] == ["left", None, None, "right"]
    assert list(rows[0])[:5] == ["id", "source", "modality", "mime", "added_at"]


def test_json_is_strict_and_parquet_typed(ws, tmp_path):
    text = export_items(ws, "ex", "custom", "json", tmp_path / "s.json", analysis=FakeAnalysis()).read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    schema = pq.read_table(export_items(ws, "ex", "custom", "parquet", tmp_path / "s.parquet", FakeAnalysis())).schema
    assert str(schema.field("cluster").type) == "int64" and str(schema.field("label").type) == "int64"
    assert str(schema.field("tags").type).startswith("list<")


def test_unknown_format_is_refused_and_writes_nothing(ws, tmp_path):
    with pytest.raises(MMError, match="unknown export format 'xlsx'"):
        export_items(ws, "ex", "custom", "xlsx", tmp_path / "out.xlsx")
    assert not list(tmp_path.iterdir())


def read_back(path, fmt: str) -> list[dict]:
    if fmt == "csv":
        with path.open(newline="") as f:
            return list(csv.DictReader(f))
    if fmt == "json":
        return json.loads(path.read_text())
    return pq.read_table(path).to_pylist()


def test_command_line_export_without_analysis(ws, tmp_path, monkeypatch, capsys):
    from mmcore.cli import main

    monkeypatch.setenv("MMCORE_DATA_DIR", str(ws.settings.data_dir))
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--collection", "ex", "--format", "csv", "--no-analysis"]) == 0
    assert "wrote 4 items to ex.csv" in capsys.readouterr().out
    rows = read_back(tmp_path / "ex.csv", "csv")
    assert [r["id"] for r in rows] == ["a", "b", "c", "d"] and "cluster" not in rows[0]


def test_real_analysis_columns_match_the_blobs(tmp_path):
    from mmcore.analysis.clusters import Hdbscan
    from mmcore.analysis.frame import analysis_frame
    from mmcore.analysis.maps import analyze
    from mmcore.analysis.naming import cluster_names

    rng = np.random.default_rng(7)
    centres = rng.normal(size=(3, 16)) * 4
    vectors = np.concatenate([c + rng.normal(scale=0.3, size=(25, 16)) for c in centres])
    np.save(tmp_path / "blobs.npy", vectors)
    (tmp_path / "blobs.csv").write_text("label\n" + "".join(f"{i // 25}\n" for i in range(75)))
    ws = Workspace(Settings(data_dir=tmp_path / "data"))
    import_vectors(ws, tmp_path / "blobs.npy", tmp_path / "blobs.csv", collection="blobs")
    analysis = analyze(ws, "blobs", "custom", hdbscan=Hdbscan(min_cluster_size=10))
    names = cluster_names(ws, analysis)
    path = export_items(ws, "blobs", "custom", "parquet", tmp_path / "blobs.parquet", analysis, names)
    rows = {r["id"]: r for r in read_back(path, "parquet")}
    assert len(rows) == 75
    for i, id_ in enumerate(analysis.ids):
        row = rows[id_]
        assert (row["x"], row["y"]) == pytest.approx(tuple(analysis.xy[i].tolist()))
        assert row["cluster"] == analysis.labels[i] and row["cluster_name"] == names.get(row["cluster"], "noise")
        assert row["outlier_score"] == pytest.approx(float(analysis.outlier_scores[i]))
    table = analysis_frame(ws.store.open("blobs", "custom"), analysis, names, media_root=ws.files.root)
    extra = list(table.columns[list(table.columns).index("tags") + 1:])
    assert "label" in extra and extra == sorted(extra), "metadata columns in a set order, whatever order the store gives"
    from_table = read_back(export_items(ws, "blobs", "custom", "parquet", tmp_path / "t.parquet", table), "parquet")
    assert from_table == list(rows.values())  # the page exports the Map's table: same file as the CLI
    by_blob = {blob: {r["cluster"] for r in rows.values() if r["label"] == blob and r["cluster"] >= 0} for blob in range(3)}
    assert all(len(clusters) == 1 for clusters in by_blob.values())  # each blob is one cluster...
    assert len(set().union(*by_blob.values())) == 3  # ...of its own
    assert {rows[f"row-{25 * b}"]["cluster_name"] for b in range(3)} == {f"label {b} (100%)" for b in range(3)}
