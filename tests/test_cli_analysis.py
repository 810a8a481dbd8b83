"""`python -m mmcore demo | analyze | export` as real subprocesses: three calls, the analysis paid once
(the export reads it from the cache)."""

import csv
import json
import os
import subprocess
import sys

import pytest

from mmcore.analysis.maps import analyze
from mmcore.analysis.taxonomy import load_taxonomy
from mmcore.config import Settings
from mmcore.workspace import Workspace


def mmcore(data_dir, *args: str) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MMCORE_")}, "MMCORE_DATA_DIR": str(data_dir)}
    done = subprocess.run([sys.executable, "-m", "mmcore", *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("cli-analysis")
    assert "1,797 items added" in mmcore(data, "demo").stdout
    return data


def test_analyze_prints_every_item_with_its_cluster_and_scores(demo_dir):
    rows = json.loads(mmcore(demo_dir, "analyze", "--collection", "digits-demo", "--json").stdout)
    assert len(rows) == 1797
    assert set(rows[0]) == {"id", "x", "y", "cluster", "cluster_name", "cluster_stability", "outlier_score", "probability"}
    clustered = [r for r in rows if r["cluster"] >= 0]
    assert len({r["cluster"] for r in clustered}) >= 8
    assert all(r["cluster_name"].startswith("label ") for r in clustered)  # named by the dominant digit
    assert all(0 <= r["outlier_score"] <= 1 for r in rows)
    assert all(0 <= r["cluster_stability"] <= 1 for r in clustered)
    assert all(r["cluster_stability"] is None for r in rows if r["cluster"] < 0)


def test_analyze_says_when_the_clusters_are_too_coarse_and_which_flags_give_finer_ones(demo_dir):
    coarse = mmcore(demo_dir, "analyze", "--collection", "digits-demo", "--min-cluster-size", "500")
    assert "note: these clusters are too coarse to review: only" in coarse.stderr
    assert "For finer ones: --selection leaf --min-cluster-size 500" in coarse.stderr
    fine = mmcore(demo_dir, "analyze", "--collection", "digits-demo", "--json")
    assert "too coarse" not in fine.stderr


def test_export_carries_the_taxonomy_names(demo_dir, tmp_path):
    ws = Workspace(Settings(data_dir=demo_dir))
    analysis = analyze(ws, "digits-demo", "pixels")
    taxonomy = load_taxonomy(demo_dir, "digits-demo", "pixels")
    label = analysis.cluster_ids[0]
    taxonomy.rename(analysis, label, "loops")
    taxonomy.save()
    out = tmp_path / "digits.csv"
    assert "wrote 1,797 items" in mmcore(demo_dir, "export", "--collection", "digits-demo", "--out", str(out)).stdout
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1797
    assert {"x", "y", "cluster", "cluster_name", "cluster_stability", "outlier_score", "label", "thumbnail"} <= set(rows[0])
    renamed = [r for r in rows if r["cluster"] == str(label)]
    assert renamed and all(r["cluster_name"] == "loops" for r in renamed)
