"""An ingest keeps the good files: a kind whose model is missing fails only its own files, by name, with the
reason; and its progress counts items (embedded, of how many, items/s, time left) as well as files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import media_factory as mf
from media_audio import make_wav
from mmcore.config import Settings
from mmcore.errors import NotFound
from mmcore.ingest import SourceFile, ingest
from mmcore.progress import IngestProgress, ProgressTracker, clock
from mmcore.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """Two pictures, a note and two sounds in one folder."""
    root = tmp_path_factory.mktemp("mixed") / "inbox"
    root.mkdir()
    (root / "red.png").write_bytes(mf.encode(mf.picture((40, 30), (220, 30, 30), "stripes"), "PNG"))
    (root / "blue.jpg").write_bytes(mf.encode(mf.picture((30, 40), (30, 30, 220), "circle"), "JPEG"))
    (root / "note.txt").write_text("the tide tables for the northern harbour")
    (root / "birds.wav").write_bytes(make_wav(3, freqs=[2000, 3100]))
    (root / "hum.wav").write_bytes(make_wav(2, freqs=[120]))
    return root


def test_sounds_without_a_clap_model_fail_by_name_and_every_other_file_is_stored(tmp_path, clip_dir, mixed):
    missing = tmp_path / "no-such-clap"
    ws = Workspace(Settings(data_dir=tmp_path / "data", models={"clip": str(clip_dir), "clap": str(missing)}, batch_size=4))
    files = [SourceFile(p.name, path=p) for p in sorted(mixed.iterdir())]
    report = ingest(ws, files)

    status = {r.name: r.status for r in report.results}
    assert status == {"birds.wav": "failed", "blue.jpg": "added", "hum.wav": "failed", "note.txt": "added",
                      "red.png": "added"}
    for r in report.by_status("failed"):
        assert "CLAP model" in r.reason and str(missing) in r.reason and "MMCORE_CLAP_MODEL" in r.reason
    stored = {m["source"] for m in ws.collection().all(with_vectors=False).metadatas}
    assert stored == {"blue.jpg", "note.txt", "red.png"}
    with pytest.raises(NotFound):
        ws.store.open("default", "clap")  # no empty space was made for the sounds
    assert not report.ok


def test_the_cli_stores_what_it_can_names_the_rest_and_exits_1(tmp_path, clip_dir, mixed):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMCORE_")}
    env.update(MMCORE_DATA_DIR=str(tmp_path / "data"), MMCORE_CLIP_MODEL=str(clip_dir),
               MMCORE_CLAP_MODEL=str(tmp_path / "no-such-clap"), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT),
               TOKENIZERS_PARALLELISM="false")
    done = subprocess.run([sys.executable, "-m", "mmcore", "ingest", str(mixed)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "added 3 files (3 items), skipped 0, failed 2" in done.stdout
    failed = [line for line in done.stdout.splitlines() if line.startswith("  failed:")]
    assert len(failed) == 2 and all("CLAP model" in line for line in failed)
    assert {"inbox/birds.wav", "inbox/hum.wav"} == {line.split(": ")[1] for line in failed}
    # every file's outcome was reported on stderr as it came (no terminal: plain lines, no bar)
    assert sorted(line.split()[1] for line in done.stderr.splitlines() if line.startswith("[")) == \
        ["added", "added", "added", "failed", "failed"]
    assert "\r" not in done.stderr

    again = subprocess.run([sys.executable, "-m", "mmcore", "ingest", str(mixed), "--json"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    results = {r["name"]: r["status"] for r in json.loads(again.stdout)["results"]}
    assert again.returncode == 1 and again.stderr == "", "with --json nothing but the report"
    assert sorted(results.values()) == ["failed", "failed", "skipped", "skipped", "skipped"]


# --- the progress model ---------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_counts_items_once_every_file_is_counted_with_rate_and_time_left():
    from mmcore.ingest import FileResult

    seen: list[IngestProgress] = []
    time = Clock()
    tracker = ProgressTracker(3, seen.append, clock=time)
    big, small, skipped = FileResult("big.csv", "failed"), FileResult("a.png", "failed"), FileResult("b.png", "failed")
    tracker.stage("loading models")
    tracker.reading(big, 1000)
    assert seen[-1].items_total is None and seen[-1].current == "big.csv", "two files are not read yet"
    tracker.finished(skipped)  # skipped: never read
    time.now += 1
    tracker.reading(small, 1)
    assert seen[-1].items_total == 1001
    time.now += 9
    tracker.embedded(big, 500)
    p = seen[-1]
    assert (p.items_done, p.items_total, p.rate, p.eta) == (500, 1001, 50.0, pytest.approx(10.02))
    assert p.fraction == pytest.approx(500 / 1001)
    assert p.summary() == "500 of 1,001 items · 50 items/s · 0:10 left · 1 of 3 files"  # shown by the CLI and the page
    time.now += 0.1
    tracker.embedded(small, 1)
    assert len([q for q in seen if q.items_done == 501]) == 0, "item updates come at most every 0.25 s"
    time.now += 0.2
    tracker.finished(small)  # a file's outcome always comes at once, with the items since
    assert (seen[-1].finished, seen[-1].items_done, seen[-1].files_done) == (small, 501, 2)
    tracker.embedded(big, 100)
    tracker.finished(big)  # it failed half-way: what it didn't embed is no longer to come
    tracker.done()
    assert (seen[-1].stage, seen[-1].items_done, seen[-1].items_total, seen[-1].fraction) == ("done", 601, 601, 1.0)


def test_without_an_item_count_the_time_left_comes_from_the_files():
    p = IngestProgress(files_total=10, files_done=2, items_done=40, seconds=20.0, stage="embedding")
    assert p.items_total is None and p.eta == 80.0 and p.fraction == 0.2
    assert p.summary() == "40 items · 2.0 items/s · 1:20 left · 2 of 10 files"
    assert [clock(s) for s in (5, 65, 3 * 3600 + 7)] == ["0:05", "1:05", "3:00:07"]
