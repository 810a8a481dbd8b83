"""hash -> skip known -> read + chunk -> embed in batches -> store originals -> upsert, with a report.

Chunks of several files are embedded together, so small files still fill the model's batches; each file's
items are written once all of them are embedded, in one upsert per space, after its original and thumbnails
are on disk. Every write is a journaled group (mmcore.journal): a file is reported as added only once its
group is committed, and a group cut short by a crash is rolled back before the next ingest, which then adds
the file again, whole.

Three stages overlap so the model never waits: decoder threads check the next files against the store and
decode them while the model embeds (Pillow and PyAV release the GIL), and one writer thread saves thumbnails
and originals and upserts while the model goes on. Files are still taken, embedded and reported in order.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .errors import MediaError
from .files import display_name
from .journal import Journal, journal_dir, recover
from .media import Chunk, Decoded, ReadOptions, is_supported, may_hold_speech, read_media, space_of
from .spaces import normalize
from .speech import get_transcriber, transcript_chunks
from .workspace import Workspace

LOCATOR_KEYS = ("page", "row", "char_start", "char_end", "start_s", "end_s")
DECODE_THREADS = min(16, os.cpu_count() or 1)  # decoders release the GIL: files decode while the model runs


@dataclass
class SourceFile:
    """One file to ingest: its display name and either its bytes or a path to read them from."""

    name: str
    data: bytes | None = None
    path: Path | None = None

    def __post_init__(self) -> None:
        self.name = display_name(self.name)  # the bytes are stored under their hash; the name is only shown

    def read(self, max_bytes: int) -> bytes:
        """Its bytes. Raises MediaError: missing, not a regular file (a FIFO, a device), or over `max_bytes`."""
        from .safe_io import read_bounded

        if self.data is not None:
            return self.data
        return read_bounded(self.path, max_bytes, "MMCORE_MAX_FILE_MB", name=self.name)


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
    seconds: dict[str, float] = field(default_factory=lambda: {"read": 0.0, "transcribe": 0.0, "embed": 0.0, "write": 0.0})

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
            # Not only regular files: a FIFO or a link to a device is named and refused when read, not left out unsaid.
            for found in sorted(p for p in path.rglob("*") if not p.is_dir()):
                rel = found.relative_to(path)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                name = str(Path(path.name) / rel)
                if is_supported(found.name):
                    files.append(SourceFile(name, path=found))
                else:
                    results.append(FileResult(name, "skipped", reason=f"unsupported file type ({found.suffix or 'none'})"))
        elif os.path.lexists(path):  # a file, or something else that reading refuses by name (a FIFO, a device)
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
    max_total_bytes: int | None = None,
) -> IngestReport:
    """Add files to a collection and report what happened to each.

    Images, text, document pages and video segments go to the collection's `clip` space, audio windows to its
    `clap` space. With a speech model configured (MMCORE_ASR_MODEL), what is said in audio and video becomes text
    items in `clip` too, one per audio window or video segment that has speech (meta transcript=True). A file
    whose bytes are already in the collection is skipped; a file that can't be read or transcribed fails with its
    reason and nothing of it is stored. Long media is read lazily, chunk by chunk, so its decoded frames never all
    sit in memory. Never raises for a bad file. With `max_total_bytes` (an upload's limit, MMCORE_MAX_UPLOAD_MB),
    a file that would bring the files taken so far past it fails unread, and nothing of it is stored.

    Atomic and resumable: a file's items are written all together or not at all, and `on_progress` hears of a
    file as added only once all of its items are durably in the store. Writes a crash cut short are rolled back
    first (`mmcore.journal.recover`), so running the same ingest again completes it without duplicates.

    Raises:
        ModelUnavailable: a model the files need, the speech model included, can't be loaded (nothing is stored).
        SpaceMismatch: the collection was made by another model.
        StoreError: the store can't be reached.
    """
    settings = ws.settings
    needed = {space_of(s.name) for s in sources} or {"clip"}
    spaces = {name: ws.space(name) for name in sorted(needed | {"clip"})}  # clip also embeds text found in any file
    speech = bool(settings.asr_model) and any(may_hold_speech(s.name) for s in sources)
    transcriber = get_transcriber(settings) if speech else None
    journals = journal_dir(settings.data_dir)
    recover(ws.store, journals)  # so a file a crash cut short is not taken for one already in the collection
    targets = {name: ws.collection(collection, name) for name in spaces}
    options = read_options(settings, spaces, csv_rows)
    tag_list = sorted({t.strip() for t in tags if t.strip()})
    report = IngestReport()
    batch: list[tuple[_Pending, int]] = []  # chunks waiting for the model, across files
    waiting: list[_Pending] = []  # files read whole whose chunks are not all embedded and written yet
    decoding: deque[tuple[FileResult, bytes, Future]] = deque()  # files being decoded ahead of the model, in order
    writes: deque[tuple[Future, list[_Pending]]] = deque()  # groups being written, in order
    seen: set[str] = set()
    in_order: list[FileResult] = []

    def finish(result: FileResult) -> None:
        report.results.append(result)
        if on_progress:
            on_progress(len(report.results), len(sources), result)

    def queue(pending: _Pending, chunk: Chunk) -> None:
        pending.chunks.append(chunk)
        pending.vectors.append(None)
        batch.append((pending, len(pending.chunks) - 1))
        if len(batch) >= settings.batch_size:
            embed_batch()

    def embed_batch() -> None:
        if not batch:
            return
        started = time.perf_counter()
        try:
            embed_queued(spaces, batch)
        except Exception as e:  # a model failing on one batch must not lose the report of the rest
            for f in {id(f): f for f, _ in batch}.values():
                f.failed = f"the model failed on this file ({e})"
        batch.clear()
        report.seconds["embed"] += time.perf_counter() - started
        write_done()

    def write_done() -> None:
        """Hand the files whose chunks are all embedded to the writer thread; report the groups it has written."""
        done = [f for f in waiting if f.failed or all(v is not None for v in f.vectors)]
        for f in done:
            waiting.remove(f)
        if done:
            writes.append((writer.submit(timed, "write", write_files, ws, journal, targets, done, tag_list), done))
        report_written(wait=False)

    def report_written(wait: bool) -> None:
        while writes and (wait or writes[0][0].done()):
            future, done = writes.popleft()
            future.result()  # a store error stops the ingest here, its group rolled back by the journal
            for f in done:
                finish(f.result)

    def timed(stage: str, work, *args):
        started = time.perf_counter()
        try:
            return work(*args)
        finally:
            report.seconds[stage] += time.perf_counter() - started

    def take(result: FileResult, data: bytes, decoded: Future) -> None:
        """Queue a decoded file's chunks for the model (long media is read on, chunk by chunk, as it goes), or
        report it skipped or failed."""
        started = time.perf_counter()
        pending = None
        try:
            read = decoded.result()
            if read is None or result.source_hash in seen:
                result.status, result.reason = "skipped", "already in the collection"
            else:
                pending = _Pending(result, read, data)
                for chunk in pending.decoded.chunks:  # lazily decoded: long media streams through the model in batches
                    report.seconds["read"] += time.perf_counter() - started
                    queue(pending, chunk)
                    started = time.perf_counter()
                if not pending.chunks:
                    raise MediaError(result.name, "nothing in it could be embedded")
                if transcriber is not None and pending.chunks[0].modality in ("audio", "video"):
                    report.seconds["read"] += time.perf_counter() - started
                    started = time.perf_counter()
                    spoken = transcript_chunks(transcriber, result.name, data, pending.chunks, options)
                    report.seconds["transcribe"] += time.perf_counter() - started
                    for chunk in spoken:
                        queue(pending, chunk)
                    started = time.perf_counter()
        except MediaError as e:
            result.reason = e.reason
            if pending is not None:  # drop what was read of it; vectors already made are discarded
                batch[:] = [(f, i) for f, i in batch if f is not pending]
        report.seconds["read"] += time.perf_counter() - started
        if result.reason:
            finish(result)
            return
        seen.add(result.source_hash)
        waiting.append(pending)
        write_done()

    def read_new(name: str, data: bytes, source_hash: str) -> Decoded | None:
        """In a decoder thread: None when the collection holds these bytes already, else the file read."""
        if targets[space_of(name)].has_source(source_hash):
            return None
        return read_media(name, data, options)

    received = 0  # bytes of the files taken so far, against max_total_bytes
    lookahead = 2 * settings.batch_size  # files decoded ahead of the model: enough to fill its next batches
    decoder = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="ingest-decode")
    writer = ThreadPoolExecutor(1, thread_name_prefix="ingest-write")
    with Journal(journals, ws.store) as journal:
        try:
            for source in sources:
                result = FileResult(source.name, "failed")
                in_order.append(result)
                started = time.perf_counter()
                try:
                    data = source.read(settings.max_file_bytes)
                    if max_total_bytes is not None and received + len(data) > max_total_bytes:
                        limit = f"{max_total_bytes / 2**20:.0f} MB"
                        raise MediaError(source.name, f"with it, this upload is over its {limit} limit in all; add it "
                                         "in another upload (or raise MMCORE_MAX_UPLOAD_MB)")
                    received += len(data)
                    result.source_hash = hashlib.sha256(data).hexdigest()
                except MediaError as e:
                    result.reason = e.reason
                report.seconds["read"] += time.perf_counter() - started
                if result.reason:
                    finish(result)
                    continue
                decoding.append((result, data, decoder.submit(read_new, source.name, data, result.source_hash)))
                while len(decoding) > lookahead:
                    take(*decoding.popleft())
            while decoding:
                take(*decoding.popleft())
            embed_batch()
            write_done()
            report_written(wait=True)
        finally:  # on an error: no write may still run when the journal rolls back its open group
            decoder.shutdown(wait=True, cancel_futures=True)
            writer.shutdown(wait=True, cancel_futures=True)
    report.results = in_order  # files finish out of order (batching); report them as given
    return report


@dataclass
class _Pending:
    """A file on its way in: its chunks as read so far and their vectors once embedded."""

    result: FileResult
    decoded: Decoded
    data: bytes
    chunks: list[Chunk] = field(default_factory=list)
    vectors: list[np.ndarray | None] = field(default_factory=list)
    failed: str | None = None


def read_options(settings, spaces: dict, csv_rows: bool = False) -> ReadOptions:
    """How files are read for the loaded `spaces` ({name: Space}, clip among them): their limits, and the clip
    tokenizer's text windows. The same settings and models give the same chunks, so the same item ids."""
    clip = spaces["clip"]
    return ReadOptions(
        token_spans=clip.token_spans,
        max_tokens=clip.max_text_tokens,
        overlap_tokens=max(1, clip.max_text_tokens // 8),
        max_file_bytes=settings.max_file_bytes,
        max_image_pixels=settings.max_image_pixels,
        csv_rows=csv_rows,
        video_segment_s=float(settings.video_segment_s),
        audio_segment_s=float(settings.audio_segment_s),
        audio_rate=int(getattr(spaces.get("clap"), "sampling_rate", ReadOptions.audio_rate)),
        max_media_seconds=float(settings.max_media_seconds),
        max_pdf_pages=settings.max_pdf_pages,
        max_text_bytes=settings.max_text_bytes,
    )


def embed_queued(spaces: dict, batch: list[tuple[_Pending, int]]) -> None:
    """Embed the queued chunks (file, chunk index) in their spaces: fill in their vectors and drop their pixels.

    Raises whatever the model raises; the files' vectors are then incomplete.
    """
    for name, space in spaces.items():
        part = [(f, i) for f, i in batch if f.chunks[i].space == name]
        if part:
            vectors = _embed(space, [f.chunks[i] for f, i in part])
            for (f, i), vector in zip(part, vectors):
                f.vectors[i] = vector
                f.chunks[i] = _without_pixels(f.chunks[i])


def write_files(ws: Workspace, journal: Journal, targets: dict, files: Sequence[_Pending], tags: list[str]) -> None:
    """Store embedded files as one journaled group: their originals and thumbnails, then one upsert per space
    into `targets` ({space: ItemCollection}). Marks each file's result added, or failed with `failed`'s reason.

    All of the group's items are in the store once this returns, or (after a crash) none of them once
    `recover` has run.
    """
    rows: dict[str, tuple[list, list, list, list]] = {}
    for f in files:
        if f.failed:
            f.result.status, f.result.reason = "failed", f.failed
            continue
        for name, (ids, metadatas, documents, vectors) in _rows(ws, f, tags).items():
            into = rows.setdefault(name, ([], [], [], []))
            into[0].extend(ids), into[1].extend(metadatas), into[2].extend(documents), into[3].extend(vectors)
        f.result.status, f.result.items = "added", len(f.chunks)
    if rows:
        group = journal.begin(targets["clip"].name, {name: ids for name, (ids, *_) in rows.items()})
        for name, (ids, metadatas, documents, vectors) in rows.items():
            targets[name].add(ids, np.stack(vectors), metadatas, documents)  # one upsert per space for these files
        journal.commit(group)


def _embed(space, chunks: list[Chunk]) -> np.ndarray:
    """Vectors for chunks of mixed modality (all of one space), in the chunks' order.

    A video segment's vector is the mean of its frames' vectors, re-normalised.
    """
    vectors = np.zeros((len(chunks), space.info.dim), dtype=np.float32)
    for modality, method in (("image", "embed_images"), ("page", "embed_images"), ("text", "embed_texts"), ("audio", "embed_audio")):
        idx = [i for i, c in enumerate(chunks) if c.modality == modality]
        if idx:
            vectors[idx] = getattr(space, method)([chunks[i].payload for i in idx])
    segments = [i for i, c in enumerate(chunks) if c.modality == "video"]
    if segments:
        frames = [frame for i in segments for frame in chunks[i].payload]
        frame_vectors = space.embed_images(frames)
        ends = np.cumsum([len(chunks[i].payload) for i in segments])
        for i, part in zip(segments, np.split(frame_vectors, ends[:-1])):
            vectors[i] = part.mean(axis=0)
        vectors[segments] = normalize(vectors[segments])
    return vectors


def _without_pixels(chunk: Chunk) -> Chunk:
    """The chunk without its decoded pixels or samples, which are not needed once it is embedded."""
    return chunk if chunk.modality == "text" else replace(chunk, payload=None)


def _rows(ws: Workspace, pending: _Pending, tags: list[str]) -> dict[str, tuple[list, list, list, list]]:
    """Save the file's original and thumbnails; return its items' ids, metadata, documents and vectors per space."""
    result, decoded, data = pending.result, pending.decoded, pending.data
    source_hash = result.source_hash
    original = ws.files.save_original(source_hash, decoded.stored_ext, data)
    thumbnail = ws.files.save_thumbnail(source_hash, decoded.thumbnail) if decoded.thumbnail is not None else None
    added_at = int(time.time())
    rows: dict[str, tuple[list, list, list, list]] = {}
    saved: dict[int, Path] = {}  # chunks may share one picture (a page's text windows show the page)
    for chunk, vector in zip(pending.chunks, pending.vectors):
        item_id = f"{source_hash[:32]}:{chunk.locator_key}"
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
        own = None
        if chunk.thumbnail is not None:
            own = saved.get(id(chunk.thumbnail)) or ws.files.save_thumbnail(f"{source_hash}.{chunk.locator_key}", chunk.thumbnail)
            saved[id(chunk.thumbnail)] = own
        if own or thumbnail:
            meta["thumbnail"] = (own or thumbnail).relative_to(ws.files.root).as_posix()
        if tags:
            meta["tags"] = tags
        ids, metadatas, documents, vectors = rows.setdefault(chunk.space, ([], [], [], []))
        ids.append(item_id)
        metadatas.append(meta)
        documents.append(chunk.payload if chunk.modality == "text" else None)
        vectors.append(vector)
    return rows
