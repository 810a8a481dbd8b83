"""The front door of analysis: a collection's map, clusters and outlier scores, cached on disk.

Results are keyed by (collection version, parameters): reopening an unchanged collection costs a file read.
When items were added since the last fit, they are placed on the existing map and assigned to existing
clusters (UMAP.transform, hdbscan.approximate_predict) instead of refitting, and the result says it is stale.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import MMError
from ..workspace import Workspace
from .clusters import Clusters, Hdbscan, assign, find_clusters, fit_outliers, score_outliers
from .projection import CLUSTER_DIMS, Umap, fit_projection, place, use_numba_cache

# Past this share of new items, placing them on the old map would misrepresent the collection: refit.
MAX_PLACED_SHARE = 0.5


@dataclass
class Analysis:
    """A map of one collection in one space, with the parameters and version that made it."""

    collection: str
    space: str
    version: str
    umap: Umap
    hdbscan: Hdbscan  # resolved: min_cluster_size is a number
    ids: list[str]
    xy: np.ndarray  # float32 [n, 2]
    labels: np.ndarray  # int [n], -1 = noise
    probabilities: np.ndarray  # float32 [n]
    outlier_scores: np.ndarray  # float32 [n], GLOSH
    fitted: int  # items the map was fitted on
    placed: int  # items placed on it later without refitting
    seconds: dict[str, float] = field(default_factory=dict)
    from_cache: bool = False
    requested: Hdbscan = Hdbscan()  # the parameters as asked (part of the cache key)
    fit_key: str = ""  # identifies the fit (items + parameters): cluster labels mean the same while it holds

    @property
    def stale(self) -> bool:
        """True when some items were only placed on the map, not part of its fit: a refit may differ."""
        return self.placed > 0

    @property
    def cluster_ids(self) -> list[int]:
        return sorted(int(c) for c in set(self.labels.tolist()) if c >= 0)

    def position(self, item_id: str) -> int:
        return self._index()[item_id]

    def _index(self) -> dict[str, int]:
        if not hasattr(self, "_ids_index"):
            self._ids_index = {id_: i for i, id_ in enumerate(self.ids)}
        return self._ids_index


Progress = Callable[[str], None]


def analyze(
    ws: Workspace,
    collection: str | None = None,
    space: str = "clip",
    umap: Umap = Umap(),
    hdbscan: Hdbscan = Hdbscan(),
    refit: bool = False,
    on_progress: Progress | None = None,
) -> Analysis:
    """Map, clusters and outlier scores for a collection, from the cache when nothing changed.

    Args:
        collection: its name (default: the configured one); space: which of its spaces.
        umap, hdbscan: parameters (recorded in the result and part of the cache key).
        refit: fit from scratch even when new items could be placed on the existing map.
        on_progress: called with a short description of each stage.
    Raises:
        NotFound: no such collection. MMError: the collection is empty.
    """
    say = on_progress or (lambda _: None)
    name = collection or ws.settings.collection
    target = ws.store.open(name, space)
    version = target.version
    cache = AnalysisCache(ws.settings.data_dir / "cache", name, space, umap, hdbscan)
    if not refit and (cached := cache.load_result(version)) is not None:
        cached.from_cache = True
        return cached

    say("Reading vectors")
    started = time.perf_counter()
    items = target.all(with_vectors=True)
    if len(items) == 0:
        raise MMError(f"Collection {name!r} has no items to map yet.")
    seconds = {"read": time.perf_counter() - started}
    use_numba_cache(ws.settings.data_dir / "cache" / "numba")

    fit = None if refit else cache.load_fit()
    if fit is not None and _can_place(fit, items.ids):
        analysis = _place_new(fit, items, say, seconds)
    else:
        fit = _fit(items, umap, hdbscan.resolved(len(items)), say, seconds)
        cache.save_fit(fit)
        analysis = _from_fit(fit, items.ids, seconds)
    analysis.collection, analysis.space, analysis.version, analysis.requested = name, space, version, hdbscan
    cache.save_result(version, analysis)
    return analysis


def _fit(items, umap: Umap, hdbscan: Hdbscan, say: Progress, seconds: dict) -> dict:
    say(f"Fitting the map of {len(items):,} items")
    started = time.perf_counter()
    reducer_2d, xy = fit_projection(items.vectors, umap, 2)
    seconds["map"] = time.perf_counter() - started
    say("Finding clusters")
    started = time.perf_counter()
    reducer_nd, coords = fit_projection(items.vectors, umap, CLUSTER_DIMS)
    clusterer, clusters = find_clusters(coords, hdbscan)
    seconds["clusters"] = time.perf_counter() - started
    say("Scoring outliers")
    started = time.perf_counter()
    outlier_model, clusters.outlier_scores = fit_outliers(items.vectors, hdbscan)
    seconds["outliers"] = time.perf_counter() - started
    return {
        "ids": list(items.ids), "xy": xy, "clusters": clusters, "umap": umap, "hdbscan": hdbscan,
        "key": hashlib.sha1(json.dumps([items.ids, asdict(umap), asdict(hdbscan)]).encode()).hexdigest()[:16],
        "reducer_2d": reducer_2d, "reducer_nd": reducer_nd, "clusterer": clusterer, "outliers": outlier_model,
    }


def _can_place(fit: dict, ids: list[str]) -> bool:
    if any(fit[part] is None for part in ("reducer_2d", "reducer_nd", "clusterer", "outliers")):
        return False
    known = set(fit["ids"])
    new = sum(1 for i in ids if i not in known)
    kept = len(ids) - new
    return kept > 0 and new <= MAX_PLACED_SHARE * len(ids)


def _from_fit(fit: dict, ids: list[str], seconds: dict) -> Analysis:
    c: Clusters = fit["clusters"]
    return Analysis(
        collection="", space="", version="", umap=fit["umap"], hdbscan=fit["hdbscan"], ids=list(ids), xy=fit["xy"],
        labels=c.labels, probabilities=c.probabilities, outlier_scores=c.outlier_scores,
        fitted=len(ids), placed=0, seconds=seconds, fit_key=fit["key"],
    )


def _place_new(fit: dict, items, say: Progress, seconds: dict) -> Analysis:
    """Items of the fit keep their coordinates and clusters; new ones are placed; deleted ones drop out."""
    position = {id_: i for i, id_ in enumerate(fit["ids"])}
    old = [i for i, id_ in enumerate(items.ids) if id_ in position]
    new = [i for i, id_ in enumerate(items.ids) if id_ not in position]
    n = len(items)
    xy = np.zeros((n, 2), dtype=np.float32)
    labels = np.zeros(n, dtype=int)
    probabilities = np.zeros(n, dtype=np.float32)
    scores = np.zeros(n, dtype=np.float32)
    src = [position[items.ids[i]] for i in old]
    c: Clusters = fit["clusters"]
    xy[old], labels[old], probabilities[old], scores[old] = fit["xy"][src], c.labels[src], c.probabilities[src], c.outlier_scores[src]
    if new:
        say(f"Placing {len(new):,} new items on the map")
        started = time.perf_counter()
        vectors = items.vectors[new]
        xy[new] = place(fit["reducer_2d"], vectors, 2)
        placed = assign(fit["clusterer"], place(fit["reducer_nd"], vectors, CLUSTER_DIMS))
        labels[new], probabilities[new] = placed.labels, placed.probabilities
        scores[new] = score_outliers(fit["outliers"], vectors)
        seconds["place"] = time.perf_counter() - started
    return Analysis(
        collection="", space="", version="", umap=fit["umap"], hdbscan=fit["hdbscan"], ids=list(items.ids), xy=xy,
        labels=labels, probabilities=probabilities, outlier_scores=scores, fitted=len(old), placed=len(new), fit_key=fit.get("key", ""),
        seconds=seconds,
    )


class AnalysisCache:
    """Files under data_dir/cache/analysis/<collection>.<space>/, one fit and one result per parameter set."""

    def __init__(self, root: Path, collection: str, space: str, umap: Umap, hdbscan: Hdbscan):
        self.dir = root / "analysis" / f"{collection}.{space}"
        params = json.dumps({"umap": asdict(umap), "hdbscan": asdict(hdbscan)}, sort_keys=True)
        self.key = hashlib.sha1(params.encode()).hexdigest()[:12]

    @classmethod
    def of(cls, ws: Workspace, analysis: Analysis) -> "AnalysisCache":
        """The cache of the parameters an analysis was asked with (its min_cluster_size may be resolved)."""
        return cls(ws.settings.data_dir / "cache", analysis.collection, analysis.space, analysis.umap, analysis.requested)

    def file(self, analysis: Analysis, kind: str, suffix: str) -> Path:
        """A file for something derived from this very analysis (its version and placements)."""
        return self.dir / f"{kind}-{self.key}-{analysis.version}-{analysis.placed}{suffix}"

    def load_result(self, version: str) -> Analysis | None:
        return self.load(self.dir / f"result-{self.key}-{version}.pkl")

    def save_result(self, version: str, analysis: Analysis) -> None:
        for old in self.dir.glob(f"result-{self.key}-*.pkl"):
            old.unlink(missing_ok=True)
        self.save(self.dir / f"result-{self.key}-{version}.pkl", analysis)

    def load_fit(self) -> dict | None:
        return self.load(self.dir / f"fit-{self.key}.pkl")

    def save_fit(self, fit: dict) -> None:
        self.save(self.dir / f"fit-{self.key}.pkl", fit)

    def load(self, path: Path):
        try:
            with open(path, "rb") as f:
                return pickle.load(f)  # our own cache files, written by _save below
        except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ModuleNotFoundError):
            return None

    def save(self, path: Path, obj) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)


def map_3d(ws: Workspace, analysis: Analysis) -> np.ndarray:
    """3D coordinates for the analysis's items (its own UMAP fit), cached like the 2D map.

    Raises:
        NotFound: the collection is gone.
    """
    cache = AnalysisCache.of(ws, analysis)
    path = cache.dir / f"xyz-{cache.key}-{analysis.version}.pkl"
    cached = cache.load(path)
    if cached is not None and cached[0] == analysis.ids:
        return cached[1]
    target = ws.store.open(analysis.collection, analysis.space)
    items = target.all(with_vectors=True)
    position = {id_: i for i, id_ in enumerate(items.ids)}
    vectors = items.vectors[[position[i] for i in analysis.ids if i in position]]
    use_numba_cache(ws.settings.data_dir / "cache" / "numba")
    _, xyz = fit_projection(vectors, analysis.umap, 3)
    for old in cache.dir.glob(f"xyz-{cache.key}-*.pkl"):  # keep only the latest
        old.unlink(missing_ok=True)
    cache.save(path, (analysis.ids, xyz))
    return xyz
