"""How well a space's vectors fit a collection: retrieval between paired items (a caption and its image) and how
well the analyst's tags can be told apart (nearest neighbours, a linear probe). Every figure comes with the number
of items it rests on and a sentence that says what it means.

Pairs are the links an image-caption CSV made (metadata `pair_of`: the caption's image item) or that imported
vectors carry in a `pair_of` column. Tags are the items' own, less those mmscope writes itself (duplicates,
taxonomy names), which would only measure mmscope against itself.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from .analysis.duplicates import DUPLICATE_OF, DUPLICATE_TAG
from .analysis.taxonomy import TAG_PREFIX
from .errors import MMError

KS = (1, 5, 10)
NEIGHBOURS = 10  # k of the nearest-neighbour tag precision
MIN_PER_TAG = 3  # a tag on fewer items is left out of the tag figures (a probe can't learn or be tested on it)
FOLDS = 5
PROBE_C = 1.0  # scikit-learn's default, on vectors scaled as fit_scores says
PROBE_ITERATIONS = 2000
PROBE_MAX = 5000
BLOCK = 1024  # queries scored at a time: [BLOCK, n] similarities in memory, never [n, n]
NOUNS = {"text": ("caption", "captions"), "image": ("image", "images"), "video": ("video segment", "video segments"),
         "page": ("page", "pages"), "audio": ("sound", "sounds")}


@dataclass
class Retrieval:
    """One direction of paired retrieval: each query ranks every target; `recall[k]` is the share of queries whose
    (first) pair is among the top k, `mean_rank` the average rank of that pair (1 = first)."""

    direction: str  # "text-to-image"
    queries: int
    targets: int
    recall: dict[int, float]
    mean_rank: float
    query_noun: tuple[str, str] = ("item", "items")
    target_noun: tuple[str, str] = ("item", "items")

    def sentence(self, k: int = 5) -> str:
        one, many = self.query_noun
        return (f"{many} find their {self.target_noun[0]} in the top {k} (of {self.targets:,} {self.target_noun[1]}) for "
                f"{self.recall[k]:.0%} of {self.queries:,} {many}; on average it ranks {self.mean_rank:.1f}")


@dataclass
class TagFit:
    """How well the tags can be told apart in this space: `knn_precision`, the share of each tagged item's
    NEIGHBOURS nearest tagged items that share a tag with it (`knn_chance`: the same share for neighbours drawn at
    random; `knn_best`: the most possible, as an item with fewer than k others of its tags can't fill its k);
    `probe_accuracy`, how often a logistic regression trained on other items (cross-validation,
    `folds`) puts one of an item's own tags first (`probe_chance`: always guessing the commonest tag)."""

    items: int
    tags: dict[str, int]  # tag -> items carrying it (those used)
    left_out: dict[str, int]  # tags on fewer than MIN_PER_TAG items
    k: int
    knn_precision: float
    knn_chance: float
    knn_best: float
    probe_accuracy: float | None
    probe_chance: float
    folds: int
    zero_shot_accuracy: float | None = None  # the tag names alone, scored with the space's text model
    probe_items: int = 0  # the tagged items the probe was cross-validated on (a sample of PROBE_MAX when more)

    def sentences(self) -> list[str]:
        lines = [f"of the {self.k} nearest tagged items of a tagged item, {self.knn_precision:.0%} share one of its tags on "
                 f"average (by chance: {self.knn_chance:.0%}; at most: {self.knn_best:.0%}); {self.items:,} items, {len(self.tags)} tags"]
        if self.probe_accuracy is not None:
            lines.append(f"a linear probe puts one of an item's own tags first for {self.probe_accuracy:.0%} of "
                         f"{self.probe_items or self.items:,} tagged items"
                         + (f" (a sample of the {self.items:,})" if self.probe_items and self.probe_items < self.items else "")
                         + f" ({self.folds}-fold cross-validation; always guessing the "
                         f"commonest tag: {self.probe_chance:.0%})")
        if self.zero_shot_accuracy is not None:
            lines.append(f"with no examples, the tag names alone scored by the space's text model put one of an item's "
                         f"own tags first for {self.zero_shot_accuracy:.0%} of {self.items:,} tagged items")
        return lines


@dataclass
class Evaluation:
    collection: str
    space: str
    items: int
    pairs: int
    retrieval: list[Retrieval] = field(default_factory=list)
    tags: TagFit | None = None
    notes: list[str] = field(default_factory=list)  # why a figure is missing

    def lines(self) -> list[str]:
        """The report as plain text lines (no markup: tags and names in it are the user's)."""
        out = [f"{self.collection} ({self.space}): {self.items:,} items, {self.pairs:,} pairs"]
        for r in self.retrieval:
            recalls = ", ".join(f"R@{k} {r.recall[k]:.1%}" for k in KS)
            out += [f"{r.direction}: {recalls}, mean rank {r.mean_rank:.1f} ({r.queries:,} queries, {r.targets:,} targets)",
                    f"  {r.sentence()}"]
        if self.tags is not None:
            t = self.tags
            probe = "" if t.probe_accuracy is None else f", probe accuracy {t.probe_accuracy:.1%} (chance {t.probe_chance:.1%})"
            probe += "" if t.zero_shot_accuracy is None else f", zero-shot {t.zero_shot_accuracy:.1%}"
            out.append(f"tags: precision@{t.k} {t.knn_precision:.1%} (chance {t.knn_chance:.1%}, best {t.knn_best:.1%}){probe} "
                       f"({t.items:,} items, {len(t.tags)} tags)")
            out += [f"  {s}" for s in t.sentences()]
            if t.left_out:
                out.append("  left out (fewer than " f"{MIN_PER_TAG} items): " + ", ".join(f"{k} ({v})" for k, v in t.left_out.items()))
        out += [f"note: {n}" for n in self.notes]
        return out

    def to_json(self) -> dict:
        data = asdict(self)
        for r in data["retrieval"]:
            r["recall"] = {str(k): v for k, v in r["recall"].items()}
            r["sentence"] = Retrieval(**{**r, "recall": {int(k): v for k, v in r["recall"].items()}}).sentence()
        if self.tags is not None:
            data["tags"]["sentences"] = self.tags.sentences()
        return data


def ranks(queries: np.ndarray, targets: np.ndarray, truth: Sequence[Sequence[int]]) -> np.ndarray:
    """The rank (1 = first) of each query's best-placed true target among all targets, by cosine (unit vectors).
    A wrong target that ties with the true one counts as ranked above it."""
    out = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), BLOCK):
        scores = queries[start : start + BLOCK] @ targets.T
        for i, row in enumerate(scores):
            true = np.asarray(truth[start + i])
            best = row[true].max()
            wrong = np.ones(len(row), dtype=bool)
            wrong[true] = False
            out[start + i] = 1 + int((row[wrong] >= best).sum())
    return out


def retrieval(queries: np.ndarray, targets: np.ndarray, truth: Sequence[Sequence[int]], direction: str,
              query_noun=("item", "items"), target_noun=("item", "items")) -> Retrieval:
    """Recall@1/5/10 and mean rank of queries whose true targets (indices into `targets`) are `truth`."""
    r = ranks(queries, targets, truth)
    return Retrieval(direction, len(r), len(targets), {k: float((r <= k).mean()) for k in KS}, float(r.mean()),
                     query_noun, target_noun)


def pair_retrieval(vectors: np.ndarray, pairs: Sequence[tuple[int, int]], modalities: Sequence[str] = ()) -> list[Retrieval]:
    """Both directions of retrieval between paired rows of `vectors`: (query row, its target row), e.g. (caption,
    image). The gallery of each direction is every row on that side of some pair; an image with several captions
    counts as found from the image's side when any of them is."""
    if not pairs:
        return []
    left = sorted({a for a, _ in pairs})
    right = sorted({b for _, b in pairs})
    at_left, at_right = {row: i for i, row in enumerate(left)}, {row: i for i, row in enumerate(right)}
    forward = [[at_right[b]] for a, b in sorted(pairs)]
    queries = [a for a, _ in sorted(pairs)]
    back: dict[int, list[int]] = {}
    for a, b in pairs:
        back.setdefault(at_right[b], []).append(at_left[a])
    kind = lambda rows: Counter(modalities[r] for r in rows).most_common(1)[0][0] if len(modalities) else "item"  # noqa: E731
    q_kind, t_kind = kind(left), kind(right)
    if q_kind != t_kind:
        q_noun, t_noun = NOUNS.get(q_kind, ("item", "items")), NOUNS.get(t_kind, ("item", "items"))
        there, back_again = f"{q_kind}-to-{t_kind}", f"{t_kind}-to-{q_kind}"
    else:  # e.g. two texts: the item that names its pair, and the item named
        q_noun, t_noun = ("item", "items"), ("linked item", "linked items")
        there, back_again = "item-to-linked", "linked-to-item"
    return [
        retrieval(vectors[queries], vectors[right], forward, there, q_noun, t_noun),
        retrieval(vectors[right], vectors[left], [back[i] for i in range(len(right))], back_again, t_noun, q_noun),
    ]


def user_tags(meta: dict) -> list[str]:
    """An item's own tags: those mmscope writes itself (duplicates, taxonomy names) left out."""
    return [t for t in meta.get("tags") or [] if t != DUPLICATE_TAG and not t.startswith((DUPLICATE_OF, TAG_PREFIX))]


def tag_matrix(tag_lists: Sequence[Sequence[str]], min_per_tag: int = MIN_PER_TAG) -> tuple[np.ndarray, list[str], dict[str, int], dict[str, int]]:
    """(rows of items with a used tag, a boolean matrix [those rows, used tags], used tags, {used: count},
    {left out: count}), tags used when on at least `min_per_tag` items."""
    counts = Counter(t for tags in tag_lists for t in set(tags))
    used = sorted(t for t, n in counts.items() if n >= min_per_tag)
    left_out = {t: n for t, n in sorted(counts.items()) if n < min_per_tag}
    column = {t: j for j, t in enumerate(used)}
    rows = [i for i, tags in enumerate(tag_lists) if any(t in column for t in tags)]
    matrix = np.zeros((len(rows), len(used)), dtype=bool)
    for r, i in enumerate(rows):
        for t in tag_lists[i]:
            if t in column:
                matrix[r, column[t]] = True
    return np.asarray(rows, dtype=np.int64), matrix, used, left_out


def tag_fit(vectors: np.ndarray, tag_lists: Sequence[Sequence[str]], k: int = NEIGHBOURS, folds: int = FOLDS,
            min_per_tag: int = MIN_PER_TAG, probe: bool = True) -> TagFit | None:
    """Nearest-neighbour precision and linear-probe accuracy (unless not `probe`) of the tags (see TagFit); None when
    fewer than two tags have `min_per_tag` items (nothing to tell apart)."""
    rows, y, used, left_out = tag_matrix(tag_lists, min_per_tag)
    if len(used) < 2:
        return None
    x = vectors[rows]
    n = len(rows)
    k = min(k, n - 1)
    yf = y.astype(np.float32)
    precision, chance, best = [], [], []
    for start in range(0, n, BLOCK):
        scores = x[start : start + BLOCK] @ x.T
        shares = (yf[start : start + BLOCK] @ yf.T) > 0  # [block, n]: shares a tag with each item
        for i, row in enumerate(scores):
            row[start + i] = -np.inf  # never its own neighbour
            nearest = np.argpartition(-row, k - 1)[:k]
            precision.append(shares[i, nearest].mean())
            chance.append((shares[i].sum() - 1) / (n - 1))
            best.append(min(k, shares[i].sum() - 1) / k)
    counts = y.sum(axis=0)
    fit = TagFit(n, {t: int(c) for t, c in zip(used, counts)}, left_out, k, float(np.mean(precision)), float(np.mean(chance)),
                  float(np.mean(best)), None, float(counts.max() / n), min(folds, int(counts.min())))
    if probe:  # on at most PROBE_MAX items: 5 folds of a logistic regression per tag grow with the items and tags
        sample = np.arange(n) if n <= PROBE_MAX else _per_tag_sample(y, PROBE_MAX)
        fit.probe_accuracy, fit.probe_items = _probe_accuracy(x[sample], y[sample], folds), len(sample)
        fit.probe_chance = float(y[sample].sum(axis=0).max() / len(sample))
        fit.folds = min(folds, int(y[sample].sum(axis=0).min()))
    return fit


def _per_tag_sample(y: np.ndarray, size: int) -> np.ndarray:
    """Rows of about `size` items, up to an equal share of each tag's (seeded), so that every tag stays in it."""
    rng = np.random.default_rng(0)
    share = max(1, size // y.shape[1])
    picked = [rng.choice(rows, min(len(rows), share), replace=False) for rows in (np.flatnonzero(column) for column in y.T)]
    return np.unique(np.concatenate(picked))


def _probe_accuracy(x: np.ndarray, y: np.ndarray, folds: int) -> float | None:
    """Cross-validated top-1 accuracy of one logistic regression per tag: an item counts as right when the tag
    scored highest is one of its own. Folds are stratified on each item's rarest tag, so every tag is in every
    training part."""
    from sklearn.model_selection import StratifiedKFold

    counts = y.sum(axis=0)
    folds = min(folds, int(counts.min()))
    if folds < 2:
        return None
    rarest = np.where(y, counts[None, :], np.iinfo(np.int64).max).argmin(axis=1)
    scores = np.zeros(y.shape, dtype=np.float64)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=0).split(x, rarest):
        scores[test] = fit_scores(x[train], y[train], x[test])
    return float(y[np.arange(len(y)), scores.argmax(axis=1)].mean())


def fit_scores(x: np.ndarray, y: np.ndarray, new: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Probabilities [len(new), tags] from one logistic regression per tag column of `y` (True: carries it),
    trained on `x`; a column with one class only scores that class. `weights` [len(x), tags]: per-sample weights.

    Unit vectors are scaled by sqrt(d) first, so that a coordinate varies by about 1 whatever the dimension and
    scikit-learn's default regularisation (C=1) means the same in 64 as in 768 dimensions: on unit vectors as they
    are, it holds every weight so small that hardly a probability reaches 0.9 (digits, BBC articles, photos with
    5 examples a tag; with the scaling 96%, 96% and 86% of those at 0.9 are right)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    scale = np.sqrt(x.shape[1])
    out = np.zeros((len(new), y.shape[1]))
    for j in range(y.shape[1]):
        labels = y[:, j]
        if labels.all() or not labels.any():
            out[:, j] = float(labels.all())
            continue
        model = LogisticRegression(C=PROBE_C, max_iter=PROBE_ITERATIONS, class_weight="balanced")
        with warnings.catch_warnings():  # a separable set never converges exactly; its probabilities are still sound
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x * scale, labels, sample_weight=None if weights is None else weights[:, j])
        out[:, j] = model.predict_proba(new * scale)[:, 1]
    return out


def evaluate(ws, collection: str, space: str) -> Evaluation:
    """Retrieval between the collection's pairs and the fit of its tags, in `space` (see the module docstring).

    Raises:
        NotFound: no such collection or space. MMError: it is empty. StoreError: the store can't be read.
    """
    from .suggest import text_tower
    from .vector_cache import items_with_vectors, vector_cache_dir

    target = ws.store.open(collection, space)
    items = items_with_vectors(target, vector_cache_dir(ws.settings.data_dir))
    if not len(items):
        raise MMError(f"Collection {collection!r} ({space}) is empty: nothing to evaluate.")
    return evaluate_items(collection, space, items.ids, np.asarray(items.vectors, dtype=np.float32), items.metadatas,
                          text_tower(ws, collection, space))


def evaluate_items(collection: str, space: str, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[dict],
                   embed_texts=None) -> Evaluation:
    """`evaluate` on items already read (unit vectors, rows in the order of `ids`); `embed_texts`: the space's text
    model, when it has one, for the tags' zero-shot accuracy."""
    row = {id_: i for i, id_ in enumerate(ids)}
    pairs = [(i, row[str(m["pair_of"])]) for i, m in enumerate(metadatas) if m.get("pair_of") and str(m["pair_of"]) in row]
    modalities = [str(m.get("modality", "")) for m in metadatas]
    report = Evaluation(collection, space, len(ids), len(pairs), pair_retrieval(vectors, pairs, modalities))
    if not pairs:
        named = sum(bool(m.get("pair_of")) for m in metadatas)
        report.notes.append(f"{named:,} items name a pair that is not in this space" if named else
                            "no pairs: ingest an image-caption CSV (a column of image file names and one of captions), "
                            "or import vectors with a pair_of column, to measure retrieval")
    tag_lists = [user_tags(m) for m in metadatas]
    report.tags = tag_fit(vectors, tag_lists)
    if report.tags is not None and embed_texts is not None:
        from .suggest import PICTURES, zero_shot

        rows, y, used, _ = tag_matrix(tag_lists)
        picture = np.array([modalities[r] in PICTURES for r in rows])
        scores = zero_shot(vectors[rows], used, embed_texts, (), picture)
        report.tags.zero_shot_accuracy = float(y[np.arange(len(rows)), scores.argmax(axis=1)].mean())
    if report.tags is None:
        report.notes.append(f"tag figures need at least two tags with {MIN_PER_TAG} or more items each")
    return report
