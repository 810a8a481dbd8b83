"""`python -m mmcore check`: verify a store without changing anything.

Per collection and space: Chroma's count agrees with the items a full read returns, every item has the metadata
mmscope relies on, its vector has the recorded dimension and unit length, and its original and thumbnail exist
under the media root; in a multi-vector space (the doc space), every item has a token matrix beside Chroma that
is believed (mmcore.multivector). Across the data dir: no ingest was cut short with writes still to roll back, and no big
file is left partly ingested (its committed groups in, the rest not) by an ingest that is gone.
"""

from __future__ import annotations

import fcntl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .config import Settings
from .datadir import check_schema
from .errors import MMError, NotFound, StoreError
from .journal import SUFFIX, journal_dir, open_groups, open_journal, partial_files, writer_alive
from .multivector import folder_of, held_versions, load, sidecar_root
from .pending import PENDING_DIR
from .spaces.registry import spec_of
from .store import ItemCollection, Store, open_client

REQUIRED_KEYS = ("source", "source_hash", "modality")
NORM_TOLERANCE = 1e-3
MAX_PER_KIND = 5  # problems of one kind listed per collection; the rest are counted


@dataclass(frozen=True)
class Problem:
    """One thing wrong: where (collection/space, or None for the data dir), what kind, and what exactly."""

    where: str | None
    kind: str
    message: str


@dataclass
class CollectionHealth:
    name: str
    space: str
    dim: int
    count: int
    read: int


@dataclass
class HealthReport:
    location: str
    collections: list[CollectionHealth] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _refuse_writes() -> None:
    raise StoreError("check never writes to the store")


def check_store(settings: Settings, page: int = 2000, on_progress: Callable[[str], None] | None = None) -> HealthReport:
    """Check every collection of the store of `settings`; reads only (no lock, no recovery, no schema stamp).

    Raises:
        NotFound: there is no data dir (embedded store).
        NewerDataDir: a newer mmscope wrote the data dir.
        StoreError: the store can't be opened.
    """
    data_dir = settings.data_dir
    if not settings.chroma_host and not (data_dir / "chroma").is_dir():
        raise NotFound(f"There is no store in {data_dir}: set MMCORE_DATA_DIR to a data dir mmscope has written.")
    check_schema(data_dir)
    store = Store(open_client(settings))
    where = f"Chroma server {settings.chroma_host}:{settings.chroma_port}" if settings.chroma_host else f"data dir {data_dir}"
    report = HealthReport(where)
    for raw in sorted(store.client.list_collections(), key=lambda r: r.name):
        target = ItemCollection(raw, store.client.get_max_batch_size(), store.client, _refuse_writes,
                                None if settings.chroma_host else data_dir / PENDING_DIR)  # staged items are checked there
        if target.space is None:
            continue  # not one of ours
        if on_progress:
            on_progress(f"{target.name}/{target.space.space}")
        report.collections.append(_check_collection(target, data_dir / "media", page, report.problems))
        spec = spec_of(target.space.space)
        if spec is not None and spec.multivector:
            report.problems += _token_matrices(target, sidecar_root(data_dir))
    report.problems += _unfinished_writes(journal_dir(data_dir)) + _partly_ingested(journal_dir(data_dir))
    return report


def _check_collection(target: ItemCollection, media: Path, page: int, problems: list[Problem]) -> CollectionHealth:
    space = target.space
    where = f"{target.name}/{space.space}"
    found: dict[str, list[str]] = {}

    def problem(kind: str, message: str) -> None:
        found.setdefault(kind, []).append(message)

    counted = target.count()
    read = 0
    for ids, vectors, metadatas in _pages(target, page):
        read += len(ids)
        dims = {len(v) for v in vectors}
        if dims != {space.dim}:
            for id_, v in zip(ids, vectors):
                if len(v) != space.dim:
                    problem("dimension", f"item {id_!r} has a {len(v)}-d vector; the collection records {space.dim}-d")
            continue
        array = np.asarray(vectors, dtype=np.float64)
        norms = np.linalg.norm(array, axis=1)
        for i in np.flatnonzero(~np.isfinite(norms) | (np.abs(norms - 1) > NORM_TOLERANCE)):
            problem("norm", f"item {ids[i]!r} has a vector of length {norms[i]:.4g}, not 1")
        for id_, meta in zip(ids, metadatas):
            meta = meta or {}
            missing = [k for k in REQUIRED_KEYS if meta.get(k) in (None, "")]
            if missing:
                problem("metadata", f"item {id_!r} lacks {', '.join(missing)}")
            for key in ("original", "thumbnail"):
                if meta.get(key) and not _is_media_file(media, str(meta[key])):
                    problem(f"missing {key}", f"item {id_!r}: its {key} {meta[key]} is not a file under {media}")
    if read != counted:
        again = target.count()
        if again != counted:
            problem("changed", f"the collection changed during the check ({counted} then {again} items): run it again when nothing writes")
        else:
            problem("count", f"Chroma counts {counted} items but reading them all gives {read}")
    for kind, messages in found.items():
        problems += [Problem(where, kind, m) for m in messages[:MAX_PER_KIND]]
        if len(messages) > MAX_PER_KIND:
            problems.append(Problem(where, kind, f"... and {len(messages) - MAX_PER_KIND} more items like these"))
    return CollectionHealth(target.name, space.space, space.dim, counted, read)


def _token_matrices(target: ItemCollection, root: Path) -> list[Problem]:
    """Items of a multi-vector space without a believed token matrix, and segments that can't be read."""
    where = f"{target.name}/{target.space.space}"
    held = held_versions(target)
    sidecar = load(folder_of(root, target), target.space.dim, held)
    problems = [Problem(where, "token matrices", f"segment {path.name} can't be read ({reason}): its pages are searched "
                        "without it") for path, reason in sidecar.unreadable.items()]
    missing = sorted(set(held) - set(sidecar.where))
    problems += [Problem(where, "missing token matrix", f"item {id_!r} has no token matrix beside Chroma: MaxSim search "
                         "leaves it out; delete its file from the collection and ingest it again")
                 for id_ in missing[:MAX_PER_KIND]]
    if len(missing) > MAX_PER_KIND:
        problems.append(Problem(where, "missing token matrix", f"... and {len(missing) - MAX_PER_KIND} more items like these"))
    return problems


def _pages(target: ItemCollection, page: int):
    """(ids, vectors, metadatas) a page at a time, without assuming the vectors share one dimension."""
    for batch in target.pages(["vectors", "metadatas"], page):
        if batch.ids:
            yield batch.ids, [np.asarray(v).reshape(-1) for v in batch.vectors], batch.metadatas


def _is_media_file(media: Path, relative: str) -> bool:
    path = (media / relative).resolve()
    return path.is_relative_to(media.resolve()) and path.is_file()


def _partly_ingested(directory: Path) -> list[Problem]:
    """Big files whose ingest stopped between two of their groups (not those an ingest is writing now)."""
    problems = []
    for record in partial_files(directory):
        if record.writers and writer_alive(directory, record.writers[-1]):
            continue
        problems.append(Problem(None, "partly ingested",
                                f"{record.header.get('name')!r} is partly in {record.collection!r}: {record.items:,} of its items "
                                "are in, the rest not (its ingest was cut short); run the same ingest again to add the rest"))
    return problems


def _unfinished_writes(directory: Path) -> list[Problem]:
    """Journals of writers that are gone with groups they began and never committed (left for `recover`)."""
    problems = []
    for path in sorted(directory.glob(f"*{SUFFIX}")) if directory.is_dir() else []:
        try:
            with open_journal(path) as journal:
                try:
                    fcntl.flock(journal.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)  # a probe: a live writer holds it exclusively
                except BlockingIOError:
                    continue
                groups = open_groups(path, journal)
        except FileNotFoundError:
            continue
        except MMError as e:  # not a journal mmscope wrote: every command but check refuses to open the store
            problems.append(Problem(None, "journal", str(e)))
            continue
        for collection, ids in groups.values():
            count = sum(len(v) for v in ids.values())
            problems.append(Problem(None, "unfinished write",
                                    f"an ingest into {collection!r} was cut short with {count} item(s) partly written "
                                    f"({path.name}); mmscope rolls them back when it next opens the store (any command but check)"))
    return problems
