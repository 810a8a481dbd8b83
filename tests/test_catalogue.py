"""Commands that read no items answer from the store's catalogue without starting Chroma (mmcore.catalogue), and
never from a catalogue the store has moved on from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from mmcore.catalogue import FILE, LazyClient
from mmcore.config import Settings
from mmcore.vectors import import_vectors
from mmcore.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]


def imported(tmp_path, name: str, n: int) -> None:
    path = tmp_path / f"{name}.npy"
    np.save(path, np.random.default_rng(n).normal(size=(n, 8)))
    ws = Workspace(Settings(data_dir=tmp_path / "data"))
    import_vectors(ws, path, collection=name, space="vecs")
    ws.store.client.write_catalogue()  # as the process would at its exit
    ws.close()


def fresh(tmp_path) -> Workspace:
    return Workspace(Settings(data_dir=tmp_path / "data"))


def test_a_new_process_reads_collections_counts_and_versions_without_starting_chroma(tmp_path):
    imported(tmp_path, "one", 30)
    imported(tmp_path, "two", 12)
    chroma = fresh(tmp_path)
    chroma.store.client.real  # started: the reference answers
    expected = [(c.name, c.space, c.count) for c in chroma.store.list()]
    version = chroma.store.open("one", "vecs").version
    chroma.store.client.write_catalogue()

    ws = fresh(tmp_path)
    assert isinstance(ws.store.client, LazyClient)
    assert [(c.name, c.space, c.count) for c in ws.store.list()] == expected == [
        ("one", expected[0][1], 30), ("two", expected[1][1], 12)]
    target = ws.store.open("one", "vecs")
    assert (target.version, target.count(), target.space.dim) == (version, 30, 8)
    assert ws.store.spaces("two") == ["vecs"]
    assert not ws.store.client.started, "none of that needed Chroma"
    assert sorted(target.ids())[:2] == ["row-0", "row-1"] and ws.store.client.started, "items come from Chroma"


def test_a_write_since_the_catalogue_was_written_sends_every_reader_to_chroma(tmp_path):
    imported(tmp_path, "one", 30)
    reader = fresh(tmp_path)
    target = reader.store.open("one", "vecs")
    assert target.count() == 30 and not reader.store.client.started
    writer = fresh(tmp_path)
    writer.store.open("one", "vecs").delete(["row-0", "row-1"])
    assert target.count() == 28, "the catalogue no longer describes the store: Chroma answers"
    assert reader.store.open("one", "vecs").version == writer.store.open("one", "vecs").version


def test_a_catalogue_that_does_not_match_the_store_is_ignored(tmp_path):
    imported(tmp_path, "one", 30)
    path = tmp_path / "data" / FILE
    record = json.loads(path.read_text())
    record["catalogue"]["collections"]["one.vecs"]["count"] = 999
    record["signature"][0][2] -= 1  # written for another state of the database
    path.write_text(json.dumps(record))
    ws = fresh(tmp_path)
    assert ws.store.open("one", "vecs").count() == 30 and ws.store.client.started
    path.write_text("{not json")
    assert fresh(tmp_path).store.open("one", "vecs").count() == 30


def test_info_and_a_cached_analysis_run_without_importing_chromadb(tmp_path):
    imported(tmp_path, "one", 60)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMCORE_")}
    env.update(MMCORE_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    analyze = ["analyze", "--collection", "one", "--space", "vecs", "--json"]
    first = subprocess.run([sys.executable, "-m", "mmcore", *analyze], env=env, cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    probe = ("import sys, json; from mmcore import cli; code = cli.main(sys.argv[1:]); "
             "print(json.dumps({'code': code, 'chromadb': 'chromadb' in sys.modules}), file=sys.stderr)")
    for args in (["info", "--json"], analyze):
        run = subprocess.run([sys.executable, "-c", probe, *args], env=env, cwd=ROOT, capture_output=True, text=True)
        assert json.loads(run.stderr.strip().splitlines()[-1]) == {"code": 0, "chromadb": False}, run.stderr
        assert json.loads(run.stdout) == json.loads(first.stdout) if args == analyze else \
            [c["items"] for c in json.loads(run.stdout)] == [60]


def test_a_builder_s_mark_makes_a_catalogue_believed_only_while_that_builder_holds_the_lock(tmp_path):
    imported(tmp_path, "one", 30)
    path = tmp_path / "data" / FILE
    record = json.loads(path.read_text())
    record["signature"] = [[0, 0, 0]]  # the database moved on, as it does under the builder's upserts
    record["builder"] = {"pid": os.getpid(), "since": "2026-12-04 10:00:00", "command": "mmcore index --background"}
    path.write_text(json.dumps(record))
    assert fresh(tmp_path).store.client.catalogue() is None, "nobody holds the lock: the mark is a dead builder's"
