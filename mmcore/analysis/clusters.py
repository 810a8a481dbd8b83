"""HDBSCAN clusters and membership probabilities (on the ~10D UMAP reduction) and their stability.

Defaults, from principles and checked on real labelled sets (bench/clustering.py, figures in bench/RESULTS.md):
- min_cluster_size grows as sqrt(n)/2: the smallest group worth a cluster (the hdbscan docs' first parameter).
- min_samples is 10 (at most the cluster size), not the cluster size. It is the k of HDBSCAN's core distance, a
  smoothing of the density estimate, and the larger it is the more conservative the clustering: tied to a cluster
  size of 44 (7,600 items), excess of mass kept only the largest branches of the tree (BBC News paragraphs: 8
  clusters, one holding 42% of the items, purity 0.76; an AG News test split: 2 clusters, purity 0.49). BERTopic
  and the hdbscan docs lower it for exactly this; 5-10 is the usual range, and 10 keeps a sample's scaled value
  (`Hdbscan.scaled`, 2 on a fifth) above 1.
- The clustering's UMAP packs points at min_dist 0 (projection.CLUSTER_MIN_DIST), as the umap docs advise for
  clustering and BERTopic does.
- Excess of mass (HDBSCAN's default selection: the most persistent branches) stays the default: it keeps planted
  blobs, digits and categories whole, where leaf selection cuts them into pieces and leaves a quarter to a third
  of the items as noise. One guard for review: from 1,000 items, a selected cluster holding more than a third of
  them is looked inside (HDBSCAN's max_cluster_size), and the inside is kept when it still clusters three quarters
  as many items, i.e. the big cluster had real sub-groups (BBC News leads: 15 clusters with one of 42% and purity
  0.76 become 21 with purity 0.95); two plain blobs stay two.
- When a clustering is still too coarse to review (`coarse`: under 3 clusters from 1,000 items, or one cluster
  holding most items), the finer alternative is leaf selection (`Hdbscan.finer`), then half the cluster size.

Stability (`stability`) is Hennig's clusterboot by subsetting: the clustering is redone on random halves and each
cluster's best Jaccard match is averaged; it costs five fits on half the points (a second or two at 20,000).

The outlier scores (mmcore.analysis.outliers) are GLOSH on the raw vectors, from the analysis's k-NN graph, with
the cluster size as both the core distance's neighbour and the smallest cluster: a smoother density than the
clustering's, as tuned on planted outliers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import MMError

MIN_CLUSTER_SIZE, MAX_CLUSTER_SIZE = 2, 5000
DEFAULT_MIN_SAMPLES = 10
SELECTIONS = ("eom", "leaf")
DEFAULT_SELECTION = "eom"
# From COARSE_FROM_ITEMS fitted points on, when excess of mass selects a cluster holding more than MAX_CLUSTER_SHARE
# of them, it is asked again with that cap (HDBSCAN's max_cluster_size: it looks inside such clusters), and the
# capped clustering is kept when it still clusters KEEP_COVERAGE as many points: the big cluster had real sub-groups.
MAX_CLUSTER_SHARE, KEEP_COVERAGE = 1 / 3, 0.75
NOISE = -1
# A clustering is too coarse to review when, from this many items on, it has fewer than MIN_CLUSTERS clusters or
# one cluster holds more than MAX_SHARE of all items.
COARSE_FROM_ITEMS, MIN_CLUSTERS, MAX_SHARE = 1000, 3, 0.5
RESAMPLES, RESAMPLE_SHARE = 5, 0.5  # stability: refits on random halves of the fitted points
STABLE, DISSOLVED = 0.75, 0.5  # Hennig's readings of a cluster's stability


def default_min_cluster_size(n: int) -> int:
    """Grows with the collection (about sqrt(n)/2, at least 5), so small collections still get clusters and big
    ones don't shatter into hundreds of tiny ones."""
    return int(min(MAX_CLUSTER_SIZE, max(5, round(math.sqrt(max(n, 1)) / 2))))


@dataclass(frozen=True)
class Hdbscan:
    """HDBSCAN parameters; None means "choose from the collection's size". `selection`: how clusters are chosen
    from HDBSCAN's cluster tree: "eom", excess of mass (the most persistent branches), none holding more than
    MAX_CLUSTER_SHARE of the points; or "leaf", the tree's leaves (the smallest dense groups: finer, purer,
    with more items left as noise)."""

    min_cluster_size: int | None = None
    min_samples: int | None = None
    selection: str = DEFAULT_SELECTION

    def __post_init__(self):
        if self.min_cluster_size is not None and not MIN_CLUSTER_SIZE <= self.min_cluster_size <= MAX_CLUSTER_SIZE:
            raise MMError(f"min_cluster_size must be between {MIN_CLUSTER_SIZE} and {MAX_CLUSTER_SIZE}, got {self.min_cluster_size}")
        if self.min_samples is not None and self.min_samples < 1:
            raise MMError(f"min_samples must be at least 1, got {self.min_samples}")
        if self.selection not in SELECTIONS:
            raise MMError(f"cluster selection must be one of {', '.join(SELECTIONS)}, got {self.selection!r}")

    def resolved(self, n: int) -> "Hdbscan":
        """Numbers for a collection of `n` items: min_samples, a smoothing of the density estimate rather than a
        size, stays small (DEFAULT_MIN_SAMPLES) whatever the cluster size."""
        size = self.min_cluster_size or default_min_cluster_size(n)
        return Hdbscan(size, self.min_samples or min(size, DEFAULT_MIN_SAMPLES), self.selection)

    def scaled(self, share: float) -> "Hdbscan":
        """These (resolved) parameters for a random `share` of the items: a cluster of m items keeps about
        m * share of them in the sample, and a point's k-th neighbour becomes about its (k * share)-th."""
        assert self.min_cluster_size is not None and self.min_samples is not None, "resolve first"
        return Hdbscan(max(MIN_CLUSTER_SIZE, round(self.min_cluster_size * share)), max(1, round(self.min_samples * share)),
                       self.selection)

    def finer(self, resolved: "Hdbscan") -> "Hdbscan":
        """The parameters to ask for next when these (as asked; `resolved`: as used) gave a coarse clustering:
        leaf selection after excess of mass; with leaf selection already, half the min cluster size."""
        if self.selection != "leaf":
            return replace(self, selection="leaf")
        return Hdbscan(max(MIN_CLUSTER_SIZE, resolved.min_cluster_size // 2), self.min_samples, "leaf")


def coarse(labels: np.ndarray) -> str | None:
    """Why a clustering is too coarse to review, or None: from COARSE_FROM_ITEMS items on, fewer than MIN_CLUSTERS
    clusters, or one cluster holding more than MAX_SHARE of the items."""
    n = len(labels)
    if n < COARSE_FROM_ITEMS:
        return None
    clustered = labels[labels != NOISE]
    sizes = np.bincount(clustered) if len(clustered) else np.zeros(0, dtype=int)
    sizes = sizes[sizes > 0]
    if len(sizes) < MIN_CLUSTERS:
        return f"only {len(sizes)} cluster{'' if len(sizes) == 1 else 's'} for {n:,} items"
    if sizes.max() > MAX_SHARE * n:
        return f"one cluster holds {sizes.max() / n:.0%} of the {n:,} items"
    return None


@dataclass
class Clusters:
    labels: np.ndarray  # int, NOISE for noise
    probabilities: np.ndarray  # membership strength in [0, 1]
    outlier_scores: np.ndarray  # GLOSH, in [0, 1]; higher = more of an outlier
    stability: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))  # per cluster label, see `stability`


def find_clusters(coords: np.ndarray, params: Hdbscan):
    """Cluster points (the ~10D UMAP reduction); returns (fitted clusterer or None, Clusters) with outlier
    scores left at 0 for mmcore.analysis.outliers to fill.

    With fewer points than min_cluster_size everything is noise: there is nothing to compare against.
    """
    n = len(coords)
    if n < max(params.min_cluster_size, 3):
        return None, Clusters(np.full(n, NOISE), np.zeros(n, dtype=np.float32), np.zeros(n, dtype=np.float32))
    clusterer = _select(coords, params)
    return clusterer, Clusters(clusterer.labels_.astype(int), clusterer.probabilities_.astype(np.float32), np.zeros(n, dtype=np.float32))


def _select(coords: np.ndarray, params: Hdbscan, prediction_data: bool = True, share: float = 1.0):
    """A fitted HDBSCAN, looking inside an excess-of-mass cluster that is too big when that finds real sub-groups
    (see MAX_CLUSTER_SHARE). `share`: the points are a random share of the fitted ones (stability's refits)."""
    clusterer = _hdbscan(params, prediction_data=prediction_data).fit(coords)
    n = len(coords)
    if params.selection != "eom" or n < COARSE_FROM_ITEMS * share:
        return clusterer
    labels = clusterer.labels_
    clustered = labels >= 0
    if not clustered.any() or np.bincount(labels[clustered]).max() <= MAX_CLUSTER_SHARE * n:
        return clusterer
    capped = _hdbscan(params, int(n * MAX_CLUSTER_SHARE), prediction_data).fit(coords)
    return capped if (capped.labels_ >= 0).sum() >= KEEP_COVERAGE * clustered.sum() else clusterer


def stability(coords: np.ndarray, labels: np.ndarray, params: Hdbscan, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """How well each cluster survives refitting on random halves of the points: float32 [clusters], in [0, 1].

    Hennig's clusterboot (2007) by subsetting: HDBSCAN is refitted `resamples` times on a random half of `coords`
    (parameters scaled to the half, as for a sample); a cluster's figure is the mean, over the refits, of its best
    Jaccard similarity with a cluster of the refit, among the points drawn. Hennig reads above 0.75 as a stable
    cluster and 0.5 or below as one that dissolves. Each refit costs a quarter to a half of the first fit.
    """
    count = int(labels.max()) + 1 if len(labels) else 0
    if count <= 0:
        return np.zeros(0, dtype=np.float32)
    half = params.scaled(RESAMPLE_SHARE)
    drawn = round(len(coords) * RESAMPLE_SHARE)
    if drawn < max(half.min_cluster_size, 3):
        return np.full(count, np.nan, dtype=np.float32)
    rng = np.random.default_rng(seed)
    total = np.zeros(count)
    for _ in range(resamples):
        rows = rng.choice(len(coords), drawn, replace=False)
        refit = _select(coords[rows], half, prediction_data=False, share=RESAMPLE_SHARE).labels_
        kept, new = labels[rows], np.asarray(refit)
        both = (kept >= 0) & (new >= 0)
        inter = np.zeros((count, int(new.max()) + 1 if (new >= 0).any() else 0))
        np.add.at(inter, (kept[both], new[both]), 1)
        if inter.shape[1] == 0:
            continue
        union = np.bincount(kept[kept >= 0], minlength=count)[:, None] + np.bincount(new[new >= 0])[None, :] - inter
        total += (inter / np.maximum(union, 1)).max(axis=1)
    return (total / resamples).astype(np.float32)


def stability_words(value: float) -> str:
    """A cluster's stability in words, with Hennig's thresholds."""
    return "stable" if value >= STABLE else "fairly stable" if value > DISSOLVED else "unstable"


def assign(clusterer, coords: np.ndarray) -> Clusters:
    """Existing clusters for new points, without refitting (approximate_predict); outlier scores are
    left at 0 for mmcore.analysis.outliers to fill. No clusterer (too few points were fitted): all noise."""
    from hdbscan.prediction import approximate_predict

    n = len(coords)
    if clusterer is None:
        return Clusters(np.full(n, NOISE), np.zeros(n, dtype=np.float32), np.zeros(n, dtype=np.float32))
    labels, strengths = approximate_predict(clusterer, coords)
    return Clusters(np.asarray(labels, dtype=int), np.asarray(strengths, dtype=np.float32), np.zeros(n, dtype=np.float32))


# A fitted clusterer as plain numbers and arrays (for caches that must not be pickles) and back.
CONDENSED_TREE_FIELDS = ("parent", "child", "lambda_val", "child_size")


def clusterer_state(clusterer) -> tuple[dict, dict[str, np.ndarray]]:
    """(parameters, arrays) from which `restore_clusterer` rebuilds `clusterer` for approximate_predict(_scores)."""
    params = {"min_cluster_size": int(clusterer.min_cluster_size),
              "min_samples": None if clusterer.min_samples is None else int(clusterer.min_samples),
              "selection": str(clusterer.cluster_selection_method)}
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
    clusterer = _hdbscan(Hdbscan(params["min_cluster_size"], params["min_samples"], params.get("selection", "eom")))
    clusterer._raw_data, clusterer._condensed_tree, clusterer._all_finite = raw, tree, True
    clusterer.labels_, clusterer.probabilities_ = labels, arrays["probabilities"]
    clusterer.generate_prediction_data()
    return clusterer


def _hdbscan(params: Hdbscan, cap: int = 0, prediction_data: bool = True):
    """An HDBSCAN with these parameters; `cap`: the largest cluster excess of mass may select (0: any)."""
    import hdbscan

    # core_dist_n_jobs=1: its default starts a pool of worker processes, which costs more than the
    # core distances of 20,000 low-dimensional points (1 s) and far more on a loaded machine
    return hdbscan.HDBSCAN(min_cluster_size=params.min_cluster_size, min_samples=params.min_samples,
                           cluster_selection_method=params.selection, max_cluster_size=cap,
                           prediction_data=prediction_data, core_dist_n_jobs=1)
