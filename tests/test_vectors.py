"""Bring your own vectors: .npy / .parquet with a metadata CSV, as a collection of a space of its own."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmcore.config import Settings
from mmcore.errors import MMError, NotFound, SpaceMismatch
from mmcore.search import search_image, search_like, search_text
from mmcore.vectors import import_vectors
from mmcore.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
META = """id,label,score,zip,flag,tags,caption,image,modality
a,1,0.5,007,true,red|big,,red.png,x
b,2,1,010,false,"blue, small",a blue thing,,
c,3,2.5,,true,,,,
d,4,3,5,,,,missing.png,
"""


@pytest.fixture
def ws(tmp_path):
    # No model: imported collections never need one.
    return Workspace(Settings(data_dir=tmp_path / "data"))


@pytest.fixture
def files(tmp_path):
    """Four 8-d vectors with a metadata CSV naming one real image and one missing one."""
    folder = tmp_path / "in"
    folder.mkdir()
    vectors = np.random.default_rng(0).normal(size=(4, 8)) * 3
    np.save(folder / "v.npy", vectors)
    Image.new("RGB", (40, 30), (200, 20, 20)).save(folder / "red.png")
    (folder / "meta.csv").write_text(META)
    return folder, vectors


def nothing_written(ws: Workspace, name: str = "imp") -> bool:
    try:
        ws.store.open(name, "custom")
    except NotFound:
        return not ws.files.root.exists() or not any(ws.files.root.rglob("*.*"))
    return False


def test_import_round_trip(ws, files):
    folder, vectors = files
    report = import_vectors(ws, folder / "v.npy", folder / "meta.csv", collection="imp")
    assert (report.rows, report.added, report.skipped, report.images) == (4, 4, 0, 1)
    assert len(report.problems) == 1 and report.problems[0].startswith("row 3: missing.png: could not be read")
    assert report.space.space == "custom" and report.space.model_id == "imported:v.npy" and report.space.dim == 8
    assert report.space.revision == hashlib.sha256((folder / "v.npy").read_bytes()).hexdigest()[:12]

    items = ws.store.open("imp", "custom").get(["a", "b", "c", "d"], with_vectors=True)
    got = np.stack([item["vector"] for item in items])
    np.testing.assert_allclose(got, vectors / np.linalg.norm(vectors, axis=1, keepdims=True), atol=1e-6)
    a, b, c, d = (item["metadata"] for item in items)
    assert (a["label"], a["score"], a["zip"], a["flag"]) == (1, 0.5, "007", True)
    assert isinstance(b["score"], float) and b["zip"] == "010" and "zip" not in c and "flag" not in d
    assert a["tags"] == ["big", "red"] and b["tags"] == ["blue", "small"] and "tags" not in c
    assert [x["modality"] for x in (a, b, c, d)] == ["image", "text", "vector", "vector"]
    assert a["csv_modality"] == "x"  # a column named like one of ours is kept aside, not obeyed
    assert items[1]["document"] == "a blue thing" and items[2]["document"] is None
    assert [x["row"] for x in (a, b, c, d)] == [0, 1, 2, 3]
    assert a["source"] == "red.png" and d["source"] == "v.npy" and (a["width"], a["height"]) == (40, 30)
    original, thumbnail = ws.files.root / a["original"], ws.files.root / a["thumbnail"]
    assert original.read_bytes() == (folder / "red.png").read_bytes()
    assert original.stem == thumbnail.stem == hashlib.sha256(original.read_bytes()).hexdigest()
    assert Image.open(thumbnail).size == (40, 30)


def test_reimport_adds_nothing(ws, files):
    folder, _ = files
    import_vectors(ws, folder / "v.npy", folder / "meta.csv", collection="imp")
    version = ws.store.open("imp", "custom").version
    again = import_vectors(ws, folder / "v.npy", folder / "meta.csv", collection="imp")
    assert (again.added, again.skipped) == (0, 4)
    assert ws.store.open("imp", "custom").count() == 4 and ws.store.open("imp", "custom").version == version


def test_without_meta_ids_are_row_numbers_and_the_space_is_named(ws, files):
    folder, _ = files
    seen = []
    import_vectors(ws, folder / "v.npy", collection="imp", space="mine", on_progress=lambda *a: seen.append(a))
    items = ws.store.open("imp", "mine").all(with_vectors=False)
    assert items.ids == ["row-0", "row-1", "row-2", "row-3"]
    assert {m["modality"] for m in items.metadatas} == {"vector"} and seen[-1] == (4, 4)


def test_another_dimension_or_source_is_refused(ws, files, tmp_path):
    folder, _ = files
    import_vectors(ws, folder / "v.npy", collection="imp")
    other = tmp_path / "other"
    other.mkdir()
    np.save(other / "v.npy", np.ones((2, 6)))
    with pytest.raises(SpaceMismatch, match=r"8-d vectors from v\.npy.*6-d"):
        import_vectors(ws, other / "v.npy", collection="imp")
    np.save(other / "w.npy", np.ones((2, 8)))
    with pytest.raises(SpaceMismatch, match="w.npy"):
        import_vectors(ws, other / "w.npy", collection="imp")
    assert ws.store.open("imp", "custom").count() == 4


def test_row_count_mismatch_names_both_files_and_writes_nothing(ws, files):
    folder, _ = files
    (folder / "short.csv").write_text("id,label,image\na,1,red.png\nb,2,red.png\n")
    with pytest.raises(MMError, match=r"v\.npy holds 4 vectors but short\.csv has 2 rows"):
        import_vectors(ws, folder / "v.npy", folder / "short.csv", collection="imp")
    assert nothing_written(ws)


@pytest.mark.parametrize("row, values, reason", [(2, [1.0, np.nan, 1.0], "NaN or infinite"), (1, [0.0, 0.0, 0.0], "all zeros")])
def test_bad_rows_are_refused_naming_the_row(ws, tmp_path, row, values, reason):
    vectors = np.ones((4, 3))
    vectors[row] = values
    np.save(tmp_path / "bad.npy", vectors)
    with pytest.raises(MMError, match=rf"bad\.npy: row {row} .*{reason}"):
        import_vectors(ws, tmp_path / "bad.npy", collection="imp")
    assert nothing_written(ws)


@pytest.mark.parametrize("meta, message", [
    ("id\na\na\nb\nc\n", "id 'a' appears on line 2 and again on line 3"),
    ("id\na\n\"\"\nb\nc\n", "line 3 has an empty id"),
    ("x,x\n1,2\n1,2\n1,2\n1,2\n", "column 'x' appears more than once"),
    ("id\na\nb,extra\nc\nd\n", "line 3 has 2 cells"),
])
def test_malformed_metadata_is_refused(ws, files, meta, message):
    folder, _ = files
    (folder / "bad.csv").write_text(meta)
    with pytest.raises(MMError, match=rf"bad\.csv: {message}"):
        import_vectors(ws, folder / "v.npy", folder / "bad.csv", collection="imp")
    assert nothing_written(ws)


def test_parquet_in_both_layouts_matches_npy(ws, files, tmp_path):
    folder, vectors = files
    pq.write_table(pa.table({"id": list("abcd"), "embedding": [list(map(float, v)) for v in vectors]}), tmp_path / "l.parquet")
    pq.write_table(pa.table({f"d{j}": vectors[:, j] for j in range(8)}), tmp_path / "c.parquet")
    for name in ("l", "c"):
        import_vectors(ws, tmp_path / f"{name}.parquet", collection=name)
        got = ws.store.open(name, "custom").get([f"row-{i}" for i in range(4)], with_vectors=True)
        np.testing.assert_allclose(np.stack([g["vector"] for g in got]),
                                   vectors / np.linalg.norm(vectors, axis=1, keepdims=True), atol=1e-6)


def test_parquet_without_vectors_is_refused(ws, tmp_path):
    pq.write_table(pa.table({"a": [1.0, 2.0], "name": ["x", "y"]}), tmp_path / "s.parquet")
    with pytest.raises(MMError, match=r"s\.parquet: expected a list column named 'vector' or 'embedding'.*'name'"):
        import_vectors(ws, tmp_path / "s.parquet", collection="imp")
    pq.write_table(pa.table({"vector": [[1.0, 2.0], [1.0, 2.0, 3.0]]}), tmp_path / "r.parquet")
    with pytest.raises(MMError, match=r"r\.parquet: row 1 .*has 3 values but row 0 has 2"):
        import_vectors(ws, tmp_path / "r.parquet", collection="imp")


def test_search_by_item_works_and_text_or_image_is_refused(ws, files):
    folder, vectors = files
    import_vectors(ws, folder / "v.npy", folder / "meta.csv", collection="imp")
    hits = search_like(ws, "a", "imp", k=3, space="custom")
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = sorted("bcd", key=lambda i: -float(unit[0] @ unit["abcd".index(i)]))
    assert [h.id for h in hits] == expected
    assert hits[0].score == pytest.approx(float(unit[0] @ unit["abcd".index(expected[0])]), abs=1e-5)
    with pytest.raises(MMError, match=r"Collection 'imp' holds vectors of space 'custom'.*by item.*not by text or image"):
        search_text(ws, "a red thing", "imp")
    with pytest.raises(MMError, match="not by text or image"):
        search_image(ws, "red.png", (folder / "red.png").read_bytes(), "imp")


def test_command_line_import(files, tmp_path):
    folder, _ = files
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMCORE_")}
    env.update(MMCORE_DATA_DIR=str(tmp_path / "cli-data"), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    run = subprocess.run(
        [sys.executable, "-m", "mmcore", "import-vectors", str(folder / "v.npy"), "--meta", str(folder / "meta.csv"),
         "--collection", "cli", "--space", "emb"], env=env, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 1, run.stderr  # 1: imported, but an image was missing
    assert "4 rows, 4 added, 0 already there, 1 images stored" in run.stdout
    assert "problem: row 3: missing.png: could not be read" in run.stdout
    items = Workspace(Settings(data_dir=tmp_path / "cli-data")).store.open("cli", "emb").all(with_vectors=False)
    assert items.ids == ["a", "b", "c", "d"] and items.metadatas[0]["tags"] == ["big", "red"]


def test_command_line_in_process_searches_by_item_and_exits_2_on_our_errors(ws, files, monkeypatch, capsys):
    from mmcore.cli import main

    folder, _ = files
    monkeypatch.setenv("MMCORE_DATA_DIR", str(ws.settings.data_dir))
    assert main(["import-vectors", str(folder / "v.npy"), "--collection", "imp", "--json"]) == 0
    assert '"added": 4' in capsys.readouterr().out
    assert main(["search", "--like", "row-0", "--collection", "imp", "-k", "2"]) == 0  # the space is found by itself
    assert "[row-" in capsys.readouterr().out
    assert main(["search", "--text", "red", "--collection", "imp"]) == 2
    assert "search it by item" in capsys.readouterr().err
    assert main(["import-vectors", str(folder / "meta.csv"), "--collection", "imp"]) == 2
    assert "meta.csv: unsupported vectors file type (.csv)" in capsys.readouterr().err


def test_confined_imports_refuse_images_outside_the_csv_folder(ws, tmp_path):
    outside = tmp_path / "private.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(outside)
    upload = tmp_path / "upload"
    upload.mkdir()
    np.save(upload / "v.npy", np.eye(2, 4, dtype=np.float32))
    (upload / "meta.csv").write_text("id,image\na,../private.png\nb,\n")
    report = import_vectors(ws, upload / "v.npy", upload / "meta.csv", "confined", confine_images=True)
    assert report.added == 2 and report.images == 0
    assert any("inside the folder" in p for p in report.problems)
    items = ws.store.open("confined", "custom").get(["a"])
    assert "thumbnail" not in items[0]["metadata"]
    free = import_vectors(ws, upload / "v.npy", upload / "meta.csv", "free")  # the CLI may point anywhere
    assert free.images == 1


# --- crash safety: every batch is a journaled group, as in ingest (see test_atomic_ingest.py) ----------------


def ten_rows(tmp_path) -> Path:
    path = tmp_path / "ten.npy"
    np.save(path, np.random.default_rng(1).normal(size=(10, 8)))
    return path


def rows_of(ws: Workspace, name: str = "imp") -> dict[str, int]:
    raw = ws.store.open(name, "custom").raw.get(include=["metadatas"])
    return {id_: meta["row"] for id_, meta in zip(raw["ids"], raw["metadatas"])}


def test_an_uncommitted_batch_of_a_dead_import_is_rolled_back_by_the_next_import(ws, tmp_path):
    from mmcore.journal import Journal, journal_dir

    path = ten_rows(tmp_path)
    import_vectors(ws, path, collection="imp")
    # As if that import had been killed in its last batch: after row-8 was written (here, by someone else's
    # hand: its metadata says so), before row-9 and before the commit.
    target = ws.store.open("imp", "custom")
    target.delete(["row-9"])
    target.add(["row-8"], np.ones((1, 8)), [{"row": 999}], [None])
    journal = Journal(journal_dir(ws.settings.data_dir), ws.store)
    journal.begin("imp", {"custom": ["row-8", "row-9"]})
    os.close(journal._fd)  # what the kernel does when the writer dies: its lock goes, its journal stays
    journal._fd = -1

    again = import_vectors(ws, path, collection="imp")  # the same workspace: the import itself recovers
    assert (again.added, again.skipped) == (2, 8), "row-8 was half-imported: rolled back and imported again"
    assert rows_of(ws) == {f"row-{i}": i for i in range(10)}
    assert not list(journal_dir(ws.settings.data_dir).iterdir())


def test_an_error_mid_import_rolls_back_its_batch_and_a_rerun_completes_it(ws, tmp_path, monkeypatch):
    from mmcore import store, vectors
    from mmcore.journal import journal_dir

    path = ten_rows(tmp_path)
    monkeypatch.setattr(vectors, "WRITE_BATCH", 4)
    real_add, calls = store.ItemCollection.add, []

    def add_then_fail(self, ids, *rest):
        calls.append(ids)
        if len(calls) == 2:  # the second batch: half of it written, then the store goes away
            real_add(self, ids[:2], *(r[:2] for r in rest))
            raise RuntimeError("the store went away")
        real_add(self, ids, *rest)

    monkeypatch.setattr(store.ItemCollection, "add", add_then_fail)
    seen = []
    with pytest.raises(RuntimeError):
        import_vectors(ws, path, collection="imp", on_progress=lambda done, total: seen.append(done))
    assert seen == [4] and sorted(rows_of(ws)) == [f"row-{i}" for i in range(4)], "only the committed batch stays"
    monkeypatch.setattr(store.ItemCollection, "add", real_add)
    again = import_vectors(ws, path, collection="imp")
    assert (again.added, again.skipped) == (6, 4)
    assert rows_of(ws) == {f"row-{i}": i for i in range(10)}
    assert not list(journal_dir(ws.settings.data_dir).iterdir())


KILLED_IMPORT = """
import os, signal, sys
from mmcore import cli, store, vectors

vectors.WRITE_BATCH = 4
real_add, upserts = store.ItemCollection.add, []

def add_in_pairs(self, ids, vecs, metadatas, documents):
    for i in range(0, len(ids), 2):
        real_add(self, ids[i:i + 2], vecs[i:i + 2], metadatas[i:i + 2], documents[i:i + 2])
        upserts.append(i)
        if len(upserts) == int(os.environ["KILL_AFTER_UPSERT"]):
            os.kill(os.getpid(), signal.SIGKILL)

store.ItemCollection.add = add_in_pairs
sys.exit(cli.main(sys.argv[1:]))
"""


def test_an_import_killed_mid_batch_leaves_whole_batches_and_a_rerun_completes_it_without_duplicates(tmp_path):
    """A real `python -m mmcore import-vectors`, SIGKILLed after its third upsert: the first batch of four is
    committed, two items of the second are written but not committed."""
    import signal

    from chromadb.api.client import SharedSystemClient

    from mmcore.journal import journal_dir, open_groups
    from mmcore.store import Store, open_client

    path = ten_rows(tmp_path)
    settings = Settings(data_dir=tmp_path / "data")
    wrapper = tmp_path / "kill_import.py"
    wrapper.write_text(KILLED_IMPORT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMCORE_")}
    env.update(MMCORE_DATA_DIR=str(settings.data_dir), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", KILL_AFTER_UPSERT="3")
    run = subprocess.run([sys.executable, str(wrapper), "import-vectors", str(path), "--collection", "imp"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == -signal.SIGKILL, run.stderr

    store = Store(open_client(settings))  # as it was left: no recovery yet
    assert sorted(store.open("imp", "custom").raw.get(include=[])["ids"]) == [f"row-{i}" for i in range(6)]
    journals = list(journal_dir(settings.data_dir).glob("*.journal"))
    assert [list(open_groups(j).values()) for j in journals] == [[("imp", {"custom": [f"row-{i}" for i in range(4, 8)]})]]
    SharedSystemClient.clear_system_cache()

    ws = Workspace(settings)
    assert sorted(rows_of(ws)) == [f"row-{i}" for i in range(4)], "after recovery only the committed batch is there"
    again = import_vectors(ws, path, collection="imp")
    assert (again.added, again.skipped) == (6, 4)
    assert rows_of(ws) == {f"row-{i}": i for i in range(10)}
    assert ws.store.open("imp", "custom").count() == 10
    assert not list(journal_dir(settings.data_dir).iterdir())


def test_an_import_leaves_the_vector_cache_holding_exactly_what_the_store_holds(ws, tmp_path, monkeypatch):
    """The first analysis after an import reads its vectors from the cache, which the import wrote: it must be the
    store's content (ids, write tokens, vectors) at the version the import left, also when a second import adds to
    the collection."""
    from mmcore import vectors
    from mmcore.vector_cache import current_snapshot, vector_cache_dir

    monkeypatch.setattr(vectors, "WRITE_BATCH", 4)  # several batches, each its own version of the collection
    rng = np.random.default_rng(3)
    (tmp_path / "more").mkdir()
    first, second = tmp_path / "a.npy", tmp_path / "more" / "a.npy"  # the same name: the same imported space
    np.save(first, rng.normal(size=(10, 8)))
    np.save(second, rng.normal(size=(7, 8)))
    (tmp_path / "more" / "ids.csv").write_text("id\n" + "".join(f"b{i}\n" for i in range(7)))
    cache = vector_cache_dir(ws.settings.data_dir)
    for path, meta, count in ((first, None, 10), (second, tmp_path / "more" / "ids.csv", 17)):
        import_vectors(ws, path, meta, collection="imp")
        target = ws.store.open("imp", "custom")
        snapshot = current_snapshot(target, cache)
        assert snapshot is not None, "the import saved the snapshot of the version it left"
        stored = target.raw.get(include=["embeddings", "uris"])
        order = np.argsort(stored["ids"])
        assert len(order) == count and snapshot.ids.tolist() == sorted(stored["ids"])
        assert snapshot.writes.tolist() == [stored["uris"][i] for i in order]
        # what the import wrote; Chroma hands cosine vectors back normalised again (up to float32 rounding)
        np.testing.assert_allclose(snapshot.vectors, np.asarray(stored["embeddings"], dtype=np.float32)[order], rtol=0, atol=1e-6)
