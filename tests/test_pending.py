"""A big import into a new collection is staged on disk and put into Chroma behind the user's back (mmcore.pending):
reads answer from the staging meanwhile, and nothing that needs Chroma ever sees it half built."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mmcore import vectors as vectors_module
from mmcore.config import Settings
from mmcore.pending import PENDING_DIR
from mmcore.search import Filters, search_like
from mmcore.vector_cache import current_snapshot, vector_cache_dir
from mmcore.vectors import import_vectors
from mmcore.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
N = 300


@pytest.fixture
def files(tmp_path) -> tuple[Path, Path]:
    """N vectors in 6 groups, and a metadata CSV with ids, tags, captions and a number per row."""
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(6, 16))
    vecs = centres[np.arange(N) % 6] + 0.3 * rng.normal(size=(N, 16))
    path = tmp_path / "vecs.npy"
    np.save(path, vecs)
    meta = tmp_path / "meta.csv"
    with open(meta, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "tags", "caption", "group"])
        for i in range(N):
            writer.writerow([f"item-{i:04d}", "odd" if i % 2 else "", f"caption of item {i}", i % 6])
    return path, meta


@pytest.fixture
def staging(monkeypatch):
    monkeypatch.setattr(vectors_module, "STAGE_MIN_ITEMS", 100)


def test_a_staged_import_reads_as_the_same_collection_before_and_after_it_is_in_chroma(ws, files, staging):
    path, meta = files
    plain = import_vectors(ws, path, meta, collection="plain")
    staged = import_vectors(ws, path, meta, collection="staged", stage=True)
    assert (plain.added, staged.added) == (N, N)
    target, reference = ws.store.open("staged", "custom"), ws.store.open("plain", "custom")
    assert target.raw.count() == 0 and target.staged_count() == N, "staged, not yet in Chroma"
    assert (ws.settings.data_dir / PENDING_DIR / target.key).is_dir()

    def content(collection):
        items = collection.all(with_vectors=True)
        metadatas = [{k: v for k, v in m.items() if k != "added_at"} for m in items.metadatas]
        return items.ids, items.vectors, metadatas, items.documents

    before = content(target)
    expected = content(reference)
    assert before[0] == expected[0] and before[2:] == expected[2:]
    assert np.allclose(before[1], expected[1])
    assert target.count() == N and sorted(target.ids()) == sorted(reference.ids())
    assert target.get(["item-0007"])[0]["document"] == "caption of item 7"
    assert target.existing(["item-0001", "nope"]) == {"item-0001"}
    snapshot = current_snapshot(target, vector_cache_dir(ws.settings.data_dir))
    assert snapshot is not None and len(snapshot.ids) == N, "the import wrote the vector cache for its version"
    version = target.version

    # A filtered read needs Chroma: it waits until every item is there, and then the staging is gone.
    odd = target.ids({"tags": {"$contains": "odd"}})
    assert sorted(odd) == sorted(reference.ids({"tags": {"$contains": "odd"}})) and len(odd) == N // 2
    assert target.raw.count() == N and target.staged_count() == 0
    assert not (ws.settings.data_dir / PENDING_DIR / target.key).exists()
    assert target.version == version, "settling changes no content, so no map is computed again"
    after = content(target)
    assert after[0] == before[0] and after[2:] == before[2:] and np.allclose(after[1], before[1])
    query = reference.get(["item-0003"], with_vectors=True)[0]["vector"]
    assert [m.id for m in target.query(query, 10)] == [m.id for m in reference.query(query, 10)]


def test_a_search_or_a_write_on_a_staged_collection_waits_for_chroma_to_hold_it_all(ws, files, staging):
    path, meta = files
    import_vectors(ws, path, meta, collection="staged", stage=True)
    target = ws.store.open("staged", "custom")
    hits = search_like(ws, "item-0004", collection="staged", k=5, filters=Filters(equals={"group": 4}), space="custom")
    assert hits and all(h.metadata["group"] == 4 for h in hits) and target.raw.count() == N
    import_vectors(ws, path, meta, collection="tagged", stage=True)
    tagged = ws.store.open("tagged", "custom")
    tagged.update_tags(["item-0002"], add=["checked"])
    assert tagged.raw.count() == N and tagged.get(["item-0002"])[0]["metadata"]["tags"] == ["checked"]


def test_a_builder_stopped_part_way_leaves_the_staging_and_the_next_one_completes_it(ws, files, staging):
    path, meta = files
    import_vectors(ws, path, meta, collection="staged", stage=True)
    target = ws.store.open("staged", "custom")
    target.max_batch = 64

    def stop(done: int, total: int) -> None:
        if done >= 128:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        target.settle(stop)
    assert target.raw.count() == 128 and target.count() == N, "the staging still answers for the whole collection"
    again = ws.store.open("staged", "custom")
    again.settle()
    assert again.raw.count() == N and again.staged_count() == 0
    assert sorted(again.raw.get(include=[])["ids"]) == [f"item-{i:04d}" for i in range(N)]


def test_staging_is_all_or_nothing_and_only_for_a_big_import_into_an_empty_collection(ws, files, staging, monkeypatch):
    path, meta = files
    real_save = np.save

    def failing_save(file, array, *args, **kwargs):
        if str(file).endswith("vectors.npy"):
            raise OSError("disk full")
        return real_save(file, array, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(np, "save", failing_save)
        with pytest.raises(OSError):
            import_vectors(ws, path, meta, collection="staged", stage=True)
    target = ws.store.open("staged", "custom")
    assert target.count() == 0 and not list((ws.settings.data_dir / PENDING_DIR).iterdir())
    import_vectors(ws, path, meta, collection="staged", stage=True)
    assert target.staged_count() == N
    ws.store.delete("staged", "custom")
    assert not list((ws.settings.data_dir / PENDING_DIR).iterdir()), "deleting the collection drops its staging"

    monkeypatch.setattr(vectors_module, "STAGE_MIN_ITEMS", N + 1)
    import_vectors(ws, path, meta, collection="small", stage=True)
    assert ws.store.open("small", "custom").raw.count() == N, "below the threshold Chroma is written at once"


def run_cli(args: list[str], data_dir: Path, probe: bool = False) -> subprocess.CompletedProcess:
    """`python -m mmcore ARGS`; with `probe`, stderr's last line says whether it imported chromadb."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMCORE_")}
    env.update(MMCORE_DATA_DIR=str(data_dir), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    command = ["-c", "import sys; from mmcore import cli; code = cli.main(sys.argv[1:]); "
                     "print('chromadb:', 'chromadb' in sys.modules, file=sys.stderr); sys.exit(code)"] if probe else ["-m", "mmcore"]
    return subprocess.run([sys.executable, *command, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_import_vectors_returns_before_the_index_is_built_and_every_later_command_sees_all_items(tmp_path):
    """The real CLI with its real threshold: the import returns with the items staged, a background process puts
    them into Chroma, and a search, a write and `check` run meanwhile all see the whole collection."""
    n = vectors_module.STAGE_MIN_ITEMS + 500
    rng = np.random.default_rng(3)
    big = rng.normal(size=(n, 24)).astype(np.float32)
    np.save(tmp_path / "big.npy", big)
    np.save(tmp_path / "small.npy", rng.normal(size=(10, 24)).astype(np.float32))
    data = tmp_path / "data"
    imported = run_cli(["import-vectors", str(tmp_path / "big.npy"), "--collection", "big"], data)
    assert imported.returncode == 0, imported.stderr
    assert "being built in the background" in imported.stderr
    info = run_cli(["info", "--json"], data, probe=True)
    assert info.returncode == 0, info.stderr
    assert [c["items"] for c in json.loads(info.stdout) if c["collection"] == "big"] == [n]
    assert info.stderr.strip().splitlines()[-1] == "chromadb: False", "the catalogue answers while the index builds"
    # A write to the data dir while the builder holds it waits for the builder instead of failing.
    second = run_cli(["import-vectors", str(tmp_path / "small.npy"), "--collection", "small"], data)
    assert second.returncode == 0, second.stderr
    like = run_cli(["search", "--like", "row-17", "--collection", "big", "--space", "custom", "-k", "3", "--json"], data)
    assert like.returncode == 0, like.stderr
    unit = big / np.linalg.norm(big, axis=1, keepdims=True)
    nearest = [f"row-{i}" for i in np.argsort(-(unit @ unit[17]))[1:4]]
    assert [hit["id"] for hit in json.loads(like.stdout)] == nearest
    deadline = time.time() + 240
    while (data / PENDING_DIR).is_dir() and list((data / PENDING_DIR).iterdir()) and time.time() < deadline:
        time.sleep(0.5)
    assert not list((data / PENDING_DIR).iterdir()), (data / "logs" / "index.log").read_text()
    checked = run_cli(["check", "--json"], data)
    assert checked.returncode == 0, checked.stdout
    ws = Workspace(Settings(data_dir=data))
    assert ws.store.open("big", "custom").raw.count() == n


def test_the_background_builder_waits_for_a_writer_that_took_the_store_first(ws, files, staging):
    """Another process may take the store's lock between an import's end and its builder's start: the builder
    waits for it instead of giving up, then puts the staged items in."""
    path, meta = files
    import_vectors(ws, path, meta, collection="staged", stage=True)
    ws.claim()  # this process writes the store now
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMCORE_")}
    env.update(MMCORE_DATA_DIR=str(ws.settings.data_dir), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    builder = subprocess.Popen([sys.executable, "-m", "mmcore", "index", "--background"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(8)
        assert builder.poll() is None, builder.communicate()[1]
        assert ws.store.open("staged", "custom").staged_count() == N
    finally:
        ws.close()  # the lock goes: the builder takes it
    _, err = builder.communicate(timeout=120)
    assert builder.returncode == 0, err
    assert ws.store.open("staged", "custom").raw.count() == N and ws.store.open("staged", "custom").staged_count() == 0


def test_a_reader_beside_the_builder_answers_from_the_catalogue_all_along(ws, files, staging):
    path, meta = files
    import_vectors(ws, path, meta, collection="staged", stage=True)
    ws.store.client.write_catalogue()  # as import-vectors does before it hands over to the builder
    ws.close()
    ws = Workspace(Settings(data_dir=ws.settings.data_dir))  # the builder: the lock first, Chroma not started yet
    ws.claim()
    target = ws.store.open("staged", "custom")
    assert not ws.store.client.started
    target.max_batch = 64
    believed = []

    def look(done: int, total: int) -> None:  # a reader in another process, as the analysis beside the build
        reader = Workspace(Settings(data_dir=ws.settings.data_dir))
        catalogue = reader.store.client.catalogue()
        believed.append(catalogue is not None)
        if catalogue is not None:
            assert reader.store.open("staged", "custom").count() == N
            assert [(c.name, c.count) for c in reader.store.list()] == [("staged", N)]

    target.settle(look)
    assert believed == [True] * 5, "believed while the builder holds the lock, whatever its upserts did to the file"
    after = Workspace(Settings(data_dir=ws.settings.data_dir))
    assert after.store.client.catalogue() is not None, "written afresh once the staging is in"
    assert [(c.name, c.count) for c in after.store.list()] == [("staged", N)] and not after.store.client.started
    ws.close()  # the lock goes: the builder's mark alone no longer makes a catalogue believed
    catalogue = json.loads((ws.settings.data_dir / "cache" / "catalogue.json").read_text())
    assert "builder" not in catalogue
