"""Queries (text, image, an existing item) against a collection, with metadata filters."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, time, timezone
from typing import Any, Sequence


from .errors import MMError
from .ingest import LOCATOR_KEYS
from .media import ReadOptions
from .media.image import read_image
from .workspace import Workspace

MODALITIES = ("image", "text")


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
class Hit:
    """One result: everything needed to show it (thumbnail or text, source, where in the source)."""

    id: str
    score: float
    modality: str
    source: str
    locator: dict[str, Any]
    metadata: dict[str, Any]
    document: str | None
    thumbnail: str | None
    original: str | None

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
    """What to search for: a text, an image (bytes), or an item already in the collection."""

    text: str | None = None
    image: bytes | None = None
    image_name: str = "query image"
    like: str | None = None


def search(
    ws: Workspace, query: Query, collection: str | None = None, k: int = 20, filters: Filters | None = None, space: str = "clip"
) -> list[Hit]:
    """The `k` items nearest to the query, best first, among those that pass the filters.

    Raises:
        MMError: the query is empty. MediaError: the query image can't be read. NotFound: no such
        collection or item. ModelUnavailable, SpaceMismatch: as for Workspace.collection.
    """
    target, vector, exclude = _prepare(ws, query, collection, space)
    return _hits(ws, target.query(vector, k, _where(filters), exclude=exclude))


def search_each_modality(
    ws: Workspace, query: Query, collection: str | None = None, k: int = 20, filters: Filters | None = None, space: str = "clip"
) -> dict[str, list[Hit]]:
    """Top `k` per modality, embedding the query once.

    Similarities of different modality pairs live on different scales (a text query scores far higher
    against texts than against images), so one merged list would bury the images; show them side by side.
    """
    filters = filters or Filters()
    target, vector, exclude = _prepare(ws, query, collection, space)
    return {
        modality: _hits(ws, target.query(vector, k, replace(filters, modalities=(modality,)).to_where(), exclude=exclude))
        for modality in (filters.modalities or MODALITIES)
    }


def search_text(ws: Workspace, text: str, collection: str | None = None, k: int = 20, filters: Filters | None = None) -> list[Hit]:
    """Items nearest to a text query (images and text alike). Raises as `search`."""
    return search(ws, Query(text=text), collection, k, filters)


def search_image(ws: Workspace, name: str, data: bytes, collection: str | None = None, k: int = 20, filters: Filters | None = None) -> list[Hit]:
    """Items nearest to an image given as bytes (`name` is used in error messages). Raises as `search`."""
    return search(ws, Query(image=data, image_name=name), collection, k, filters)


def search_like(
    ws: Workspace, item_id: str, collection: str | None = None, k: int = 20, filters: Filters | None = None, space: str = "clip"
) -> list[Hit]:
    """Items nearest to an item already in the collection, the item itself left out. Needs no model."""
    return search(ws, Query(like=item_id), collection, k, filters, space)


def _prepare(ws: Workspace, query: Query, collection: str | None, space: str = "clip"):
    """The collection to search, the query's vector, and ids to leave out of the results."""
    name = collection or ws.settings.collection
    if query.like is not None:
        target = ws.store.open(name, space)  # the item's own vector: no model needed
        return target, target.get([query.like], with_vectors=True)[0]["vector"], [query.like]
    if space != "clip":
        raise MMError(
            f"Collection {name!r} is searched in space {space!r}, which has no text or image model; "
            "search it by item (\"more like this\") instead."
        )
    _refuse_model_free(ws, name)
    if query.image is not None:
        target = ws.collection(name, create=False)
        space = ws.space()
        options = ReadOptions(
            token_spans=space.token_spans, max_tokens=space.max_text_tokens,
            max_file_bytes=ws.settings.max_file_bytes, max_image_pixels=ws.settings.max_image_pixels,
        )
        image = read_image(query.image_name, query.image, options).chunks[0].payload
        return target, space.embed_images([image])[0], []
    if not (query.text or "").strip():
        raise MMError("Type something to search for.")
    target = ws.collection(name, create=False)
    return target, ws.space().embed_texts([query.text])[0], []


def _refuse_model_free(ws: Workspace, name: str) -> None:
    """A clear word when the collection only holds imported vectors (no model to embed a query with)."""
    spaces = [c.space.space for c in ws.store.list() if c.name == name]
    if spaces and "clip" not in spaces:
        raise MMError(
            f"Collection {name!r} holds vectors of space {spaces[0]!r}, made without a text or image model: "
            "search it by item (\"more like this\"), not by text or image."
        )


def _where(filters: Filters | None) -> dict | None:
    return filters.to_where() if filters else None


def _hits(ws: Workspace, matches) -> list[Hit]:
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
                thumbnail=str(root / meta["thumbnail"]) if meta.get("thumbnail") else None,
                original=str(root / meta["original"]) if meta.get("original") else None,
            )
        )
    return hits


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def _epoch(day: date, at: time) -> int:
    return int(datetime.combine(day, at, tzinfo=timezone.utc).timestamp())


def _typed(value: str) -> Any:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


