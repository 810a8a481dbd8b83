"""MaxSim over packed pages against a plain loop, on a synthetic multi-vector collection; similarity maps painted
through tiles; hierarchical token pooling and what it does to rankings."""

from __future__ import annotations

import numpy as np
import pytest

import mmcore.late_interaction as li
from mmcore.late_interaction import (PackedPages, Summaries, Tile, cluster_tokens, maxsim, page_map, pool_tokens,
                                     similarity_map)
from mmcore.spaces import normalize
from synthetic_pages import synthetic_pages


def loop_maxsim(query: np.ndarray, pages) -> np.ndarray:
    q = np.asarray(query, dtype=np.float64)
    return np.array([(q @ np.asarray(p, dtype=np.float64).T).max(axis=1).sum() if len(p) else 0.0 for p in pages])


@pytest.fixture(scope="module")
def collection():
    return synthetic_pages(120, lengths=(40, 160), n_queries=30, seed=3)


@pytest.mark.parametrize("dtype, atol", [("float32", 1e-4), ("bfloat16", 0.05)])
def test_maxsim_matches_a_loop_over_pages_across_chunks_and_empty_pages(monkeypatch, dtype, atol):
    rng = np.random.default_rng(0)
    pages = [normalize(rng.standard_normal((n, 16))).astype(np.float16) for n in (5, 0, 300, 1, 77, 0, 40)]
    query = normalize(rng.standard_normal((6, 16)))
    expected = loop_maxsim(query, pages)
    monkeypatch.setattr(li, "CHUNK_ROWS", 64)  # pages split over many chunks, one page bigger than a chunk
    np.testing.assert_allclose(maxsim(query, PackedPages(pages, dtype=dtype)), expected, atol=atol)
    monkeypatch.setattr(li, "CHUNK_ROWS", 1 << 20)
    np.testing.assert_allclose(maxsim(query, pages), loop_maxsim(query, pages), atol=0.05)  # a list is packed
    packed = PackedPages(pages, dtype=dtype)
    subset = [4, 1, 2]
    np.testing.assert_allclose(maxsim(query, packed, subset=subset), expected[subset], atol=atol)
    assert maxsim(query, packed, subset=[]).shape == (0,)
    assert list(packed.lengths) == [5, 0, 300, 1, 77, 0, 40]


def test_a_query_ranks_the_page_it_was_built_from_first(collection):
    pages, queries, targets = collection
    packed = PackedPages(pages)
    firsts = [int(np.argmax(maxsim(q, packed))) for q in queries]
    assert firsts == list(targets)
    # The pooled vectors alone do worse: the details that single a page out are averaged away.
    pooled = normalize(np.stack([p.astype(np.float32).mean(axis=0) for p in pages]))
    by_pooled = [int(np.argmax(pooled @ normalize(q.mean(axis=0, keepdims=True))[0])) for q in queries]
    assert sum(a == b for a, b in zip(by_pooled, targets)) < len(targets)


def test_summaries_find_the_clusters_a_page_is_made_of_in_any_chunking():
    rng = np.random.default_rng(4)
    directions = [normalize(rng.standard_normal((k, 32))) for k in (8, 3)]
    pages = [normalize(d[rng.integers(0, len(d), n)] + 0.05 * rng.standard_normal((n, 32))).astype(np.float16)
             for d, n in ((directions[0], 400), (directions[1], 90))]
    pages = [pages[0], np.zeros((0, 32), np.float16), pages[1], pages[0][:5]]
    summaries = Summaries(PackedPages(pages), k=8)
    vectors = summaries.vectors.float().numpy()
    assert vectors.shape == (4, 8, 32)
    # Every direction the first page was made of has a summary vector on it; each vector is a unit mean.
    assert (directions[0] @ vectors[0].T).max(axis=1).min() > 0.98
    assert (directions[1] @ vectors[2].T).max(axis=1).min() > 0.98
    np.testing.assert_allclose(np.linalg.norm(vectors[[0, 2, 3]], axis=-1), 1.0, atol=0.01)
    assert not vectors[1].any(), "a page without rows sums up to zeros"
    query = normalize(rng.standard_normal((6, 32)))
    scores = summaries.scores(query)
    assert scores[1] == 0 and scores.shape == (4,)
    np.testing.assert_allclose(scores, (query @ vectors.transpose(0, 2, 1)).max(axis=2).sum(axis=1), atol=0.05)
    # The summary of a page's rows never scores above its exact MaxSim by more than rounding: each vector is a
    # mean of the page's unit rows, so no query token finds more in it than in the rows it came from... in one
    # direction it can (a mean of two near rows may lie between them), so compare on the clustered pages only.
    assert scores[0] <= maxsim(query, [pages[0]])[0] + 0.05
    chunked = Summaries(PackedPages(pages), k=8, chunk=1)
    np.testing.assert_allclose(chunked.vectors.float().numpy(), vectors, atol=1e-2)


def test_summaries_pick_candidates_that_hold_the_query_s_page_and_exact_maxsim_s_top_10_unlike_pooled_vectors():
    pages, queries, targets = synthetic_pages(600, lengths=(200, 400), n_queries=40, seed=5)
    rng = np.random.default_rng(5)
    # As real queries are: a few words' tokens and augmentation tokens (random here, matching nothing in particular).
    queries = [np.concatenate([q, normalize(rng.standard_normal((10, q.shape[1])))]) for q in queries]
    packed = PackedPages(pages)
    summaries = Summaries(packed)
    pooled = normalize(np.stack([p.astype(np.float32).mean(axis=0) for p in pages]))
    by_summaries = [np.argsort(-summaries.scores(q)) for q in queries]
    by_pooled = [np.argsort(-(pooled @ normalize(q.mean(0, keepdims=True))[0])) for q in queries]
    # The page a query was made from is among the first 10 of 600 by its summary, for every query.
    assert all(t in order[:10] for order, t in zip(by_summaries, targets))
    assert np.mean([t in order[:10] for order, t in zip(by_pooled, targets)]) < 0.8
    # 100 candidates keep most of exact MaxSim's top 10 (the rest of which are near-ties on this set).
    tops = [set(np.argsort(-maxsim(q, packed))[:10]) for q in queries]
    kept = np.mean([len(top & set(order[:100])) / 10 for order, top in zip(by_summaries, tops)])
    kept_pooled = np.mean([len(top & set(order[:100])) / 10 for order, top in zip(by_pooled, tops)])
    assert kept >= 0.8 and kept > kept_pooled + 0.08


def test_pooling_shrinks_each_page_to_unit_cluster_means(collection):
    page = collection[0][0]
    for factor in (2, 3):
        labels = cluster_tokens(page, factor)
        pooled = pool_tokens(page, factor)
        assert pooled.dtype == np.float16
        assert len(pooled) == labels.max() + 1 <= int(np.ceil(len(page) / factor))
        assert len(pooled) >= 0.9 * len(page) / factor
        np.testing.assert_allclose(np.linalg.norm(pooled.astype(np.float32), axis=1), 1.0, atol=2e-3)
        cluster = np.flatnonzero(labels == labels[7])
        expected = normalize(page[cluster].astype(np.float32).mean(axis=0, keepdims=True))[0]
        np.testing.assert_allclose(pooled[labels[7]].astype(np.float32), expected, atol=2e-3)
    # Tokens that are copies of each other land in one cluster.
    doubled = np.concatenate([page[:10], page[:10]])
    labels = cluster_tokens(doubled, 2)
    assert list(labels[:10]) == list(labels[10:])


def test_pooling_keeps_rankings_close_to_exact_maxsim(collection):
    pages, queries, targets = collection
    exact = np.stack([maxsim(q, pages) for q in queries])
    overlaps = []
    for factor in (2, 3):
        pooled = PackedPages([pool_tokens(p, factor) for p in pages])
        scores = np.stack([maxsim(q, pooled) for q in queries])
        assert (np.argmax(scores, axis=1) == targets).all()
        # Pooled scores are lower (a cluster mean is no closer to the query than its best member, mostly) ...
        assert np.mean(scores <= exact + 1e-3) > 0.85
        # ... and their top 10 is mostly exact MaxSim's, less so the more tokens are pooled.
        overlaps.append(np.mean([len(set(np.argsort(-a)[:10]) & set(np.argsort(-b)[:10])) / 10
                                 for a, b in zip(exact, scores)]))
    assert overlaps[0] >= overlaps[1] >= 0.7


def test_page_map_paints_tiles_where_they_lie_and_keeps_the_higher_value():
    # A page cut into 1 x 2 tiles of 2 x 2 patches (rows 0-3 left, 4-7 right), and a 2 x 2 view of the whole (8-11).
    grid = (Tile(np.arange(4).reshape(2, 2), (0, 0, 1, 0.5)), Tile(np.arange(4, 8).reshape(2, 2), (0, 0.5, 1, 1)),
            Tile(np.arange(8, 12).reshape(2, 2)))
    values = np.zeros(12, dtype=np.float32)
    values[5] = 1.0    # right tile, top right patch
    values[10] = 0.5   # whole-page view, bottom left quarter
    painted = page_map(values, grid)
    assert painted.shape == (2, 4)
    assert painted[0, 3] == 1.0 and painted[0, 2] == 0.0
    assert (painted[1, :2] == 0.5).all() and painted[0, :2].max() == 0.0 and painted[1, 2:].max() == 0.0


def test_similarity_map_is_each_patchs_best_match_with_the_query():
    rng = np.random.default_rng(1)
    page = normalize(rng.standard_normal((9, 8))).astype(np.float16)
    query = normalize(rng.standard_normal((3, 8)))
    grid = (Tile(np.arange(1, 9).reshape(2, 4)),)  # row 0 is a prompt token, not a patch
    expected = (page[1:].astype(np.float32) @ query.T).max(axis=1).reshape(2, 4)
    np.testing.assert_allclose(similarity_map(query, page, grid), expected, atol=1e-6)


@pytest.mark.parametrize("positions, fresh", [([0, 1, 2, 3], [2]), ([1, 3, 4], []), ([4, 0, 1], [0, 3]), ([], [1])])
def test_a_joined_block_and_its_summaries_are_those_of_its_pages_packed_afresh(positions, fresh):
    rng = np.random.default_rng(1)
    pages = [normalize(rng.standard_normal((n, 16))).astype(np.float16) for n in (7, 0, 30, 12, 5)]
    old = PackedPages(pages)
    added = PackedPages([pages[i] for i in fresh]) if fresh else None
    joined = PackedPages.joined(old, np.array(positions, dtype=np.int64), added)
    afresh = PackedPages([pages[i] for i in positions + fresh])
    np.testing.assert_array_equal(joined.offsets, afresh.offsets)
    assert joined.tokens.dtype == afresh.tokens.dtype and joined.tokens.equal(afresh.tokens)
    summaries = Summaries.joined(Summaries(old, k=4), np.array(positions, dtype=np.int64),
                                 Summaries(added, k=4) if added else None)
    np.testing.assert_allclose(summaries.vectors.float().numpy(), Summaries(afresh, k=4).vectors.float().numpy(), atol=1e-2)
