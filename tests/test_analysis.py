"""Maps, clusters and outliers on synthetic data with known structure, through a real Chroma store."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from mmcore.analysis.clusters import Hdbscan, default_min_cluster_size
from mmcore.analysis.maps import Sampling, analyze
from mmcore.analysis.projection import Umap
from mmcore.errors import MMError, NotFound
from mmcore.spaces import SpaceInfo, normalize

DIM = 32
BLOBS = 4
PER_BLOB = 60


def blobs(rng, n_per_blob: int, centers: np.ndarray, spread: float = 0.08) -> tuple[np.ndarray, np.ndarray]:
    """Points scattered around `centers` on the unit sphere, with their blob index."""
    labels = np.repeat(np.arange(len(centers)), n_per_blob)
    points = centers[labels] + spread * rng.standard_normal((len(labels), centers.shape[1]))
    return normalize(points), labels


def add(collection, prefix: str, vectors: np.ndarray, labels) -> list[str]:
    ids = [f"{prefix}{i:04d}" for i in range(len(vectors))]
    collection.add(ids, vectors, [{"truth": int(t), "modality": "image"} for t in labels], [None] * len(ids))
    return ids


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A collection of 4 blobs plus 6 planted outliers (random directions, far from every blob)."""
    from mmcore.config import Settings
    from mmcore.workspace import Workspace

    rng = np.random.default_rng(7)
    centers = normalize(rng.standard_normal((BLOBS, DIM)))
    ws = Workspace(Settings(data_dir=tmp_path_factory.mktemp("analysis-data")))
    collection = ws.store.collection("blobs", SpaceInfo("vecs", "synthetic", "", DIM))
    points, labels = blobs(rng, PER_BLOB, centers)
    add(collection, "b", points, labels)
    outliers = normalize(rng.standard_normal((6, DIM)))
    outlier_ids = add(collection, "z", outliers, [-1] * 6)
    analysis = analyze(ws, "blobs", "vecs")
    return ws, collection, centers, rng, analysis, outlier_ids


def truth(collection, ids):
    return [item["metadata"]["truth"] for item in collection.get(ids)]


def test_clusters_recover_the_blobs(planted):
    ws, collection, _, _, analysis, outlier_ids = planted
    inliers = [i for i, id_ in enumerate(analysis.ids) if id_ not in outlier_ids]
    true = truth(collection, [analysis.ids[i] for i in inliers])
    assert adjusted_rand_score(true, analysis.labels[inliers]) > 0.9
    assert len(analysis.cluster_ids) == BLOBS
    assert analysis.xy.shape == (BLOBS * PER_BLOB + 6, 2)
    assert np.isfinite(analysis.xy).all()
    assert ((analysis.probabilities >= 0) & (analysis.probabilities <= 1)).all()


def test_planted_outliers_score_highest(planted):
    _, _, _, _, analysis, outlier_ids = planted
    scores = dict(zip(analysis.ids, analysis.outlier_scores))
    top = sorted(scores, key=scores.get, reverse=True)[: 2 * len(outlier_ids)]
    found = set(top) & set(outlier_ids)
    assert len(found) >= len(outlier_ids) - 1, f"only {len(found)} of {len(outlier_ids)} planted outliers ranked near the top"
    inlier_median = np.median([s for id_, s in scores.items() if id_ not in outlier_ids])
    assert all(scores[o] > inlier_median for o in outlier_ids)


def test_parameters_are_recorded(planted):
    _, _, _, _, analysis, _ = planted
    assert analysis.umap == Umap()
    assert analysis.hdbscan.min_cluster_size == default_min_cluster_size(BLOBS * PER_BLOB + 6)
    assert (analysis.collection, analysis.space) == ("blobs", "vecs")
    assert analysis.fitted == len(analysis.ids) and not analysis.stale
    assert analysis.sample == 0 and analysis.sampling == Sampling()


def test_unchanged_collection_comes_from_the_cache(planted):
    ws, _, _, _, analysis, _ = planted
    again = analyze(ws, "blobs", "vecs")
    assert again.from_cache and not analysis.from_cache
    assert again.ids == analysis.ids
    np.testing.assert_array_equal(again.xy, analysis.xy)
    np.testing.assert_array_equal(again.labels, analysis.labels)


def test_other_parameters_are_another_cache_entry(planted):
    ws, _, _, _, analysis, _ = planted
    other = analyze(ws, "blobs", "vecs", hdbscan=Hdbscan(min_cluster_size=analysis.hdbscan.min_cluster_size + 5))
    assert not other.from_cache
    assert other.hdbscan.min_cluster_size == analysis.hdbscan.min_cluster_size + 5


def test_new_items_are_placed_in_their_blobs_cluster_without_refit(planted):
    ws, collection, centers, rng, analysis, _ = planted
    points, labels = blobs(rng, 5, centers)
    new_ids = add(collection, "n", points, labels)
    placed = analyze(ws, "blobs", "vecs")
    assert not placed.from_cache
    assert placed.stale and placed.placed == len(new_ids) and placed.fitted == len(analysis.ids)
    # old items keep their coordinates and clusters
    for id_ in analysis.ids[:20]:
        i, j = analysis.position(id_), placed.position(id_)
        np.testing.assert_array_equal(analysis.xy[i], placed.xy[j])
        assert analysis.labels[i] == placed.labels[j]
    # each new point lands in the cluster that holds most of its blob
    blob_cluster = {}
    old_truth = truth(collection, analysis.ids)
    for blob in range(BLOBS):
        members = [analysis.labels[i] for i, t in enumerate(old_truth) if t == blob]
        blob_cluster[blob] = max(set(members), key=members.count)
    for id_, blob in zip(new_ids, labels):
        assert placed.labels[placed.position(id_)] == blob_cluster[blob]
    refit = analyze(ws, "blobs", "vecs", refit=True)
    assert refit.placed == 0 and not refit.stale and refit.fitted == len(refit.ids)


@pytest.mark.parametrize("n", [1, 3, 8])
def test_tiny_collections_are_handled(ws, n):
    collection = ws.store.collection("tiny", SpaceInfo("vecs", "synthetic", "", 8))
    vectors = normalize(np.random.default_rng(n).standard_normal((n, 8)))
    add(collection, "t", vectors, [0] * n)
    analysis = analyze(ws, "tiny", "vecs")
    assert analysis.xy.shape == (n, 2) and np.isfinite(analysis.xy).all()
    assert len(analysis.labels) == n and (analysis.labels == -1).all()


def test_empty_and_missing_collections(ws):
    ws.store.collection("empty", SpaceInfo("vecs", "synthetic", "", 8))
    with pytest.raises(MMError, match="no items"):
        analyze(ws, "empty", "vecs")
    with pytest.raises(NotFound):
        analyze(ws, "nope", "vecs")


def test_parameters_are_validated():
    with pytest.raises(MMError, match="neighbours"):
        Umap(n_neighbors=1)
    with pytest.raises(MMError, match="min_dist"):
        Umap(min_dist=1.5)
    with pytest.raises(MMError, match="min_cluster_size"):
        Hdbscan(min_cluster_size=1)


SAMPLE = 120


@pytest.fixture(scope="module")
def sampled(planted):
    """The planted collection mapped from a 120-item sample, the other items placed on it."""
    ws, collection, _, _, _, outlier_ids = planted
    analysis = analyze(ws, "blobs", "vecs", sampling=Sampling(SAMPLE), refit=True)
    return ws, collection, analysis, outlier_ids


def test_a_sample_fit_still_recovers_the_blobs_and_the_outliers(sampled):
    _, collection, analysis, outlier_ids = sampled
    fitted = {analysis.ids[i] for i in Sampling(SAMPLE).pick(len(analysis.ids), analysis.umap.seed)}
    assert len(set(outlier_ids) - fitted) >= 2, "some planted outliers should be placed, not fitted"
    inliers = [i for i, id_ in enumerate(analysis.ids) if id_ not in outlier_ids]
    true = truth(collection, [analysis.ids[i] for i in inliers])
    assert adjusted_rand_score(true, analysis.labels[inliers]) > 0.9
    placed = [i for i in inliers if analysis.ids[i] not in fitted]
    assert adjusted_rand_score([true[inliers.index(i)] for i in placed], analysis.labels[placed]) > 0.9
    assert np.isfinite(analysis.xy).all() and analysis.xy.shape == (len(analysis.ids), 2)
    scores = dict(zip(analysis.ids, analysis.outlier_scores))
    top = sorted(scores, key=scores.get, reverse=True)[: 2 * len(outlier_ids)]
    assert len(set(top) & set(outlier_ids)) >= len(outlier_ids) - 1
    inlier_median = np.median([s for id_, s in scores.items() if id_ not in outlier_ids])
    assert all(scores[o] > inlier_median for o in outlier_ids)


def test_a_sample_fit_is_recorded_and_cached_apart(sampled):
    ws, _, analysis, _ = sampled
    assert analysis.sample == SAMPLE and analysis.sampling == Sampling(SAMPLE)
    assert analysis.fitted == len(analysis.ids) and not analysis.stale
    assert f"{SAMPLE:,}" in analysis.method
    again = analyze(ws, "blobs", "vecs", sampling=Sampling(SAMPLE))
    assert again.from_cache and again.sample == SAMPLE
    np.testing.assert_array_equal(again.labels, analysis.labels)
    exact = analyze(ws, "blobs", "vecs")
    assert exact.sample == 0 and exact.method == "fitted on every item"


def test_sampling_is_validated():
    with pytest.raises(MMError, match="sample"):
        Sampling(10)
    assert Sampling(100).pick(100, 0) is None
    picked = Sampling(100).pick(1000, 0)
    assert len(picked) == 100 and (np.diff(picked) > 0).all()
    np.testing.assert_array_equal(picked, Sampling(100).pick(1000, 0))
