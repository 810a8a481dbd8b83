"""The front door of analysis: a collection's map, clusters and outlier scores, cached on disk.

Results are keyed by (collection version, parameters): reopening an unchanged collection costs a file read.
Vectors come from the local vector cache (mmcore.vector_cache), not from the store.

Above `Sampling.size` items, the 2D map, the ~10D map and both HDBSCANs are fitted on a seeded random sample
and the other items are placed on them (UMAP transform, hdbscan approximate_predict and
approximate_predict_scores): fitting costs grow faster than linearly, placing is linear and cheap.
When items were added since the last fit, they are placed the same way instead of refitting, and the result
says it is stale.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import MediaError, MMError
from ..files import write_atomically
from ..safe_io import MAX_RECORD_BYTES, load_npz
from ..spaces.registry import DEFAULT_SPACE
from ..vector_cache import Vectors, read_vectors, vector_cache_dir
from ..workspace import Workspace
from .clusters import NOISE, Clusters, Hdbscan, assign, clusterer_state, coarse, find_clusters, restore_clusterer, stability
from .neighbours import nearest
from .outliers import OutlierModel, fit_outliers, score_outliers
from .projection import (CLUSTER_DIMS, CLUSTER_MIN_DIST, Layout, Umap, _cache_umap_kernels, fit_projection, place, spectral_init,
                         use_numba_cache)

# Past this share of new items, placing them on the old map would misrepresent the collection: refit.
MAX_PLACED_SHARE = 0.5
DEFAULT_SAMPLE, MIN_SAMPLE = 20_000, 50
# Parameter sets whose files are kept per collection and space; the least recently used beyond them are removed
# (each set is a fit, a result and what derives from them: about 40 MB at 100,000 items).
KEPT_PARAMETER_SETS = 6
# What an analysis computes, in the order its results come in: the 2D map first (what a page can draw), then the
# clusters and the outlier scores (made at the same time), then the clusters' stability.
STAGES = ("map", "outliers", "clusters", "stability")


class NotAnalysed(MMError):
    """The analysis asked for isn't cached and may not be computed here (a read-only viewer's session)."""


@dataclass(frozen=True)
class Sampling:
    """Collections of up to `size` items are fitted whole; larger ones on a random sample of `size` items
    (seeded by the UMAP seed), with the other items placed on that fit."""

    size: int = DEFAULT_SAMPLE

    def __post_init__(self):
        if self.size < MIN_SAMPLE:
            raise MMError(f"The sample to fit the map on must have at least {MIN_SAMPLE} items, got {self.size}")

    def pick(self, n: int, seed: int) -> np.ndarray | None:
        """Sorted row numbers of the sample among `n` items, or None when all of them are fitted."""
        if n <= self.size:
            return None
        return np.sort(np.random.default_rng(seed).choice(n, self.size, replace=False))


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
    fitted: int  # items of the fit (of which `sample` were fitted on and the others placed, when sampled)
    placed: int  # items placed on it later without refitting
    seconds: dict[str, float] = field(default_factory=dict)
    from_cache: bool = False
    requested: Hdbscan = Hdbscan()  # the parameters as asked (part of the cache key)
    fit_key: str = ""  # identifies the fit (items + parameters): cluster labels mean the same while it holds
    sampling: Sampling = Sampling()  # as asked (part of the cache key)
    sample: int = 0  # items the UMAPs and HDBSCANs were fitted on; 0 = all of them
    stability: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))  # per cluster label (clusters.stability)
    done: tuple[str, ...] = STAGES  # the stages whose results are in; until "clusters" every item is noise, until
    # "outliers" every score is 0, until "stability" the clusters have none

    @property
    def complete(self) -> bool:
        """True once every stage is in (`analyze` returns only complete analyses; `on_stage` sees the others)."""
        return all(stage in self.done for stage in STAGES)

    @property
    def method(self) -> str:
        """How the map was made, in a few words (for captions)."""
        return f"fitted on a random sample of {self.sample:,}, the other items placed" if self.sample else "fitted on every item"

    @property
    def stale(self) -> bool:
        """True when some items were only placed on the map, not part of its fit: a refit may differ."""
        return self.placed > 0

    @property
    def cluster_ids(self) -> list[int]:
        return sorted(int(c) for c in set(self.labels.tolist()) if c >= 0)

    @property
    def coarse(self) -> str | None:
        """Why these clusters are too coarse to review (clusters.coarse), or None."""
        return coarse(self.labels)

    @property
    def finer(self) -> Hdbscan:
        """The parameters to ask for a finer clustering than this one."""
        return self.requested.finer(self.hdbscan)

    def stabilities(self, labels: np.ndarray | None = None) -> dict[int, float]:
        """{label: stability in [0, 1]} (clusters.stability) of the clusters of `labels` (a taxonomy's effective
        labels; default these) that hold exactly the items of a fitted cluster: merged or split ones have none."""
        labels = self.labels if labels is None else np.asarray(labels)
        found = {}
        for label in self.cluster_ids:
            if label < len(self.stability) and np.isfinite(self.stability[label]):
                mine = self.labels == label
                if np.array_equal(mine, labels == label):
                    found[label] = float(self.stability[label])
        return found

    def position(self, item_id: str) -> int:
        return self._index()[item_id]

    def _index(self) -> dict[str, int]:
        if not hasattr(self, "_ids_index"):
            self._ids_index = {id_: i for i, id_ in enumerate(self.ids)}
        return self._ids_index


Progress = Callable[[str], None]
Stage = Callable[["Analysis"], None]


def analyze(
    ws: Workspace,
    collection: str | None = None,
    space: str = DEFAULT_SPACE,
    umap: Umap = Umap(),
    hdbscan: Hdbscan = Hdbscan(),
    sampling: Sampling = Sampling(),
    refit: bool = False,
    on_progress: Progress | None = None,
    may_fit: bool = True,
    on_stage: Stage | None = None,
) -> Analysis:
    """Map, clusters and outlier scores for a collection, from the cache when nothing changed.

    Two calls for the same parameters at once fit once: the second waits and reads the first's result.

    Args:
        collection: its name (default: the configured one); space: which of its spaces.
        umap, hdbscan, sampling: parameters (recorded in the result and part of the cache key).
        refit: fit from scratch even when new items could be placed on the existing map.
        on_progress: called with a short description of each stage.
        may_fit: False for a caller who may only read (a viewer): the cached result, or new items placed on the
            cached fit (linear, and what every later visitor would need), never a fit.
        on_stage: called, in the caller's thread, with the analysis so far each time a stage of a fit is done
            (`Analysis.done`): first the 2D map alone, so a page can draw it while the rest is computed. Each is
            also cached (`AnalysisCache.load_partial`) for other sessions to show meanwhile.
    Raises:
        NotFound: no such collection. MMError: the collection is empty. NotAnalysed: may_fit is False and there
        is nothing cached to show or place on.
    """
    name = collection or ws.settings.collection
    target = ws.store.open(name, space)
    version = target.version
    cache = AnalysisCache(ws.settings.data_dir / "cache", name, space, umap, hdbscan, sampling, size_of(target))
    refit = refit and may_fit
    if not refit and (cached := cache.load_result(version)) is not None:
        cached.from_cache = True
        return cached
    with cache.lock:
        if not refit and (cached := cache.load_result(version)) is not None:  # made while this call waited
            cached.from_cache = True
            return cached
        return _analyze(ws, target, name, space, version, cache, umap, hdbscan, sampling, refit, may_fit, on_progress, on_stage)


def _analyze(ws, target, name, space, version, cache, umap, hdbscan, sampling, refit, may_fit, on_progress, on_stage) -> Analysis:
    say = on_progress or (lambda _: None)
    say("Reading vectors")
    seconds: dict[str, float] = {}
    with _stage("read", seconds):
        items = read_vectors(target, vector_cache_dir(ws.settings.data_dir))
    if len(items) == 0:
        raise MMError(f"Collection {name!r} has no items to map yet.")
    use_numba_cache()

    def named(analysis: Analysis) -> Analysis:
        analysis.collection, analysis.space, analysis.version, analysis.requested = name, space, version, hdbscan
        return analysis

    def publish(partial: Analysis) -> None:
        cache.save_partial(version, named(partial))
        if on_stage:
            on_stage(partial)

    fit = None if refit else cache.load_fit()
    for problem in cache.unreadable:  # a damaged or crafted cache costs a recomputation: say why it happens
        say(f"Ignoring {problem}; computing it again")
    if fit is not None and _can_place(fit, items.ids):
        analysis = _place_new(fit, items, say, seconds)
    else:
        if not may_fit:
            raise NotAnalysed(f"The map of {name!r} with these settings is out of date or not made yet, and making it is "
                              f"an editor's action: an editor opens the Map page, or runs python -m mmcore analyze "
                              f"--collection {name}.")
        fit = _fit(items, umap, hdbscan.resolved(len(items)), sampling, say, seconds, publish)
        cache.save_fit(fit)
        analysis = _from_fit(fit, items.ids, seconds)
    cache.save_result(version, named(analysis))
    return analysis


def _fit(items: Vectors, umap: Umap, hdbscan: Hdbscan, sampling: Sampling, say: Progress, seconds: dict,
         publish: Stage = lambda _: None) -> dict:
    """Fit on every item, or on a sample and place the others (`rest`) on that fit; `publish` gets the analysis so
    far after each stage.

    All stages rest on one k-NN graph of the fitted points (and the rest's neighbours among them). The clustering
    map is optimised in a second thread while this one makes the display map and the outlier scores (numba and
    torch release the GIL), so on two cores the clusters cost little more than the map.
    """
    n = len(items)
    sample = sampling.pick(n, umap.seed)
    fit_rows = np.arange(n) if sample is None else sample
    rest = np.setdiff1d(np.arange(n), fit_rows)
    vectors = np.asarray(items.vectors[fit_rows], dtype=np.float32)
    params = hdbscan if sample is None else hdbscan.scaled(len(fit_rows) / n)
    k = min(umap.n_neighbors, len(vectors) - 1)
    # GLOSH's core distance is the cluster size's neighbour (plus the point itself): the graph holds that many
    graph_k = min(len(vectors), max(k, params.min_cluster_size + 1))
    def merged(fitted: np.ndarray, placed: np.ndarray) -> np.ndarray:
        return _merge(fit_rows, rest, fitted, placed) if len(rest) else fitted

    def partial(done: tuple[str, ...], xy, clusters: Clusters | None = None, scores=None) -> Analysis:
        none = np.zeros(n, dtype=np.float32)
        return Analysis(collection="", space="", version="", umap=umap, hdbscan=hdbscan, ids=list(items.ids), xy=xy,
                        labels=clusters.labels if clusters else np.full(n, NOISE), outlier_scores=none if scores is None else scores,
                        probabilities=clusters.probabilities if clusters else none, fitted=n, placed=0, seconds=dict(seconds),
                        sampling=sampling, sample=0 if sample is None else len(sample), done=done)

    def clustering():
        started = time.perf_counter()
        layout_nd, coords = fit_projection(vectors, replace(umap, min_dist=CLUSTER_MIN_DIST), CLUSTER_DIMS, own.first(k), init)
        clusterer, clusters = find_clusters(coords, params)
        fitted_labels = clusters.labels
        if len(rest):
            placed = assign(clusterer, place(layout_nd, others.first(k), CLUSTER_DIMS))
            clusters.labels = merged(clusters.labels, placed.labels)
            clusters.probabilities = merged(clusters.probabilities, placed.probabilities)
        return layout_nd, coords, clusterer, clusters, fitted_labels, time.perf_counter() - started

    _cache_umap_kernels()  # before the threads
    with ThreadPoolExecutor(1, thread_name_prefix="analysis") as pool:
        with _stage("neighbours", seconds):
            say(f"Finding the neighbours of {n:,} items")
            own = nearest(vectors, vectors, graph_k)
            # both maps start from the same spectral layout, found while the other items' neighbours are
            init_done = pool.submit(spectral_init, vectors, own.first(k), umap, CLUSTER_DIMS)
            others = nearest(items.vectors, vectors, graph_k, rows=rest)  # not a copy of every other vector
        with _stage("initial layout", seconds):
            init = init_done.result()
        clustering_done = pool.submit(clustering)
        with _stage("map", seconds):
            say(f"Fitting the map on {len(fit_rows):,} items" + (f", placing {len(rest):,} more" if len(rest) else "")
                + "; finding clusters meanwhile")
            layout_2d, xy = fit_projection(vectors, umap, 2, own.first(k), init)
            if len(rest):
                xy = merged(xy, place(layout_2d, others.first(k), 2))
        publish(partial(("map",), xy))
        with _stage("outliers", seconds):
            say("Scoring outliers; finding clusters meanwhile")
            outlier_model, scores = fit_outliers(vectors, own, params.min_cluster_size, params.min_cluster_size)
            if len(rest):
                scores = merged(scores, score_outliers(outlier_model, others))
        if not clustering_done.done():
            publish(partial(("map", "outliers"), xy, scores=scores))
            say("Finding clusters")
        layout_nd, coords, clusterer, clusters, fitted_labels, seconds["clusters"] = clustering_done.result()
    clusters.outlier_scores = scores
    publish(partial(("map", "outliers", "clusters"), xy, clusters, scores))
    with _stage("stability", seconds):
        say("Checking how stable the clusters are")
        clusters.stability = stability(coords, fitted_labels, params)
    return {
        "ids": list(items.ids), "xy": xy, "clusters": clusters, "umap": umap, "hdbscan": hdbscan, "sampling": sampling,
        "sample": 0 if sample is None else len(sample),
        "key": hashlib.sha1(json.dumps([items.ids, asdict(umap), asdict(hdbscan), asdict(sampling)]).encode()).hexdigest()[:16],
        "vectors": vectors, "layout_2d": layout_2d, "layout_nd": layout_nd, "clusterer": clusterer, "outliers": outlier_model,
    }


def _merge(fit_rows: np.ndarray, rest: np.ndarray, fitted: np.ndarray, placed: np.ndarray) -> np.ndarray:
    """Values of the fitted rows and of the rest, in row order."""
    merged = np.empty((len(fit_rows) + len(rest), *fitted.shape[1:]), dtype=fitted.dtype)
    merged[fit_rows], merged[rest] = fitted, placed
    return merged


@contextmanager
def _stage(name: str, seconds: dict[str, float]) -> Iterator[None]:
    started = time.perf_counter()
    yield
    seconds[name] = time.perf_counter() - started


def _can_place(fit: dict, ids: list[str]) -> bool:
    if any(fit.get(part) is None for part in ("vectors", "layout_2d", "layout_nd", "clusterer", "outliers")):
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
        fitted=len(ids), placed=0, seconds=seconds, fit_key=fit["key"], sampling=fit["sampling"], sample=fit["sample"],
        stability=c.stability,
    )


def _place_new(fit: dict, items: Vectors, say: Progress, seconds: dict) -> Analysis:
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
        with _stage("place", seconds):
            fitted = fit["vectors"]
            k = min(fit["umap"].n_neighbors, len(fitted) - 1)
            outliers: OutlierModel = fit["outliers"]
            near = nearest(items.vectors, fitted, max(k, outliers.min_samples), rows=np.asarray(new))
            xy[new] = place(fit["layout_2d"], near.first(k), 2)
            placed = assign(fit["clusterer"], place(fit["layout_nd"], near.first(k), CLUSTER_DIMS))
            labels[new], probabilities[new] = placed.labels, placed.probabilities
            scores[new] = score_outliers(outliers, near)
    return Analysis(
        collection="", space="", version="", umap=fit["umap"], hdbscan=fit["hdbscan"], ids=list(items.ids), xy=xy,
        labels=labels, probabilities=probabilities, outlier_scores=scores, fitted=len(old), placed=len(new), fit_key=fit["key"],
        seconds=seconds, sampling=fit["sampling"], sample=fit["sample"], stability=c.stability,
    )


CACHE_FORMAT = 3  # of the files below; a file of another format (or an old pickle) is ignored and recomputed
_META = "__meta__"  # the npz member holding the JSON part
# What one cache file may hold per item beyond the fitted vectors: its id (in JSON) and a few hundred numbers
# (measured: 200 to 500 bytes with 40-character ids), generously.
CACHE_BYTES_PER_ITEM = 4 << 10


_locks: dict[tuple[Path, str], threading.Lock] = {}
_locks_guard = threading.Lock()


class AnalysisCache:
    """Files under data_dir/cache/analysis/<collection>.<space>/, one fit and one result per parameter set, for at
    most KEPT_PARAMETER_SETS parameter sets (the least recently used beyond them are removed with what derives
    from them: a viewer trying settings can't fill the disk, and neither can an editor).

    Each file is an .npz of plain arrays plus one JSON string, read through `mmcore.safe_io.load_npz` (never
    unpickled, inflated no further than it may hold): a data dir may be restored from someone else's backup, and
    reading its caches must never run code or fill the memory. A file that can't be read as such (torn, another
    format, an old pickle cache, larger than the collection's analysis can be) counts as missing and is recomputed;
    `unreadable` says which and why.

    `size` is the collection's (items, dimension): a file holds at most the vectors of the items fitted (a sample
    of `sampling.size`) and CACHE_BYTES_PER_ITEM per item. Without it, MAX_RECORD_BYTES.
    """

    def __init__(self, root: Path, collection: str, space: str, umap: Umap, hdbscan: Hdbscan, sampling: Sampling = Sampling(),
                 size: tuple[int, int] | None = None):
        self.dir = root / "analysis" / f"{collection}.{space}"
        params = json.dumps({"umap": asdict(umap), "hdbscan": asdict(hdbscan), "sampling": asdict(sampling)}, sort_keys=True)
        self.key = hashlib.sha1(params.encode()).hexdigest()[:12]
        items, dim = size or (0, 0)
        fitted = min(items, sampling.size) * dim * 8  # its vectors, float64 at most
        self.limit = (64 << 20) + items * CACHE_BYTES_PER_ITEM + fitted if size else MAX_RECORD_BYTES
        self.unreadable: list[str] = []  # "the cache file PATH (reason)" for each file read and found wanting

    @property
    def lock(self) -> threading.Lock:
        """Held while this parameter set is computed in this process."""
        with _locks_guard:
            return _locks.setdefault((self.dir, self.key), threading.Lock())

    @classmethod
    def of(cls, ws: Workspace, analysis: Analysis) -> "AnalysisCache":
        """The cache of the parameters an analysis was asked with (its min_cluster_size may be resolved), for the
        files derived from it (the 3D map, cluster names), which hold no vectors."""
        return cls(ws.settings.data_dir / "cache", analysis.collection, analysis.space, analysis.umap, analysis.requested,
                   analysis.sampling, (len(analysis.ids), 0))

    def file(self, analysis: Analysis, kind: str, suffix: str) -> Path:
        """A file for something derived from this very analysis (its version and placements)."""
        return self.dir / f"{kind}-{self.key}-{analysis.version}-{analysis.placed}{suffix}"

    def load_result(self, version: str) -> Analysis | None:
        path = self.dir / f"result-{self.key}-{version}.npz"
        result = _decoded(_analysis_from, self.read(path))
        if result is not None and not result.complete:
            return None
        if result is not None:
            _touch(path)  # recently used: kept longest
        return result

    def save_result(self, version: str, analysis: Analysis) -> None:
        for old in self.dir.glob(f"result-{self.key}-*.npz"):
            old.unlink(missing_ok=True)
        self.write(self.dir / f"result-{self.key}-{version}.npz", *_analysis_state(analysis))
        for old in self.dir.glob(f"partial-{self.key}-*.npz"):
            old.unlink(missing_ok=True)
        self.prune()

    def load_partial(self, version: str) -> Analysis | None:
        """The analysis of this version so far while a fit is under way (`Analysis.done` says which stages are in),
        or None: a fit of these parameters is not running, or has not drawn its map yet."""
        return _decoded(_analysis_from, self.read(self.dir / f"partial-{self.key}-{version}.npz"))

    def save_partial(self, version: str, analysis: Analysis) -> None:
        self.write(self.dir / f"partial-{self.key}-{version}.npz", *_analysis_state(analysis))

    def prune(self, keep: int = KEPT_PARAMETER_SETS) -> list[str]:
        """Remove the files of all but the `keep` most recently used parameter sets (by their result file; this
        one counts as used); returns the keys removed."""
        used: dict[str, float] = {}
        for path in self.dir.glob("result-*.npz"):
            key = _key_of(path)
            used[key] = max(used.get(key, 0.0), _mtime(path))
        used[self.key] = float("inf")
        dropped = sorted(used, key=used.get, reverse=True)[keep:]
        for path in self.dir.iterdir() if dropped else ():
            if not path.name.startswith(".") and _key_of(path) in dropped:  # a file being written starts with "."
                path.unlink(missing_ok=True)
        return dropped

    def parameter_sets(self) -> Iterator[tuple[Umap, Hdbscan, Sampling]]:
        """The parameter sets with a cached result in this folder, the most recently used first (read lazily)."""
        for path in sorted(self.dir.glob("result-*.npz"), key=_mtime, reverse=True):
            state = self.read(path)
            try:
                meta = state[0]
                yield Umap(**meta["umap"]), Hdbscan(**meta["requested"]), Sampling(**meta["sampling"])
            except (TypeError, KeyError, ValueError, MMError):  # TypeError also for state None
                continue

    def load_fit(self) -> dict | None:
        return _decoded(_fit_from, self.read(self.dir / f"fit-{self.key}.npz"))

    def save_fit(self, fit: dict) -> None:
        self.write(self.dir / f"fit-{self.key}.npz", *_fit_state(fit))

    def read(self, path: Path) -> tuple[dict, dict[str, np.ndarray]] | None:
        """(JSON part, arrays) of a cache file, or None when it is missing or not one of ours (then noted in
        `unreadable`, unless it is only of another format)."""
        if not os.path.lexists(path):
            return None
        try:
            arrays = load_npz(path, self.limit)
            meta = json.loads(str(arrays.pop(_META)[()]))
        except MediaError as e:  # not a regular file, a pickle, a zip bomb, past the limit, torn...
            self.unreadable.append(f"the cache file {path} ({e.reason})")
            return None
        except (KeyError, ValueError, IndexError, RecursionError) as e:
            self.unreadable.append(f"the cache file {path} (its description is missing or malformed: {e!r})")
            return None
        if not isinstance(meta, dict) or meta.pop("format", None) != CACHE_FORMAT:
            return None
        return meta, arrays

    def write(self, path: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        """Written to a temporary file and renamed into place: readers see the old file or the new one, whole."""
        path.parent.mkdir(parents=True, exist_ok=True)
        for old in self.dir.glob("*.pkl"):  # caches of an older mmscope, never read
            old.unlink(missing_ok=True)
        write_atomically(path, lambda f: np.savez(f, **{_META: np.array(json.dumps({"format": CACHE_FORMAT, **meta}))}, **arrays))


def _key_of(path: Path) -> str:
    """The parameter set of a cache file: <kind>-<key>[-<version>...].<suffix>."""
    return path.name.split("-")[1].split(".")[0] if "-" in path.name else ""


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:  # a read-only data dir: the order of use is only a hint
        pass


def latest_parameters(ws: Workspace, collection: str, space: str) -> tuple[Umap, Hdbscan] | None:
    """The parameters of the most recently used analysis of a collection's space (what an editor last chose),
    or None when none is cached: a read-only viewer sees that one."""
    try:
        size = size_of(ws.store.open(collection, space))
    except MMError:
        return None
    for umap, hdbscan, _ in AnalysisCache(ws.settings.data_dir / "cache", collection, space, Umap(), Hdbscan(),
                                          size=size).parameter_sets():
        return umap, hdbscan
    return None


def size_of(target) -> tuple[int, int]:
    """(items, dimension) of a collection's space: what bounds the size of its analysis's cache files."""
    return target.count(), target.space.dim if target.space else 0


def _decoded(decode, state):
    """`decode(meta, arrays)`, or None when the state is missing or malformed: a cache is only ever a shortcut."""
    if state is None:
        return None
    try:
        return decode(*state)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, MMError):
        return None


def _analysis_state(a: Analysis) -> tuple[dict, dict[str, np.ndarray]]:
    meta = {"collection": a.collection, "space": a.space, "version": a.version, "umap": asdict(a.umap), "hdbscan": asdict(a.hdbscan),
            "requested": asdict(a.requested), "sampling": asdict(a.sampling), "ids": list(a.ids), "fitted": a.fitted,
            "placed": a.placed, "seconds": a.seconds, "fit_key": a.fit_key, "sample": a.sample, "done": list(a.done)}
    return meta, {"xy": a.xy, "labels": a.labels, "probabilities": a.probabilities, "outlier_scores": a.outlier_scores,
                  "stability": a.stability}


def _analysis_from(meta: dict, arrays: dict[str, np.ndarray]) -> Analysis:
    ids = _strings(meta["ids"])
    xy, labels, probabilities, scores = (arrays[k] for k in ("xy", "labels", "probabilities", "outlier_scores"))
    _check_rows(len(ids), xy, labels, probabilities, scores)
    if xy.shape[1:] != (2,):
        raise ValueError("not a 2D map")
    return Analysis(
        collection=str(meta["collection"]), space=str(meta["space"]), version=str(meta["version"]), umap=Umap(**meta["umap"]),
        hdbscan=Hdbscan(**meta["hdbscan"]), ids=ids, xy=xy, labels=labels, probabilities=probabilities, outlier_scores=scores,
        fitted=int(meta["fitted"]), placed=int(meta["placed"]), seconds={str(k): float(v) for k, v in meta["seconds"].items()},
        requested=Hdbscan(**meta["requested"]), fit_key=str(meta["fit_key"]), sampling=Sampling(**meta["sampling"]),
        sample=int(meta["sample"]), stability=_stability(arrays["stability"]),
        done=tuple(stage for stage in _strings(meta["done"]) if stage in STAGES),
    )


def _fit_state(fit: dict) -> tuple[dict, dict[str, np.ndarray]]:
    c: Clusters = fit["clusters"]
    meta = {"ids": list(fit["ids"]), "umap": asdict(fit["umap"]), "hdbscan": asdict(fit["hdbscan"]),
            "sampling": asdict(fit["sampling"]), "sample": fit["sample"], "key": fit["key"]}
    arrays = {"xy": fit["xy"], "labels": c.labels, "probabilities": c.probabilities, "outlier_scores": c.outlier_scores,
              "stability": c.stability, "vectors": fit["vectors"]}
    for name in ("layout_2d", "layout_nd"):
        layout: Layout | None = fit[name]
        if layout is not None:
            meta[name] = {k: v for k, v in asdict(layout).items() if k != "coords"}
            arrays[f"{name}.coords"] = layout.coords
    if fit["clusterer"] is not None:
        meta["clusterer"], state = clusterer_state(fit["clusterer"])
        arrays.update({f"clusterer.{k}": v for k, v in state.items()})
    outliers: OutlierModel | None = fit["outliers"]
    if outliers is not None:
        meta["outliers"] = {"min_samples": outliers.min_samples}
        arrays.update({"outliers.core": outliers.core, "outliers.point_lambda": outliers.point_lambda,
                       "outliers.cluster_max_lambda": outliers.cluster_max_lambda})
    return meta, arrays


def _fit_from(meta: dict, arrays: dict[str, np.ndarray]) -> dict:
    """The fit `_fit_state` was taken from; its clusterers are rebuilt (for `_place_new`)."""
    ids = _strings(meta["ids"])
    xy, labels, probabilities, scores = (arrays[k] for k in ("xy", "labels", "probabilities", "outlier_scores"))
    _check_rows(len(ids), xy, labels, probabilities, scores)
    vectors = arrays["vectors"]
    if vectors.ndim != 2 or vectors.dtype.kind != "f":
        raise ValueError("not vectors")

    def state(name: str) -> dict[str, np.ndarray]:
        return {k.removeprefix(f"{name}."): v for k, v in arrays.items() if k.startswith(f"{name}.")}

    layouts = {name: _layout_from(meta[name], state(name)["coords"]) if name in meta else None for name in ("layout_2d", "layout_nd")}
    clusterer = restore_clusterer(meta["clusterer"], state("clusterer")) if "clusterer" in meta else None
    outliers = None
    if "outliers" in meta:
        parts = state("outliers")
        outliers = OutlierModel(int(meta["outliers"]["min_samples"]), *(_per_row(len(vectors), parts[name])
                                for name in ("core", "point_lambda", "cluster_max_lambda")))
    return {
        "ids": ids, "xy": xy, "clusters": Clusters(labels, probabilities, scores, _stability(arrays["stability"])),
        "umap": Umap(**meta["umap"]),
        "hdbscan": Hdbscan(**meta["hdbscan"]), "sampling": Sampling(**meta["sampling"]), "sample": int(meta["sample"]),
        "key": str(meta["key"]), "vectors": vectors, "layout_2d": layouts["layout_2d"], "layout_nd": layouts["layout_nd"],
        "clusterer": clusterer, "outliers": outliers,
    }


def _layout_from(params: dict, coords: np.ndarray) -> Layout:
    if coords.ndim != 2 or coords.dtype.kind != "f":
        raise ValueError("not a layout")
    return Layout(coords, float(params["a"]), float(params["b"]), float(params["learning_rate"]), float(params["repulsion_strength"]),
                  int(params["negative_sample_rate"]), float(params["local_connectivity"]), int(params["seed"]))


def _per_row(n: int, values: np.ndarray) -> np.ndarray:
    if values.shape != (n,) or values.dtype.kind != "f":
        raise ValueError("not one value per fitted point")
    return values


def _stability(values: np.ndarray) -> np.ndarray:
    if values.ndim != 1 or values.dtype.kind != "f":
        raise ValueError("not a stability per cluster")
    return values


def _strings(values) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError("not a list of ids")
    return values


def _check_rows(n: int, *arrays: np.ndarray) -> None:
    if any(len(a) != n or a.dtype.kind not in "fi" for a in arrays):
        raise ValueError("arrays don't match the ids")


def map_3d(ws: Workspace, analysis: Analysis) -> np.ndarray:
    """3D coordinates for the analysis's items (its own UMAP fit, on a sample as the analysis's), cached like the 2D map.

    Raises:
        NotFound: the collection is gone.
    """
    cache = AnalysisCache.of(ws, analysis)
    path = cache.dir / f"xyz-{cache.key}-{analysis.version}.npz"
    cached = cache.read(path)
    if cached is not None and cached[0].get("ids") == analysis.ids:
        xyz = cached[1].get("xyz")
        if xyz is not None and xyz.shape == (len(analysis.ids), 3) and xyz.dtype.kind == "f":
            return xyz
    items = read_vectors(ws.store.open(analysis.collection, analysis.space), vector_cache_dir(ws.settings.data_dir))
    position = {id_: i for i, id_ in enumerate(items.ids)}
    vectors = items.vectors[[position[i] for i in analysis.ids if i in position]]
    use_numba_cache()
    sample = analysis.sampling.pick(len(vectors), analysis.umap.seed)
    if sample is None:
        _, xyz = fit_projection(vectors, analysis.umap, 3)
    else:
        fitted = np.asarray(vectors[sample], dtype=np.float32)
        rest = np.setdiff1d(np.arange(len(vectors)), sample)
        layout, xyz = fit_projection(fitted, analysis.umap, 3)
        near = nearest(vectors[rest], fitted, min(analysis.umap.n_neighbors, len(fitted) - 1))
        xyz = _merge(sample, rest, xyz, place(layout, near, 3))
    for old in cache.dir.glob(f"xyz-{cache.key}-*.npz"):  # keep only the latest
        old.unlink(missing_ok=True)
    cache.write(path, {"ids": list(analysis.ids)}, {"xyz": xyz})
    return xyz
