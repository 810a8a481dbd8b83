"""Every item's metadata is read from the row copy beside the store (mmcore.row_cache) while the collection is at the
version and tags it was copied at, and never after: real Chroma stores, real imports, real CLI processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmcore.config import Settings
from mmcore.row_cache import ROWS_DIR
from mmcore.vectors import import_vectors
from mmcore.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]


def vectors_file(tmp_path, n: int, name: str = "vecs") -> Path:
    path = tmp_path / f"{name}.npy"
    np.save(path, np.random.default_rng(n).normal(size=(n, 8)))
    return path


def fresh(tmp_path) -> Workspace:
    return Workspace(Settings(data_dir=tmp_path / "data"))


def copies(tmp_path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "data" / ROWS_DIR).glob("*/*") if not p.name.startswith("."))


def listed(collection) -> tuple[list, list, list]:
    """Every item's id, metadata and document, in id order."""
    items = collection.all(with_vectors=False)
    return items.ids, items.metadatas, items.documents


def as_chroma_has_it(ws: Workspace, name: str = "one") -> tuple[list, list, list]:
    """Every item as Chroma itself gives it, the row copy left out."""
    collection = ws.store.open(name, "vecs")
    collection.row_cache = None
    return listed(collection)


def test_a_read_of_every_item_leaves_a_copy_that_answers_the_next_reads_as_chroma_would(tmp_path):
    ws = fresh(tmp_path)
    import_vectors(ws, vectors_file(tmp_path, 40), collection="one", space="vecs")
    ws.store.open("one", "vecs").update_tags(["row-3", "row-5"], add=["keep"])
    truth = as_chroma_has_it(ws)
    assert copies(tmp_path) == []
    assert listed(ws.store.open("one", "vecs")) == truth
    assert len(copies(tmp_path)) == 1
    ws.store.client.write_catalogue()  # as the process would at its exit

    reader = fresh(tmp_path)
    collection = reader.store.open("one", "vecs")
    assert listed(collection) == truth
    ids, metadatas, _ = truth
    assert collection.get(["row-5", "row-0"]) == [
        {"id": i, "metadata": metadatas[ids.index(i)], "document": None} for i in ("row-5", "row-0")]
    assert collection.get(["row-5"])[0]["metadata"]["tags"] == ["keep"]
    assert not reader.store.client.started, "all of that came from the copy"
    assert sorted(collection.ids()) == ids and collection.existing(["row-1", "nope"]) == {"row-1"}


def test_a_write_or_a_change_of_tags_puts_the_copy_out_of_use_and_the_next_read_copies_again(tmp_path):
    ws = fresh(tmp_path)
    import_vectors(ws, vectors_file(tmp_path, 30), collection="one", space="vecs")
    collection = ws.store.open("one", "vecs")
    listed(collection)
    first = copies(tmp_path)

    collection.update_tags(["row-2"], add=["seen"])
    assert collection.get(["row-2"])[0]["metadata"]["tags"] == ["seen"]
    assert listed(collection) == as_chroma_has_it(ws)
    second = copies(tmp_path)
    assert len(second) == 1 and second != first, "the old copy is replaced, not kept beside"

    collection.add([f"new-{i}" for i in range(5)], np.ones((5, 8)), [{"modality": "vector"}] * 5, [None] * 5)
    assert len(listed(collection)[0]) == 35 and listed(collection) == as_chroma_has_it(ws)
    collection.delete(["row-0"])
    assert "row-0" not in collection.all(with_vectors=False).ids
    assert collection.get(["row-0"], skip_missing=True) == []


def test_a_damaged_copy_is_passed_over_for_chroma(tmp_path):
    ws = fresh(tmp_path)
    import_vectors(ws, vectors_file(tmp_path, 20), collection="one", space="vecs")
    truth = listed(ws.store.open("one", "vecs"))
    rows = next((tmp_path / "data" / ROWS_DIR).glob("*/*/rows.jsonl"))
    rows.write_bytes(rows.read_bytes()[:-40])  # cut short: offsets.npy no longer fits it
    assert listed(fresh(tmp_path).store.open("one", "vecs")) == truth


def test_a_staged_import_becomes_the_copy_once_it_is_in_chroma(tmp_path, monkeypatch):
    monkeypatch.setattr("mmcore.vectors.STAGE_MIN_ITEMS", 10)
    ws = fresh(tmp_path)
    import_vectors(ws, vectors_file(tmp_path, 50), collection="one", space="vecs", stage=True)
    collection = ws.store.open("one", "vecs")
    assert collection.staged_count() == 50
    staged = listed(collection)
    collection.settle()
    assert collection.staged_count() == 0 and len(copies(tmp_path)) == 1
    assert listed(collection) == staged == as_chroma_has_it(ws)


@pytest.mark.parametrize("analysis", [False, True])
def test_search_like_and_export_run_without_importing_chromadb_once_the_rows_are_copied(tmp_path, analysis):
    ws = fresh(tmp_path)
    import_vectors(ws, vectors_file(tmp_path, 60), collection="one", space="vecs")
    ws.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMCORE_")}
    env.update(MMCORE_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    like = ["search", "--like", "row-7", "--collection", "one", "-k", "4", "--json"]
    export = ["export", "--collection", "one", "--space", "vecs", "--format", "json", "--force"]
    export += [] if analysis else ["--no-analysis"]
    probe = ("import sys, json; from mmcore import cli; code = cli.main(sys.argv[1:]); "
             "print(json.dumps({'code': code, 'chromadb': 'chromadb' in sys.modules}), file=sys.stderr)")

    def run(args, out):
        done = subprocess.run([sys.executable, "-c", probe, *args, *(["--out", str(out)] if out else [])], env=env,
                              cwd=ROOT, capture_output=True, text=True)
        return json.loads(done.stderr.strip().splitlines()[-1]), done.stdout

    first = [run(like, None), run(export, tmp_path / "first.json")]  # these read Chroma, and copy the rows
    again = [run(like, None), run(export, tmp_path / "again.json")]
    assert [state for state, _ in again] == [{"code": 0, "chromadb": False}] * 2, again
    assert json.loads(again[0][1]) == json.loads(first[0][1]) and len(json.loads(again[0][1])) == 4
    assert json.loads((tmp_path / "again.json").read_text()) == json.loads((tmp_path / "first.json").read_text())
