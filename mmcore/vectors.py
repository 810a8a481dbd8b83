"""Bring your own vectors: embeddings made elsewhere (.npy or .parquet), with optional metadata from a CSV.

They become a collection of a space of their own, named by the user. No model knows that space, so such a
collection is searched by item, never by text or image; every analysis works on it as on any other.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .config import Settings
from .errors import MediaError, MMError, NotFound, SpaceMismatch
from .ingest import SourceFile
from .journal import Journal, journal_dir, recover
from .media import ReadOptions
from .media.image import read_image
from .safe_io import read_bounded, read_npy
from .spaces import SpaceInfo
from .spaces.registry import names as model_spaces
from .vector_cache import record_added, vector_cache_dir
from .workspace import Workspace

DEFAULT_SPACE = "custom"
VECTOR_COLUMNS = ("vector", "embedding")
TEXT_COLUMNS = ("text", "caption")
IMAGE_COLUMNS = ("image", "path")
# Keys mmscope sets itself: a metadata column of one of these names is kept as csv_<name> instead.
RESERVED = ("source_hash", "modality", "mime", "bytes", "added_at", "original", "thumbnail", "row", "width", "height")
SPACE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
MIME = {".npy": "application/x-npy", ".parquet": "application/vnd.apache.parquet"}
WRITE_BATCH = 4096  # items per journaled group (and per version of the collection)
STAGE_MIN_ITEMS = 5000  # a staged import (mmcore.pending) pays off from here: Chroma takes ~1 ms of CPU an item

Progress = Callable[[int, int], None]


@dataclass
class ImportReport:
    """What an import did. `problems` are what did not stop it (an unreadable image: its item is kept without)."""

    collection: str
    space: SpaceInfo
    source: str
    rows: int = 0
    added: int = 0
    skipped: int = 0  # already in the collection (same id)
    images: int = 0  # originals + thumbnails stored for the added items
    problems: list[str] = field(default_factory=list)  # by row
    seconds: float = 0.0


@dataclass
class MetaRow:
    """One row of a metadata CSV: the item's id, typed metadata, tags, document and image (as written)."""

    id: str
    meta: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    document: str | None = None
    image: str | None = None


def import_vectors(
    ws: Workspace,
    vectors_path: str | Path,
    meta_path: str | Path | None = None,
    collection: str | None = None,
    space: str = DEFAULT_SPACE,
    on_progress: Progress | None = None,
    confine_images: bool = False,
    stage: bool = False,
) -> ImportReport:
    """Import vectors (L2-normalised on the way in) as items of the collection's space `space`.

    Args:
        vectors_path: `.npy` holding a numeric array [n, d], or `.parquet` with one list column named
            `vector` or `embedding` (other columns ignored), or only numeric columns (one per dimension).
        meta_path: optional CSV with one row per vector, in the same order: `id` (else ids are `row-<n>`,
            counting from 0), `tags` (split on | or ,), `text` or `caption` (the item's document), `image` or
            `path` (an image file relative to the CSV, stored with a thumbnail); every other column becomes
            metadata, typed (whole numbers, numbers, true/false) when all its cells are.
        collection: its name (default: the configured one); space: the space's name (default "custom").
        on_progress: called with (items written, items to write) after each batch.
        confine_images: refuse image paths that lead outside the CSV's folder (for uploads through the app,
            where a CSV must not make the server read its own files).
        stage: into an empty collection of an embedded store, write the items (at least STAGE_MIN_ITEMS) to its
            staging folder instead of Chroma (seconds instead of minutes at 100k); `ItemCollection.settle` or `python -m mmcore index` then
            puts them into Chroma (mmcore.pending). Other collections are written as usual.
    Items whose id is already in the collection are skipped, so importing the same file again adds nothing.
    Nothing is written when any check fails. Atomic and resumable as `ingest`: each batch is a journaled
    group, so an import killed part-way leaves whole batches only (once recovered: opening the data dir or
    the next import or ingest does it), and importing the same file again completes it without duplicates.

    Raises:
        MMError: a file is missing or malformed, a row is NaN/infinite/zero, the row counts differ, ids
            repeat, or the space name is invalid. SpaceMismatch: the collection's space holds vectors of
            another dimension or source. StoreError: the store can't be reached.
    """
    started = time.perf_counter()
    vectors_path = Path(vectors_path)
    name = collection or ws.settings.collection
    check_space_name(space)
    matrix, digest, size = read_vectors(vectors_path, ws.settings.max_vectors_bytes)
    vectors = normalized(matrix, vectors_path.name)
    del matrix
    info = SpaceInfo(space, f"imported:{vectors_path.name}", digest[:12], vectors.shape[1])
    if meta_path is None:
        rows = [MetaRow(f"row-{i}") for i in range(len(vectors))]
    else:
        rows = read_meta(Path(meta_path), len(vectors), vectors_path.name, ws.settings.max_vectors_bytes)
    check_existing(ws, name, info)
    report = ImportReport(name, info, vectors_path.name, rows=len(rows))
    base = {"source_hash": digest, "mime": MIME[vectors_path.suffix.lower()], "bytes": size}
    images_root = Path(meta_path).parent if meta_path is not None else None
    options = ReadOptions(token_spans=lambda _: [], max_tokens=1, max_file_bytes=ws.settings.max_file_bytes,
                          max_image_pixels=ws.settings.max_image_pixels)
    added_at = int(time.time())
    problems: dict[int, str] = {}

    def build(i: int) -> tuple[dict, str | None]:
        row = rows[i]
        image = None
        if row.image:
            try:
                image = _store_image(ws, images_root, row.image, options, confine_images)
            except MediaError as e:
                problems[i] = f"row {i}: {e}; the item is kept without an image"
        # A `source` column names the source best, then the image file, then the vectors file.
        meta = {"source": vectors_path.name, **base, **(image or {}), **row.meta, "row": i, "added_at": added_at}
        meta["modality"] = "image" if image else "text" if row.document else "vector"
        if row.tags:
            meta["tags"] = row.tags
        return meta, row.document

    write_new(ws, name, info, [r.id for r in rows], vectors, build, report, on_progress, media=any(r.image for r in rows),
              stage=stage)
    report.problems = [problems[i] for i in sorted(problems)]
    report.seconds = time.perf_counter() - started
    return report


def read_vectors(path: Path, max_bytes: int = Settings.max_vectors_bytes) -> tuple[np.ndarray, str, int]:
    """The vectors of a .npy or .parquet file as numbers [n, d] (a .npy's in its own type, read-only; see
    `import_vectors`), with the SHA-256 and size of the file's bytes. The file is read once, through `mmcore.safe_io.read_bounded`, and holds no more values
    than its bytes do (a header or footer claiming more is refused).

    Raises:
        MMError: the file is missing, not a regular file, over `max_bytes` (MMCORE_MAX_VECTORS_MB), of another
            type, unreadable, or not a non-empty 2-D numeric table.
    """
    suffix = path.suffix.lower()
    if suffix not in MIME:
        raise MMError(f"{path.name}: unsupported vectors file type ({suffix or 'no extension'}); use .npy or .parquet")
    data = read_bounded(path, max_bytes, "MMCORE_MAX_VECTORS_MB")
    matrix = _read_npy(data, path.name) if suffix == ".npy" else _read_parquet(data, path.name, max_bytes)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise MMError(f"{path.name}: expected vectors as a 2-D array [n, d] with n, d >= 1, got shape {matrix.shape}")
    return matrix, hashlib.sha256(data).hexdigest(), len(data)


def normalized(matrix: np.ndarray, name: str) -> np.ndarray:
    """Rows scaled to unit length, as float32 (computed in float64, a block of rows at a time).

    Raises:
        MMError: a row holds NaN or infinite values or is all zeros (naming the file and the row).
    """
    out = np.empty(matrix.shape, dtype=np.float32)
    step = max(1, (1 << 22) // max(matrix.shape[1], 1))  # 32 MB of float64 at a time
    for start in range(0, len(matrix), step):
        rows = np.asarray(matrix[start : start + step], dtype=np.float64)
        finite = np.isfinite(rows).all(axis=1)
        if not finite.all():
            raise MMError(f"{name}: row {start + int(np.argmin(finite))} (counting from 0) holds NaN or infinite values; "
                          "every vector must be finite")
        norms = np.linalg.norm(rows, axis=1)
        if not norms.all():
            raise MMError(f"{name}: row {start + int(np.argmin(norms))} (counting from 0) is all zeros; "
                          "a zero vector has no direction to compare")
        out[start : start + step] = rows / norms[:, None]
    return out


def read_meta(path: Path, expected_rows: int, vectors_name: str, max_bytes: int = Settings.max_vectors_bytes) -> list[MetaRow]:
    """One `MetaRow` per data row of a metadata CSV (see `import_vectors` for its columns).

    Raises:
        MMError: the file is missing, not a regular file, over `max_bytes` (MMCORE_MAX_VECTORS_MB) or not
            UTF-8, has no header, a ragged or repeated column, an empty or repeated id, or not `expected_rows`
            data rows.
    """
    raw = read_bounded(path, max_bytes, "MMCORE_MAX_VECTORS_MB")
    try:
        reader = csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""))
        lines = [(reader.line_num, cells) for cells in reader if cells]
    except (UnicodeDecodeError, csv.Error) as e:
        raise MMError(f"{path.name}: not a readable UTF-8 CSV file ({e})") from None
    if not lines:
        raise MMError(f"{path.name}: empty; expected a header row and one row per vector")
    header = [h.strip() or f"column{j + 1}" for j, h in enumerate(lines[0][1])]
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise MMError(f"{path.name}: column {repeated[0]!r} appears more than once in the header")
    data = lines[1:]
    if len(data) != expected_rows:
        raise MMError(f"{vectors_name} holds {expected_rows} vectors but {path.name} has {len(data)} rows: "
                      "the metadata needs exactly one row per vector, in the same order")
    for number, cells in data:
        if len(cells) > len(header):
            raise MMError(f"{path.name}: line {number} has {len(cells)} cells, the header only {len(header)} columns")
    columns = {h: [cells[j].strip() if j < len(cells) else "" for _, cells in data] for j, h in enumerate(header)}
    lower = {h.lower(): h for h in header}
    special = {role: next((lower[c] for c in choices if c in lower), None) for role, choices in
               (("id", ("id",)), ("tags", ("tags",)), ("text", TEXT_COLUMNS), ("image", IMAGE_COLUMNS))}
    ids = columns[special["id"]] if special["id"] else [f"row-{i}" for i in range(len(data))]
    _check_ids(ids, [number for number, _ in data], path.name)
    rows = [MetaRow(id_) for id_ in ids]
    for h, values in columns.items():
        if h == special["id"]:
            continue
        if h == special["tags"]:
            for row, value in zip(rows, values):
                row.tags = sorted({t.strip() for t in re.split(r"[|,]", value) if t.strip()})
        elif h == special["text"]:
            for row, value in zip(rows, values):
                row.document = value or None
        elif h == special["image"]:
            for row, value in zip(rows, values):
                row.image = value or None
        else:
            key = f"csv_{h}" if h in RESERVED else h
            for row, value in zip(rows, _typed(values)):
                if value is not None:
                    row.meta[key] = value
    return rows


def check_space_name(space: str) -> None:
    """Raises MMError unless `space` can name an imported space (not one a model family owns: mmcore.spaces.registry)."""
    if not SPACE_PATTERN.match(space or ""):
        raise MMError(f"Invalid space name {space!r}: use 1-32 letters, digits, '-' or '_', starting with a letter or digit.")
    if space in model_spaces():
        raise MMError(f"Space {space!r} belongs to a model; give imported vectors a space of their own (e.g. 'custom').")


def check_existing(ws: Workspace, name: str, info: SpaceInfo) -> None:
    """Raises SpaceMismatch when `name` already has space `info.space` holding vectors of another source or
    dimension (the store would refuse them too, but with words meant for model choices)."""
    try:
        mine = ws.store.open(name, info.space).space
    except NotFound:
        return
    if mine is not None and (mine.model_id, mine.dim) != (info.model_id, info.dim):
        origin = mine.model_id.removeprefix("imported:")
        raise SpaceMismatch(
            f"Collection {name!r} (space {info.space!r}) holds {mine.dim}-d vectors from {origin}; "
            f"{info.model_id.removeprefix('imported:')} holds {info.dim}-d vectors from elsewhere. Vectors of "
            "different sources can't be compared: import into another collection or give another space name."
        )


def write_new(
    ws: Workspace,
    name: str,
    info: SpaceInfo,
    ids: Sequence[str],
    vectors: np.ndarray,
    build: Callable[[int], tuple[dict, str | None]],
    report: ImportReport,
    on_progress: Progress | None = None,
    media: bool = True,
    stage: bool = False,
) -> None:
    """Add the items whose ids aren't in the collection yet, in batches; `build(i)` gives item i's metadata
    and document (storing its media), is called only for items that will be added, and must be thread-safe.
    `media`: whether `build` may store media files (then it runs in threads).

    Each batch is a journaled group (mmcore.journal), begun before its upsert and committed after it, and
    reported to `on_progress` only then. Writes a crash cut short are rolled back first, so their items count
    as missing and are added again, whole. Afterwards the vector cache gets the new version's snapshot from the
    vectors written (mmcore.vector_cache.record_added), so the first analysis doesn't read them back.
    With `stage`, an empty collection of an embedded store gets its items (at least STAGE_MIN_ITEMS) staged at once
    (mmcore.pending).
    """
    journals = journal_dir(ws.settings.data_dir)
    recover(ws.store, journals)  # so an item a crash left in an uncommitted batch is not taken for one already in
    target = ws.store.collection(name, info)
    empty, start_version = target.count() == 0, target.version
    present = target.existing(ids)
    new = [i for i, id_ in enumerate(ids) if id_ not in present]
    report.skipped = len(ids) - len(new)
    version, written = start_version, []  # what this import wrote, while nobody else writes in between
    # Decoding and encoding images dominates; Pillow releases the GIL while it codes, so threads pay off. A row
    # without media takes microseconds, less than handing it to a thread.
    with Journal(journals, ws.store) as journal, ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        if stage and empty and len(new) >= STAGE_MIN_ITEMS and target.pending is not None:
            built = list(pool.map(build, new)) if media else [build(i) for i in new]
            rows = np.asarray(new)
            staged = vectors if len(new) == len(ids) else vectors[rows]
            version = target.stage([ids[i] for i in new], staged, [m for m, _ in built], [d for _, d in built])
            written.append(([ids[i] for i in new], [f"{version}:{m.get('modality', '')}" for m, _ in built], rows))
            report.added, report.images = len(new), sum("thumbnail" in m for m, _ in built)
            if on_progress:
                on_progress(report.added, len(new))
            new = []
        for start in range(0, len(new), WRITE_BATCH):
            batch = new[start : start + WRITE_BATCH]
            built = list(pool.map(build, batch)) if media else [build(i) for i in batch]
            batch_ids = [ids[i] for i in batch]
            group = journal.begin(name, {info.space: batch_ids})
            if written is not None and target.version != version:
                written = None
            version = target.add(batch_ids, vectors[batch], [m for m, _ in built], [d for _, d in built])
            journal.commit(group)
            if written is not None:
                written.append((batch_ids, [f"{version}:{m.get('modality', '')}" for m, _ in built], batch))
            report.added += len(batch)
            report.images += sum("thumbnail" in m for m, _ in built)
            if on_progress:
                on_progress(report.added, len(new))
    if written:
        record_added(target, vector_cache_dir(ws.settings.data_dir), None if empty else start_version,
                     [i for part in written for i in part[0]], [w for part in written for w in part[1]], vectors,
                     np.concatenate([part[2] for part in written]), version)


def _store_image(ws: Workspace, root: Path, given: str, options: ReadOptions, confine: bool = False) -> dict:
    """Original + thumbnail of a row's image, and its metadata. Raises MediaError: unreadable or, when
    confined, outside `root`."""
    if confine and not (root / given).resolve().is_relative_to(root.resolve()):
        raise MediaError(given, "refused: image paths must stay inside the folder of the metadata CSV")
    data = SourceFile(given, path=root / given).read(options.max_file_bytes)
    decoded = read_image(given, data, options)
    source_hash = hashlib.sha256(data).hexdigest()
    original = ws.files.save_original(source_hash, decoded.stored_ext, data)
    thumbnail = ws.files.save_thumbnail(source_hash, decoded.thumbnail)
    return {
        "source": given, "source_hash": source_hash, "mime": decoded.mime, "bytes": len(data),
        "original": original.relative_to(ws.files.root).as_posix(),
        "thumbnail": thumbnail.relative_to(ws.files.root).as_posix(),
        **decoded.chunks[0].meta,
    }


def _check_ids(ids: list[str], line_numbers: list[int], name: str) -> None:
    first_line: dict[str, int] = {}
    for id_, number in zip(ids, line_numbers):
        if not id_:
            raise MMError(f"{name}: line {number} has an empty id")
        if id_ in first_line:
            raise MMError(f"{name}: id {id_!r} appears on line {first_line[id_]} and again on line {number}")
        first_line[id_] = number


def _typed(values: list[str]) -> list[Any]:
    """A column's cells as ints, floats or booleans when every non-empty cell is one; empty cells are None."""
    filled = [v for v in values if v]
    for parse in (_int, _float, _bool):
        try:
            parsed = {v: parse(v) for v in set(filled)}
        except ValueError:
            continue
        return [parsed[v] if v else None for v in values]
    return [v or None for v in values]


def _int(value: str) -> int:
    # "007" stays text: leading zeros mean a code, not a number.
    if not re.fullmatch(r"[+-]?(0|[1-9]\d{0,17})", value):
        raise ValueError(value)
    return int(value)


def _float(value: str) -> float:
    if re.fullmatch(r"[+-]?0\d+", value):
        raise ValueError(value)
    number = float(value)
    if not np.isfinite(number):
        raise ValueError(value)
    return number


def _bool(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ValueError(value)
    return value.lower() == "true"


def _read_npy(data: bytes, name: str) -> np.ndarray:
    """The numbers of a .npy file's bytes, viewed in place as `mmcore.safe_io.read_npy` reads them (a header is
    believed only when the bytes after it hold that many values; no float64 copy: rows are scaled in blocks)."""
    array = read_npy(data, name)
    if array.dtype.kind not in "fiu":
        raise MMError(f"{name}: holds {array.dtype} values; vectors must be numbers")
    return array


def _read_parquet(data: bytes, name: str, max_bytes: int) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        footer = parquet.metadata
        # Compressed and run-length-encoded pages can decode to far more than the file's size: allow as many
        # values as a .npy file of float32 within the limit holds.
        values = sum(footer.row_group(i).column(j).num_values
                     for i in range(footer.num_row_groups) for j in range(footer.num_columns))
        if values > max_bytes // 4:
            raise MMError(f"{name}: decodes to {values:,} values, more than the {max_bytes // 4:,} a vectors file "
                          f"within MMCORE_MAX_VECTORS_MB ({max_bytes / 2**20:,.0f} MB at 4 bytes a value) may hold")
        table = parquet.read()
    except (pa.ArrowException, OSError) as e:
        raise MMError(f"{name}: not a readable Parquet file ({e})") from None
    by_lower = {c.lower(): c for c in table.column_names}
    wanted = next((by_lower[c] for c in VECTOR_COLUMNS if c in by_lower), None)
    if wanted is not None:
        return _list_column(table.column(wanted).combine_chunks(), wanted, name)
    numeric = lambda t: pa.types.is_integer(t) or pa.types.is_floating(t)  # noqa: E731
    bad = [f"{f.name!r} ({f.type})" for f in table.schema if not numeric(f.type)]
    if bad or not table.column_names:
        raise MMError(f"{name}: expected a list column named 'vector' or 'embedding', or only numeric columns "
                      f"(one per dimension); not numeric: {', '.join(bad) or 'no columns at all'}")
    return np.column_stack([pc.cast(c, pa.float64()).to_numpy() for c in table.columns])


def _list_column(column, name: str, file_name: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)) or not (
        pa.types.is_integer(kind.value_type) or pa.types.is_floating(kind.value_type)
    ):
        raise MMError(f"{file_name}: column {name!r} is {kind}, not a list of numbers")
    if column.null_count:
        row = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
        raise MMError(f"{file_name}: row {row} (counting from 0) has no vector in column {name!r}")
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != lengths[0]).any():
        row = int(np.argmax(lengths != lengths[0]))
        raise MMError(f"{file_name}: row {row} (counting from 0) has {lengths[row]} values but row 0 has "
                      f"{lengths[0]}; every vector needs the same dimension")
    values = pc.cast(column.flatten(), pa.float64()).to_numpy(zero_copy_only=False)
    return values.reshape(len(column), int(lengths[0]) if len(lengths) else 0)

