"""HDBSCAN clusters and membership probabilities (on the ~10D UMAP reduction), and GLOSH outlier scores.

The outlier scores come from a second HDBSCAN on a linear (PCA) projection of the raw vectors, not from the
UMAP one: UMAP's local connectivity glues every point to its nearest neighbours, so an isolated item lands
inside some cluster and its GLOSH score says nothing (on planted outliers, 2 of 6 ranked in the top 12 on
UMAP-10D; 6 of 6 on PCA-16). A linear projection keeps isolated points isolated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import MMError

MIN_CLUSTER_SIZE, MAX_CLUSTER_SIZE = 2, 5000
NOISE = -1
OUTLIER_DIMS = 16


def default_min_cluster_size(n: int) -> int:
    """Grows with the collection (about sqrt(n)/2), so small collections still get clusters and big
    ones don't shatter into hundreds of tiny ones."""
    return int(min(MAX_CLUSTER_SIZE, max(5, round(math.sqrt(max(n, 1)) / 2))))


@dataclass(frozen=True)
class Hdbscan:
    """HDBSCAN parameters; None means "choose from the collection's size"."""

    min_cluster_size: int | None = None
    min_samples: int | None = None

    def __post_init__(self):
        if self.min_cluster_size is not None and not MIN_CLUSTER_SIZE <= self.min_cluster_size <= MAX_CLUSTER_SIZE:
            raise MMError(f"min_cluster_size must be between {MIN_CLUSTER_SIZE} and {MAX_CLUSTER_SIZE}, got {self.min_cluster_size}")
        if self.min_samples is not None and self.min_samples < 1:
            raise MMError(f"min_samples must be at least 1, got {self.min_samples}")

    def resolved(self, n: int) -> "Hdbscan":
        return Hdbscan(self.min_cluster_size or default_min_cluster_size(n), self.min_samples)

    def scaled(self, share: float) -> "Hdbscan":
        """These (resolved) parameters for a random `share` of the items: a cluster of m items keeps about
        m * share of them in the sample, and a point's k-th neighbour becomes about its (k * share)-th."""
        assert self.min_cluster_size is not None, "resolve first"
        samples = self.min_samples and max(1, round(self.min_samples * share))
        return Hdbscan(max(MIN_CLUSTER_SIZE, round(self.min_cluster_size * share)), samples)


@dataclass
class Clusters:
    labels: np.ndarray  # int, NOISE for noise
    probabilities: np.ndarray  # membership strength in [0, 1]
    outlier_scores: np.ndarray  # GLOSH, in [0, 1]; higher = more of an outlier


def find_clusters(coords: np.ndarray, params: Hdbscan):
    """Cluster points (the ~10D UMAP reduction); returns (fitted clusterer or None, Clusters) with outlier
    scores left at 0 for `fit_outliers` to fill.

    With fewer points than min_cluster_size everything is noise: there is nothing to compare against.
    """
    n = len(coords)
    if n < max(params.min_cluster_size, 3):
        return None, Clusters(np.full(n, NOISE), np.zeros(n, dtype=np.float32), np.zeros(n, dtype=np.float32))
    clusterer = _hdbscan(params).fit(coords)
    return clusterer, Clusters(clusterer.labels_.astype(int), clusterer.probabilities_.astype(np.float32), np.zeros(n, dtype=np.float32))


def assign(clusterer, coords: np.ndarray) -> Clusters:
    """Existing clusters for new points, without refitting (approximate_predict); outlier scores are
    left at 0 for `score_outliers` to fill. No clusterer (too few points were fitted): all noise."""
    from hdbscan.prediction import approximate_predict

    n = len(coords)
    if clusterer is None:
        return Clusters(np.full(n, NOISE), np.zeros(n, dtype=np.float32), np.zeros(n, dtype=np.float32))
    labels, strengths = approximate_predict(clusterer, coords)
    return Clusters(np.asarray(labels, dtype=int), np.asarray(strengths, dtype=np.float32), np.zeros(n, dtype=np.float32))


@dataclass
class OutlierModel:
    """What scores new points for outliers without refitting: the PCA projection and the HDBSCAN fitted on it."""

    components: np.ndarray  # [dims, vector dims]
    mean: np.ndarray  # [vector dims]
    clusterer: object  # hdbscan.HDBSCAN with prediction data

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """PCA.transform (sklearn's arithmetic: project, then subtract the projected mean)."""
        x = np.asarray(vectors, dtype=self.components.dtype) @ self.components.T
        x -= self.mean.reshape(1, -1) @ self.components.T
        return x


def fit_outliers(vectors: np.ndarray, params: Hdbscan):
    """GLOSH outlier scores in [0, 1] from HDBSCAN on a PCA projection of the raw vectors.

    Returns (OutlierModel or None, scores); the model places new points with `score_outliers`.
    """
    n = len(vectors)
    if n < max(params.min_cluster_size, 3) or n <= 2:
        return None, np.zeros(n, dtype=np.float32)
    from sklearn.decomposition import PCA

    pca = PCA(n_components=min(OUTLIER_DIMS, n - 1, vectors.shape[1]), random_state=0).fit(vectors)
    model = OutlierModel(pca.components_, pca.mean_, None)
    model.clusterer = _hdbscan(params).fit(model.project(vectors))
    return model, _clean(model.clusterer.outlier_scores_)


def score_outliers(model: OutlierModel | None, vectors: np.ndarray) -> np.ndarray:
    """GLOSH scores of new points on a `fit_outliers` model (0 without one), without refitting."""
    from hdbscan.prediction import approximate_predict_scores

    if model is None:
        return np.zeros(len(vectors), dtype=np.float32)
    return _clean(approximate_predict_scores(model.clusterer, model.project(vectors)))


# A fitted clusterer as plain numbers and arrays (for caches that must not be pickles) and back.
CONDENSED_TREE_FIELDS = ("parent", "child", "lambda_val", "child_size")


def clusterer_state(clusterer) -> tuple[dict, dict[str, np.ndarray]]:
    """(parameters, arrays) from which `restore_clusterer` rebuilds `clusterer` for approximate_predict(_scores)."""
    params = {"min_cluster_size": int(clusterer.min_cluster_size),
              "min_samples": None if clusterer.min_samples is None else int(clusterer.min_samples)}
    return params, {"raw_data": np.asarray(clusterer._raw_data), "condensed_tree": np.asarray(clusterer._condensed_tree),
                    "labels": np.asarray(clusterer.labels_), "probabilities": np.asarray(clusterer.probabilities_)}


def restore_clusterer(params: dict, arrays: dict[str, np.ndarray]):
    """A clusterer that predicts as the one `clusterer_state` was taken from: its prediction data is rebuilt
    from the same data, condensed tree and parameters (a space tree and core distances, deterministic).

    Raises:
        ValueError, KeyError, TypeError, MMError: the state is malformed.
    """
    raw, tree, labels = arrays["raw_data"], arrays["condensed_tree"], arrays["labels"]
    if (raw.ndim != 2 or raw.dtype.kind != "f" or not np.isfinite(raw).all() or tree.dtype.names != CONDENSED_TREE_FIELDS
            or labels.shape != (len(raw),) or labels.dtype.kind != "i"):
        raise ValueError("not the state of a fitted clusterer")
    clusterer = _hdbscan(Hdbscan(params["min_cluster_size"], params["min_samples"]))
    clusterer._raw_data, clusterer._condensed_tree, clusterer._all_finite = raw, tree, True
    clusterer.labels_, clusterer.probabilities_ = labels, arrays["probabilities"]
    clusterer.generate_prediction_data()
    return clusterer


def _hdbscan(params: Hdbscan):
    import hdbscan

    # core_dist_n_jobs=1: its default starts a pool of worker processes, which costs more than the
    # core distances of 20,000 low-dimensional points (1 s) and far more on a loaded machine
    return hdbscan.HDBSCAN(min_cluster_size=params.min_cluster_size, min_samples=params.min_samples,
                           prediction_data=True, core_dist_n_jobs=1)


def _clean(scores) -> np.ndarray:
    return np.nan_to_num(np.asarray(scores, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0).clip(0, 1)
