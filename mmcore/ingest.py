"""hash -> skip known -> read + chunk -> embed in batches -> store originals -> upsert, with a report.

Chunks of several files are embedded together, so small files still fill the model's batches; a file's items
are written once all of them are embedded, with other files' in one journaled group (mmcore.journal), after its
original and thumbnails are on disk. A file is reported as added only once its group is committed, and a group
cut short by a crash is rolled back before the next ingest.

A big file commits as it goes, in groups of at most GROUP_ITEMS items or GROUP_SECONDS of work, each recorded
as committed (mmcore.journal.PartialFile): a crash loses at most the group in flight, and the next ingest of the
file embeds only the items not in yet (item ids are content hash + locator, the same in every run). The file is
reported as added once its last group is in; until then it is not "already in the collection".

Each item goes to every enabled space that embeds its modality (mmcore.spaces.registry), each space its own
collection. A file needs every space its items go to: when one of them can't be loaded (sound without its model,
speech without the speech model) the file fails by name with the reason, and nothing of it is stored in any
space (a file is whole in all its spaces or in none); every other file goes in. A CSV of image file names and captions links each caption to
its image's item (`pair_of`); such CSVs are read after every other file, so their images are known.

Three stages overlap so the model never waits: decoder threads check the next files against the store and
decode them while the model embeds (Pillow and PyAV release the GIL), and one writer thread saves thumbnails
and originals and upserts while the model goes on. Files are still taken, embedded and reported in order.
What is done to each file between its decoding and its writing (`Runner`) is the same code on a Ray worker
(mmcore.scaleout), whose driver writes as this one does.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .errors import MediaError, MMError, ModelUnavailable, NotFound, SpaceMismatch
from .files import display_name
from .journal import Journal, PartialFile, journal_dir, recover
from .media import Chunk, Decoded, ReadOptions, extension, is_supported, may_hold_speech, modalities_of, read_media
from .multivector import compact_if_needed, folder_of, held_versions, load, pool_matrix, write_segment
from .pairs import Pairing
from .progress import Progress, ProgressTracker
from .spaces.embed import embed_in_spaces, prepare_decoded
from .spaces.registry import spaces_for, spec_of
from .store import new_version
from .speech import get_transcriber, transcript_chunks
from .workspace import Workspace

LOCATOR_KEYS = ("page", "row", "char_start", "char_end", "start_s", "end_s")
DECODE_THREADS = min(16, os.cpu_count() or 1)  # decoders release the GIL: files decode while the model runs
# A big file commits a group when it has this many items embedded: a few seconds of a GPU's work, and a write
# Chroma takes in one go (its batch limit is 5,461), while the items waiting in memory stay a few MB of vectors.
GROUP_ITEMS = 4096
# ... or when its oldest unwritten item is this old: on a CPU a full-size model embeds 20-60 texts/s, so a crash
# loses at most about this much work (a commit costs a few ms and two fsyncs).
GROUP_SECONDS = 30.0


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
    notes: list[str] = field(default_factory=list)  # what else to know: captions without their image, a resumed file


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
    pair_column: str = "auto",
) -> IngestReport:
    """Add files to a collection and report what happened to each.

    Every item goes to each enabled space that embeds its modality (by default images, text, document pages and
    video segments to `clip`, audio windows to `clap`). With a speech model configured (MMCORE_ASR_MODEL), what is
    said in audio and video becomes text items too, one per audio window or video segment that has speech (meta
    transcript=True). A file whose bytes are already in the collection is skipped; a file that can't be read or
    transcribed, or that needs a space whose model can't be loaded, fails with its reason and nothing of it is
    stored. Never raises for a bad file
    or a missing model. With `max_total_bytes` (an upload's limit, MMCORE_MAX_UPLOAD_MB), a file that would bring
    the files taken so far past it fails unread, and nothing of it is stored.

    `csv_rows`: read each CSV row as its own item. A CSV with a column of image file names and one of captions
    is then read as pairs (`pair_column` names the image column, "auto" finds it, "none" turns pairs off): each
    caption is its own text item, linked to its image (metadata `pair_of`, the image item's id, and
    `pair_source`), which is found in this ingest (beside the CSV, else by file name) or in the collection.

    Atomic and resumable: a file's items are written all together, or, for a big file, in groups that a later
    ingest of it completes; `on_progress` (mmcore.progress.IngestProgress: files and items done, items/s, time
    left) hears of a file as added only once all of its items are durably in the store. Writes a crash cut short
    are rolled back first (`mmcore.journal.recover`), so running the same ingest again completes it without
    duplicates.

    Raises:
        StoreError: the store can't be reached (what was committed stays; running the ingest again adds the rest).
    """
    settings = ws.settings
    collection_name = collection or settings.collection
    tracker = ProgressTracker(len(sources), on_progress)
    tracker.stage("loading models")
    journals = journal_dir(settings.data_dir)
    ws.store.before_write()  # an embedded store's one-writer lock: refused now, not after the models load
    recover(ws.store, journals)  # so a file a crash cut short is not taken for one already in the collection
    models = Models.load(ws, collection_name, [s.name for s in sources])
    options = read_options(settings, models.spaces, csv_rows, pair_column)
    reading = reading_key(options, models.transcriber is not None)
    pairing = Pairing(models.image_target)
    report = IngestReport()
    in_order = [FileResult(s.name, "failed") for s in sources]
    waiting: list[_Pending] = []  # files being read or embedded, whose items are not all handed to the writer
    decoding: deque[tuple[FileResult, bytes, Future]] = deque()  # files being decoded ahead of the model, in order
    writes: deque[tuple[Future, list[_Part]]] = deque()  # groups being written, in order
    seen: set[str] = set()

    def finish(result: FileResult) -> None:
        report.results.append(result)
        tracker.finished(result)

    def embedded(counts: list[tuple[_Pending, int]]) -> None:
        for f, count in counts:
            tracker.embedded(f.result, count)
        write_done()

    runner = Runner(models.spaces, models.transcriber, options, settings.batch_size, report.seconds, embedded)

    def write_done() -> None:
        """Hand the writer what is ready: files read and embedded whole (or failed), and groups of big files."""
        parts = []
        for f in list(waiting):
            if f.failed and f.read_all:
                waiting.remove(f)
                parts.append(_Part(f, last=True))
            elif not f.failed and f.read_all and f.embedded == len(f.chunks):
                waiting.remove(f)
                parts.append(f.take_part(len(f.chunks), last=True))
            elif not f.failed and not runner.batch and f.embedded and (
                    f.embedded >= GROUP_ITEMS or time.perf_counter() - f.part_started >= GROUP_SECONDS):
                parts.append(f.take_part(min(f.embedded, GROUP_ITEMS), last=False))
        if parts:
            writes.append((writer.submit(timed, "write", store.write, parts), parts))
        report_written(wait=False)

    def report_written(wait: bool) -> None:
        while writes and (wait or writes[0][0].done()):
            future, parts = writes.popleft()
            future.result()  # a store error stops the ingest here, its group rolled back by the journal
            for part in parts:
                if part.last:
                    finish(part.file.result)

    def timed(stage: str, work, *args):
        started = time.perf_counter()
        try:
            return work(*args)
        finally:
            report.seconds[stage] += time.perf_counter() - started

    def take(result: FileResult, data: bytes, decoded: Future) -> None:
        """Hand a decoded file to the runner, or report it skipped or failed."""
        if not decoded.done():
            tracker.waiting(result)
        try:
            read: _Read | None = timed("read", decoded.result)
        except MediaError as e:
            result.reason = e.reason
            return finish(result)
        if read is None or result.source_hash in seen:
            result.status, result.reason = "skipped", "already in the collection"
            return finish(result)
        seen.add(result.source_hash)
        pending = _Pending(result, read.decoded, data, record=read.record, restart=read.restart)
        if pending.record is not None and not pending.restart:
            pending.record.took_on(journal.path.name)
        known = read.decoded.known_count
        tracker.reading(result, None if known is None else known - pending.resumed_items(known))
        waiting.append(pending)
        runner.read(pending)
        write_done()

    def read_new(name: str, data: bytes, source_hash: str) -> _Read | None:
        """In a decoder thread: None when the collection holds these bytes whole already, else the file read,
        with what an earlier, interrupted ingest committed of it."""
        whole, record, restart = earlier(journals, collection_name, source_hash, reading,
                                         lambda: any(t.has_source(source_hash) for t in models.existing(name)))
        return None if whole else _Read(prepare_decoded(models.spaces, read_media(name, data, options)), record, restart)

    order = sorted(range(len(sources)), key=lambda i: pairs_later(sources[i].name, csv_rows, options.pair_column))
    received = 0  # bytes of the files taken so far, against max_total_bytes
    lookahead = 2 * settings.batch_size  # files decoded ahead of the model: enough to fill its next batches
    decoder = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="ingest-decode")
    writer = ThreadPoolExecutor(1, thread_name_prefix="ingest-write")
    with Journal(journals, ws.store) as journal:
        store = PartWriter(ws, journal, collection_name, models.target, tag_list(tags), pairing, reading)
        try:
            for i in order:
                source, result = sources[i], in_order[i]
                started = time.perf_counter()
                try:
                    if refused := models.refusal(source.name):
                        raise MediaError(source.name, refused)
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
                pairing.add(result)
                decoding.append((result, data, decoder.submit(read_new, source.name, data, result.source_hash)))
                while len(decoding) > lookahead:
                    take(*decoding.popleft())
            while decoding:
                take(*decoding.popleft())
            runner.flush()
            write_done()
            report_written(wait=True)
        finally:  # on an error: no write may still run when the journal rolls back its open group
            decoder.shutdown(wait=True, cancel_futures=True)
            writer.shutdown(wait=True)  # groups already handed to the writer are embedded work: kept, not cancelled
    for space, target in models.writers.items():  # token matrices of ingests cut short go once they are a share
        if ws.store.sidecar_root is not None and spec_of(space).multivector:
            compact_if_needed(target, ws.store.sidecar_root)
    report.results = in_order  # files finish out of order (batching, CSVs last); report them as given
    if settings.caption_model:
        from .captions import caption_added

        caption_added(ws, collection_name, report, tracker.captioning)
    tracker.done()
    return report


def tag_list(tags: Sequence[str]) -> list[str]:
    return sorted({t.strip() for t in tags if t.strip()})


def pairs_later(name: str, csv_rows: bool, pair_column: str) -> bool:
    """Whether the file may be an image-caption CSV, read after every other file so its images are known."""
    return csv_rows and pair_column != "none" and extension(name) == ".csv"


def earlier(journals: Path, collection: str, source_hash: str, reading: str, present) -> tuple[bool, PartialFile | None, bool]:
    """What earlier ingests left of a file: (whole: it is in the collection, to skip; the record of its committed
    groups, if it is partly in; restart: what is there of it must go first, as it was read another way or its
    ingest was given up). `present()` says whether the collection holds any item of it."""
    record = PartialFile.load(PartialFile.path_for(journals, collection, source_hash))
    if record is None:
        return present(), None, False
    if record.abandoned or record.header.get("reading") != reading or not present():
        return False, record, True
    return False, record, False


def needs_of(ws: Workspace, names: Sequence[str]) -> tuple[list[str], bool]:
    """What files `names` need: every enabled space that embeds their modalities, the spaces of text always (a
    tokenizer cuts every text), in registry order; and whether their speech is transcribed (MMCORE_ASR_MODEL is set
    and some may hold speech)."""
    wanted = {space for n in names for m in modalities_of(n) for space in spaces_for(m, ws.settings)}
    spaces = [s for s in ws.space_names() if s in wanted or s in spaces_for("text", ws.settings)]
    return spaces, bool(ws.settings.asr_model) and any(may_hold_speech(n) for n in names)


@dataclass
class Models:
    """The models and collections an ingest needs, and why those that can't be had can't (per space, "speech").

    A collection's space is created on its first write (`target`), so files that all fail leave none behind.
    """

    ws: Workspace
    collection: str
    spaces: dict
    targets: dict  # space -> its collection, None until it exists
    transcriber: object | None
    broken: dict[str, str]
    writers: dict = field(default_factory=dict)  # space -> its collection opened to write (`target`)

    @classmethod
    def load(cls, ws: Workspace, collection: str, names: Sequence[str]) -> "Models":
        """Load what files `names` need (`needs_of`). A model that can't be loaded, or a collection made by
        another model, fails only the files that need it.

        Raises:
            StoreError: the store can't be reached. MMError: the settings name an unknown backend.
        """
        spaces, targets, broken = {}, {}, {}
        wanted, speech = needs_of(ws, names)
        for space in wanted:
            try:
                spaces[space] = ws.space(space)
                targets[space] = ws.collection(collection, space, create=False)
            except NotFound:
                targets[space] = None
            except ModelUnavailable as e:
                broken[space] = f"needs the {spec_of(space).title} model, which could not be loaded: {e}"
            except SpaceMismatch as e:
                broken[space] = str(e)
        transcriber = None
        if speech:
            try:
                transcriber = get_transcriber(ws.settings)
            except ModelUnavailable as e:
                broken["speech"] = f"its speech would be transcribed, but the speech model could not be loaded: {e}"
        return cls(ws, collection, spaces, targets, transcriber, broken)

    def target(self, space: str):
        """The collection of `space` opened as its writer (claiming the write, recording this backend), created if
        it doesn't exist yet: a kind whose every file fails leaves no empty collection behind."""
        if space not in self.writers:
            self.writers[space] = self.targets[space] = self.ws.collection(self.collection, space)
        return self.writers[space]

    def needs(self, name: str) -> list[str]:
        """The spaces a file of this name goes to (and "speech" when its speech is transcribed), in registry order."""
        settings = self.ws.settings
        speech = bool(self.transcriber is not None or "speech" in self.broken) and may_hold_speech(name)
        modalities = list(modalities_of(name)) + (["text"] if speech else [])
        own = [space for m in modalities for space in spaces_for(m, settings)]
        return list(dict.fromkeys(own + (["speech"] if speech else [])))

    def refusal(self, name: str) -> str | None:
        """Why a file of this name can't be ingested now (a model it needs is missing), or None."""
        for modality in modalities_of(name):
            if not spaces_for(modality, self.ws.settings):
                return f"no space embeds {modality} (none of the models for it is configured)"
        return next((self.broken[need] for need in self.needs(name) if need in self.broken), None)

    def image_target(self):
        """The collection of the first space of images, where an image-caption CSV looks for its images."""
        return next((self.targets[s] for s in spaces_for("image", self.ws.settings) if self.targets.get(s) is not None), None)

    def existing(self, name: str) -> list:
        """The collections a file of this name may have items in, of those that exist."""
        return [self.targets[space] for space in dict.fromkeys(self.needs(name)) if self.targets.get(space) is not None]


def reading_key(options: ReadOptions, speech: bool) -> str:
    """What decides a file's items and their order: the same key, the same items with the same ids."""
    keys = ("max_tokens", "overlap_tokens", "csv_rows", "pair_column", "video_segment_s", "frames_per_second",
            "max_frames_per_segment", "audio_segment_s", "audio_rate")
    return json.dumps({**{k: getattr(options, k) for k in keys}, "speech": speech}, sort_keys=True)


@dataclass
class _Read:
    decoded: Decoded
    record: PartialFile | None  # what an earlier ingest committed of this file
    restart: bool  # that must go first


@dataclass
class _Pending:
    """A file on its way in: its chunks read and not yet written, their vectors once embedded, and where in
    the file each lies (`indices`, in reading order)."""

    result: FileResult
    decoded: Decoded | None
    data: bytes
    chunks: list[Chunk] = field(default_factory=list)
    vectors: list[dict[str, np.ndarray]] = field(default_factory=list)  # per chunk: space -> its vector
    tokens: list[dict[str, np.ndarray]] = field(default_factory=list)  # per chunk: multi-vector space -> its matrix
    indices: list[int] = field(default_factory=list)
    failed: str | None = None
    record: PartialFile | None = None  # its record of committed groups, once it has (or had) some
    restart: bool = False  # remove what an earlier ingest left of it before the first write
    read_all: bool = False
    count: int = 0  # items read so far, those passed over included
    embedded: int = 0  # of `chunks`, how many (from the first) have their vectors
    resumed: int = 0  # items passed over: an earlier ingest committed them
    part_started: float | None = None  # when the oldest chunk not handed to the writer was queued
    added_at: int = field(default_factory=lambda: int(time.time()))
    links: dict | None = None  # image name -> (item id, source), for a caption CSV (Pairing.link)
    pairs: int = 0  # captions linked to their image
    unpaired: int = 0  # captions whose image was not found
    unpaired_example: str = ""

    def take_part(self, n: int, last: bool) -> "_Part":
        """The first `n` chunks (all embedded), taken out as a part to write."""
        part = _Part(self, self.chunks[:n], self.vectors[:n], self.indices[:n], last, self.tokens[:n])
        del self.chunks[:n], self.vectors[:n], self.indices[:n], self.tokens[:n]
        self.embedded -= n
        self.part_started = time.perf_counter() if self.chunks else None
        return part

    def is_committed(self, index: int) -> bool:
        """Whether an earlier ingest committed the file's item `index` (and it stays)."""
        return self.record is not None and not self.restart and self.record.is_committed(index)

    def resumed_items(self, known: int) -> int:
        return 0 if self.record is None or self.restart else sum(max(0, min(b, known) - a) for a, b in self.record.committed)


@dataclass
class _Part:
    """Items of one file to write in one group; the file's `last` part completes it (a failed file's is empty)."""

    file: _Pending
    chunks: list[Chunk] = field(default_factory=list)
    vectors: list = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    last: bool = True
    tokens: list = field(default_factory=list)


def read_options(settings, spaces: dict, csv_rows: bool = False, pair_column: str = "auto") -> ReadOptions:
    """How files are read for the loaded `spaces` ({name: Space}): their limits, texts cut into windows that every
    space of text takes whole (by the tokenizer of the one with the fewest tokens; without one, no text is read:
    files that need it are refused before), sound at the rate of the space of audio. The same settings and models
    give the same chunks, so the same item ids."""
    texts = [spaces[s] for s in spaces_for("text", settings) if s in spaces]
    cutter = min(texts, key=lambda space: space.max_text_tokens) if texts else None
    # One rate for all: sounds are read once for every space of sound (the same windows in each), so they must agree.
    rates = {s: int(spaces[s].sampling_rate) for s in spaces_for("audio", settings) if s in spaces}
    if len(set(rates.values())) > 1:
        heard = ", ".join(f"the {s} space {rate:,} Hz" for s, rate in rates.items())
        raise MMError(f"The spaces of sound hear at different rates ({heard}), and a sound is read once for all of them: "
                      "use models of one sampling rate, or turn one of those spaces off.")
    hearing = next((spaces[s] for s in rates), None)
    # Pages at the largest size a space taking them sees them (the doc space's processor: 2,048 px).
    page_size = max((getattr(spaces[s], "page_size", 0) for s in spaces_for("page", settings) if s in spaces), default=0)
    max_tokens = cutter.max_text_tokens if cutter is not None else 1
    return ReadOptions(
        token_spans=cutter.token_spans if cutter is not None else (lambda text: []),
        max_tokens=max_tokens,
        overlap_tokens=max(1, max_tokens // 8),
        max_file_bytes=settings.max_file_bytes,
        max_image_pixels=settings.max_image_pixels,
        csv_rows=csv_rows,
        pair_column=pair_column.strip() or "auto",
        video_segment_s=float(settings.video_segment_s),
        audio_segment_s=float(settings.audio_segment_s),
        audio_rate=int(getattr(hearing, "sampling_rate", ReadOptions.audio_rate)),
        max_media_seconds=float(settings.max_media_seconds),
        max_pdf_pages=settings.max_pdf_pages,
        max_text_bytes=settings.max_text_bytes,
        page_size=page_size,
    )


class Runner:
    """The per-file work of an ingest, the same under both executors: this process (`ingest`, which decodes ahead
    in threads and writes in one) and Ray (the workers of mmcore.scaleout, whose driver writes). A file is decoded
    (if it isn't yet), its chunks, then its transcript's, queued for the model (those an earlier ingest committed
    passed over) and embedded in batches across files in every loaded space that takes their modality.
    `embedded` hears of each batch: [(file, its chunks embedded)]. Times go to `seconds`."""

    def __init__(self, spaces: dict, transcriber, options: ReadOptions, batch_size: int, seconds: dict,
                 embedded=lambda counts: None):
        self.spaces, self.transcriber, self.options, self.batch_size = spaces, transcriber, options, batch_size
        self.seconds, self.embedded = seconds, embedded
        self.batch: list[tuple[_Pending, int]] = []  # (file, chunk index) waiting for the model, across files

    def read(self, f: _Pending) -> None:
        """Queue all of `f`'s chunks, embedding each batch as it fills; then `f.read_all`. A file that can't be read
        or transcribed fails by name (`f.failed`), its chunks taken out of the batch."""
        started = time.perf_counter()
        try:
            if f.decoded is None:
                f.decoded = read_media(f.result.name, f.data, self.options)
            speech = self.transcriber is not None and may_hold_speech(f.result.name)
            timed = []  # audio windows or video segments (their times and pictures), for the transcript
            for index, chunk in enumerate(f.decoded.chunks):  # lazily read: a big file streams through
                if f.failed:
                    break
                f.count += 1
                if speech and "start_s" in chunk.locator:
                    timed.append(replace(chunk, payload=None))
                if f.is_committed(index):
                    f.resumed += 1
                    continue
                self.seconds["read"] += time.perf_counter() - started
                self.queue(f, index, chunk)
                started = time.perf_counter()
            if not f.count:
                raise MediaError(f.result.name, "nothing in it could be embedded")
            if timed and not f.failed:
                self.seconds["read"] += time.perf_counter() - started
                started = time.perf_counter()
                spoken = transcript_chunks(self.transcriber, f.result.name, f.data, timed, self.options)
                self.seconds["transcribe"] += time.perf_counter() - started
                for chunk in spoken:
                    index, f.count = f.count, f.count + 1
                    if f.is_committed(index):
                        f.resumed += 1
                    else:
                        self.queue(f, index, chunk)
                started = time.perf_counter()
        except MediaError as e:
            self.fail(f, e.reason)
        self.seconds["read"] += time.perf_counter() - started
        f.read_all = True

    def fail(self, f: _Pending, reason: str) -> None:
        f.failed = f.failed or reason
        self.batch[:] = [(g, i) for g, i in self.batch if g is not f]

    def queue(self, f: _Pending, index: int, chunk: Chunk) -> None:
        f.chunks.append(chunk)
        f.vectors.append({})
        f.tokens.append({})
        f.indices.append(index)
        if f.part_started is None:
            f.part_started = time.perf_counter()
        self.batch.append((f, len(f.chunks) - 1))
        if len(self.batch) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Embed the queued chunks in every space that takes their modality: fill in their vectors (space -> vector)
        and, for multi-vector spaces, their token matrices, and drop their pixels. A model failing on a batch fails its files, not the ingest; a file one space could
        not embed (a hosted model refused it) fails alone."""
        if not self.batch:
            return
        started = time.perf_counter()
        counts: dict[int, tuple[_Pending, int]] = {}
        for f, _ in self.batch:
            counts[id(f)] = (f, counts.get(id(f), (f, 0))[1] + 1)
        try:
            vectors, tokens, failed = embed_in_spaces(self.spaces, [f.chunks[i] for f, i in self.batch])
        except Exception as e:  # a model failing on one batch must not lose the report of the rest
            for f, _ in counts.values():
                self.fail(f, f"the model failed on this file ({e})")
            counts = {}
        else:
            for (f, i), own, matrices, reason in zip(self.batch, vectors, tokens, failed):
                f.vectors[i], f.tokens[i] = own, matrices
                f.failed = f.failed or reason  # a file a hosted space refused: only it fails
                f.chunks[i] = _without_pixels(f.chunks[i])
            for f, count in counts.values():
                f.embedded += count
        self.batch.clear()
        self.seconds["embed"] += time.perf_counter() - started
        self.embedded(list(counts.values()))


class PartWriter:
    """Writes parts of files into a collection's spaces, each call one journaled group, and keeps the records of
    big files' committed groups (mmcore.journal.PartialFile). `target(space)` gives (or creates) a space's
    collection. Runs in one thread at a time."""

    def __init__(self, ws: Workspace, journal: Journal, collection: str, target, tags: list[str],
                 pairing: Pairing, reading: str):
        self.ws, self.journal, self.collection, self.target = ws, journal, collection, target
        self.tags, self.pairing, self.reading = tags, pairing, reading
        self.pools: dict[str, int] = {}  # multi-vector collection -> the factor its pages are pooled by

    def write(self, parts: Sequence[_Part]) -> None:
        """Store the parts' originals and thumbnails, then their items, one upsert per space, as one group. Marks
        each completed file's result added (or failed with its reason, its committed groups removed).

        All of the group's items are in the store once this returns, or (after a crash) none of them once
        `recover` has run. A multi-vector space's token matrices are stored first (mmcore.multivector), under the
        version its upsert then uses: believed once that upsert is in, never if it is rolled back.
        """
        rows: dict[str, tuple[list, list, list, list, list]] = {}
        with_tokens = []  # (file, multi-vector space) of the parts' token matrices
        for part in parts:
            f = part.file
            if f.failed:
                self._forget(f)
                f.result.status, f.result.reason = "failed", f.failed
                continue
            if f.restart:
                self._forget(f)
            if f.record is None and not part.last:
                path = PartialFile.path_for(self.journal.path.parent, self.collection, f.result.source_hash)
                header = {"name": f.result.name, "source_hash": f.result.source_hash, "reading": self.reading}
                f.record = PartialFile.start(path, header, self.journal.path.name)
            for space, lists in _rows(self.ws, part, self.tags, self.pairing).items():
                for into, more in zip(rows.setdefault(space, ([], [], [], [], [])), lists):
                    into.extend(more)
                if any(m is not None for m in lists[4]):
                    with_tokens.append((f, space))
            if part.last:
                f.result.status, f.result.items = "added", f.count
                f.result.notes += _notes(f)
        if rows:
            group = self.journal.begin(self.collection, {space: ids for space, (ids, *_) in rows.items()})
            for space, (ids, metadatas, documents, vectors, matrices) in rows.items():
                target = self.target(space)
                version = self._store_tokens(target, ids, matrices)
                target.add(ids, np.stack(vectors), metadatas, documents, version=version)  # one upsert per space
            self.journal.commit(group)
        for f, space in with_tokens:
            factor, setting = self._pool_of(self.target(space)), self.ws.settings.doc_pool
            note = (f"its pages' token matrices are stored {f'pooled by {factor}' if factor > 1 else 'whole'}, as the "
                    f"collection's other pages are (MMCORE_DOC_POOL={setting} applies to a collection without pages)")
            if factor != setting and note not in f.result.notes:
                f.result.notes.append(note)
        for part in parts:
            f = part.file
            if f.record is not None and not f.failed:
                if part.last:
                    f.record.remove()  # the file is whole
                else:
                    f.record.add(_ranges(part.indices))

    def _store_tokens(self, target, ids: list[str], matrices: list) -> str | None:
        """Write the token matrices of a multi-vector space's items as a segment beside Chroma, under a new version
        that the upsert then uses; None (any version) for a space without them."""
        root = self.ws.store.sidecar_root
        spec = spec_of(target.space.space)
        if root is None or spec is None or not spec.multivector:
            return None
        version = new_version()
        factor = self._pool_of(target)
        stored = [pool_matrix(m, factor) for m in matrices]
        write_segment(folder_of(root, target), self.journal.path.name, ids, [version] * len(ids),
                      [rows for rows, _ in stored], [groups for _, groups in stored], [factor] * len(ids))
        return version

    def _pool_of(self, target) -> int:
        """The factor a multi-vector collection's pages are pooled by: that of the pages it holds (so MaxSim
        compares like with like), or MMCORE_DOC_POOL when it holds none."""
        if self.ws.store.sidecar_root is None:
            return self.ws.settings.doc_pool
        if target.key not in self.pools:
            held = load(folder_of(self.ws.store.sidecar_root, target), target.space.dim, held_versions(target)).pool()
            self.pools[target.key] = self.ws.settings.doc_pool if held is None else held
        return self.pools[target.key]

    def _forget(self, f: _Pending) -> None:
        """Remove what earlier groups committed of a file that failed, or that is read another way now."""
        if f.record is None:
            return
        f.record.abandon()  # from here on, a crash leaves it to be removed, never resumed
        for space in self.ws.store.spaces(self.collection):
            target = self.ws.store.open(self.collection, space)
            ids = target.ids({"source_hash": f.result.source_hash})
            if ids:
                target.delete(ids)
        f.record.remove()
        f.record, f.restart = None, False


def _notes(f: _Pending) -> list[str]:
    notes = []
    if f.resumed:
        notes.append(f"finished an ingest cut short: {f.resumed:,} of its items were in already")
    if f.pairs:
        notes.append(f"{f.pairs:,} caption(s) linked to their image")
    if f.unpaired:
        notes.append(f"{f.unpaired:,} caption(s) name an image found neither in this ingest nor in the collection "
                     f"(e.g. {f.unpaired_example!r}); they are stored as text without it")
    return notes


def _ranges(indices: Sequence[int]) -> list[tuple[int, int]]:
    """[start, end) runs of consecutive indices."""
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def _without_pixels(chunk: Chunk) -> Chunk:
    """The chunk without its decoded pixels or samples, which are not needed once it is embedded."""
    return chunk if chunk.modality == "text" else replace(chunk, payload=None, source=None, prepared=None)


def _rows(ws: Workspace, part: _Part, tags: list[str], pairing: Pairing) -> dict[str, tuple[list, list, list, list, list]]:
    """Save the file's original and thumbnails; return the part's items' ids, metadata, documents, vectors and token
    matrices (None in a space without them) per space."""
    f = part.file
    result, decoded, data = f.result, f.decoded, f.data
    source_hash = result.source_hash
    original = ws.files.save_original(source_hash, decoded.stored_ext, data)
    thumbnail = ws.files.save_thumbnail(source_hash, decoded.thumbnail) if decoded.thumbnail is not None else None
    rows: dict[str, tuple[list, list, list, list, list]] = {}
    saved: dict[int, Path] = {}  # chunks may share one picture (a page's text windows show the page)
    for chunk, vectors_of, tokens_of in zip(part.chunks, part.vectors, part.tokens or [{}] * len(part.chunks)):
        item_id = f"{source_hash[:32]}:{chunk.locator_key}"
        meta = {
            "source": result.name,
            "source_hash": source_hash,
            "modality": chunk.modality,
            "mime": decoded.mime,
            "bytes": len(data),
            "added_at": f.added_at,
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
        if chunk.pair:
            if f.links is None:  # once per file: all of its names together, so they can vote on ambiguous ones
                f.links = pairing.link(result.name, decoded.pairs)
            found = f.links.get(chunk.pair)
            if found:
                meta["pair_of"], meta["pair_source"] = found
                f.pairs += 1
            else:
                f.unpaired += 1
                f.unpaired_example = f.unpaired_example or chunk.pair
        if tags:
            meta["tags"] = tags
        for space, vector in vectors_of.items():  # the same item in each space that embeds its modality
            ids, metadatas, documents, vectors, matrices = rows.setdefault(space, ([], [], [], [], []))
            ids.append(item_id)
            metadatas.append(meta)
            documents.append(chunk.payload if chunk.modality == "text" else None)
            vectors.append(vector)
            matrices.append(tokens_of.get(space))
    return rows
