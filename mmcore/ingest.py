"""hash -> skip known -> read + chunk -> embed in batches -> store originals -> upsert, with a report.

Chunks of several files are embedded together, so small files still fill the model's batches; each file's
items are written in one upsert after its original and thumbnail are on disk.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .errors import MediaError
from .media import Chunk, Decoded, ReadOptions, is_supported, read_media
from .workspace import Workspace

LOCATOR_KEYS = ("page", "row", "char_start", "char_end", "start_s", "end_s")


@dataclass
class SourceFile:
    """One file to ingest: its display name and either its bytes or a path to read them from."""

    name: str
    data: bytes | None = None
    path: Path | None = None

    def read(self, max_bytes: int) -> bytes:
        if self.data is not None:
            return self.data
        try:
            size = self.path.stat().st_size
            if size > max_bytes:
                raise MediaError(self.name, f"the file is {size / 2**20:.0f} MB, over the {max_bytes / 2**20:.0f} MB limit (raise MMCORE_MAX_FILE_MB to accept it)")
            return self.path.read_bytes()
        except OSError as e:
            raise MediaError(self.name, f"could not be read ({e.strerror or e})") from None


@dataclass
class FileResult:
    name: str
    status: str  # "added" | "skipped" | "failed"
    items: int = 0
    reason: str | None = None
    source_hash: str | None = None


@dataclass
class IngestReport:
    results: list[FileResult] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=lambda: {"read": 0.0, "embed": 0.0, "write": 0.0})

    def by_status(self, status: str) -> list[FileResult]:
        return [r for r in self.results if r.status == status]

    @property
    def items_added(self) -> int:
        return sum(r.items for r in self.by_status("added"))

    @property
    def ok(self) -> bool:
        return not self.by_status("failed")


Progress = Callable[[int, int, FileResult], None]


def collect_files(paths: Iterable[str | Path]) -> tuple[list[SourceFile], list[FileResult]]:
    """Files to ingest from paths and folders (recursively, hidden entries skipped).

    Returns the files and, separately, results for entries that won't be tried: missing paths (failed) and
    files of unsupported types found inside folders (skipped). A file named explicitly is always tried.
    """
    files, results = [], []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for found in sorted(p for p in path.rglob("*") if p.is_file()):
                rel = found.relative_to(path)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                name = str(Path(path.name) / rel)
                if is_supported(found.name):
                    files.append(SourceFile(name, path=found))
                else:
                    results.append(FileResult(name, "skipped", reason=f"unsupported file type ({found.suffix or 'none'})"))
        elif path.is_file():
            files.append(SourceFile(path.name, path=path))
        else:
            results.append(FileResult(str(given), "failed", reason="no such file or folder"))
    return files, results


def ingest(
    ws: Workspace,
    sources: Sequence[SourceFile],
    collection: str | None = None,
    tags: Sequence[str] = (),
    csv_rows: bool = False,
    on_progress: Progress | None = None,
) -> IngestReport:
    """Add files to a collection of the `clip` space and report what happened to each.

    A file whose bytes are already in the collection is skipped; a file that can't be read fails with its
    reason and nothing of it is stored. Never raises for a bad file.

    Raises:
        ModelUnavailable: the model can't be loaded (nothing is stored).
        SpaceMismatch: the collection was made by another model.
        StoreError: the store can't be reached.
    """
    space = ws.space("clip")
    target = ws.collection(collection, "clip")
    settings = ws.settings
    options = ReadOptions(
        token_spans=space.token_spans,
        max_tokens=space.max_text_tokens,
        overlap_tokens=max(1, space.max_text_tokens // 8),
        max_file_bytes=settings.max_file_bytes,
        max_image_pixels=settings.max_image_pixels,
        csv_rows=csv_rows,
    )
    tag_list = sorted({t.strip() for t in tags if t.strip()})
    report = IngestReport()
    pending: list[tuple[FileResult, Decoded, bytes]] = []
    seen: set[str] = set()
    in_order: list[FileResult] = []

    def finish(result: FileResult) -> None:
        report.results.append(result)
        if on_progress:
            on_progress(len(report.results), len(sources), result)

    def flush() -> None:
        if not pending:
            return
        started = time.perf_counter()
        try:
            vectors = _embed(space, [c for _, decoded, _ in pending for c in decoded.chunks])
        except Exception as e:  # a model failing on one batch must not lose the report of the rest
            for result, _, _ in pending:
                result.status, result.reason = "failed", f"the model failed on this file ({e})"
                finish(result)
            pending.clear()
            return
        report.seconds["embed"] += time.perf_counter() - started
        started = time.perf_counter()
        ids, metadatas, documents = [], [], []
        for result, decoded, data in pending:
            file_ids, file_metadatas, file_documents = _rows(ws, result, decoded, data, tag_list)
            ids += file_ids
            metadatas += file_metadatas
            documents += file_documents
            result.status, result.items = "added", len(file_ids)
        target.add(ids, vectors, metadatas, documents)  # one upsert: these files appear together or not at all
        report.seconds["write"] += time.perf_counter() - started
        for result, _, _ in pending:
            finish(result)
        pending.clear()

    for source in sources:
        result = FileResult(source.name, "failed")
        in_order.append(result)
        started = time.perf_counter()
        try:
            data = source.read(settings.max_file_bytes)
            result.source_hash = hashlib.sha256(data).hexdigest()
            if result.source_hash in seen or target.has_source(result.source_hash):
                result.status, result.reason = "skipped", "already in the collection"
            else:
                decoded = read_media(source.name, data, options)
        except MediaError as e:
            result.reason = e.reason
        report.seconds["read"] += time.perf_counter() - started
        if result.reason:
            finish(result)
            continue
        seen.add(result.source_hash)
        pending.append((result, decoded, data))
        if sum(len(d.chunks) for _, d, _ in pending) >= settings.batch_size:
            flush()
    flush()
    report.results = in_order  # files finish out of order (batching); report them as given
    return report


def _embed(space, chunks: list[Chunk]) -> np.ndarray:
    """Vectors for chunks of mixed modality, in the chunks' order."""
    vectors = np.zeros((len(chunks), space.info.dim), dtype=np.float32)
    for modality, embed in (("image", space.embed_images), ("text", space.embed_texts)):
        idx = [i for i, c in enumerate(chunks) if c.modality == modality]
        if idx:
            vectors[idx] = embed([chunks[i].payload for i in idx])
    return vectors


def _rows(ws: Workspace, result: FileResult, decoded: Decoded, data: bytes, tags: list[str]):
    """Save the file's original and thumbnail; return its items' ids, metadata and documents."""
    source_hash = result.source_hash
    original = ws.files.save_original(source_hash, decoded.stored_ext, data)
    thumbnail = ws.files.save_thumbnail(source_hash, decoded.thumbnail) if decoded.thumbnail is not None else None
    added_at = int(time.time())
    ids, metadatas, documents = [], [], []
    for chunk in decoded.chunks:
        ids.append(f"{source_hash[:32]}:{chunk.locator_key}")
        meta = {
            "source": result.name,
            "source_hash": source_hash,
            "modality": chunk.modality,
            "mime": decoded.mime,
            "bytes": len(data),
            "added_at": added_at,
            "original": original.relative_to(ws.files.root).as_posix(),
            **chunk.locator,
            **chunk.meta,
        }
        if thumbnail is not None:
            meta["thumbnail"] = thumbnail.relative_to(ws.files.root).as_posix()
        if tags:
            meta["tags"] = tags
        metadatas.append(meta)
        documents.append(chunk.payload if chunk.modality == "text" else None)
    return ids, metadatas, documents
