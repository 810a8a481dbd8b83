"""Maps, clusters and outliers on synthetic data with known structure, through a real Chroma store."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from mmcore.analysis import maps
from mmcore.analysis.clusters import Hdbscan, default_min_cluster_size
from mmcore.analysis.maps import AnalysisCache, Sampling, analyze, map_3d
from mmcore.analysis.projection import Umap
from mmcore.errors import MMError, NotFound
from mmcore.spaces import SpaceInfo, normalize
from mmcore.vector_cache import Vectors, read_vectors, vector_cache_dir

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


# The cache: plain arrays and JSON, never a pickle (a data dir may come from someone else's backup).


def test_the_cache_round_trips_every_field(planted):
    ws, _, _, _, _, _ = planted
    first = analyze(ws, "blobs", "vecs", hdbscan=Hdbscan(min_cluster_size=9))
    again = analyze(ws, "blobs", "vecs", hdbscan=Hdbscan(min_cluster_size=9))
    assert again.from_cache and not first.from_cache
    for name in ("collection", "space", "version", "umap", "hdbscan", "requested", "sampling", "ids", "fitted", "placed",
                 "fit_key", "sample", "seconds"):
        assert getattr(again, name) == getattr(first, name), name
    for name in ("xy", "labels", "probabilities", "outlier_scores"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
        assert getattr(again, name).dtype == getattr(first, name).dtype, name
    files = sorted(AnalysisCache.of(ws, first).dir.iterdir())
    assert files and all(f.suffix == ".npz" for f in files), files
    for f in files:
        with np.load(f, allow_pickle=False) as npz:  # every member loads without pickle
            assert all(npz[name] is not None for name in npz.files)


def test_a_fit_read_back_from_the_cache_places_new_items_as_the_fitted_one(planted):
    ws, collection, _, _, _, _ = planted
    items = read_vectors(ws.store.open("blobs", "vecs"), vector_cache_dir(ws.settings.data_dir))
    sampling = Sampling(SAMPLE)
    fit = maps._fit(items, Umap(), Hdbscan().resolved(len(items)), sampling, lambda _: None, {})
    cache = AnalysisCache(ws.settings.data_dir / "cache", "roundtrip", "vecs", Umap(), Hdbscan(), sampling)
    cache.save_fit(fit)
    restored = cache.load_fit()
    assert restored is not None and restored["ids"] == fit["ids"] and restored["key"] == fit["key"]
    grown = Vectors([*items.ids, "new1", "new2"], np.concatenate([items.vectors, items.vectors[:2] + 0.01]))
    fresh, again = maps._place_new(fit, grown, lambda _: None, {}), maps._place_new(restored, grown, lambda _: None, {})
    assert fresh.placed == again.placed == 2
    for name in ("xy", "labels", "probabilities", "outlier_scores"):
        np.testing.assert_array_equal(getattr(again, name), getattr(fresh, name))


class _CreatesMarker:
    """Unpickling this runs `Path(marker).touch()`: what a planted cache file could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("plant", ["pickle", "object-array npz", "old pickle cache", "garbage"])
def test_a_planted_cache_file_is_never_unpickled_and_the_analysis_is_recomputed(ws, tmp_path, plant):
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_CreatesMarker(probe)))
    assert probe.exists(), "the payload is real: unpickling it runs code"

    rng = np.random.default_rng(3)
    collection = ws.store.collection("planted", SpaceInfo("vecs", "synthetic", "", 8))
    points, labels = blobs(rng, 20, normalize(rng.standard_normal((3, 8))))
    add(collection, "p", points, labels)
    version = ws.store.open("planted", "vecs").version
    cache = AnalysisCache(ws.settings.data_dir / "cache", "planted", "vecs", Umap(), Hdbscan())
    cache.dir.mkdir(parents=True)
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_CreatesMarker(marker))
    paths = [cache.dir / f"result-{cache.key}-{version}.npz", cache.dir / f"fit-{cache.key}.npz"]
    if plant == "old pickle cache":
        paths = [p.with_suffix(".pkl") for p in paths]
    for path in paths:
        if plant == "object-array npz":
            np.savez(path, __meta__=np.array('{"format": 1}'), xy=np.array([_CreatesMarker(marker)], dtype=object))
        else:
            path.write_bytes(payload if plant != "garbage" else b"PK\x03\x04 torn")

    analysis = analyze(ws, "planted", "vecs")
    assert not analysis.from_cache and analysis.xy.shape == (60, 2) and len(analysis.cluster_ids) >= 2
    assert not marker.exists(), "a planted cache file was unpickled"
    assert analyze(ws, "planted", "vecs").from_cache, "the recomputed result replaced the planted file"
    assert not list(cache.dir.glob("*.pkl"))

    xyz_path = cache.dir / f"xyz-{cache.key}-{version}.npz"
    xyz_path.write_bytes(payload)
    assert map_3d(ws, analysis).shape == (60, 3)
    assert not marker.exists(), "a planted 3D map was unpickled"


def test_numba_kernels_are_not_kept_in_the_data_dir(monkeypatch, tmp_path):
    """numba's cache files are pickles: a data dir from someone else's backup must not bring any."""
    from mmcore.analysis.projection import numba_cache_dir, use_numba_cache

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    use_numba_cache()
    assert os.environ["NUMBA_CACHE_DIR"] == str(numba_cache_dir()) == str(tmp_path / "user-cache" / "mmscope" / "numba")


def test_big_clusters_are_named_from_a_sample_of_their_items(ws):
    """Clusters larger than NAMED_SAMPLE are named from a sample of their items' words (text) and labels (other
    vectors), not by reading every item: the names still say what the clusters hold."""
    from mmcore.analysis.naming import NAMED_SAMPLE, cluster_names

    rng = np.random.default_rng(11)
    centers = normalize(rng.standard_normal((3, DIM)))
    n = NAMED_SAMPLE + 100
    points, labels = blobs(rng, n, centers, spread=0.05)
    words = {0: "harbour boats gulls", 1: "mountain snow skiers"}
    collection = ws.store.collection("named", SpaceInfo("vecs", "synthetic", "", DIM))
    ids = [f"n{i:05d}" for i in range(len(points))]
    metas = [{"modality": "text"} if t < 2 else {"modality": "vector", "label": "violin"} for t in labels]
    documents = [f"{words[t]} and item {i}" if t < 2 else None for i, t in enumerate(labels)]
    collection.add(ids, points, metas, documents)
    analysis = analyze(ws, "named", "vecs")
    names = cluster_names(ws, analysis)
    by_blob = {}
    for label, t in zip(analysis.labels, [labels[ids.index(i)] for i in analysis.ids]):
        if label >= 0:
            by_blob.setdefault(int(t), set()).add(names[int(label)])
    assert all("harbour" in name or "boats" in name or "gulls" in name for name in by_blob[0]), by_blob
    assert all("mountain" in name or "snow" in name or "skiers" in name for name in by_blob[1]), by_blob
    assert all(name.startswith("label violin") for name in by_blob[2]), by_blob


def test_a_fit_hands_out_its_map_first_and_caches_each_stage_until_it_is_complete(ws):
    """on_stage gets the 2D map before anything else (every item noise, no scores yet), then the rest, in the
    caller's thread; each partial is cached for other sessions while the fit runs and removed once it is done."""
    import threading

    rng = np.random.default_rng(5)
    centers = normalize(rng.standard_normal((3, DIM)))
    points, labels = blobs(rng, 80, centers)
    collection = ws.store.collection("staged", SpaceInfo("vecs", "synthetic", "", DIM))
    add(collection, "s", points, labels)
    seen, cached = [], []
    cache = AnalysisCache(ws.settings.data_dir / "cache", "staged", "vecs", Umap(), Hdbscan())

    def on_stage(partial):
        seen.append((partial.done, threading.current_thread() is threading.main_thread(), partial))
        cached.append(cache.load_partial(collection.version))

    analysis = analyze(ws, "staged", "vecs", on_stage=on_stage)
    assert [done for done, _, _ in seen][0] == ("map",) and all(in_caller for _, in_caller, _ in seen)
    first = seen[0][2]
    assert not first.complete and (first.labels == -1).all() and not first.outlier_scores.any()
    np.testing.assert_array_equal(first.xy, analysis.xy)  # the map drawn first is the final one
    assert "clusters" in seen[-1][0] and analysis.complete and analysis.done == maps.STAGES
    assert all(c is not None and c.done == done for c, (done, _, _) in zip(cached, seen))
    assert cache.load_partial(collection.version) is None, "a complete analysis leaves no partial behind"
    assert cache.load_result(collection.version) is not None
