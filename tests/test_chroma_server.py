"""Several writers need a Chroma server: a real `chroma run` on localhost, and two `python -m mmcore ingest`
processes writing into one collection at the same time, with nothing lost and nothing twice."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import media_factory as mf
from mmcore.config import Settings
from mmcore.datadir import lock_holder, lock_path
from mmcore.ingest import SourceFile, ingest
from mmcore.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
PATTERNS = ["none", "stripes", "checker", "circle", "cross", "diagonal"]


def folder(root: Path, name: str, seed: int, n: int = 24) -> Path:
    """`n` small distinct files: mostly pictures, every sixth a short text."""
    path = root / name
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        if i % 6 == 5:
            (path / f"{name}-{i:02}.txt").write_text(f"{name} note {i}: " + mf.LONG_TEXT[i * 7:i * 7 + 200], encoding="utf-8")
        else:
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            image = mf.picture((20 + i, 40 - i % 9), colour, PATTERNS[(i + seed) % len(PATTERNS)])
            (path / f"{name}-{i:02}.png").write_bytes(mf.encode(image, "PNG"))
    return path


def ingest_together(data_dir: Path, port: int, clip_dir: Path, folders: list[Path], collection: str) -> list[dict]:
    """Start one `ingest --json` per folder at once; wait for all. Per process: exit code, results, and when it
    reported its first and last file (progress arrives on stderr as each file is written)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMCORE_")}
    env.update(MMCORE_DATA_DIR=str(data_dir), MMCORE_CHROMA_HOST="127.0.0.1", MMCORE_CHROMA_PORT=str(port),
               MMCORE_CLIP_MODEL=str(clip_dir), MMCORE_BATCH_SIZE="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT),
               TOKENIZERS_PARALLELISM="false")
    runs = []
    for path in folders:
        process = subprocess.Popen([sys.executable, "-m", "mmcore", "ingest", str(path), "--collection", collection],
                                   cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        runs.append({"process": process, "times": [], "stderr": []})

    def watch(run: dict) -> None:
        for line in run["process"].stderr:
            run["stderr"].append(line)
            if line.startswith("["):
                run["times"].append(time.monotonic())

    threads = [threading.Thread(target=watch, args=(run,)) for run in runs]
    for t in threads:
        t.start()
    for run in runs:
        run["stdout"] = run["process"].stdout.read()
        run["process"].wait(timeout=300)
    for t in threads:
        t.join()
    return [{"code": r["process"].returncode, "stdout": r["stdout"], "stderr": "".join(r["stderr"]),
             "span": (r["times"][0], r["times"][-1]) if r["times"] else None} for r in runs]


def items_by_source(ws: Workspace, collection: str) -> dict[str, list[str]]:
    raw = ws.store.open(collection, "clip").raw.get(include=["metadatas"])
    sources: dict[str, list[str]] = {}
    for id_, meta in zip(raw["ids"], raw["metadatas"]):
        sources.setdefault(meta["source"], []).append(id_)
    return sources


def reported(result: dict) -> set[str]:
    """The files a run reports as added (its progress lines)."""
    return {line.split("added", 1)[1].strip() for line in result["stderr"].splitlines() if line.startswith("[") and "] added" in line}


def items_added(result: dict) -> int:
    """The items a run reports as added (its summary: "added N files (M items), ...")."""
    return int(re.search(r"added \d+ files \((\d+) items\)", result["stdout"]).group(1))


@pytest.fixture
def server_ws(tmp_path, server, clip_dir):
    return Workspace(Settings(data_dir=tmp_path / "data", models={"clip": str(clip_dir)}, chroma_host="127.0.0.1", chroma_port=server))


def test_two_processes_ingest_disjoint_folders_into_one_collection_at_once(tmp_path, server, clip_dir, server_ws):
    # Enough files that each run's writing outlasts the spread of the two start-ups (imports, the model) under load.
    folders = [folder(tmp_path, "left", 1, n=96), folder(tmp_path, "right", 2, n=96)]
    results = ingest_together(tmp_path / "data", server, clip_dir, folders, "shared")
    for r in results:
        assert r["code"] == 0, r["stderr"]
        assert "added 96 files" in r["stdout"] and "failed 0" in r["stdout"]
    (a_first, a_last), (b_first, b_last) = (r["span"] for r in results)
    assert a_first < b_last and b_first < a_last, "the two processes wrote at the same time"

    stored = items_by_source(server_ws, "shared")
    assert set(stored) == {f"{f.name}/{p.name}" for f in folders for p in f.iterdir()}, "every reported file is there"
    count = server_ws.store.open("shared", "clip").count()
    assert count == sum(len(ids) for ids in stored.values()) == items_added(results[0]) + items_added(results[1])
    assert not lock_path(tmp_path / "data").exists() and lock_holder(tmp_path / "data") is None, "a server takes no lock"

    check = subprocess.run([sys.executable, "-m", "mmcore", "check", "--json"], cwd=ROOT, capture_output=True, text=True,
                           env={**os.environ, "MMCORE_DATA_DIR": str(tmp_path / "data"), "MMCORE_CHROMA_HOST": "127.0.0.1",
                                "MMCORE_CHROMA_PORT": str(server), "PYTHONPATH": str(ROOT)}, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    assert [(c["name"], c["count"]) for c in json.loads(check.stdout)["collections"] if c["name"] == "shared"] == [("shared", count)]

    backup = subprocess.run([sys.executable, "-m", "mmcore", "backup", str(tmp_path / "b.tar.gz")], cwd=ROOT, capture_output=True,
                            text=True, env={**os.environ, "MMCORE_DATA_DIR": str(tmp_path / "data"),
                                            "MMCORE_CHROMA_HOST": "127.0.0.1", "PYTHONPATH": str(ROOT)}, timeout=120)
    assert backup.returncode == 0, backup.stderr
    assert "are not in this backup" in backup.stdout
    with tarfile.open(tmp_path / "b.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.startswith("data/media/originals/") for n in names) and not any(n.startswith("data/chroma/") for n in names)


def test_two_processes_ingest_the_same_folder_at_once_without_duplicates(tmp_path, server, clip_dir, server_ws):
    same = folder(tmp_path, "same", 3)
    results = ingest_together(tmp_path / "data", server, clip_dir, [same, same], "twice")
    for r in results:
        assert r["code"] == 0, r["stderr"]
    names = {f"same/{p.name}" for p in same.iterdir()}
    assert reported(results[0]) | reported(results[1]) == names, "each file added by one process or both"

    once = ingest(server_ws, [SourceFile(f"same/{p.name}", path=p) for p in sorted(same.iterdir())], collection="once")
    assert once.ok
    stored, reference = items_by_source(server_ws, "twice"), items_by_source(server_ws, "once")
    assert {s: sorted(ids) for s, ids in stored.items()} == {s: sorted(ids) for s, ids in reference.items()}
    assert server_ws.store.open("twice", "clip").count() == server_ws.store.open("once", "clip").count() == once.items_added, \
        "the same items as one ingest of the folder: none lost, none twice"
