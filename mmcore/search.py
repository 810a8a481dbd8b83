"""Queries (text, image, an existing item) against a collection, with metadata filters."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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


def search_text(ws: Workspace, text: str, collection: str | None = None, k: int = 20, filters: Filters | None = None) -> list[Hit]:
    """Items nearest to a text query (images and text alike, in the clip space).

    Raises:
        MMError: the query is empty; ModelUnavailable, SpaceMismatch, NotFound as for the collection.
    """
    if not text.strip():
        raise MMError("Type something to search for.")
    target = ws.collection(collection, create=False)
    vector = ws.space().embed_texts([text])[0]
    return _hits(ws, target.query(vector, k, _where(filters)))


def search_image(ws: Workspace, name: str, data: bytes, collection: str | None = None, k: int = 20, filters: Filters | None = None) -> list[Hit]:
    """Items nearest to an image given as bytes (`name` is used in error messages).

    Raises:
        MediaError: the image can't be read; others as for search_text.
    """
    target = ws.collection(collection, create=False)
    space = ws.space()
    options = ReadOptions(token_spans=space.token_spans, max_tokens=space.max_text_tokens, max_file_bytes=ws.settings.max_file_bytes, max_image_pixels=ws.settings.max_image_pixels)
    image = read_image(name, data, options).chunks[0].payload
    return _hits(ws, target.query(space.embed_images([image])[0], k, _where(filters)))


def search_like(ws: Workspace, item_id: str, collection: str | None = None, k: int = 20, filters: Filters | None = None) -> list[Hit]:
    """Items nearest to an item already in the collection ("more like this"), the item itself left out.

    Needs no model, so it works whatever model is configured.

    Raises:
        NotFound: no such collection or item.
    """
    target = ws.store.open(collection or ws.settings.collection)
    vector = target.get([item_id], with_vectors=True)[0]["vector"]
    return _hits(ws, target.query(vector, k, _where(filters), exclude=[item_id]))


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


