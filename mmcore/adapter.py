"""A domain adapter, measured: a residual linear map (in the spirit of CLIP-Adapter) learned on the stored vectors
from the analyst's image-caption pairs or tags, kept only when it does better on items it never saw.

From pairs it learns to move each picture towards its captions (x -> x + xW, W by ridge regression, its strength
picked on a part of the training pairs); from tags, to move each item towards the centre of its tags. A fifth of
the pictures (or tagged items), drawn with a fixed seed, is held out: the figures of `evaluate` on them before and
after (text-to-image recall, or nearest-neighbour tag precision) decide. A kept adapter becomes a derived space of
the collection, `<space>-adapted`, holding every item (pictures moved, the rest as they were) with its metadata;
the original vectors are never changed. The map itself is saved beside it (<data dir>/adapters/).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .errors import MMError
from .evaluate import KS, MIN_PER_TAG, retrieval, tag_fit, tag_matrix, user_tags

HELD_OUT = 0.2
STRENGTHS = (0.01, 0.1, 1.0, 10.0, 100.0)  # ridge penalties tried (per training row)
SEED = 0
SUFFIX = "-adapted"


@dataclass
class AdapterReport:
    collection: str
    space: str
    source: str  # "pairs" or "tags"
    metric: str  # what decided: "text-to-image recall" (mean of R@1/5/10) or "tag precision@10"
    train: int  # pairs or tagged items learned from
    held_out: int
    before: float
    after: float
    strength: float = 0.0
    kept: bool = False
    derived: str | None = None  # the derived space written, when kept
    written: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        verdict = (f"kept: {self.written:,} items written to space {self.derived!r}" if self.derived else
                   "kept (not written: --dry-run)" if self.kept else "not kept: it does no better on held-out items")
        return [f"adapter from {self.source} of {self.collection} ({self.space}): learned on {self.train:,}, "
                f"measured on {self.held_out:,} held out",
                f"{self.metric} on held-out items: {self.before:.1%} before, {self.after:.1%} after", verdict,
                *[f"note: {n}" for n in self.notes]]


def fit_residual(x: np.ndarray, target: np.ndarray, strength: float) -> np.ndarray:
    """W [d, d] minimising |x + xW - target|^2 + strength * n * |W|^2 (ridge, closed form)."""
    d = x.shape[1]
    gram = x.T.astype(np.float64) @ x + strength * len(x) * np.eye(d)
    return np.linalg.solve(gram, x.T.astype(np.float64) @ (target - x)).astype(np.float32)


def apply_residual(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    moved = x + x @ w
    return (moved / np.maximum(np.linalg.norm(moved, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _split(n: int, share: float = HELD_OUT, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cut = max(1, int(round(n * share)))
    return np.sort(order[cut:]), np.sort(order[:cut])


def _recall(queries: np.ndarray, gallery: np.ndarray, truth: list[list[int]]) -> float:
    r = retrieval(queries, gallery, truth, "")
    return float(np.mean([r.recall[k] for k in KS]))


def _pairs_of(pairs: Sequence[tuple[int, int]], pictures: np.ndarray) -> tuple[list[int], list[int], list[list[int]]]:
    """(caption rows, picture rows, each caption's picture as an index into the picture rows) for these pictures."""
    at = {p: i for i, p in enumerate(pictures)}
    kept = [(a, b) for a, b in pairs if b in at]
    return [a for a, _ in kept], list(pictures), [[at[b]] for _, b in kept]


def learn_from_pairs(vectors: np.ndarray, pairs: Sequence[tuple[int, int]]) -> tuple[np.ndarray, dict]:
    """(W, figures): W moves pictures (the items pairs point to) towards their captions; held-out figures
    are text-to-image recall (mean of R@1/5/10) among the held-out pictures, before and after."""
    pictures = np.array(sorted({b for _, b in pairs}))
    if len(pictures) < 10:
        raise MMError(f"An adapter needs at least 10 pictures with captions to learn from and test on; there are {len(pictures)}.")
    train_at, test_at = _split(len(pictures))
    train, test = pictures[train_at], pictures[test_at]

    def rows(chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        inside = set(chosen.tolist())
        kept = [(a, b) for a, b in pairs if b in inside]
        return vectors[[b for _, b in kept]], vectors[[a for a, _ in kept]]

    fit_at, check_at = _split(len(train), seed=SEED + 1)  # the strength is picked on part of the training pictures
    x, t = rows(train[fit_at])
    queries, gallery, truth = _pairs_of(pairs, train[check_at])
    scores = {s: _recall(vectors[queries], apply_residual(vectors[gallery], fit_residual(x, t, s)), truth) for s in STRENGTHS}
    strength = max(STRENGTHS, key=lambda s: (scores[s], s))
    w = fit_residual(*rows(train), strength)
    queries, gallery, truth = _pairs_of(pairs, test)
    before = _recall(vectors[queries], vectors[gallery], truth)
    after = _recall(vectors[queries], apply_residual(vectors[gallery], w), truth)
    return w, {"train": len(train), "held_out": len(test), "before": before, "after": after, "strength": strength}


def learn_from_tags(vectors: np.ndarray, tag_lists: Sequence[Sequence[str]]) -> tuple[np.ndarray, dict]:
    """(W, figures): W moves each tagged item towards the centre of its tags; held-out figures are the nearest-
    neighbour tag precision among the held-out tagged items, before and after."""
    rows, y, used, _ = tag_matrix(tag_lists, MIN_PER_TAG)
    if len(used) < 2:
        raise MMError(f"An adapter from tags needs at least two tags on {MIN_PER_TAG} or more items each.")
    train_at, test_at = _split(len(rows))

    def fit(at: np.ndarray, strength: float) -> np.ndarray:
        x, labels = vectors[rows[at]], y[at].astype(np.float32)
        centres = labels.T @ x / np.maximum(labels.sum(axis=0), 1)[:, None]
        target = labels @ centres / np.maximum(labels.sum(axis=1), 1)[:, None]
        target /= np.maximum(np.linalg.norm(target, axis=1, keepdims=True), 1e-12)
        return fit_residual(x, target, strength)

    def precision(at: np.ndarray, w: np.ndarray | None) -> float:
        x = vectors[rows[at]] if w is None else apply_residual(vectors[rows[at]], w)
        fit_ = tag_fit(x, [[t for t, on in zip(used, y[i]) if on] for i in at], min_per_tag=1, probe=False)
        return fit_.knn_precision if fit_ is not None else 0.0

    fit_at, check_at = _split(len(train_at), seed=SEED + 1)
    scores = {s: precision(train_at[check_at], fit(train_at[fit_at], s)) for s in STRENGTHS}
    strength = max(STRENGTHS, key=lambda s: (scores[s], s))
    w = fit(train_at, strength)
    return w, {"train": len(train_at), "held_out": len(test_at), "before": precision(test_at, None),
               "after": precision(test_at, w), "strength": strength}


def adapt(ws, collection: str, space: str, source: str = "auto", write: bool = True) -> AdapterReport:
    """Learn an adapter from the collection's pairs (`source` "pairs") or tags ("tags"; "auto": pairs where there are
    at least 10 pictures with captions, else tags), measure it on held-out items, and write the derived space
    `<space>-adapted` when it does better (and `write`). A derived space written before is replaced.

    Raises:
        MMError: too few pairs or tags, or an unknown `source`. NotFound: no such collection or space. StoreError.
    """
    from .spaces import SpaceInfo
    from .vector_cache import items_with_vectors, vector_cache_dir

    started = time.perf_counter()
    if source not in ("auto", "pairs", "tags"):
        raise MMError(f"Unknown adapter source {source!r}: use pairs, tags or auto.")
    target = ws.store.open(collection, space)
    items = items_with_vectors(target, vector_cache_dir(ws.settings.data_dir))
    vectors = np.asarray(items.vectors, dtype=np.float32)
    row = {id_: i for i, id_ in enumerate(items.ids)}
    pairs = [(i, row[str(m["pair_of"])]) for i, m in enumerate(items.metadatas) if str(m.get("pair_of", "")) in row]
    if source == "auto":
        source = "pairs" if len({b for _, b in pairs}) >= 10 else "tags"
    if source == "pairs":
        w, figures = learn_from_pairs(vectors, pairs)
        metric = "text-to-image recall (mean of R@1, R@5, R@10)"
        modalities = Counter(str(items.metadatas[b].get("modality", "")) for _, b in pairs)
        moved = np.array([str(m.get("modality", "")) in modalities for m in items.metadatas])
    else:
        w, figures = learn_from_tags(vectors, [user_tags(m) for m in items.metadatas])
        metric = "tag precision@10"
        moved = np.ones(len(items.ids), dtype=bool)
    report = AdapterReport(collection, space, source, metric, figures["train"], figures["held_out"], figures["before"],
                           figures["after"], figures["strength"])
    report.kept = report.after > report.before + 1e-9  # a tie in floating point is no improvement
    if report.kept and write:
        adapted = vectors.copy()
        adapted[moved] = apply_residual(vectors[moved], w)
        digest = hashlib.sha256(w.tobytes()).hexdigest()
        base = target.space
        derived = SpaceInfo(space + SUFFIX, f"adapted:{base.model_id if base else space}", digest[:12], vectors.shape[1])
        report.derived, report.written = derived.space, _write_derived(ws, collection, derived, items, adapted, w)
    report.seconds = time.perf_counter() - started
    return report


def _write_derived(ws, collection: str, info, items, vectors: np.ndarray, w: np.ndarray) -> int:
    """Replace the derived space with these vectors and the items' metadata and documents; save W beside it."""
    from .errors import NotFound
    from .files import write_atomically
    from .vectors import ImportReport, write_new

    try:
        ws.store.delete(collection, info.space)
    except NotFound:
        pass
    report = ImportReport(collection, info, "adapter")
    write_new(ws, collection, info, items.ids, vectors, lambda i: (dict(items.metadatas[i]), items.documents[i]), report,
              media=False)
    folder = ws.settings.data_dir / "adapters"
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / f"{collection}.{info.space}.npy", lambda f: np.save(f, w))
    return report.added

