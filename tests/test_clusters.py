"""The clustering's defaults on planted structure, the judgement of a coarse clustering and its finer
alternative, per-cluster stability, the bound on cached parameter sets, and read-only analyses."""

from __future__ import annotations

import numpy as np
import pytest

from mmcore.analysis.clusters import (COARSE_FROM_ITEMS, DEFAULT_MIN_SAMPLES, NOISE, Hdbscan, coarse, default_min_cluster_size,
                                      find_clusters, stability, stability_words)
from mmcore.analysis.maps import KEPT_PARAMETER_SETS, AnalysisCache, NotAnalysed, analyze, latest_parameters
from mmcore.analysis.projection import Umap
from mmcore.errors import MMError
from mmcore.spaces import SpaceInfo, normalize


def planted_blobs(seed: int, sizes: list[int], dim: int, spread: float = 0.05, scattered: int = 0):
    """Blobs of the given sizes on the unit sphere (spread per coordinate), plus `scattered` random directions."""
    rng = np.random.default_rng(seed)
    centers = normalize(rng.standard_normal((len(sizes), dim)))
    labels = np.repeat(np.arange(len(sizes)), sizes)
    points = centers[labels] + spread * rng.standard_normal((len(labels), dim))
    if scattered:
        points = np.concatenate([points, rng.standard_normal((scattered, dim))])
        labels = np.concatenate([labels, np.full(scattered, -1)])
    return normalize(points).astype(np.float32), labels


def collection_of(ws, name: str, vectors: np.ndarray, start: int = 0):
    target = ws.store.collection(name, SpaceInfo("vecs", "synthetic", "", vectors.shape[1]))
    ids = [f"i{start + i:05d}" for i in range(len(vectors))]
    for s in range(0, len(ids), 2000):
        target.add(ids[s : s + 2000], vectors[s : s + 2000], [{"modality": "vector"}] * len(ids[s : s + 2000]),
                   [None] * len(ids[s : s + 2000]))
    return target


def test_the_defaults_find_about_as_many_clusters_as_there_are_sizeable_blobs(ws):
    """Ten blobs of 40 to 400 items in 64 dimensions and 3% scattered points: about ten clusters, each of one blob,
    and most items clustered."""
    sizes = [400, 350, 300, 250, 200, 160, 120, 90, 60, 40]
    vectors, truth = planted_blobs(3, sizes, 64, scattered=60)
    collection_of(ws, "ten", vectors)
    analysis = analyze(ws, "ten", "vecs")
    labels = analysis.labels
    assert len(sizes) <= len(analysis.cluster_ids) <= 2 * len(sizes)
    for c in analysis.cluster_ids:  # every cluster is one blob's (UMAP glues some scattered points to clusters)
        members = truth[(labels == c) & (truth >= 0)]
        assert np.bincount(members).max() >= 0.95 * len(members)
    covered = {int(np.bincount(truth[(labels == c) & (truth >= 0)]).argmax()) for c in analysis.cluster_ids}
    assert covered == set(range(len(sizes))), "a blob was left without a cluster"
    assert (labels[truth >= 0] != NOISE).mean() >= 0.9
    assert analysis.coarse is None
    assert analysis.hdbscan == Hdbscan(default_min_cluster_size(len(vectors)), DEFAULT_MIN_SAMPLES, "eom")


def test_min_samples_is_decoupled_from_the_cluster_size_and_scales_with_a_sample():
    resolved = Hdbscan().resolved(50_000)
    assert resolved.min_cluster_size == default_min_cluster_size(50_000) > DEFAULT_MIN_SAMPLES
    assert resolved.min_samples == DEFAULT_MIN_SAMPLES and resolved.selection == "eom"
    assert Hdbscan(3).resolved(50_000).min_samples == 3  # never above the cluster size
    half = Hdbscan(40, 12, "eom").scaled(0.5)
    assert (half.min_cluster_size, half.min_samples, half.selection) == (20, 6, "eom")
    assert Hdbscan(40, 1).scaled(0.1).min_samples == 1
    with pytest.raises(MMError, match="cluster selection"):
        Hdbscan(selection="biggest")


def test_a_coarse_clustering_is_named_and_small_collections_are_not_judged():
    n = COARSE_FROM_ITEMS
    assert coarse(np.repeat([0, 1], n // 2)) == f"only 2 clusters for {n:,} items"
    assert coarse(np.full(n, NOISE)) == f"only 0 clusters for {n:,} items"
    assert coarse(np.concatenate([np.zeros(700, int), np.repeat([1, 2, 3], 100)])) == f"one cluster holds 70% of the {n:,} items"
    assert coarse(np.repeat(np.arange(5), n // 5)) is None
    assert coarse(np.repeat([0, 1], (n - 2) // 2)) is None  # too few items to say


def test_the_finer_alternative_is_leaf_selection_then_half_the_cluster_size():
    broad = Hdbscan()
    assert broad.finer(broad.resolved(8000)) == Hdbscan(None, None, "leaf")  # still sized from the collection
    leaf = Hdbscan(selection="leaf")
    assert leaf.finer(leaf.resolved(8000)) == Hdbscan(default_min_cluster_size(8000) // 2, None, "leaf")
    small = Hdbscan(3, selection="leaf")
    assert small.finer(small.resolved(100)).min_cluster_size == 2  # never under the smallest size


def groups_of_blobs(seed: int, groups: int, per_group: int, separation: float, size: int = 200):
    """Points in 10 dimensions: `groups` far apart, each of `per_group` blobs `separation` apart (std 0.5)."""
    rng = np.random.default_rng(seed)
    centers = []
    for g in range(groups):
        for k in range(per_group):
            center = np.zeros(10)
            center[g], center[groups + k] = 30.0, separation * (per_group > 1)
            centers.append(center)
    truth = np.repeat(np.arange(len(centers)), size)
    return (np.array(centers)[truth] + 0.5 * rng.standard_normal((len(truth), 10))).astype(np.float32), truth


def test_excess_of_mass_looks_inside_a_too_big_cluster_only_when_it_holds_sub_groups(monkeypatch):
    from mmcore.analysis import clusters

    nested, truth = groups_of_blobs(0, 2, 3, separation=3.0)  # two groups of three blobs: 1,200 points
    params = Hdbscan().resolved(len(nested))
    _, found = find_clusters(nested, params)
    assert len(set(found.labels.tolist()) - {NOISE}) == 6 and (found.labels >= 0).mean() >= 0.9
    for c in set(found.labels.tolist()) - {NOISE}:
        assert len(set(truth[found.labels == c].tolist())) == 1
    monkeypatch.setattr(clusters, "MAX_CLUSTER_SHARE", 1.01)  # without the second look: the two groups, half each
    _, lumped = find_clusters(nested, params)
    assert len(set(lumped.labels.tolist()) - {NOISE}) == 2 and coarse(lumped.labels) is not None
    monkeypatch.undo()
    plain, _ = groups_of_blobs(1, 2, 1, separation=0.0, size=600)  # two plain blobs: nothing inside to find
    _, two = find_clusters(plain, Hdbscan().resolved(len(plain)))
    assert len(set(two.labels.tolist()) - {NOISE}) == 2 and (two.labels >= 0).mean() >= 0.95


def test_stability_is_high_for_planted_clusters_and_low_for_an_arbitrary_cut():
    rng = np.random.default_rng(0)
    coords = np.concatenate([c + 0.3 * rng.standard_normal((150, 10)) for c in np.eye(10)[:3] * 8]).astype(np.float32)
    params = Hdbscan(20, 5, "eom")
    _, found = find_clusters(coords, params)
    assert len(set(found.labels.tolist()) - {NOISE}) == 3
    planted = stability(coords, found.labels, params)
    assert planted.shape == (3,) and (planted >= 0.9).all() and stability_words(float(planted.min())) == "stable"
    cut = found.labels.copy()  # one blob cut in two halves at random: a cluster no refit reproduces
    blob = np.flatnonzero(cut == 0)
    cut[rng.choice(blob, len(blob) // 2, replace=False)] = 3
    figures = stability(coords, cut, params)
    assert figures[0] <= 0.6 and figures[3] <= 0.6 and (figures[1:3] >= 0.9).all()
    assert stability_words(0.4) == "unstable" and stability_words(0.6) == "fairly stable"
    assert stability(coords, np.full(len(coords), NOISE), params).shape == (0,)


def test_stability_is_cached_with_the_analysis_and_in_its_table(ws):
    from mmcore.analysis.frame import analysis_frame

    vectors, _ = planted_blobs(4, [120, 100, 80], 16)
    target = collection_of(ws, "stab", vectors)
    first = analyze(ws, "stab", "vecs")
    assert len(first.stability) == len(first.cluster_ids) and np.isfinite(first.stability).all()
    again = analyze(ws, "stab", "vecs")
    assert again.from_cache
    np.testing.assert_array_equal(again.stability, first.stability)
    frame = analysis_frame(target, again)
    for c in again.cluster_ids:
        assert (frame.loc[frame["cluster"] == c, "cluster_stability"] == first.stability[c]).all()
    assert frame.loc[frame["cluster"] == NOISE, "cluster_stability"].isna().all()
    merged = np.where(again.labels == 1, 0, again.labels)  # a taxonomy's merge: the merged cluster has no figure
    assert 0 not in again.stabilities(merged) and 2 in again.stabilities(merged)


def test_cached_parameter_sets_are_bounded_and_the_least_recently_used_go(ws):
    vectors, _ = planted_blobs(5, [40, 40], 8)
    collection_of(ws, "bounded", vectors)
    sizes = list(range(5, 5 + KEPT_PARAMETER_SETS + 2))
    for size in sizes:
        analyze(ws, "bounded", "vecs", hdbscan=Hdbscan(size))
        analyze(ws, "bounded", "vecs", hdbscan=Hdbscan(sizes[0]))  # the first set stays in use
    cache = AnalysisCache(ws.settings.data_dir / "cache", "bounded", "vecs", Umap(), Hdbscan())
    kept = list(cache.parameter_sets())
    assert len(kept) == KEPT_PARAMETER_SETS
    assert [h.min_cluster_size for _, h, _ in kept[:2]] == [sizes[0], sizes[-1]]
    assert Hdbscan(sizes[1]) not in [h for _, h, _ in kept]
    keys = {p.name.split("-")[1].split(".")[0] for p in cache.dir.iterdir()}
    assert len(keys) == KEPT_PARAMETER_SETS, "files of a dropped parameter set were left behind"
    assert latest_parameters(ws, "bounded", "vecs") == (Umap(), Hdbscan(sizes[0]))


def test_a_reader_gets_cached_analyses_and_placements_but_never_starts_a_fit(ws):
    vectors, _ = planted_blobs(6, [60, 60], 8)
    collection_of(ws, "readonly", vectors[:100])
    with pytest.raises(NotAnalysed, match="editor"):
        analyze(ws, "readonly", "vecs", may_fit=False)
    made = analyze(ws, "readonly", "vecs")
    assert analyze(ws, "readonly", "vecs", may_fit=False).from_cache
    assert analyze(ws, "readonly", "vecs", refit=True, may_fit=False).from_cache  # a refit is refused quietly
    collection_of(ws, "readonly", vectors[100:], start=100)
    placed = analyze(ws, "readonly", "vecs", may_fit=False)  # placing new items on the cached fit is allowed
    assert placed.placed == 20 and placed.fit_key == made.fit_key
    with pytest.raises(NotAnalysed):
        analyze(ws, "readonly", "vecs", hdbscan=Hdbscan(7), may_fit=False)
    assert latest_parameters(ws, "readonly", "vecs") == (Umap(), Hdbscan())
    assert latest_parameters(ws, "nothing", "vecs") is None
