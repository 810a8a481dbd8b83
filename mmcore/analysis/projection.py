"""UMAP of a collection's vectors: 2D/3D for display, ~10D for clustering."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import MMError

DEFAULT_NEIGHBORS, MIN_NEIGHBORS, MAX_NEIGHBORS = 15, 2, 200
DEFAULT_MIN_DIST, MIN_MIN_DIST, MAX_MIN_DIST = 0.1, 0.0, 0.99
DEFAULT_SEED = 42
CLUSTER_DIMS = 10


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


def use_numba_cache(cache_dir) -> None:
    """Keep numba's compiled UMAP kernels on disk, so a new process doesn't pay ~40 s of JIT again.

    Only effective before numba is first imported in the process.
    """
    os.environ.setdefault("NUMBA_CACHE_DIR", str(cache_dir))


def fit_projection(vectors: np.ndarray, params: Umap, dims: int):
    """Fit UMAP (cosine) to `dims` dimensions; returns (reducer or None, coordinates float32 [n, dims]).

    Tiny inputs are handled on purpose: fewer than 4 points can't be embedded by UMAP, so they get
    fixed coordinates and no reducer (new points can't be placed on such a map; it is refitted instead).
    """
    n = len(vectors)
    if n < 4:
        coords = np.zeros((n, dims), dtype=np.float32)
        coords[:, 0] = np.arange(n, dtype=np.float32)
        return None, coords
    import warnings

    import umap

    reducer = umap.UMAP(
        n_neighbors=min(params.n_neighbors, n - 1),
        min_dist=params.min_dist,
        n_components=min(dims, n - 2),
        metric="cosine",
        random_state=params.seed,
        init="spectral" if n > 50 else "random",
        low_memory=True,
    )
    with warnings.catch_warnings():  # "n_jobs overridden by random_state": reproducible maps are worth it
        warnings.simplefilter("ignore", UserWarning)
        coords = reducer.fit_transform(vectors).astype(np.float32)
    if coords.shape[1] < dims:  # too few points for that many dimensions: pad, nothing to see there anyway
        coords = np.pad(coords, ((0, 0), (0, dims - coords.shape[1])))
    return reducer, coords


def place(reducer, vectors: np.ndarray, dims: int) -> np.ndarray:
    """New points on an existing map, without refitting."""
    coords = reducer.transform(vectors).astype(np.float32)
    if coords.shape[1] < dims:
        coords = np.pad(coords, ((0, 0), (0, dims - coords.shape[1])))
    return coords
