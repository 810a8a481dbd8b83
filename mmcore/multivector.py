"""Token matrices beside Chroma: each item of a multi-vector space (the doc space's pages) keeps its token vectors
(float16, n x dim) here, and one pooled vector in Chroma (filters, maps, clusters, candidates).

A collection's matrices live in `<data dir>/multivector/<collection key>/`, in segments: folders holding
`tokens.npy` (the rows of all their items, one item after another, memory-mapped when read), `groups.npy` (int16:
for an item stored pooled, which of its stored rows each of its model's token rows went into) and `index.npz` (each
item's id, the version of the write that stored it, its pooling factor, and where its rows and groups start and
end). A segment is written in a temporary folder, fsynced and renamed into place, and never changed after; `compact`
writes a new one and then removes those it replaces.

Pooling (MMCORE_DOC_POOL, `pool_matrix`): a page's rows merged about `factor`-fold by hierarchical clustering
(mmcore.late_interaction.pool_tokens) before they are stored. Its groups say which stored row stands for which
patch, so a heat map still paints every patch. A pooled page scores otherwise by MaxSim than the same page whole
(fewer rows to find a query token's best match among, each a cluster's mean), so pooled and whole pages ranked
together are skewed (bench/RESULTS.md: pages pooled by 2 among as many whole ones held 36% of the top 10, not
half): one collection keeps one factor. An ingest pools as the pages already there are (`Sidecar.pool`), and the
setting applies to a collection's first pages.

A row is believed only while Chroma holds its id with a write token of that version (the item's uri, set by
`ItemCollection.add`; `version` there). An ingest writes a group's segment before that group's upsert, with the
version the upsert will then use: a write killed between the two leaves a segment nobody believes (the journal
rolls the upsert back), an item deleted from Chroma takes its matrix with it, and an item written again gets a new
version, so an older matrix of it is never read for it. Segments are named after the writer's journal
(`<journal>-<random>`): `compact` leaves alone those of a writer that is still running, whose upsert may follow.
Nothing is unpickled: segments are read through mmcore.safe_io's bounded readers.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import MediaError
from .files import write_folder_atomically
from .journal import journal_dir, writer_alive
from .safe_io import MAX_RECORD_BYTES, load_npy, load_npz

SIDECAR_DIR = "multivector"
# The most token vectors one item may have: ColQwen2 at its largest image size gives about 1,300, ColModernVBert
# about 1,200 (16 tiles and the whole page), ColPali 1,030. A segment whose index claims more was not written here.
MAX_TOKENS_PER_ITEM = 8192
# The largest pooling factor (MMCORE_DOC_POOL); ColPali's authors pool by 2-3.
MAX_POOL = 8
# After a delete, a collection's segments are rewritten when this share of their rows is no longer believed.
COMPACT_SHARE = 0.25


def sidecar_root(data_dir: Path) -> Path:
    """Where a data dir keeps its collections' token matrices."""
    return Path(data_dir) / SIDECAR_DIR


@dataclass(frozen=True)
class Segment:
    """One segment as read: its items' ids, versions and pooling factors (1: not pooled), `offsets` (item i is rows
    offsets[i]:offsets[i+1]), the rows (float16, memory-mapped), and `groups` (cut at `group_offsets`; empty for an
    item not pooled)."""

    path: Path
    ids: np.ndarray
    versions: np.ndarray
    offsets: np.ndarray
    tokens: np.ndarray
    pools: np.ndarray
    group_offsets: np.ndarray
    groups: np.ndarray

    def matrix(self, row: int) -> np.ndarray:
        return self.tokens[self.offsets[row]:self.offsets[row + 1]]

    def groups_of(self, row: int) -> np.ndarray | None:
        """For a pooled item, the stored row each of its model's token rows went into; None when not pooled."""
        if self.group_offsets[row] == self.group_offsets[row + 1]:
            return None
        return self.groups[self.group_offsets[row]:self.group_offsets[row + 1]]


def pool_matrix(matrix: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A token matrix as stored with pooling `factor`: (rows, groups), or (the matrix, None) when `factor` is 1."""
    from .late_interaction import cluster_tokens, pool_tokens

    if factor <= 1:
        return matrix, None
    labels = cluster_tokens(matrix, factor)
    return pool_tokens(matrix, factor, labels), labels.astype(np.int16)


def write_segment(folder: Path, writer: str, ids: Sequence[str], versions: Sequence[str],
                  matrices: Sequence[np.ndarray], groups: Sequence[np.ndarray | None] | None = None,
                  pools: Sequence[int] | None = None) -> Path:
    """Store items' token matrices as one new segment of the collection folder `folder`, durably, and return it.
    `writer`: the name of the writer's journal file (so `compact` can tell whether it still runs). A pooled item
    (`pool_matrix`) comes with its `groups` and its factor in `pools`; by default none is pooled."""
    folder.mkdir(parents=True, exist_ok=True)
    groups = [None] * len(matrices) if groups is None else list(groups)
    pools = [1] * len(matrices) if pools is None else list(pools)
    lengths = np.array([len(m) for m in matrices], dtype=np.int64)
    group_lengths = np.array([0 if g is None else len(g) for g in groups], dtype=np.int64)
    dim = matrices[0].shape[1] if len(matrices) else 0
    tokens = np.concatenate([np.asarray(m, dtype=np.float16) for m in matrices]) if len(matrices) else np.zeros((0, dim), np.float16)
    labels = [np.asarray(g, dtype=np.int16) for g in groups if g is not None]
    all_groups = np.concatenate(labels) if labels else np.zeros(0, np.int16)
    segment = folder / f"{Path(writer).stem}-{uuid.uuid4().hex[:12]}"

    def write(tmp: Path) -> None:
        np.save(tmp / "tokens.npy", np.ascontiguousarray(tokens))
        np.save(tmp / "groups.npy", all_groups)
        np.savez(tmp / "index.npz", ids=np.asarray(list(ids), dtype=str), versions=np.asarray(list(versions), dtype=str),
                 offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                 pools=np.asarray(pools, dtype=np.int64),
                 group_offsets=np.concatenate([[0], np.cumsum(group_lengths)]).astype(np.int64))

    write_folder_atomically(segment, write)
    return segment


def _cuts(offsets, n: int) -> bool:
    """Whether `offsets` cut a block into `n` consecutive parts: int64, n + 1 of them, from 0, never decreasing."""
    return offsets is not None and offsets.dtype == np.int64 and offsets.shape == (n + 1,) and offsets[0] == 0 \
        and not np.any(np.diff(offsets) < 0)


def read_segment(path: Path, dim: int) -> Segment:
    """A segment, checked: every array of the shape and type this module writes, rows for `dim`-d vectors, each
    pooled item's groups naming rows it has. A segment written before pooling (no groups) reads as not pooled.

    Raises:
        MediaError: naming the segment: unreadable, or not a segment written here (a torn, crafted or foreign one).
    """
    index = load_npz(path / "index.npz", MAX_RECORD_BYTES, name=str(path / "index.npz"))
    ids, versions, offsets = index.get("ids"), index.get("versions"), index.get("offsets")
    if ids is None or versions is None or ids.ndim != 1 or versions.shape != ids.shape \
            or ids.dtype.kind != "U" or versions.dtype.kind != "U" or not _cuts(offsets, len(ids)):
        raise MediaError(str(path), "not a segment of token matrices written by mmscope")
    pooled = "group_offsets" in index
    pools = index.get("pools", np.ones(len(ids), np.int64))
    group_offsets = index.get("group_offsets", np.zeros(len(ids) + 1, np.int64))
    if pools.dtype != np.int64 or pools.shape != ids.shape or np.any((pools < 1) | (pools > MAX_POOL)) \
            or not _cuts(group_offsets, len(ids)):
        raise MediaError(str(path), "not a segment of token matrices written by mmscope (its pooling)")
    rows = int(offsets[-1])
    if rows > len(ids) * MAX_TOKENS_PER_ITEM or int(group_offsets[-1]) > len(ids) * MAX_TOKENS_PER_ITEM:
        raise MediaError(str(path), f"its index claims {rows:,} token vectors for {len(ids):,} items")
    tokens = load_npy(path / "tokens.npy", rows * dim * 2, name=str(path / "tokens.npy"), mmap=True)
    if tokens.dtype != np.float16 or tokens.shape != (rows, dim):
        raise MediaError(str(path), f"its tokens are {tokens.dtype} {tokens.shape}, not float16 ({rows}, {dim})")
    n_groups = int(group_offsets[-1])
    groups = load_npy(path / "groups.npy", n_groups * 2, name=str(path / "groups.npy")) if pooled else np.zeros(0, np.int16)
    if groups.dtype != np.int16 or groups.shape != (n_groups,):
        raise MediaError(str(path), f"its groups are {groups.dtype} {groups.shape}, not int16 ({n_groups},)")
    if n_groups:  # each pooled item's groups name rows of its own
        owner = np.repeat(np.arange(len(ids)), np.diff(group_offsets))
        if np.any(groups < 0) or np.any(groups >= np.diff(offsets)[owner]):
            raise MediaError(str(path), "its groups name token vectors its items don't have")
    return Segment(path, ids, versions, offsets, tokens, pools, group_offsets, groups)


def segment_paths(folder: Path) -> list[Path]:
    """The collection's segments, oldest first (temporary folders of writes in progress left out)."""
    try:
        found = [p for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir()]
    except OSError:
        return []
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))


def held_versions(collection) -> dict[str, str]:
    """Every item Chroma holds in `collection` (an ItemCollection): id -> the version of the write that stored it."""
    held: dict[str, str] = {}
    for page in collection.pages(["writes"], 10_000):
        held.update((id_, write.partition(":")[0]) for id_, write in zip(page.ids, page.writes))
    return held


@dataclass
class Sidecar:
    """A collection's believed token matrices: `where[id]` = (segment, its row), and the segments nobody could read
    (`unreadable`: path -> why)."""

    segments: list[Segment]
    where: dict[str, tuple[int, int]]
    unreadable: dict[Path, str]
    rows: int  # rows of every readable segment, believed or not

    def matrix(self, item_id: str) -> np.ndarray | None:
        """The item's token matrix (float16, read-only), or None when none is believed."""
        found = self.where.get(item_id)
        return None if found is None else self.segments[found[0]].matrix(found[1])

    def groups(self, item_id: str) -> np.ndarray | None:
        """For an item stored pooled, the row of `matrix` each of its model's token rows went into; else None."""
        found = self.where.get(item_id)
        return None if found is None else self.segments[found[0]].groups_of(found[1])

    def pool(self) -> int | None:
        """The pooling factor of the collection's pages (the most common among them); None when it has none."""
        counts: dict[int, int] = {}
        for s, r in self.where.values():
            factor = int(self.segments[s].pools[r])
            counts[factor] = counts.get(factor, 0) + 1
        return max(counts, key=lambda f: (counts[f], -f)) if counts else None

    def __len__(self) -> int:
        return len(self.where)


def load(folder: Path, dim: int, held: dict[str, str]) -> Sidecar:
    """The matrices of the collection folder `folder` that `held` (id -> version, `held_versions`) believes."""
    for _ in range(3):  # a compaction may replace segments while they are listed: then list them again
        segments, where, unreadable, rows, vanished = [], {}, {}, 0, False
        for path in segment_paths(folder):
            try:
                segment = read_segment(path, dim)
            except MediaError as e:
                if path.exists():
                    unreadable[path] = e.reason
                else:
                    vanished = True
                continue
            segments.append(segment)
            rows += len(segment.ids)
            for row, (id_, version) in enumerate(zip(segment.ids.tolist(), segment.versions.tolist())):
                if held.get(id_) == version:
                    where[id_] = (len(segments) - 1, row)
        if not vanished:
            break
    return Sidecar(segments, where, unreadable, rows)


def folder_of(root: Path, collection) -> Path:
    return root / collection.key


def compact(collection, root: Path) -> int:
    """Rewrite the collection's segments as one holding only the matrices believed now; returns how many rows
    were dropped. Segments of a writer still running (its upsert may follow) and unreadable ones are left as they
    are (`check` reports the latter)."""
    folder = folder_of(root, collection)
    journals = journal_dir(root.parent)
    sidecar = load(folder, collection.space.dim, held_versions(collection))
    done = [i for i, s in enumerate(sidecar.segments) if not writer_alive(journals, s.path.name.rsplit("-", 1)[0] + ".journal")]
    if not done:
        return 0
    keep = [(id_, s, r) for id_, (s, r) in sidecar.where.items() if s in done]
    if keep:
        segs = sidecar.segments
        write_segment(folder, "compacted", [k[0] for k in keep], [str(segs[s].versions[r]) for _, s, r in keep],
                      [segs[s].matrix(r) for _, s, r in keep], [segs[s].groups_of(r) for _, s, r in keep],
                      [int(segs[s].pools[r]) for _, s, r in keep])
    dropped = sum(len(sidecar.segments[i].ids) for i in done) - len(keep)
    for i in done:
        shutil.rmtree(sidecar.segments[i].path, ignore_errors=True)
    return dropped


def compact_if_needed(collection, root: Path) -> bool:
    """`compact` when more than COMPACT_SHARE of the collection's stored rows are no longer believed."""
    folder = folder_of(root, collection)
    if not folder.is_dir() or collection.space is None:
        return False
    sidecar = load(folder, collection.space.dim, held_versions(collection))
    if sidecar.rows and (sidecar.rows - len(sidecar)) / sidecar.rows > COMPACT_SHARE:
        compact(collection, root)
        return True
    return False


def remove(root: Path, key: str) -> None:
    """Forget every matrix of the collection `key` (`<name>.<space>`), as when its space is deleted."""
    shutil.rmtree(root / key, ignore_errors=True)
