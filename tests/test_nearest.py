"""Filtered nearest-neighbour queries (mmcore.nearest) against exact answers, on a real embedded Chroma store."""

from __future__ import annotations

import sys
import time
from datetime import date

import numpy as np
import pytest

from mmcore.nearest import CANDIDATES, nearest
from mmcore.search import Filters
from mmcore.spaces import SpaceInfo, normalize
from mmcore.vector_cache import current_snapshot, read_vectors, vector_cache_dir

DIM = 16
N = 1200
DAY = 86_400


@pytest.fixture
def collection(ws):
    """Images in one tight cluster, text and video elsewhere; tags, sources, dates and an int and a bool field."""
    rng = np.random.default_rng(3)
    centers = normalize(rng.standard_normal((3, DIM)))
    modality = np.array(["image", "text", "video"])[rng.choice(3, N, p=[0.6, 0.3, 0.1])]
    vectors = normalize(centers[np.searchsorted(["image", "text", "video"], modality)] + 0.3 * rng.standard_normal((N, DIM)))
    metas = []
    for i in range(N):
        meta = {"modality": str(modality[i]), "source": f"s{i % 40}.bin", "added_at": 1_700_000_000 + (i % 30) * DAY,
                "page": i % 7, "reviewed": bool(i % 5 == 0)}
        if i % 37 == 0:
            meta["tags"] = ["rare"] + (["both"] if i % 74 == 0 else [])
        if i % 3 == 0:
            meta["tags"] = meta.get("tags", []) + ["common"]
        metas.append(meta)
    target = ws.store.collection("near", SpaceInfo("clip", "synthetic", "", DIM))
    ids = [f"item{i:05d}" for i in range(N)]
    target.add(ids, vectors, metas, [None] * N)
    return target, ids, vectors, metas, centers


def truth(ids, vectors, metas, query, k, filters, exclude=()):
    scores = vectors @ query
    order = [i for i in np.argsort(-scores, kind="stable") if filters.matches(metas[i]) and ids[i] not in exclude]
    return [ids[i] for i in order[:k]]


FILTERS = [
    Filters(modalities=("text",)),
    Filters(modalities=("text", "video")),
    Filters(tags=("rare",)),
    Filters(tags=("rare", "both")),
    Filters(modalities=("video",), tags=("common",)),
    Filters(sources=("s3.bin", "s7.bin")),
    Filters(added_from=date.fromtimestamp(1_700_000_000 + 20 * DAY), added_to=date.fromtimestamp(1_700_000_000 + 25 * DAY)),
    Filters(equals={"page": 3}),
    Filters(equals={"page": 3.0}),
    Filters(equals={"reviewed": True}),
    Filters(equals={"page": True}),
    Filters(modalities=("image",), equals={"reviewed": False}),
    Filters(tags=("nothing",)),
]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: f.to_where().__repr__()[:60])
def test_matches_decides_like_chroma(collection, filters):
    target, ids, _, metas, _ = collection
    listed = set(target.raw.get(where=filters.to_where(), include=[])["ids"])
    assert {ids[i] for i, meta in enumerate(metas) if filters.matches(meta)} == listed


@pytest.mark.parametrize("scoring", ["torch", "numpy"])
@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: f.to_where().__repr__()[:60])
def test_filtered_query_is_exact_from_the_cache(ws, collection, filters, scoring, monkeypatch):
    """Scored with torch where the process has it loaded, with numpy where it hasn't (a command-line search)."""
    if scoring == "numpy":
        monkeypatch.delitem(sys.modules, "torch")
    target, ids, vectors, metas, centers = collection
    cache_dir = vector_cache_dir(ws.settings.data_dir)
    read_vectors(target, cache_dir)
    for query in (centers[0], centers[1], normalize(np.ones((1, DIM)))[0]):
        got = nearest(target, query, 10, filters.to_where(), filters.matches, cache_dir=cache_dir)
        assert [m.id for m in got] == truth(ids, vectors, metas, query, 10, filters)
        assert all(filters.matches(m.metadata) for m in got)
        assert [m.score for m in got] == sorted((m.score for m in got), reverse=True)


def test_images_for_a_query_among_texts_leave_out_the_excluded(ws, collection):
    """A text-cluster query wanting images: none of the nearest CANDIDATES are images, so the cache answers."""
    target, ids, vectors, metas, centers = collection
    cache_dir = vector_cache_dir(ws.settings.data_dir)
    read_vectors(target, cache_dir)
    near = [m.id for m in target.query(centers[1], CANDIDATES)]
    assert sum(metas[ids.index(i)]["modality"] == "image" for i in near) < 10
    filters = Filters(modalities=("image",))
    exclude = truth(ids, vectors, metas, centers[1], 3, filters)
    got = nearest(target, centers[1], 10, filters.to_where(), filters.matches, exclude, cache_dir)
    assert [m.id for m in got] == truth(ids, vectors, metas, centers[1], 10, filters, exclude)
    assert not set(exclude) & {m.id for m in got}


def test_tag_changes_are_seen_at_once(ws, collection):
    target, ids, vectors, metas, centers = collection
    cache_dir = vector_cache_dir(ws.settings.data_dir)
    read_vectors(target, cache_dir)
    filters = Filters(tags=("rare",))
    before = nearest(target, centers[2], 12, filters.to_where(), filters.matches, cache_dir=cache_dir)
    untagged = [i for i in truth(ids, vectors, metas, centers[2], 50, Filters()) if "rare" not in (metas[ids.index(i)].get("tags") or [])]
    target.update_tags([untagged[0]], add=["rare"])
    after = nearest(target, centers[2], 12, filters.to_where(), filters.matches, cache_dir=cache_dir)
    assert untagged[0] not in [m.id for m in before]
    assert after[0].id == untagged[0]
    assert current_snapshot(target, cache_dir) is not None  # tags leave the version alone: the cache answered


def test_a_stale_cache_answers_through_chroma_then_catches_up(ws, collection):
    target, ids, vectors, metas, centers = collection
    cache_dir = vector_cache_dir(ws.settings.data_dir)
    read_vectors(target, cache_dir)
    new = normalize(centers[1:2] + 0.01)
    target.add(["fresh"], new, [{"modality": "image", "source": "fresh.jpg"}], [None])
    assert current_snapshot(target, cache_dir) is None
    filters = Filters(modalities=("image",))
    got = nearest(target, centers[1], 3, filters.to_where(), filters.matches, cache_dir=cache_dir)
    assert got[0].id == "fresh"  # the new item, though the cache has not seen it yet
    deadline = time.time() + 30
    while current_snapshot(target, cache_dir) is None and time.time() < deadline:
        time.sleep(0.1)
    assert "fresh" in current_snapshot(target, cache_dir).ids.tolist()
    again = nearest(target, centers[1], 3, filters.to_where(), filters.matches, cache_dir=cache_dir)
    assert [m.id for m in again] == [m.id for m in got]


def test_items_written_before_modality_was_recorded_are_filtered_by_listing(ws, collection):
    target, ids, vectors, metas, centers = collection
    target.raw.update(ids=ids[:50], uris=["old"] * 50)  # as written by an mmscope before write tokens held modality
    target.add(["bump"], normalize(np.ones((1, DIM))), [{"modality": "text"}], [None])
    cache_dir = vector_cache_dir(ws.settings.data_dir)
    snapshot = read_vectors(target, cache_dir)
    assert len(snapshot) == N + 1
    filters = Filters(modalities=("text",))
    got = nearest(target, centers[0], 10, filters.to_where(), filters.matches, cache_dir=cache_dir)
    metas = metas + [{"modality": "text"}]
    assert [m.id for m in got] == truth(ids + ["bump"], np.vstack([vectors, normalize(np.ones((1, DIM)))]), metas, centers[0], 10, filters)
