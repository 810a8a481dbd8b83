"""`python -m mmcore demo | analyze | export` through the real CLI entry point (in-process: the
subprocess contract is covered in test_cli.py)."""

import csv
import json

import pytest

from mmcore import cli
from mmcore.analysis.maps import analyze
from mmcore.analysis.taxonomy import load_taxonomy
from mmcore.config import Settings
from mmcore.workspace import Workspace


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("cli-analysis")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMCORE_DATA_DIR", str(data))
        assert cli.main(["demo"]) == 0
    return data


def test_analyze_prints_every_item_with_its_cluster_and_scores(demo_dir, monkeypatch, capsys):
    monkeypatch.setenv("MMCORE_DATA_DIR", str(demo_dir))
    capsys.readouterr()
    assert cli.main(["analyze", "--collection", "digits-demo", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1797
    assert set(rows[0]) == {"id", "x", "y", "cluster", "cluster_name", "outlier_score", "probability"}
    clustered = [r for r in rows if r["cluster"] >= 0]
    assert len({r["cluster"] for r in clustered}) >= 8
    assert all(r["cluster_name"].startswith("label ") for r in clustered)  # named by the dominant digit
    assert all(0 <= r["outlier_score"] <= 1 for r in rows)


def test_export_carries_the_taxonomy_names(demo_dir, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MMCORE_DATA_DIR", str(demo_dir))
    ws = Workspace(Settings(data_dir=demo_dir))
    analysis = analyze(ws, "digits-demo", "pixels")
    taxonomy = load_taxonomy(demo_dir, "digits-demo", "pixels")
    label = analysis.cluster_ids[0]
    taxonomy.rename(analysis, label, "loops")
    taxonomy.save()
    out = tmp_path / "digits.csv"
    assert cli.main(["export", "--collection", "digits-demo", "--format", "csv", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1797
    assert {"x", "y", "cluster", "cluster_name", "outlier_score", "label", "thumbnail"} <= set(rows[0])
    renamed = [r for r in rows if r["cluster"] == str(label)]
    assert renamed and all(r["cluster_name"] == "loops" for r in renamed)
