"""UMAP of a collection's vectors: 2D/3D for display, ~10D for clustering.

Nearest neighbours come from the analysis's one k-NN graph (mmcore.analysis.neighbours), shared by all the fits
and placements, instead of from pynndescent inside UMAP: pynndescent's kernels are compiled anew in every process
(about 40 s before the first map) and every UMAP would search again. `place` is
UMAP.transform from such neighbours: umap-learn 0.5's own steps, without its per-point Python loops.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MMError
from .neighbours import Neighbours, nearest  # noqa: F401 (nearest: the map's callers find neighbours here too)

DEFAULT_NEIGHBORS, MIN_NEIGHBORS, MAX_NEIGHBORS = 15, 2, 200
DEFAULT_MIN_DIST, MIN_MIN_DIST, MAX_MIN_DIST = 0.1, 0.0, 0.99
DEFAULT_SEED = 42
CLUSTER_DIMS = 10
# The clustering's UMAP packs points as tightly as it can (min_dist 0, the umap docs' advice for clustering, as
# BERTopic does): HDBSCAN then sees dense clumps with gaps between them. The display map keeps its own min_dist.
CLUSTER_MIN_DIST = 0.0


@dataclass(frozen=True)
class Umap:
    """UMAP parameters, recorded with every result they make."""

    n_neighbors: int = DEFAULT_NEIGHBORS
    min_dist: float = DEFAULT_MIN_DIST
    seed: int = DEFAULT_SEED

    def __post_init__(self):
        if not MIN_NEIGHBORS <= self.n_neighbors <= MAX_NEIGHBORS:
            raise MMError(f"UMAP neighbours must be between {MIN_NEIGHBORS} and {MAX_NEIGHBORS}, got {self.n_neighbors}")
        if not MIN_MIN_DIST <= self.min_dist <= MAX_MIN_DIST:
            raise MMError(f"UMAP min_dist must be between {MIN_MIN_DIST} and {MAX_MIN_DIST}, got {self.min_dist}")


@dataclass(frozen=True)
class Layout:
    """A fitted UMAP embedding and what `place` needs to put new points on it."""

    coords: np.ndarray  # float32 [fitted points, dims]
    a: float
    b: float
    learning_rate: float
    repulsion_strength: float
    negative_sample_rate: int
    local_connectivity: float
    seed: int


def numba_cache_dir() -> Path:
    """Where numba keeps compiled kernels: the user's cache folder, never the data dir. numba's cache index files
    are pickles, and a data dir may be restored from someone else's backup: loading its kernels would run its code."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mmscope" / "numba"


def use_numba_cache() -> None:
    """Keep numba's compiled UMAP kernels on disk (NUMBA_CACHE_DIR, else `numba_cache_dir()`), so a new process
    doesn't compile them again.

    Only effective before numba is first imported in the process.
    """
    os.environ.setdefault("NUMBA_CACHE_DIR", str(numba_cache_dir()))


@functools.cache
def _cache_umap_kernels() -> None:
    """Keep on disk the numba kernels umap-learn compiles without `cache=True`: 8 s of compiling in every
    new process otherwise (their cache is invalidated when umap's source changes); and let its layout epochs run
    without the GIL (mmcore.analysis.layout_kernel)."""
    from umap import distances, layouts, umap_, utils

    for kernel in (umap_.smooth_knn_dist, umap_.compute_membership_strengths, layouts._nb_optimize_layout_euclidean_single_epoch,
                   utils.tau_rand_int, distances.cosine):
        kernel.enable_caching()
    from . import layout_kernel

    layout_kernel.install()  # the two maps of an analysis are optimised in two threads


def spectral_init(vectors: np.ndarray, neighbours: Neighbours, params: Umap, dims: int) -> np.ndarray | None:
    """The starting coordinates UMAP's "tswspectral" initialisation gives these points in `dims` dimensions (the
    graph's Laplacian eigenvectors, scaled and jittered as UMAP does), or None where UMAP starts at random (50
    points or fewer).

    Found once for every map of the same points and neighbours (the graph doesn't depend on min_dist): the first
    two columns start the display map, all of them the clustering map. On data in separate groups it is the
    costliest part of a fit (a Laplacian per group): 10-20 s at 20,000 points on a loaded 2-core machine.
    """
    n = len(vectors)
    if n <= 50:
        return None
    from umap.spectral import tswspectral_layout
    from umap.umap_ import fuzzy_simplicial_set, noisy_scale_coords

    _cache_umap_kernels()
    k = min(params.n_neighbors, n - 1)
    random_state = np.random.RandomState(params.seed)
    graph, _, _ = fuzzy_simplicial_set(vectors, k, random_state, "cosine", knn_indices=neighbours.indices[:, :k],
                                       knn_dists=neighbours.distances[:, :k])
    graph = graph.tocoo()
    graph.sum_duplicates()
    epochs = 500 if n <= 10_000 else 200  # UMAP's own pruning of weak edges before its initialisation
    graph.data[graph.data < graph.data.max() / epochs] = 0.0
    graph.eliminate_zeros()
    coords = tswspectral_layout(vectors, graph, min(dims, n - 2), random_state, metric="cosine")
    return noisy_scale_coords(coords, random_state, max_coord=10, noise=0.0001)


def fit_projection(vectors: np.ndarray, params: Umap, dims: int, neighbours: Neighbours | None = None,
                   init: np.ndarray | None = None):
    """Fit UMAP (cosine) to `dims` dimensions; returns (Layout or None, coordinates float32 [n, dims]).

    `neighbours`: the points' own nearest neighbours (`nearest(vectors, vectors, k)`, k at least the UMAP
    neighbours), when already found for another fit. `init`: starting coordinates from `spectral_init` (at least
    `dims` columns: the first ones are used), when already found for another fit; by default UMAP's own
    "tswspectral". Tiny inputs are handled on purpose: fewer than 4 points can't be embedded by UMAP, so they get
    fixed coordinates and no layout (new points can't be placed on such a map; it is refitted instead).
    """
    n = len(vectors)
    if n < 4:
        coords = np.zeros((n, dims), dtype=np.float32)
        coords[:, 0] = np.arange(n, dtype=np.float32)
        return None, coords
    import warnings

    import umap

    _cache_umap_kernels()
    k = min(params.n_neighbors, n - 1)
    neighbours = neighbours or nearest(vectors, vectors, k)
    components = min(dims, n - 2)
    if init is not None and n > 50:
        start = np.ascontiguousarray(init[:, :components], dtype=np.float32)
    else:
        start = "tswspectral" if n > 50 else "random"  # tswspectral: the same eigenvectors as "spectral", 3-5x faster
    reducer = umap.UMAP(
        n_neighbors=k,
        min_dist=params.min_dist,
        n_components=components,
        metric="cosine",
        random_state=params.seed,
        init=start,
        precomputed_knn=(neighbours.indices[:, :k], neighbours.distances[:, :k]),
    )
    # UserWarnings: "n_jobs overridden by random_state" (reproducible maps are worth it) and "no search index,
    # transform unavailable" (`place` does without)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        coords = reducer.fit_transform(vectors).astype(np.float32)
    layout = Layout(coords, float(reducer._a), float(reducer._b), float(reducer.learning_rate), float(reducer.repulsion_strength),
                    int(reducer.negative_sample_rate), float(reducer.local_connectivity), params.seed)
    return layout, _pad(coords, dims)


def place(layout: Layout, neighbours: Neighbours, dims: int) -> np.ndarray:
    """New points on an existing map, without refitting: UMAP.transform given their nearest fitted points.

    Each starts at the weighted mean of its neighbours' coordinates (at the very spot of an identical fitted
    point) and is then pulled by its neighbours and pushed by random others; the fitted points stay put.
    """
    import scipy.sparse
    from sklearn.utils import check_random_state
    from umap.layouts import optimize_layout_euclidean
    from umap.umap_ import INT32_MAX, INT32_MIN, compute_membership_strengths, make_epochs_per_sample, smooth_knn_dist

    m, k = neighbours.indices.shape
    if m == 0:
        return np.zeros((0, dims), dtype=np.float32)
    _cache_umap_kernels()
    indices = np.ascontiguousarray(neighbours.indices)
    distances = np.ascontiguousarray(neighbours.distances, dtype=np.float32)
    sigmas, rhos = smooth_knn_dist(distances, float(k), local_connectivity=max(0.0, layout.local_connectivity - 1.0))
    rows, cols, vals, _ = compute_membership_strengths(indices, distances, sigmas, rhos, bipartite=True)
    weights = vals.reshape(m, k)
    totals = weights.sum(axis=1, keepdims=True)
    init = np.einsum("mk,mkd->md", weights / np.where(totals > 0, totals, 1), layout.coords[indices])
    same = distances[:, 0] == 0
    init[same] = layout.coords[indices[same, 0]]
    init = init.astype(np.float32)

    n_epochs = 100 if m <= 10_000 else 30  # UMAP.transform's own choice
    graph = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(m, len(layout.coords)))
    graph.data[graph.data < graph.data.max() / n_epochs] = 0.0
    graph.eliminate_zeros()
    rng_state = check_random_state(layout.seed).randint(INT32_MIN, INT32_MAX, 3).astype(np.int64)
    coords = optimize_layout_euclidean(
        init, layout.coords.astype(np.float32, copy=True), graph.row, graph.col, n_epochs, len(layout.coords),
        make_epochs_per_sample(graph.data, n_epochs), layout.a, layout.b, rng_state, layout.repulsion_strength,
        layout.learning_rate / 4.0, layout.negative_sample_rate, False,
    )
    return _pad(coords.astype(np.float32), dims)


def _pad(coords: np.ndarray, dims: int) -> np.ndarray:
    """Too few points for that many dimensions: pad with zeros, nothing to see there anyway."""
    return np.pad(coords, ((0, 0), (0, dims - coords.shape[1]))) if coords.shape[1] < dims else coords
