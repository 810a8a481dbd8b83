"""Readable cluster names: distinctive keywords for text (c-TF-IDF), vocabulary labels for images
(scored with the collection's own text encoder), the dominant value of a label-like field otherwise."""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import MediaError, MMError
from ..files import write_atomically
from ..safe_io import MAX_RECORD_BYTES, read_bounded, read_json
from ..store import Items
from .maps import Analysis, AnalysisCache

BUILTIN_VOCABULARY = Path(__file__).with_name("vocabulary.txt")
PROMPT = "a photo of {}"
KEYWORDS = 3
NAMED_SAMPLE = 200  # items per cluster whose documents, vectors and metadata name it
LABELS = 2
LABEL_FIELDS = ("label", "class", "category", "annotation", "csv_label", "csv_category")
STOPWORDS = frozenset(
    "a an the and or but if of to in on at by for with from as is are was were be been being it its this that "
    "these those there their they them he she his her we our you your i me my not no so than then too very can "
    "will just into over under up down out off again about above below between both each few more most other "
    "some such only own same all any has have had do does did doing while where when which who whom what why how "
    "near next onto one two three jpg png csv".split()
)
WORD = re.compile(r"[^\W\d_][\w'-]{2,}", re.UNICODE)


def vocabulary(user_file: Path | None = None) -> list[str]:
    """The built-in labels plus the user's own (one per line in `user_file`), without duplicates.

    Raises:
        MMError: `user_file` exists but can't be read (see `user_labels`).
    """
    words = BUILTIN_VOCABULARY.read_text().splitlines() + user_labels(user_file).splitlines()
    return list(dict.fromkeys(w.strip() for w in words if w.strip()))


def user_labels(user_file: Path | None) -> str:
    """The text of the user's own vocabulary file ("" when there is none), read bounded: it lives in the data dir,
    which may come from someone else's backup.

    Raises:
        MMError: it exists but is not a regular file, can't be read or is over MAX_RECORD_BYTES.
    """
    if user_file is None or not os.path.lexists(user_file):
        return ""
    try:
        return read_bounded(user_file, MAX_RECORD_BYTES, None).decode("utf-8", errors="replace")
    except MediaError as e:
        raise MMError(f"The vocabulary file {e}: fix it, or delete it to use the built-in labels only.") from None


def name_clusters(analysis: Analysis, items: Items, embed_texts=None, labels: list[str] | None = None,
                  captions: dict[str, str] | None = None) -> dict[int, str]:
    """A name for each cluster of the analysis.

    Args:
        analysis: the map whose clusters to name; items: the collection's items (with vectors) — only those
            in the analysis are used.
        embed_texts: the collection's text encoder (Space.embed_texts) when its space has one; image
            clusters are then named with the best distinctive `labels`.
        labels: the vocabulary (default: the built-in one).
        captions: written captions of pictures by the picture's id (mmcore.captions): a cluster of pictures gets
            its captions' distinctive words beside its vocabulary labels.
    """
    position = {id_: i for i, id_ in enumerate(items.ids)}
    rows = np.array([position.get(id_, -1) for id_ in analysis.ids])
    clusters = analysis.cluster_ids
    if not clusters:
        return {}
    members = {c: rows[(analysis.labels == c) & (rows >= 0)] for c in clusters}
    names: dict[int, str] = {}
    text_clusters = [c for c in clusters if _share(items, members[c], "text") >= 0.5]
    names.update(_keywords(items, {c: members[c] for c in text_clusters}))
    rest = [c for c in clusters if c not in names]
    if rest and embed_texts is not None:
        names.update(_vocabulary_labels(items, {c: members[c] for c in rest}, embed_texts, labels or vocabulary()))
    if rest and captions:
        said = Items(ids=[], vectors=items.vectors[:0], metadatas=[], documents=[])
        rows_of: dict[int, list[int]] = {}
        for c in rest:
            for r in members[c]:
                if (text := captions.get(items.ids[r])) is not None:
                    rows_of.setdefault(c, []).append(len(said.documents))
                    said.documents.append(text)
        for c, words in _keywords(said, {c: np.asarray(rows) for c, rows in rows_of.items()}).items():
            names[c] = f"{names[c]} ({words})" if c in names else words
    for c in clusters:
        names.setdefault(c, _dominant_label(items, members[c]) or f"cluster {c}")
    return names


def _share(items: Items, rows: np.ndarray, modality: str) -> float:
    if len(rows) == 0:
        return 0.0
    return sum(items.metadatas[r].get("modality") == modality for r in rows) / len(rows)


def _keywords(items: Items, members: dict[int, np.ndarray]) -> dict[int, str]:
    """c-TF-IDF: each cluster's words weighed by how much more often they occur there than overall."""
    if not members:
        return {}
    counts = {c: Counter(w for r in rows for w in _words(items.documents[r] or "")) for c, rows in members.items()}
    total = Counter()
    for counter in counts.values():
        total.update(counter)
    if not total:
        return {}
    average_words = sum(total.values()) / len(counts)
    names = {}
    for c, counter in counts.items():
        size = sum(counter.values()) or 1
        scored = {w: (n / size) * np.log(1 + average_words / total[w]) for w, n in counter.items() if n >= 2 or len(counter) < 5}
        best = sorted(scored, key=lambda w: (-scored[w], w))[:KEYWORDS]
        if best:
            names[c] = " · ".join(best)
    return names


def _words(text: str) -> list[str]:
    return [w for w in (m.group().lower() for m in WORD.finditer(text)) if w not in STOPWORDS]


def _vocabulary_labels(items: Items, members: dict[int, np.ndarray], embed_texts, labels: list[str]) -> dict[int, str]:
    """The labels closest to each cluster's centroid, relative to how close they are to every cluster (so a
    label that fits everything, like "photo", names nothing)."""
    clusters = [c for c, rows in members.items() if len(rows)]
    if not clusters or not labels:
        return {}
    centroids = np.stack([items.vectors[members[c]].mean(axis=0) for c in clusters])
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    label_vectors = embed_texts([PROMPT.format(label) for label in labels])
    similarity = centroids @ label_vectors.T  # [clusters, labels]
    distinct = similarity - similarity.mean(axis=0, keepdims=True) if len(clusters) > 1 else similarity
    return {c: " · ".join(labels[j] for j in np.argsort(-distinct[i])[:LABELS]) for i, c in enumerate(clusters)}


def _dominant_label(items: Items, rows: np.ndarray) -> str | None:
    """For collections without a text encoder: the most common value of a label-like field, with its share."""
    for field in LABEL_FIELDS:
        values = [items.metadatas[r].get(field) for r in rows if items.metadatas[r].get(field) is not None]
        if len(values) >= max(1, len(rows) // 2):
            value, n = Counter(values).most_common(1)[0]
            return f"{field} {value} ({n / len(rows):.0%})"
    return None


def cluster_names(ws, analysis: Analysis) -> dict[int, str]:
    """Automatic names for an analysis's clusters, cached on disk next to it, from a seeded sample of at most
    NAMED_SAMPLE items per cluster (their words, vectors or labels): reading every item's metadata and document
    from the store would take seconds at 100k items, and a few hundred items name a cluster as well.

    In a space whose family names clusters (mmcore.spaces.registry: `names_clusters`), the space's own text encoder
    scores the vocabulary (built-in plus `<data dir>/vocabulary.txt`); elsewhere, or when the model can't be
    loaded, image clusters fall back to label-like metadata or "cluster N".
    """
    import hashlib
    import json

    from ..errors import MMError
    from ..spaces.registry import spec_of
    from ..vector_cache import vector_cache_dir

    user_file = ws.settings.data_dir / "vocabulary.txt"
    labels = vocabulary(user_file)
    digest = hashlib.sha1("\n".join(labels).encode()).hexdigest()[:8]
    path = AnalysisCache.of(ws, analysis).file(analysis, "names", f"-{digest}.json")
    if os.path.lexists(path):
        try:  # names cached by an earlier call; anything else (torn, crafted) is named again
            return {int(k): str(v) for k, v in read_json(path).items()}
        except (MediaError, AttributeError, ValueError, TypeError):
            pass
    items = _named_sample(ws.store.open(analysis.collection, analysis.space), vector_cache_dir(ws.settings.data_dir), analysis)
    embed = None
    spec = spec_of(analysis.space)
    if spec is not None and spec.names_clusters:
        try:
            space = ws.space(analysis.space)
            space_info = ws.store.open(analysis.collection, analysis.space).space
            if space_info and space_info.model_id == space.info.model_id:
                embed = space.embed_texts
        except MMError:
            embed = None
    names = name_clusters(analysis, items, embed, labels, _written_captions(ws.store.open(analysis.collection, analysis.space), items))
    write_atomically(path, json.dumps({str(k): v for k, v in names.items()}).encode())
    return names


def _written_captions(collection, items: Items) -> dict[str, str]:
    """The captions a captioning model wrote (mmcore.captions) for the sample's pictures, by picture id."""
    from ..captions import PICTURES, captions_of

    return captions_of(collection, [i for i, m in zip(items.ids, items.metadatas) if m.get("modality") in PICTURES],
                       written_only=True)


def save_user_labels(user_file: Path, text: str) -> None:
    """Write the user's own vocabulary (one label per line).

    Raises:
        MMError: the data dir isn't writable.
    """
    try:
        write_atomically(user_file, (text.strip() + "\n").encode())
    except OSError as e:
        raise MMError(f"Could not save the vocabulary to {user_file}: {e}. Check that the data dir is writable.") from None


def _named_sample(collection, cache_dir: Path, analysis: Analysis) -> Items:
    """At most NAMED_SAMPLE items of each cluster (all of a smaller one), with their metadata, documents and vectors."""
    from ..vector_cache import read_vectors

    rng = np.random.default_rng(0)
    picked = []
    for c in analysis.cluster_ids:
        members = np.flatnonzero(analysis.labels == c)
        picked.append(members if len(members) <= NAMED_SAMPLE else np.sort(rng.choice(members, NAMED_SAMPLE, replace=False)))
    ids = [analysis.ids[i] for i in np.concatenate(picked)] if picked else []
    cached = read_vectors(collection, cache_dir)
    row = {id_: i for i, id_ in enumerate(cached.ids)}
    ids = [i for i in ids if i in row]  # deleted since the analysis: not named by
    found = [item for start in range(0, len(ids), collection.max_batch) for item in collection.get(ids[start : start + collection.max_batch])]
    return Items(ids=ids, vectors=np.asarray(cached.vectors[[row[i] for i in ids]], dtype=np.float32).reshape(len(ids), cached.vectors.shape[1]),
                 metadatas=[item["metadata"] for item in found], documents=[item["document"] for item in found])
