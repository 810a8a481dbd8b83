"""Tag suggestions learned from the analyst's own tags, on the stored vectors (nothing is embedded again).

For each tag on at least MIN_EXAMPLES items a logistic regression tells its items from the negatives: items that
carry other tags but not this one, and items the analyst rejected for it. Without enough of those (a first tag,
say), a seeded sample of untagged items stands in as negatives (each half scored by a model taught the other). It then scores the untagged items: each gets its
best tag when that tag's probability is at least MIN_CONFIDENCE. A tag with fewer examples, or one the analyst
only named (`want`), starts zero-shot in a space with a text tower: its name is scored against the items as
cluster naming scores its vocabulary, with the vocabulary as the other choices.

Accepted suggestions become ordinary tags; rejected ones are kept in <data dir>/suggestions/<collection>.<space>.json
(written whole, atomically) and are negatives of the next fit.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import MediaError, MMError
from .evaluate import FOLDS, tag_fit, user_tags
from .files import write_atomically
from .safe_io import read_json

MIN_EXAMPLES = 3  # items a tag needs before a classifier learns it (fewer: zero-shot, where the space can)
MIN_CONFIDENCE = 0.5
BACKGROUND = 5  # untagged items sampled as negatives per positive, when a tag has too few real negatives
ZERO_SHOT_SCALE = 100.0  # CLIP's logit scale: softmax over the tag and the vocabulary at this temperature
PROMPT = "a photo of {}"
PICTURES = ("image", "page", "video")


@dataclass(frozen=True)
class Suggestion:
    id: str
    tag: str
    confidence: float  # the classifier's probability, or the zero-shot softmax
    source: str  # "probe" or "zero-shot"


@dataclass
class TagModel:
    """How one tag is suggested: from examples (`positives`, `negatives`, `accuracy`: cross-validated balanced
    accuracy, None when too few to test) or zero-shot."""

    tag: str
    source: str
    positives: int = 0
    negatives: int = 0
    background: int = 0  # of the negatives: untagged items standing in
    accuracy: float | None = None


@dataclass
class Suggestions:
    collection: str
    space: str
    items: list[Suggestion] = field(default_factory=list)  # best first
    models: list[TagModel] = field(default_factory=list)
    probe_accuracy: float | None = None  # the tags' linear probe, as `evaluate` measures it
    notes: list[str] = field(default_factory=list)

    def above(self, threshold: float) -> list[Suggestion]:
        return [s for s in self.items if s.confidence >= threshold]


class Reviews:
    """The analyst's decisions on suggestions of one collection's space: rejected (tag -> item ids) and the tag names
    wanted without examples yet. Raises MMError on a file that can't be read."""

    def __init__(self, data_dir: Path, collection: str, space: str):
        self.path = Path(data_dir) / "suggestions" / f"{collection}.{space}.json"
        self.rejected: dict[str, set[str]] = {}
        self.wanted: list[str] = []
        if os.path.lexists(self.path):
            try:
                data = read_json(self.path, name=self.path.name)
                self.rejected = {str(t): {str(i) for i in ids} for t, ids in dict(data.get("rejected", {})).items()}
                self.wanted = [str(t) for t in data.get("wanted", [])]
            except MediaError as e:
                raise MMError(f"The suggestions file {self.path} is unreadable ({e.reason}): fix it, or delete it to "
                              "forget the rejected suggestions.") from None
            except (AttributeError, TypeError, ValueError) as e:
                raise MMError(f"The suggestions file {self.path} is unreadable ({e}): fix it, or delete it to forget "
                              "the rejected suggestions.") from None

    def save(self) -> None:
        data = {"rejected": {t: sorted(ids) for t, ids in sorted(self.rejected.items()) if ids}, "wanted": self.wanted}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, json.dumps(data, indent=1).encode())
        except OSError as e:
            raise MMError(f"Could not save the reviewed suggestions to {self.path}: {e}. Check that the data dir is "
                          "writable.") from None

    def version(self) -> str:
        """Changes whenever the file does (for caches)."""
        try:
            stat = self.path.stat()
        except OSError:
            return "none"
        return f"{stat.st_mtime_ns}-{stat.st_size}"


def suggest_tags(vectors: np.ndarray, tag_lists: Sequence[Sequence[str]], ids: Sequence[str],
                 rejected: dict[str, set[str]] | None = None, wanted: Sequence[str] = (),
                 embed_texts: Callable[[list[str]], np.ndarray] | None = None, vocabulary: Sequence[str] = (),
                 modalities: Sequence[str] = (), min_confidence: float = MIN_CONFIDENCE) -> Suggestions:
    """Suggestions for the items without tags (see the module docstring).

    Args:
        vectors: unit rows; tag_lists: each item's own tags (`evaluate.user_tags`); ids: the items' ids.
        rejected: tag -> ids rejected for it; wanted: tag names to look for before they have examples.
        embed_texts: the space's text tower (unit vectors), for zero-shot tags; vocabulary: the other choices
            a zero-shot tag competes with; modalities: each item's, for the prompt ("a photo of …" for pictures).
    """
    rejected = rejected or {}
    report = Suggestions("", "")
    counts: dict[str, int] = {}
    for tags in tag_lists:
        for t in set(tags):
            counts[t] = counts.get(t, 0) + 1
    learned = sorted(t for t, n in counts.items() if n >= MIN_EXAMPLES)
    untagged = np.array([not tags for tags in tag_lists])
    row = {id_: i for i, id_ in enumerate(ids)}
    scores = np.full((len(ids), 0), np.nan)
    for tag in learned:
        column, model = _learn(vectors, tag_lists, tag, {row[i] for i in rejected.get(tag, ()) if i in row}, untagged)
        scores = np.column_stack([scores, column])
        report.models.append(model)
    zero = [t for t in dict.fromkeys([*wanted, *sorted(counts)]) if t not in learned]
    if zero and embed_texts is not None:
        picture = np.array([m in PICTURES for m in modalities]) if len(modalities) else np.ones(len(ids), dtype=bool)
        scores = np.column_stack([scores, zero_shot(vectors, zero, embed_texts, vocabulary, picture)])
        report.models += [TagModel(t, "zero-shot", positives=counts.get(t, 0)) for t in zero]
    elif zero:
        report.notes.append(f"{', '.join(zero)}: need {MIN_EXAMPLES} tagged items each (this space has no text "
                            "model to look for a tag by its name)")
    names = [m.tag for m in report.models]
    for tag, ids_ in rejected.items():  # a rejected suggestion is never made again
        if tag in names:
            for i in ids_:
                if i in row:
                    scores[row[i], names.index(tag)] = np.nan
    for i in np.flatnonzero(untagged):
        if scores.shape[1] and not np.isnan(scores[i]).all():
            j = int(np.nanargmax(scores[i]))
            if scores[i, j] >= min_confidence:
                report.items.append(Suggestion(ids[i], names[j], float(scores[i, j]), report.models[j].source))
    report.items.sort(key=lambda s: (-s.confidence, s.id))
    fit = tag_fit(vectors, tag_lists, min_per_tag=MIN_EXAMPLES)
    report.probe_accuracy = fit.probe_accuracy if fit else None
    return report


def _learn(vectors: np.ndarray, tag_lists, tag: str, rejected: set[int], untagged: np.ndarray) -> tuple[np.ndarray, TagModel]:
    """One tag's probabilities for every item, and how they were learned."""
    from .evaluate import fit_scores

    positive = np.array([tag in tags for tags in tag_lists])
    negative = np.array([bool(tags) and tag not in tags for tags in tag_lists])
    negative[list(rejected)] = True
    negative &= ~positive
    model = TagModel(tag, "probe", int(positive.sum()), int(negative.sum()))
    picked = np.zeros(0, dtype=np.int64)
    if negative.sum() < MIN_EXAMPLES:  # nothing to tell it from yet: untagged items stand in as negatives
        pool = np.flatnonzero(untagged & ~negative)
        picked = np.random.default_rng(0).choice(pool, min(len(pool), BACKGROUND * int(positive.sum())), replace=False)
        model.background = len(picked)
        model.negatives += len(picked)
    if not (negative.any() or len(picked)):
        return np.full(len(vectors), np.nan), model
    train = positive | negative
    train[picked] = True
    x, y = vectors[train], positive[train]
    model.accuracy = _balanced_accuracy(x, y)
    scores = fit_scores(x, y[:, None], vectors)[:, 0]
    if len(picked) >= 2:
        # Some stand-ins may well carry the tag: each half of them is scored by a model that learned from the other
        # half only, so none is kept from being suggested by having been taught as a negative.
        halves = picked[: len(picked) // 2], picked[len(picked) // 2 :]
        for taught, scored in (halves, halves[::-1]):
            part = positive | negative
            part[taught] = True
            scores[scored] = fit_scores(vectors[part], positive[part][:, None], vectors[scored])[:, 0]
    return scores, model


def _balanced_accuracy(x: np.ndarray, y: np.ndarray) -> float | None:
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold

    from .evaluate import fit_scores

    folds = min(FOLDS, int(y.sum()), int((~y).sum()))
    if folds < 2:
        return None
    predicted = np.zeros(len(y), dtype=bool)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=0).split(x, y):
        predicted[test] = fit_scores(x[train], y[train][:, None], x[test])[:, 0] >= 0.5
    return float(balanced_accuracy_score(y, predicted))


def zero_shot(vectors: np.ndarray, tags: Sequence[str], embed_texts, vocabulary: Sequence[str], picture: np.ndarray) -> np.ndarray:
    """[items, tags]: each tag's share of a softmax over the tags and the vocabulary's labels (the other things an
    item might be), from cosines with the tag names ("a photo of <tag>" for pictures, the bare name for texts)."""
    others = [v for v in vocabulary if v not in tags]
    names = list(tags) + others
    out = np.zeros((len(vectors), len(tags)))
    for is_picture in (True, False):
        rows = np.flatnonzero(picture == is_picture)
        if len(rows):
            text = embed_texts([PROMPT.format(n) if is_picture else n for n in names])
            logits = ZERO_SHOT_SCALE * (vectors[rows] @ text.T)
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            out[rows] = (p / p.sum(axis=1, keepdims=True))[:, : len(tags)]
    return out


def suggestions(ws, collection: str, space: str) -> Suggestions:
    """`suggest_tags` on a collection's space, with the analyst's reviews and, where the space's family names
    clusters, its text tower and the naming vocabulary for zero-shot tags.

    Raises:
        NotFound: no such collection or space. MMError: the suggestions file can't be read. StoreError.
    """
    from .analysis.naming import vocabulary
    from .vector_cache import items_with_vectors, vector_cache_dir

    target = ws.store.open(collection, space)
    items = items_with_vectors(target, vector_cache_dir(ws.settings.data_dir))
    reviews = Reviews(ws.settings.data_dir, collection, space)
    embed = text_tower(ws, collection, space)
    report = suggest_tags(np.asarray(items.vectors, dtype=np.float32), [user_tags(m) for m in items.metadatas], items.ids,
                          reviews.rejected, reviews.wanted, embed, vocabulary(ws.settings.data_dir / "vocabulary.txt"),
                          [str(m.get("modality", "")) for m in items.metadatas])
    report.collection, report.space = collection, space
    return report


def text_tower(ws, collection: str, space: str):
    """The space's text model (`embed_texts`) where its family names clusters and the configured model is the one
    that made the collection; else None (also when the model can't be loaded)."""
    from .spaces.registry import spec_of

    spec = spec_of(space)
    if spec is None or not spec.names_clusters:
        return None
    try:
        model = ws.space(space)
        recorded = ws.store.open(collection, space).space
    except MMError:
        return None
    return model.embed_texts if recorded and recorded.model_id == model.info.model_id else None


def accept(ws, collection: str, space: str, chosen: Sequence[Suggestion]) -> int:
    """Tag the items with their suggested tags (one store update per tag); returns how many items were tagged.

    Raises:
        StoreError: the store refused the update.
    """
    target = ws.store.open(collection, space)
    by_tag: dict[str, list[str]] = {}
    for s in chosen:
        by_tag.setdefault(s.tag, []).append(s.id)
    for tag, ids in by_tag.items():
        target.update_tags(ids, add=[tag])
    return sum(len(ids) for ids in by_tag.values())


def reject(ws, collection: str, space: str, chosen: Sequence[Suggestion]) -> None:
    """Remember these suggestions as wrong: negatives of their tag from the next fit on, never suggested again.

    Raises:
        MMError: the suggestions file can't be read or written.
    """
    reviews = Reviews(ws.settings.data_dir, collection, space)
    for s in chosen:
        reviews.rejected.setdefault(s.tag, set()).add(s.id)
    reviews.save()


def want(ws, collection: str, space: str, tag: str) -> None:
    """Look for `tag` before it has examples (zero-shot, in a space with a text tower).

    Raises:
        MMError: an empty name, or the suggestions file can't be read or written.
    """
    tag = tag.strip()
    if not tag:
        raise MMError("Give the tag a name.")
    reviews = Reviews(ws.settings.data_dir, collection, space)
    if tag not in reviews.wanted:
        reviews.wanted.append(tag)
        reviews.save()
