"""Chroma, embedded on disk or a server: one Chroma collection per (mmscope collection, space).

The store never sees a model: callers hand it precomputed, L2-normalised vectors, and every collection
records the space, model and dimension that made its vectors and refuses any other. Every write first calls
the store's `before_write` (the workspace's claim: one writing process per embedded store, see mmcore.datadir).
An embedded store may hold a bulk import staged on disk before it is in Chroma (mmcore.pending).
"""

from __future__ import annotations

import re
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .config import Settings
from .errors import NotFound, SpaceMismatch, StoreError
from .pending import Pending
from .row_cache import RowCache
from .rows import Rows
from .spaces import SpaceInfo
from .spaces.registry import DEFAULT_SPACE, spec_of

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    space: SpaceInfo
    count: int


@dataclass(frozen=True)
class Items:
    """Many items at once, in one order: ids, their vectors (float32 [n, d]), metadata and documents."""

    ids: list[str]
    vectors: np.ndarray
    metadatas: list[dict[str, Any]]
    documents: list[str | None]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Page:
    """One page of a collection's items in the store's order; a field not asked for is empty."""

    ids: list[str]
    vectors: Any  # as Chroma gives them: an array [n, d], or a list of arrays when their dimensions differ
    metadatas: list[dict[str, Any]]
    documents: list[str | None]
    writes: list[str]  # each item's write token (its uri, set by ItemCollection.add; "" when it has none)


@dataclass(frozen=True)
class Match:
    """One nearest neighbour: its id, cosine similarity, metadata and document (text items)."""

    id: str
    score: float
    metadata: dict[str, Any]
    document: str | None


def open_client(settings: Settings):
    """A Chroma client for the settings: a server when MMCORE_CHROMA_HOST is set, else embedded on disk.

    Raises:
        StoreError: the server can't be reached or the data dir can't be opened.
    """
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    try:
        if settings.chroma_host:
            client = chromadb.HttpClient(host=settings.chroma_host, port=settings.chroma_port, settings=chroma_settings)
            client.heartbeat()
            return client
        path = settings.data_dir / "chroma"
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
    except Exception as e:  # chroma raises many unrelated types for "can't connect"
        where = f"server {settings.chroma_host}:{settings.chroma_port}" if settings.chroma_host else f"store in {settings.data_dir}"
        raise StoreError(f"Could not open the Chroma {where}: {e}") from e


def new_version() -> str:
    """A new random version token for a write (see `ItemCollection.add`)."""
    return uuid.uuid4().hex


def validate_name(name: str) -> str:
    if not NAME_PATTERN.match(name or ""):
        raise StoreError(
            f"Invalid collection name {name!r}: use 1-63 letters, digits, '-' or '_', starting with a letter or digit."
        )
    return name


def _no_claim() -> None:
    pass


class Store:
    """All collections of one Chroma client; `before_write` runs before every write (and may refuse it).
    `pending_root`: where imports are staged before they are in Chroma (an embedded store's; None: never staged)."""

    def __init__(self, client, before_write: Callable[[], None] = _no_claim, pending_root: Path | None = None,
                 sidecar_root: Path | None = None, row_cache: RowCache | None = None):
        self.client = client
        self.before_write = before_write
        self.pending_root = pending_root
        self.sidecar_root = sidecar_root  # where token matrices live (mmcore.multivector); None: nowhere
        self.row_cache = row_cache  # copies of the items' metadata (mmcore.row_cache); None: always read from Chroma

    def collection(self, name: str, space: SpaceInfo, create: bool = True) -> "ItemCollection":
        """The collection `name` in `space`; created when missing and `create` is true.

        `create` is for writers: it claims the right to write (`before_write`) even when the collection exists, so
        a writer that may not write is refused before it starts, not half-way.

        Raises:
            SpaceMismatch: it exists but was made by another model or dimension.
            NotFound: it doesn't exist and `create` is false.
        """
        chroma_name = f"{validate_name(name)}.{space.space}"
        if create:
            self.before_write()
            metadata = {
                "mm_collection": name,
                "mm_space": space.space,
                "mm_model": space.model_id,
                "mm_revision": space.revision,
                "mm_dim": space.dim,
                "mm_backend": space.backend,
            }
            raw = self.client.get_or_create_collection(
                chroma_name, metadata=metadata, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
            )
        else:
            raw = self._get(chroma_name, name)
        collection = self._wrap(raw)
        collection.check_space(space)
        if create:
            collection.writer = space
        return collection

    def open(self, name: str, space: str = DEFAULT_SPACE) -> "ItemCollection":
        """An existing collection, whatever model made it (for reads that need no model)."""
        return self._wrap(self._get(f"{validate_name(name)}.{space}", name))

    def _wrap(self, raw) -> "ItemCollection":
        return ItemCollection(raw, self.client.get_max_batch_size(), self.client, self.before_write, self.pending_root,
                              self.sidecar_root, self.row_cache)

    def _get(self, chroma_name: str, name: str):
        try:
            return self.client.get_collection(chroma_name, embedding_function=None)
        except Exception as e:
            if "does not exist" in str(e) or "not found" in str(e).lower():
                raise NotFound(f"There is no collection {name!r}; ingest something into it first.") from None
            raise StoreError(f"Could not open collection {name!r}: {e}") from e

    def list(self) -> list[CollectionInfo]:
        """Every mmscope collection in the store, with the model that made it and its item count."""
        infos = []
        for raw in self.client.list_collections():
            collection = self._wrap(raw)
            if collection.space is not None:
                infos.append(CollectionInfo(raw.metadata["mm_collection"], collection.space, collection.count()))
        return sorted(infos, key=lambda c: (c.name, c.space.space))

    def spaces(self, name: str) -> list[str]:
        """The spaces collection `name` has items of, sorted; cheaper than `list` (no item counts)."""
        metas = [raw.metadata or {} for raw in self.client.list_collections()]
        return sorted(m["mm_space"] for m in metas if m.get("mm_collection") == name and "mm_space" in m)

    def staged_count(self, name: str) -> int:
        """How many items of collection `name` (all its spaces) wait to go into Chroma (mmcore.pending)."""
        return sum(self.open(name, space).staged_count() for space in self.spaces(name)) if self.pending_root else 0

    def delete(self, name: str, space: str = DEFAULT_SPACE) -> None:
        """Remove a collection's space with all its items (and their token matrices)."""
        collection = self.open(name, space)
        self.before_write()
        self.client.delete_collection(f"{name}.{space}")
        if collection.pending:
            collection.pending.discard()
        if self.row_cache is not None:
            self.row_cache.remove(collection.key)
        if self.sidecar_root is not None:
            from .multivector import remove

            remove(self.sidecar_root, collection.key)


def _by_id(ids: list[str], vectors: list[np.ndarray], metadatas: list[dict], documents: list[str | None],
           with_vectors: bool, space: SpaceInfo | None) -> Items:
    order = sorted(range(len(ids)), key=ids.__getitem__)
    stacked = np.concatenate(vectors) if vectors else np.zeros((0, space.dim if space else 0), dtype=np.float32)
    return Items(ids=[ids[i] for i in order], vectors=stacked[order] if with_vectors else stacked,
                 metadatas=[metadatas[i] for i in order], documents=[documents[i] for i in order])


_FIELDS = {"vectors": "embeddings", "metadatas": "metadatas", "documents": "documents", "writes": "uris"}


def _settable(metadata: dict) -> dict:
    """Collection metadata to write back: without Chroma's own `hnsw:` keys."""
    return {k: v for k, v in metadata.items() if not k.startswith("hnsw:")}


class ItemCollection:
    """One Chroma collection of items from one space: the only code that touches the Chroma collection (`raw`)."""

    def __init__(self, raw, max_batch: int, client=None, before_write: Callable[[], None] = _no_claim,
                 pending_root: Path | None = None, sidecar_root: Path | None = None, row_cache: RowCache | None = None):
        self.raw = raw
        self.row_cache = row_cache
        self.sidecar_root = sidecar_root
        self.client = client
        self.max_batch = max_batch
        self.before_write = before_write
        self.pending = Pending(pending_root, raw.name) if pending_root is not None else None
        self.writer: SpaceInfo | None = None  # the space that writes through this handle (Store.collection)
        meta = raw.metadata or {}
        self.name = meta.get("mm_collection", raw.name)
        self.space = (
            SpaceInfo(
                meta["mm_space"], meta["mm_model"], meta.get("mm_revision", ""), int(meta["mm_dim"]),
                meta.get("mm_backend") or "torch",  # collections from before backends were all made by torch
            )
            if "mm_space" in meta
            else None
        )

    @property
    def key(self) -> str:
        """The collection's name in the store, `<name>.<space>`: unique there (caches name their folders after it)."""
        return self.raw.name

    @property
    def uid(self) -> str:
        """The store's id of the collection: one deleted and made again under the same name gets a new one."""
        return str(self.raw.id)

    @property
    def backends(self) -> list[str]:
        """The backends that wrote this collection's vectors, in the order they first wrote."""
        return self.space.backend.split("+") if self.space else []

    def check_space(self, space: SpaceInfo) -> None:
        """Raises SpaceMismatch unless `space` is the one that made this collection.

        The same model with another backend passes only when that backend is in parity with every backend that
        wrote here (mmcore.spaces.backends.compatible): their vectors have cosine >= 0.99 on the same inputs.
        """
        mine = self.space
        if mine is None or (mine.space, mine.model_id, mine.dim) != (space.space, space.model_id, space.dim):
            made_by = f"{mine.model_id} ({mine.dim}-d)" if mine else "an unknown model"
            spec = spec_of(space.space)
            fix = f"set {spec.variable}={mine.model_id if mine else '...'} or " if spec is not None else ""
            raise SpaceMismatch(
                f"Collection {self.name!r} was made with {made_by}, but the current model is {space.model_id} "
                f"({space.dim}-d). Vectors of different models can't be compared: {fix}use another collection."
            )
        from .spaces.backends import compatible

        apart = [b for b in self.backends if not compatible(b, space.backend)]
        if apart:
            raise SpaceMismatch(
                f"Collection {self.name!r} holds vectors made by the {' and '.join(apart)} backend of {mine.model_id}, "
                f"which are not in parity with the current backend, {space.backend} (cosine similarity below 0.99 "
                f"on the same inputs), so they can't be compared: set MMCORE_BACKEND={apart[0]} or use another collection."
            )

    def count(self) -> int:
        staged = self._staged()
        return len(staged) if staged is not None else self.raw.count()

    def has_source(self, source_hash: str) -> bool:
        self.settle()
        return bool(self.raw.get(where={"source_hash": source_hash}, limit=1, include=[])["ids"])

    def add(self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[dict], documents: Sequence[str | None],
            version: str | None = None) -> str:
        """Upsert items in batches the store accepts. Vectors must match the collection's dimension.

        Returns this write's version token: the collection's version after it, and the first part of each item's
        write token (`<version>:<modality>`, mmcore.vector_cache). `version`: the token to use (a new random one
        when None), for a writer that stores something beside the items under it first (mmcore.multivector)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise StoreError(f"expected {len(ids)} vectors, got an array of shape {vectors.shape}")
        if self.space and vectors.shape[1] != self.space.dim:
            raise SpaceMismatch(f"Collection {self.name!r} holds {self.space.dim}-d vectors, not {vectors.shape[1]}-d.")
        docs = [d if d is not None else "" for d in documents]
        self.before_write()
        self.settle()
        # Each item's uri is "<this write's version>:<modality>": the vector cache tells a re-written item by it,
        # and filters by modality without reading metadata (mmcore.nearest).
        version = version or new_version()
        for i in range(0, len(ids), self.max_batch):
            end = i + self.max_batch
            self.raw.upsert(
                ids=list(ids[i:end]), embeddings=vectors[i:end], metadatas=list(metadatas[i:end]), documents=docs[i:end],
                uris=[f"{version}:{meta.get('modality', '')}" for meta in metadatas[i:end]],
            )
        self._touch(version)
        return version

    def delete(self, ids: Sequence[str]) -> None:
        """Remove items (their originals stay on disk: other items or collections may share them)."""
        self.before_write()
        self.settle()
        for i in range(0, len(ids), self.max_batch):
            self.raw.delete(ids=list(ids[i : i + self.max_batch]))
        self._touch()
        if self.sidecar_root is not None and ids:
            from .multivector import compact_if_needed

            compact_if_needed(self, self.sidecar_root)  # their token matrices are no longer believed: drop them

    def update_tags(self, ids: Sequence[str], add: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
        """Add and remove tags on items; the collection's version (and so its maps) stays as it is."""
        if not ids:
            return
        self.before_write()
        self.settle()
        self._touch_tags()  # before too: a copy of the rows as they were (mmcore.row_cache) is never believed again
        add, remove = {t.strip() for t in add if t.strip()}, set(remove)
        for i in range(0, len(ids), self.max_batch):
            batch = self.raw.get(ids=list(ids[i : i + self.max_batch]), include=["metadatas"])
            metadatas = []
            for meta in batch["metadatas"]:
                meta = dict(meta or {})
                tags = sorted((set(meta.get("tags") or []) | add) - remove)
                if tags:
                    meta["tags"] = tags
                else:
                    meta["tags"] = None  # chroma drops a key set to None
                metadatas.append(meta)
            self.raw.update(ids=batch["ids"], metadatas=metadatas)
        self._touch_tags()

    def stage(self, ids: Sequence[str], vectors: np.ndarray, metadatas: Sequence[dict],
              documents: Sequence[str | None]) -> str:
        """Write items to an empty collection's staging folder (mmcore.pending), not to Chroma; `settle` moves
        them there. Returns the write's version token, as `add` does.

        Raises:
            StoreError: the store can't stage (a Chroma server), or the collection isn't empty.
        """
        if self.pending is None:
            raise StoreError("Only an embedded store stages imports.")
        self.before_write()
        if self.pending.exists() or self.raw.count():
            raise StoreError(f"Collection {self.name!r} is not empty: its items are added, not staged.")
        version = uuid.uuid4().hex
        writes = [f"{version}:{meta.get('modality', '')}" for meta in metadatas]
        self.pending.stage(ids, vectors, metadatas, [d if d is not None else "" for d in documents], writes)
        self._touch(version)
        return version

    def staged_count(self) -> int:
        """How many items wait in the staging folder to go into Chroma (0 when none do)."""
        staged = self._staged()
        return len(staged) if staged is not None else 0

    def settle(self, on_progress: Callable[[int, int], None] | None = None) -> None:
        """Return once no staged item is outside Chroma: move them there, claiming the write (which waits while the
        background builder holds it, mmcore.datadir). `on_progress(done, total)` after each batch.

        Raises:
            StoreLocked: another process, not the builder, writes the store.
        """
        if self.pending is None or not self.pending.exists():
            return
        self.before_write()
        if (staged := self.pending.load()) is not None:
            # The catalogue stays believed meanwhile (mmcore.catalogue): an analysis beside the build needs no Chroma.
            with getattr(self.client, "building", nullcontext)():
                for i in range(0, len(staged), self.max_batch):
                    end = min(i + self.max_batch, len(staged))
                    self.raw.upsert(ids=staged.ids[i:end], embeddings=np.asarray(staged.vectors[i:end]),
                                    metadatas=staged.metadatas[i:end], documents=staged.documents[i:end],
                                    uris=staged.writes[i:end])
                    if on_progress:
                        on_progress(end, len(staged))
            if self.row_cache is not None:  # the staged rows are now the store's: they stay as its row copy
                self.row_cache.adopt(self.key, *self.versions(), staged.folder)
            self.pending.discard()

    def _staged(self):
        return self.pending.load() if self.pending is not None else None

    @property
    def version(self) -> str:
        """Changes whenever items are added or removed (not when tags change); analysis caches key on it."""
        return self.versions()[0]

    def versions(self) -> tuple[str, str]:
        """The version and the tags token (which changes whenever tags do), read together."""
        meta = self._fresh_metadata()
        return str(meta.get("mm_version", "0")), str(meta.get("mm_tags", "0"))

    def _fresh_metadata(self) -> dict:
        """The collection's metadata as stored now (another handle may have changed it since this one opened)."""
        fresh = self.client.get_collection(self.raw.name, embedding_function=None) if self.client else self.raw
        return fresh.metadata or {}

    def _touch_tags(self) -> None:
        """A new random tags token, leaving the version (and so the maps) as it is."""
        meta = _settable(self._fresh_metadata())
        meta["mm_tags"] = uuid.uuid4().hex
        self.raw.modify(metadata=meta)

    def _touch(self, version: str | None = None) -> None:
        """A new random version token: concurrent writers can't both write the same one.

        After an add, the writer's backend joins the collection's record of backends if it isn't there yet.
        """
        meta = _settable(self._fresh_metadata())
        meta["mm_version"] = version or uuid.uuid4().hex
        if version and self.writer and self.space:
            recorded = meta.get("mm_backend") or self.space.backend  # another handle may have added one
            backends = recorded.split("+") + ([] if self.writer.backend in recorded.split("+") else [self.writer.backend])
            meta["mm_backend"] = "+".join(backends)
            self.space = replace(self.space, backend=meta["mm_backend"])
        self.raw.modify(metadata=meta)

    def pages(self, fields: Sequence[str] = (), size: int = 5000, where: dict | None = None) -> Iterator[Page]:
        """Every item (meeting `where`), a page of `size` at a time in the store's order, with the `fields` asked
        ("vectors", "metadatas", "documents", "writes"). The last page is the first shorter than `size` (maybe empty)."""
        if where is not None:
            self.settle()
        elif (local := self._local(with_vectors="vectors" in fields)) is not None:
            for start in range(0, len(local) + 1, size):
                rows = range(start, min(start + size, len(local)))
                yield Page(
                    ids=local.ids[start : rows.stop],
                    vectors=np.asarray(local.vectors[start : rows.stop]) if "vectors" in fields else [],
                    metadatas=local.metadatas[start : rows.stop] if "metadatas" in fields else [],
                    documents=[d or None for d in local.documents[start : rows.stop]] if "documents" in fields else [],
                    writes=local.writes[start : rows.stop] if "writes" in fields else [],
                )
            return
        include = [_FIELDS[f] for f in fields]
        offset = 0
        while True:
            batch = self.raw.get(where=where or None, include=include, limit=size, offset=offset)
            ids = batch["ids"]
            yield Page(
                ids=ids,
                vectors=batch["embeddings"] if "vectors" in fields else [],
                metadatas=[m or {} for m in batch["metadatas"]] if "metadatas" in fields else [],
                documents=[d or None for d in batch["documents"]] if "documents" in fields else [],
                writes=[w or "" for w in batch["uris"]] if "writes" in fields else [],
            )
            offset += len(ids)
            if len(ids) < size:
                return

    def all(self, with_vectors: bool = True, where: dict | None = None, page: int = 5000) -> Items:
        """Every item (matching `where`), in a stable order: sorted by id.

        Every item without vectors is read from the row copy (mmcore.row_cache) when there is one, and a read of them
        from Chroma leaves one behind."""
        if (keep := where is None and not with_vectors and self.row_cache is not None and self._staged() is None):
            versions = self.versions()
            if (rows := self.row_cache.current(self.key, *versions)) is not None:
                return _by_id(rows.ids, [], rows.metadatas, [d or None for d in rows.documents], False, self.space)
        fields = ["metadatas", "documents"] + (["vectors"] if with_vectors else []) + (["writes"] if keep else [])
        ids, vectors, metadatas, documents, writes = [], [], [], [], []
        for batch in self.pages(fields, page, where):
            ids += batch.ids
            metadatas += batch.metadatas
            documents += batch.documents
            writes += batch.writes
            if with_vectors and batch.ids:
                vectors.append(np.asarray(batch.vectors, dtype=np.float32))
        if keep and self.versions() == versions:  # nothing was written while we read: this version's rows
            self.row_cache.save(self.key, *versions, ids, metadatas, documents, writes)
        return _by_id(ids, vectors, metadatas, documents, with_vectors, self.space)

    def _local(self, with_vectors: bool = False) -> Rows | None:
        """Every item's rows, kept on disk: the staged import (with vectors), or else (when `with_vectors` is false)
        the row copy of the collection's current version and tags (mmcore.row_cache). None: ask Chroma."""
        if (staged := self._staged()) is not None:
            return staged
        if with_vectors or self.row_cache is None:
            return None
        return self.row_cache.current(self.key, *self.versions())

    def ids(self, where: dict | None = None) -> list[str]:
        """The ids of the items meeting `where` (of every item when None), in the store's order."""
        if where is not None:
            self.settle()
        elif (local := self._local()) is not None:
            return list(local.ids)
        return self.raw.get(where=where or None, include=[])["ids"]

    def existing(self, ids: Sequence[str]) -> set[str]:
        """Those of `ids` the collection holds."""
        if (local := self._local()) is not None:
            return set(local.positions(ids))
        found: set[str] = set()
        for i in range(0, len(ids), self.max_batch):
            found.update(self.raw.get(ids=list(ids[i : i + self.max_batch]), include=[])["ids"])
        return found

    def vectors_of(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The vectors of those of `ids` the collection holds, by id (one request: keep `ids` to a page)."""
        if (staged := self._staged()) is not None:
            return {i: np.asarray(staged.vectors[row]) for i, row in staged.positions(ids).items()}
        batch = self.raw.get(ids=list(ids), include=["embeddings"])
        return dict(zip(batch["ids"], batch["embeddings"]))

    def find(self, where: dict, limit: int | None = None) -> list[dict]:
        """Up to `limit` items meeting `where`, in the store's order, each a dict with id, metadata and document."""
        self.settle()
        batch = self.raw.get(where=where, include=["metadatas", "documents"], limit=limit)
        return [{"id": id_, "metadata": meta or {}, "document": doc or None}
                for id_, meta, doc in zip(batch["ids"], batch["metadatas"], batch["documents"])]

    def query(self, vector: np.ndarray, k: int, where: dict | None = None, exclude: Sequence[str] = ()) -> list[Match]:
        """The `k` nearest items to `vector` (cosine), optionally filtered by metadata."""
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if self.space and vector.shape[0] != self.space.dim:
            raise SpaceMismatch(f"Collection {self.name!r} holds {self.space.dim}-d vectors; the query is {vector.shape[0]}-d.")
        self.settle()
        result = self.raw.query(  # asking for more than there are gives all there are
            query_embeddings=[vector],
            n_results=k + len(exclude),
            where=where or None,
            include=["metadatas", "documents", "distances"],
        )
        matches = [
            Match(id_, 1.0 - float(dist), meta or {}, doc or None)
            for id_, dist, meta, doc in zip(
                result["ids"][0], result["distances"][0], result["metadatas"][0], result["documents"][0]
            )
            if id_ not in exclude
        ]
        return matches[:k]

    def get(self, ids: Sequence[str], with_vectors: bool = False, skip_missing: bool = False) -> list[dict]:
        """Items by id, in the order asked, each a dict with id, metadata, document (and vector).

        Raises:
            NotFound: an id isn't in the collection (unless `skip_missing`: then it is left out).
        """
        by_id = {}
        if (local := self._local(with_vectors)) is not None:
            found = list(local.positions(ids).items())
            for (id_, row), (meta, document, _) in zip(found, local.read([row for _, row in found])):
                by_id[id_] = {"id": id_, "metadata": meta, "document": document or None}
                if with_vectors:
                    by_id[id_]["vector"] = np.asarray(local.vectors[row], dtype=np.float32)
        else:
            include = ["metadatas", "documents"] + (["embeddings"] if with_vectors else [])
            result = self.raw.get(ids=list(ids), include=include)
            for i, id_ in enumerate(result["ids"]):
                item = {"id": id_, "metadata": result["metadatas"][i] or {}, "document": result["documents"][i] or None}
                if with_vectors:
                    item["vector"] = np.asarray(result["embeddings"][i], dtype=np.float32)
                by_id[id_] = item
        if skip_missing:
            return [by_id[i] for i in ids if i in by_id]
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise NotFound(f"No item {missing[0]!r} in collection {self.name!r}.")
        return [by_id[i] for i in ids]
