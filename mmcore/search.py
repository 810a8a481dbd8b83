"""Queries (text, image, audio, an existing item) against a collection, with metadata filters.

A collection may span spaces (mmcore.spaces.registry: by default `clip` for images, text, pages and video, `clap`
for audio; a modality may live in several). A query is embedded once in each space it can be embedded in; scores
of different spaces are never compared: lists from different spaces are merged by rank (reciprocal rank fusion),
never by score. Where a space's model has a probability of its own (SigLIP), hits of the other modality than the
query's (a text query's pictures, an image query's texts) carry it beside the cosine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, time, timezone
from typing import Any, Sequence



from .errors import MMError
from .files import stored_path
from .ingest import LOCATOR_KEYS
from .media import ReadOptions, read_media
from .media.image import read_image
from .maxsim import pooled, query_tokens, rank as rank_by_maxsim, warm
from .nearest import nearest, vector_of
from .spaces.registry import DEFAULT_SPACE, accepts, calibration, names, spec_of
from .store import Match
from .vector_cache import vector_cache_dir
from .workspace import Workspace

MODALITIES = ("image", "text", "page", "video", "audio")
IMPORTED = "vector"  # the modality of an imported vector with neither an image nor a text (mmcore.vectors)
PICTURES = ("image", "page", "video")  # what a text describes, for a model's image-text probability
RRF_K = 60  # the constant of reciprocal rank fusion (Cormack et al. 2009): dampens the weight of top ranks


@dataclass(frozen=True)
class Filters:
    """Metadata conditions, all of which a hit must meet. Dates are inclusive, in UTC."""

    modalities: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    added_from: date | None = None
    added_to: date | None = None
    equals: dict[str, Any] = field(default_factory=dict)

    def to_where(self) -> dict | None:
        clauses: list[dict] = []
        if self.modalities:
            clauses.append({"modality": {"$in": list(self.modalities)}})
        if self.sources:
            clauses.append({"source": {"$in": list(self.sources)}})
        clauses += [{"tags": {"$contains": tag}} for tag in self.tags]
        if self.added_from:
            clauses.append({"added_at": {"$gte": _epoch(self.added_from, time.min)}})
        if self.added_to:
            clauses.append({"added_at": {"$lte": _epoch(self.added_to, time.max)}})
        clauses += [{key: {"$eq": value}} for key, value in self.equals.items()]
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def added_bounds(self) -> tuple[int | None, int | None]:
        """The first and last second (Unix time, inclusive) an item's `added_at` may have; None where unbounded."""
        return (_epoch(self.added_from, time.min) if self.added_from else None,
                _epoch(self.added_to, time.max) if self.added_to else None)

    def matches(self, meta: dict[str, Any]) -> bool:
        """Whether an item with this metadata meets the filters: the same conditions as `to_where`, decided here."""
        tags = meta.get("tags")
        added = meta.get("added_at")
        return (
            (not self.modalities or meta.get("modality") in self.modalities)
            and (not self.sources or meta.get("source") in self.sources)
            and all(isinstance(tags, list) and tag in tags for tag in self.tags)
            and (not self.added_from or (_number(added) and added >= _epoch(self.added_from, time.min)))
            and (not self.added_to or (_number(added) and added <= _epoch(self.added_to, time.max)))
            and all(key in meta and _same(meta[key], value) for key, value in self.equals.items())
        )

    @classmethod
    def parse(cls, conditions: Sequence[str]) -> "Filters":
        """From `key=value` strings: modality, source, tag (repeatable), added_from / added_to (YYYY-MM-DD),
        or any other metadata key (numbers and true/false are typed).

        Raises:
            MMError: a condition is not key=value or a date is malformed.
        """
        lists: dict[str, list] = {"modality": [], "source": [], "tag": []}
        dates: dict[str, date] = {}
        equals: dict[str, Any] = {}
        for condition in conditions:
            key, sep, value = condition.partition("=")
            key = key.strip()
            if not sep or not key:
                raise MMError(f"filter {condition!r} is not key=value")
            key = {"tags": "tag", "modalities": "modality"}.get(key, key)
            if key in lists:
                lists[key].append(value)
            elif key in ("added_from", "added_to"):
                try:
                    dates[key] = date.fromisoformat(value)
                except ValueError:
                    raise MMError(f"filter {condition!r}: dates are written YYYY-MM-DD") from None
            else:
                equals[key] = _typed(value)
        return cls(
            modalities=tuple(lists["modality"]),
            sources=tuple(lists["source"]),
            tags=tuple(lists["tag"]),
            added_from=dates.get("added_from"),
            added_to=dates.get("added_to"),
            equals=equals,
        )


@dataclass(frozen=True)
class Pair:
    """An item linked to a hit as image and caption (`pair_of`): the caption's image, or one of the image's captions."""

    id: str
    modality: str
    source: str
    thumbnail: str | None
    document: str | None


@dataclass(frozen=True)
class Hit:
    """One result: everything needed to show it (thumbnail or text, source, where in the source), and the items
    paired with it (`with_pairs`)."""

    id: str
    score: float
    modality: str
    source: str
    locator: dict[str, Any]
    metadata: dict[str, Any]
    document: str | None
    thumbnail: str | None
    original: str | None
    space: str = DEFAULT_SPACE
    fused: float | None = None  # the reciprocal rank fusion score, in a list merged across spaces
    found_in: tuple[str, ...] = ()  # in a merged list: every space whose list had it (its score is `space`'s)
    probability: float | None = None  # the space's own probability that the hit matches the query (SigLIP's sigmoid)
    pairs: tuple[Pair, ...] = ()

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def where(self) -> str:
        """Where in its source the hit lives, for people: "page 3", "row 12 · chars 0–80", "0:10–0:20"."""
        loc = self.locator
        parts = [f"page {loc['page']}"] if "page" in loc else []
        parts += [f"row {loc['row']}"] if "row" in loc else []
        if "start_s" in loc:
            parts.append(f"{_clock(loc['start_s'])}–{_clock(loc['end_s'])}")
        if "char_start" in loc:
            parts.append(f"chars {loc['char_start']:,}–{loc['char_end']:,}")
        return " · ".join(parts)


@dataclass(frozen=True)
class Query:
    """What to search for: a text, an image or a sound (bytes), or an item already in the collection."""

    text: str | None = None
    image: bytes | None = None
    image_name: str = "query image"
    like: str | None = None
    audio: bytes | None = None
    audio_name: str = "query audio"

    @property
    def kind(self) -> str | None:
        """"text", "image" or "audio": what embeds it; None for an item (it has its vector)."""
        if self.like is not None:
            return None
        return "image" if self.image is not None else "audio" if self.audio is not None else "text"

    @property
    def spaces(self) -> tuple[str, ...]:
        """The spaces this query can be embedded in (an item's own space is known only from the store)."""
        return tuple(s for s in names() if accepts(s, self.kind or "text"))


def model_spaces() -> tuple[str, ...]:
    """The spaces with a model to embed queries; others hold imported vectors (mmcore.vectors)."""
    return names()


def search(
    ws: Workspace, query: Query, collection: str | None = None, k: int = 20, filters: Filters | None = None,
    space: str = DEFAULT_SPACE,
) -> list[Hit]:
    """The `k` items of one space nearest to the query, best first, among those that pass the filters.

    Raises:
        MMError: the query is empty or can't be embedded in that space. MediaError: the query image or sound
        can't be read. NotFound: no such collection or item. ModelUnavailable, SpaceMismatch: as for
        Workspace.collection.
    """
    if _per_target(space, query):  # a text head per modality: a list per head, merged by rank
        return search_fused(ws, query, collection, k, filters, space)
    target, vector, exclude, model = _prepare(ws, query, collection, space)
    return _calibrated(_hits(ws, _ranked(ws, query, model, target, vector, k, filters, exclude), space), query, model)


def search_each_modality(
    ws: Workspace, query: Query, collection: str | None = None, k: int = 20, filters: Filters | None = None, space: str | None = None
) -> dict[str, list[Hit]]:
    """Top `k` per modality, from the spaces that hold that modality, embedding the query once per space.

    Similarities of different modality pairs live on different scales (a text query scores far higher
    against texts than against images), so one merged list by score would bury the images: show them side by
    side, or merge them by rank with `search_fused`. A modality held by several spaces (images in CLIP and
    SigLIP) gets their lists merged by rank. `space` limits the search to one space (an item's own space for
    "more like this"; by default every space of the collection the query can be embedded in). Modalities with
    no hits are left out. In a space with a text head per modality (`text_heads`), a text query is embedded once
    per modality, in the head trained against it, and each list ranked by its own head's vector.
    """
    filters = filters or Filters()
    name = collection or ws.settings.collection
    spaces = [space] if space else query_spaces(ws, query, name)
    results: dict[str, list[list[Hit]]] = {}
    for one in spaces:
        target, vector, exclude, model = _prepare(ws, query, name, one)
        spec = spec_of(one)
        modalities = [m for m in (filters.modalities or (*MODALITIES, IMPORTED)) if spec is None or spec.takes(m)]
        for modality in modalities:
            aimed = model.embed_query("text", [query.text], target=modality) if _per_target(one, query) else vector
            found = _ranked(ws, query, model, target, aimed, k, replace(filters, modalities=(modality,)), exclude)
            hits = _calibrated(_hits(ws, found, one), query, model)
            if hits:
                results.setdefault(modality, []).append(hits)
    for lists in results.values():  # an item found in several spaces shows the first one's score: the calibrated one
        lists.sort(key=lambda hits: calibration(hits[0].space).probability is None)
    merged = {m: lists[0] if len(lists) == 1 else fuse(lists, k) for m, lists in results.items()}
    return {m: merged[m] for m in MODALITIES if m in merged} | {m: h for m, h in merged.items() if m not in MODALITIES}


def search_fused(
    ws: Workspace, query: Query, collection: str | None = None, k: int = 20, filters: Filters | None = None, space: str | None = None
) -> list[Hit]:
    """One list over every modality and space the query reaches, merged by reciprocal rank fusion.

    Each per-modality list (see `search_each_modality`) votes 1 / (RRF_K + rank) for its hits; the merged
    list is ordered by the sum. Raises as `search`.
    """
    return fuse(list(search_each_modality(ws, query, collection, k, filters, space).values()), k)


def fuse(lists: Sequence[Sequence[Hit]], k: int) -> list[Hit]:
    """Reciprocal rank fusion of ranked lists: the top `k` by the sum of 1 / (RRF_K + rank) over the lists."""
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    spaces: dict[str, dict[str, None]] = {}
    for hits in lists:
        for rank, hit in enumerate(hits, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (RRF_K + rank)
            first.setdefault(hit.id, hit)
            spaces.setdefault(hit.id, {}).update(dict.fromkeys(hit.found_in or (hit.space,)))
    order = sorted(scores, key=lambda i: (-scores[i], -first[i].score, i))
    return [replace(first[i], fused=round(scores[i], 6), found_in=tuple(spaces[i])) for i in order[:k]]


def with_pairs(ws: Workspace, hits: Sequence[Hit], collection: str | None = None, per_image: int = 3) -> list[Hit]:
    """The hits with their pairs (items an image-caption CSV linked, `pair_of`): a caption's image, and up to
    `per_image` captions of an image. Two reads of the store at most, whatever the number of hits."""
    name = collection or ws.settings.collection
    hits = list(hits)
    for space in dict.fromkeys(h.space for h in hits):
        spec = spec_of(space)
        if spec is not None and spec.takes("image") and spec.takes("text"):  # captions live beside their images
            hits = _with_pairs_in(ws, hits, name, space, per_image)
    return hits


def _with_pairs_in(ws: Workspace, hits: list[Hit], name: str, space: str, per_image: int) -> list[Hit]:
    own = [h for h in hits if h.space == space]
    images = [h.id for h in own if h.modality == "image"]
    linked = sorted({str(h.metadata["pair_of"]) for h in own if h.metadata.get("pair_of")})
    if not images and not linked:
        return hits
    target = ws.store.open(name, space)
    found: dict[str, list[Pair]] = {}
    if linked:
        for item in target.get(linked, skip_missing=True):
            found[item["id"]] = [_pair(ws, item["id"], item["metadata"], None)]
    captions: dict[str, list[Pair]] = {}
    if images:
        for item in sorted(target.find({"pair_of": {"$in": images}}, limit=4 * per_image * len(images)), key=lambda i: i["id"]):
            meta = item["metadata"]
            own = captions.setdefault(str(meta.get("pair_of")), [])
            if len(own) < per_image and not meta.get("char_start"):  # a long caption's first window only
                own.append(_pair(ws, item["id"], meta, item["document"]))
    return [replace(h, pairs=tuple(captions.get(h.id, []) if h.modality == "image" else found.get(h.metadata.get("pair_of"), [])))
            if h.space == space else h for h in hits]


def _pair(ws: Workspace, item_id: str, meta: dict, document: str | None) -> Pair:
    thumbnail = stored_path(ws.files.root, meta.get("thumbnail"))
    return Pair(item_id, str(meta.get("modality", "")), str(meta.get("source", "")),
                str(thumbnail) if thumbnail else None, document or None)


def search_text(ws: Workspace, text: str, collection: str | None = None, k: int = 20, filters: Filters | None = None) -> list[Hit]:
    """Items nearest to a text query (images and text alike). Raises as `search`."""
    return search(ws, Query(text=text), collection, k, filters)


def search_image(ws: Workspace, name: str, data: bytes, collection: str | None = None, k: int = 20, filters: Filters | None = None) -> list[Hit]:
    """Items nearest to an image given as bytes (`name` is used in error messages). Raises as `search`."""
    return search(ws, Query(image=data, image_name=name), collection, k, filters)


def search_audio(ws: Workspace, name: str, data: bytes, collection: str | None = None, k: int = 20, filters: Filters | None = None) -> list[Hit]:
    """Audio windows nearest to a sound given as bytes (its windows' mean vector). Raises as `search`."""
    query = Query(audio=data, audio_name=name)
    hearing = [s for s in query.spaces if s in ws.space_names()] or list(query.spaces) or [DEFAULT_SPACE]
    return search(ws, query, collection, k, filters, space=hearing[0])


def search_like(
    ws: Workspace, item_id: str, collection: str | None = None, k: int = 20, filters: Filters | None = None,
    space: str = DEFAULT_SPACE,
) -> list[Hit]:
    """Items nearest to an item already in the collection, the item itself left out. Needs no model."""
    return search(ws, Query(like=item_id), collection, k, filters, space)


def get_item(ws: Workspace, item_id: str, collection: str | None = None, space: str = DEFAULT_SPACE) -> Hit:
    """One item as a Hit (score 1): its metadata, document, locator and the paths of its thumbnail and original.

    Raises:
        NotFound: no such collection or item.
    """
    target = ws.store.open(collection or ws.settings.collection, space)
    item = target.get([item_id])[0]
    return _hits(ws, [Match(item["id"], 1.0, item["metadata"], item["document"])], space)[0]


def collection_spaces(ws: Workspace, name: str) -> list[str]:
    """The spaces a collection has items in."""
    return ws.store.spaces(name)


def prepare_text_search(ws: Workspace, name: str) -> None:
    """Start readying, in the background, what a text search of collection `name` will rank from in its
    multi-vector spaces (mmcore.maxsim.warm), for a page that offers one: the first query then doesn't pack them."""
    if ws.store.sidecar_root is None:
        return
    for space in set(collection_spaces(ws, name)) & set(ws.space_names()):  # those a query can be embedded in
        if (spec := spec_of(space)) is not None and spec.multivector:
            warm(ws, ws.store.open(name, space))


def query_spaces(ws: Workspace, query: Query, name: str) -> list[str]:
    """The collection's spaces this query can be embedded in; a clear error when there are none."""
    present = collection_spaces(ws, name)
    if query.like is not None:
        return present[:1] if len(present) == 1 else [DEFAULT_SPACE]  # an item of a model space is found in its own
    usable = [s for s in query.spaces if s in present and s in ws.space_names()]
    if usable:
        return usable
    off = [spec_of(s) for s in query.spaces if s in present]
    if off:
        fix = off[0].turn_on if off[0].switch else (
            f"set {off[0].variable} to the model that made it ({ws.store.open(name, off[0].name).space.model_id})")
        raise MMError(f"Collection {name!r} can be searched so in space {off[0].name!r}, whose model is not configured: {fix}.")
    if present and not set(present) & set(model_spaces()):
        raise MMError(
            f"Collection {name!r} holds vectors of space {present[0]!r}, made without a text or image model: "
            "search it by item (\"more like this\"), not by text or image."
        )
    if query.audio is not None:
        raise MMError(f"Collection {name!r} has no audio to search by sound: add audio files to it first.")
    if query.image is not None and present:
        raise MMError(f"Collection {name!r} has no images, pages or video to search by image.")
    return [DEFAULT_SPACE]  # lets the store say the collection does not exist


def _prepare(ws: Workspace, query: Query, collection: str | None, space: str = DEFAULT_SPACE):
    """The collection to search, the query's vector, ids to leave out of the results, and the model (None for
    an item's own vector)."""
    name = collection or ws.settings.collection
    if query.like is not None:
        target = ws.store.open(name, space)  # the item's own vector: no model needed
        return target, vector_of(target, query.like, vector_cache_dir(ws.settings.data_dir)), [query.like], None
    if not accepts(space, query.kind):
        what = {"audio": "a sound", "image": "an image"}.get(query.kind, "a text")
        raise MMError(
            f"Collection {name!r} is searched in space {space!r}, which can't embed {what}"
            + ("; search it by item (\"more like this\") instead." if space not in model_spaces() else ".")
        )
    _refuse_model_free(ws, name)
    model = ws.space(space)
    if query.image is not None:
        target = ws.collection(name, space, create=False)
        image = read_image(query.image_name, query.image, _options(ws, model)).chunks[0].payload
        return target, model.embed_query("image", [image]), [], model
    if query.audio is not None:
        target = ws.collection(name, space, create=False)
        chunks = [c for c in read_media(query.audio_name, query.audio, _options(ws, model)).chunks if c.modality == "audio"]
        if not chunks:
            raise MMError(f"{query.audio_name}: no sound in it to search with.")
        return target, model.embed_query("audio", [c.payload for c in chunks]), [], model
    if not (query.text or "").strip():
        raise MMError("Type something to search for.")
    target = ws.collection(name, space, create=False)
    if _late(space, query):  # one pass of the query tower gives the tokens MaxSim needs and their pooled vector
        return target, pooled(query_tokens(model, query.text)), [], model
    return target, model.embed_query("text", [query.text]), [], model


def _calibrated(hits: list[Hit], query: Query, model) -> list[Hit]:
    """The hits with their space's own probability of matching the query, where its model has one and the pair
    is a text and a picture (what such models are trained on)."""
    probability = calibration(hits[0].space).probability if hits and model is not None else None
    if probability is None or query.kind not in ("text", "image"):
        return hits
    crossed = [i for i, h in enumerate(hits) if (h.modality in PICTURES) == (query.kind == "text")]
    if not crossed:
        return hits
    chances = probability(model, [hits[i].score for i in crossed])
    out = list(hits)
    for i, p in zip(crossed, chances):
        out[i] = replace(out[i], probability=round(float(p), 6))
    return out


def _options(ws: Workspace, model) -> ReadOptions:
    settings = ws.settings
    return ReadOptions(
        token_spans=getattr(model, "token_spans", lambda text: []), max_tokens=getattr(model, "max_text_tokens", 1),
        max_file_bytes=settings.max_file_bytes, max_image_pixels=settings.max_image_pixels,
        audio_segment_s=float(settings.audio_segment_s), audio_rate=int(getattr(model, "sampling_rate", ReadOptions.audio_rate)),
        max_media_seconds=float(settings.max_media_seconds),
    )


def _refuse_model_free(ws: Workspace, name: str) -> None:
    """A clear word when the collection only holds imported vectors (no model to embed a query with)."""
    spaces = collection_spaces(ws, name)
    if spaces and not set(spaces) & set(model_spaces()):
        raise MMError(
            f"Collection {name!r} holds vectors of space {spaces[0]!r}, made without a text or image model: "
            "search it by item (\"more like this\"), not by text or image."
        )


def _per_target(space: str, query: Query) -> bool:
    """Whether a text query is embedded per target modality in the space (its model has a text head for each)."""
    spec = spec_of(space)
    return spec is not None and spec.text_heads and query.kind == "text"


def _late(space: str, query: Query) -> bool:
    """Whether the query ranks the space's items by late interaction: a text query in a multi-vector space."""
    spec = spec_of(space)
    return spec is not None and spec.multivector and query.kind == "text"


def _ranked(ws: Workspace, query: Query, model, target, vector, k: int, filters: Filters | None, exclude: Sequence[str]):
    """The space's `k` best matches: by MaxSim for a text query in a multi-vector space (mmcore.maxsim), else
    the nearest by cosine."""
    if not _late(target.space.space if target.space else "", query):
        return _nearest(ws, target, vector, k, filters, exclude)
    filters = filters or Filters()
    spec = spec_of(target.space.space)
    if set(filters.modalities) >= spec.modalities:  # every item of the space passes: no listing needed
        filters = replace(filters, modalities=())
    where = filters.to_where()
    return rank_by_maxsim(ws, target, query_tokens(model, query.text), k, where, filters.matches if where else None, exclude)


def _nearest(ws: Workspace, target, vector, k: int, filters: Filters | None, exclude: Sequence[str]):
    where = filters.to_where() if filters else None
    cache_dir = vector_cache_dir(ws.settings.data_dir)
    return nearest(target, vector, k, where, filters.matches if where else None, exclude, cache_dir)


def _hits(ws: Workspace, matches, space: str) -> list[Hit]:
    root = ws.files.root
    hits = []
    for m in matches:
        meta = m.metadata
        hits.append(
            Hit(
                id=m.id,
                score=round(m.score, 6),
                modality=meta.get("modality", ""),
                source=meta.get("source", ""),
                locator={k: meta[k] for k in LOCATOR_KEYS if k in meta},
                metadata=meta,
                document=m.document,
                thumbnail=str(thumb) if (thumb := stored_path(root, meta.get("thumbnail"))) else None,
                original=str(orig) if (orig := stored_path(root, meta.get("original"))) else None,
                space=space,
            )
        )
    return hits


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def _epoch(day: date, at: time) -> int:
    return int(datetime.combine(day, at, tzinfo=timezone.utc).timestamp())


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(stored: Any, wanted: Any) -> bool:
    """Chroma's $eq: numbers compare by value, but a bool never equals a number."""
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return type(stored) is type(wanted) and stored == wanted
    return stored == wanted


def _typed(value: str) -> Any:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


