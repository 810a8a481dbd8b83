"""The vector cache never disagrees with the store: adds, deletes, re-adds and racing writes, through a real Chroma store."""

from __future__ import annotations

import numpy as np
import pytest

from mmcore.config import Settings
from mmcore.spaces import SpaceInfo, normalize
from mmcore.vector_cache import items_with_vectors, read_vectors, vector_cache_dir
from mmcore.workspace import Workspace

DIM = 8


@pytest.fixture
def setup(tmp_path):
    ws = Workspace(Settings(data_dir=tmp_path / "data"))
    collection = ws.store.collection("things", SpaceInfo("vecs", "synthetic", "", DIM))
    return collection, vector_cache_dir(ws.settings.data_dir)


def put(collection, ids: list[str], seed: int) -> np.ndarray:
    vectors = normalize(np.random.default_rng(seed).standard_normal((len(ids), DIM))).astype(np.float32)
    collection.add(ids, vectors, [{"modality": "image"}] * len(ids), [None] * len(ids))
    return vectors


def assert_matches_store(collection, cache_dir):
    cached = read_vectors(collection, cache_dir)
    truth = collection.all(with_vectors=True)
    assert cached.ids == truth.ids
    np.testing.assert_array_equal(cached.vectors, truth.vectors)
    return cached


class Spy:
    """Counts the ids whose vectors a collection fetches from the store."""

    def __init__(self, collection, monkeypatch):
        self.fetched = 0
        get = collection.raw.get

        def spied(*args, **kwargs):
            result = get(*args, **kwargs)
            if "embeddings" in kwargs.get("include", ()):
                self.fetched += len(result["ids"])
            return result

        monkeypatch.setattr(collection.raw, "get", spied)


def test_an_unchanged_collection_is_read_from_disk(setup, monkeypatch):
    collection, cache_dir = setup
    put(collection, [f"a{i:03d}" for i in range(50)], seed=0)
    assert_matches_store(collection, cache_dir)
    spy = Spy(collection, monkeypatch)
    again = read_vectors(collection, cache_dir)
    assert spy.fetched == 0 and isinstance(again.vectors, np.memmap) and len(again) == 50


def test_only_new_items_are_fetched_and_deleted_ones_drop_out(setup, monkeypatch):
    collection, cache_dir = setup
    put(collection, [f"a{i:03d}" for i in range(50)], seed=0)
    read_vectors(collection, cache_dir)
    spy = Spy(collection, monkeypatch)
    put(collection, ["b000", "b001", "a999"], seed=1)
    collection.delete(["a000", "a001"])
    cached = assert_matches_store(collection, cache_dir)
    assert spy.fetched == 3 + 51  # the three new ones, then the check's own full read
    assert "a000" not in cached.ids and "b001" in cached.ids


def test_an_id_deleted_and_added_again_with_another_vector_is_fetched_again(setup):
    collection, cache_dir = setup
    before = put(collection, ["x", "y", "z"], seed=0)
    read_vectors(collection, cache_dir)
    collection.delete(["y"])
    after = put(collection, ["y"], seed=1)  # no read in between: the cache never saw "y" go
    cached = assert_matches_store(collection, cache_dir)
    np.testing.assert_array_equal(cached.vectors[cached.ids.index("y")], after[0])
    assert not np.array_equal(before[1], after[0])
    put(collection, ["z"], seed=2)  # overwritten in place, no delete at all
    assert_matches_store(collection, cache_dir)
    collection.delete(["x", "y", "z"])
    empty = assert_matches_store(collection, cache_dir)
    assert empty.vectors.shape == (0, DIM)


def test_a_write_during_the_refresh_is_not_saved_as_the_old_version(setup, monkeypatch):
    collection, cache_dir = setup
    put(collection, ["a", "b"], seed=0)
    read_vectors(collection, cache_dir)
    put(collection, ["c"], seed=1)
    get = collection.raw.get
    raced = []

    def racing_get(*args, **kwargs):
        if not raced:  # another writer adds an item while this reader lists the collection
            raced.append(True)
            put(collection, ["d"], seed=2)
        return get(*args, **kwargs)

    monkeypatch.setattr(collection.raw, "get", racing_get)
    saved = {p.name for p in (cache_dir / collection.raw.name).iterdir()}
    read_vectors(collection, cache_dir)
    assert {p.name for p in (cache_dir / collection.raw.name).iterdir()} == saved
    monkeypatch.undo()
    assert_matches_store(collection, cache_dir)  # the version moved on: refreshed again, "d" included


def test_a_damaged_snapshot_is_rebuilt(setup):
    collection, cache_dir = setup
    put(collection, ["a", "b", "c"], seed=0)
    read_vectors(collection, cache_dir)
    (next((cache_dir / collection.raw.name).iterdir()) / "vectors.npy").write_bytes(b"torn")
    assert_matches_store(collection, cache_dir)


def test_items_with_vectors_joins_metadata_and_cached_vectors(setup):
    collection, cache_dir = setup
    put(collection, [f"a{i:03d}" for i in range(20)], seed=0)
    joined = items_with_vectors(collection, cache_dir)
    truth = collection.all(with_vectors=True)
    assert joined.ids == truth.ids and joined.metadatas == truth.metadatas
    np.testing.assert_array_equal(joined.vectors, truth.vectors)


def test_a_collection_made_again_by_another_model_is_read_afresh(tmp_path):
    ws = Workspace(Settings(data_dir=tmp_path / "data"))
    cache_dir = vector_cache_dir(ws.settings.data_dir)
    first = ws.store.collection("things", SpaceInfo("vecs", "synthetic", "", DIM))
    put(first, ["a", "b"], seed=0)
    read_vectors(first, cache_dir)
    ws.store.delete("things", "vecs")
    again = ws.store.collection("things", SpaceInfo("vecs", "other", "", 4))
    again.add(["a", "c"], normalize(np.ones((2, 4))), [{"modality": "image"}] * 2, [None, None])
    cached = assert_matches_store(again, cache_dir)
    assert cached.vectors.shape == (2, 4)
