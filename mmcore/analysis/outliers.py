"""GLOSH outlier scores (Campello et al. 2015, HDBSCAN's own) on the raw vectors, from the analysis's k-NN graph.

HDBSCAN's hierarchy is the minimum spanning tree of the mutual reachability distances, max(core(a), core(b), d(a, b)),
where core(a) is the distance to a's m-th nearest neighbour. Every edge with d(a, b) <= max(core(a), core(b)) joins
points within each other's m nearest, so the k-NN graph (k > m) holds all of them; the only tree edges it can miss
are longer than both core distances, which is where it falls apart into components, and those are found exactly:
each component's nearest point in another one (Boruvka's step, a blocked pass over the fitted points). So the tree,
and with it the scores, are HDBSCAN's on the raw cosine distances, computed from neighbours the map already needed.

Not on the UMAP reduction: UMAP glues every point to its nearest neighbours, so an isolated item lands inside some
cluster there and its score says nothing (on planted outliers, 2 of 6 ranked in the top 12 on UMAP-10D).
Points outside the fit are scored as hdbscan's approximate_predict_scores does: from their nearest fitted point by
mutual reachability, against the densest point of that point's cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .neighbours import Neighbours, _unit, fast_bf16

CONDENSED_TREE = np.dtype([("parent", np.intp), ("child", np.intp), ("lambda_val", np.float64), ("child_size", np.intp)])
BLOCK_FLOATS = 32_000_000  # similarities held at once while joining components
JOIN_CANDIDATES = 4  # per point, from the bfloat16 pass, scored again in float32


@dataclass
class OutlierModel:
    """What scores new points without refitting: the fitted points' core distances and, per fitted point, the
    lambda at which it left its cluster's tree and the highest lambda of that cluster (its densest point)."""

    min_samples: int
    core: np.ndarray  # float64 [fitted]
    point_lambda: np.ndarray  # float64 [fitted]
    cluster_max_lambda: np.ndarray  # float64 [fitted]: of the cluster each point hangs from


def fit_outliers(vectors: np.ndarray, own: Neighbours, min_samples: int, min_cluster_size: int):
    """GLOSH scores in [0, 1] of `vectors` (their own neighbours `own`, self included, at least min_samples + 1 of
    them): returns (OutlierModel or None, scores float32). Too few points for a tree: no model, all zeros."""
    n = len(vectors)
    m = min(min_samples, own.k - 1)
    if n < max(min_cluster_size, 3) or m < 1:
        return None, np.zeros(n, dtype=np.float32)
    from hdbscan._hdbscan_linkage import label
    from hdbscan._hdbscan_tree import condense_tree

    core = own.distances[:, m].astype(np.float64)
    tree = _spanning_tree(vectors, own.indices[:, 1 : m + 1], core)
    condensed = condense_tree(label(tree), min_cluster_size)
    point_lambda, max_lambda = _lambdas(condensed, n)
    model = OutlierModel(m, core, point_lambda, max_lambda)
    return model, _glosh(point_lambda, max_lambda)


def score_outliers(model: OutlierModel | None, near: Neighbours) -> np.ndarray:
    """GLOSH scores of new points from their nearest fitted points `near` (0 without a model), without refitting:
    the fitted point nearest by mutual reachability decides their cluster, the distance their lambda."""
    if model is None or len(near.indices) == 0:
        return np.zeros(len(near.indices), dtype=np.float32)
    m = min(model.min_samples, near.k)
    core = near.distances[:, m - 1].astype(np.float64)  # the m-th nearest fitted point
    reach = np.maximum(np.maximum(model.core[near.indices], core[:, None]), near.distances)
    best = reach.argmin(axis=1)
    rows = np.arange(len(best))
    neighbour = near.indices[rows, best]
    with np.errstate(divide="ignore"):
        lam = 1.0 / reach[rows, best]
    same = near.distances[rows, best] == 0  # a copy of a fitted point scores as it
    lam[same] = model.point_lambda[neighbour[same]]
    return _glosh(lam, model.cluster_max_lambda[neighbour])


def _glosh(point_lambda: np.ndarray, max_lambda: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = (max_lambda - point_lambda) / max_lambda
    scores[~np.isfinite(point_lambda) | ~np.isfinite(max_lambda) | (max_lambda <= 0)] = 0.0
    return np.nan_to_num(scores.astype(np.float32), nan=0.0).clip(0, 1)


def _lambdas(condensed: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per point: the lambda at which it left the tree, and the highest lambda reached below the cluster it left
    (hdbscan's outlier_scores, which gives only their ratio)."""
    parent, child, lam = condensed["parent"], condensed["child"], condensed["lambda_val"]
    size = max(int(child.max()), int(parent.max())) + 1
    deaths = np.zeros(size)
    np.maximum.at(deaths, parent, lam)
    for row in range(len(condensed) - 1, -1, -1):  # children come after their parents: pass the maxima upwards
        if deaths[child[row]] > deaths[parent[row]]:
            deaths[parent[row]] = deaths[child[row]]
    point_lambda, max_lambda = np.zeros(n), np.zeros(n)
    points = child < n
    point_lambda[child[points]] = lam[points]
    max_lambda[child[points]] = deaths[parent[points]]
    return point_lambda, max_lambda


def _spanning_tree(vectors: np.ndarray, near: np.ndarray, core: np.ndarray) -> np.ndarray:
    """The minimum spanning tree of the mutual reachability distances, as rows (a, b, distance) sorted by distance."""
    import scipy.sparse
    from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

    n = len(core)
    rows = np.repeat(np.arange(n), near.shape[1])
    cols = near.ravel().astype(np.int64)
    keep = rows != cols
    rows, cols = rows[keep], cols[keep]
    weights = np.maximum(core[rows], core[cols])  # d(a, b) <= core(a) for b among a's m nearest
    edges = [(rows, cols, weights)]
    while True:
        a, b, w = (np.concatenate(parts) for parts in zip(*edges))
        # scipy drops zero weights (duplicates: core 0): a tiny stand-in, set back to 0 after
        graph = scipy.sparse.coo_matrix((np.maximum(w, _TINY), (a, b)), shape=(n, n)).tocsr()
        forest = minimum_spanning_tree(graph.maximum(graph.T)).tocoo()
        count, component = connected_components(forest, directed=False)
        if count == 1:
            break
        edges.append(_joins(vectors, component, core))
    weights = forest.data.astype(np.float64)
    weights[weights <= _TINY] = 0.0
    order = np.argsort(weights, kind="stable")
    return np.column_stack([forest.row[order], forest.col[order], weights[order]]).astype(np.float64)


_TINY = 1e-300


def _joins(vectors: np.ndarray, component: np.ndarray, core: np.ndarray):
    """Each point's nearest point in another component, as edges weighted by mutual reachability: such a pair is
    farther apart than both core distances, so that is their distance. It holds each component's shortest edge out
    (Boruvka's step), so repeating it until one component is left makes a spanning tree (one pass on most data).
    A bfloat16 pass picks candidates where the CPU is fast at it; the chosen distances are float32's."""
    import torch

    base = torch.from_numpy(_unit(vectors))
    rough = base.bfloat16() if fast_bf16() else base
    labels = torch.from_numpy(component.astype(np.int64))
    block = max(1, BLOCK_FLOATS // len(base))
    best = np.empty(len(base), dtype=np.int64)
    for start in range(0, len(base), block):
        q = base[start : start + block]
        sims = q.to(rough.dtype) @ rough.T
        sims[labels[start : start + block, None] == labels[None, :]] = -torch.inf
        candidates = torch.topk(sims, min(JOIN_CANDIDATES, len(base)), dim=1).indices
        exact = torch.bmm(base[candidates], q.unsqueeze(2)).squeeze(2)
        exact[labels[candidates] == labels[start : start + block, None]] = -torch.inf  # fewer other points than candidates
        best[start : start + block] = candidates.gather(1, exact.argmax(dim=1, keepdim=True)).squeeze(1).numpy()
    unit = base.numpy()
    distance = np.clip(1.0 - np.einsum("ij,ij->i", unit, unit[best]).astype(np.float64), 0.0, 2.0)
    return np.arange(len(base)), best, np.maximum(distance, np.maximum(core, core[best]))
