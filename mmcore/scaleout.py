"""Ingest on a Ray cluster: the workers decode and embed, this process (the driver) decides and writes.

The driver hashes each file and skips those already in the collection, exactly as `mmcore.ingest` does, then
sends the bytes of the rest through Ray's object store, in calls of a few files (at most `batch_size` files or
CALL_BYTES), to worker actors: one per GPU when the cluster has GPUs, else one per `cpus` CPUs of each node.
Each worker loads the models once and runs the same per-file code as a local ingest (`mmcore.ingest.Runner`: same
settings, same chunks, same item ids, an earlier ingest's committed items passed over) and returns, per file, its
chunks without pixels, its thumbnails and its vectors. The driver stores originals and thumbnails in its own data
dir and writes each call's files as one journaled group, as a local ingest does: atomic per file, resumable, the
same report.

At most two calls per worker are in flight, so the driver holds the bytes of at most 2 x workers x CALL_BYTES
(plus one larger file) at a time. A worker that dies (a node lost, memory exhausted) is dropped and its files
are sent again, one per call; a file that kills a worker twice fails by name.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence


from .config import Settings
from .errors import MediaError, MMError, NotFound, SpaceMismatch
from .ingest import (GROUP_ITEMS, FileResult, IngestReport, PartWriter, Runner, SourceFile, _Part, _Pending, earlier,
                     needs_of, pairs_later, read_options, reading_key, tag_list)
from .journal import Journal, PartialFile, journal_dir, recover
from .media import modalities_of
from .spaces.registry import spaces_for
from .pairs import Pairing
from .progress import Progress, ProgressTracker
from .workspace import Workspace

CALL_BYTES = 64 * 2**20  # bytes of files per call to a worker (a larger file goes alone)
IN_FLIGHT = 2  # calls queued per worker: one running, one waiting, so it never idles while the driver writes
START_TIMEOUT_S = 600.0  # no worker ready by then (none fits the cluster, models missing): give up
DEFAULT_CPUS = 4  # CPUs per worker on a cluster without GPUs
PASSED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT")  # the driver's model-download choices


@dataclass
class WorkerInfo:
    """One worker as the report shows it: where it ran, on which device, and how many files it embedded."""

    node: str
    device: str
    files: int = 0
    died: bool = False


@dataclass
class ScaleoutReport(IngestReport):
    """An ingest report plus the workers that did the reading and embedding. `seconds` read, transcribe and
    embed are summed over the workers; write is the driver's."""

    workers: list[WorkerInfo] = field(default_factory=list)


def ingest_on_ray(
    ws: Workspace,
    sources: Sequence[SourceFile],
    address: str,
    collection: str | None = None,
    tags: Sequence[str] = (),
    csv_rows: bool = False,
    on_progress: Progress | None = None,
    cpus: int | None = None,
    on_note: Callable[[str], None] | None = None,
    pair_column: str = "auto",
) -> ScaleoutReport:
    """`mmcore.ingest.ingest` with reading, transcribing and embedding done by Ray workers.

    `address` is a Ray cluster's address ("auto", "HOST:6379", "ray://HOST:10001") or "local" to start a Ray
    instance on this machine for the run. If this process is already connected to Ray, that connection is used
    and `address` is ignored (its workers must then be able to import mmcore). Ray is contacted only once a file needs embedding. `cpus`: CPUs per worker on a
    cluster without GPUs (default DEFAULT_CPUS, at most a node's). `on_note` hears of workers starting.

    The store is the workspace's (a Chroma server with MMCORE_CHROMA_HOST, else the embedded store, which then
    takes its one-writer lock as any ingest does); originals and thumbnails go to this machine's data dir. Big
    files are written in groups and resumed as a local ingest does them; image-caption CSVs are sent once every
    other file is written, so their captions find their images.

    Raises:
        MMError: Ray is not installed, can't be reached, no worker could start, or every worker died.
        ModelUnavailable: a worker can't load a model (nothing is stored).
        SpaceMismatch: the collection was made by another model, or the workers' models differ.
        StoreError: the store can't be reached.
    """
    settings = _portable(ws.settings)
    name = collection or settings.collection
    needed, speech = needs_of(ws, [s.name for s in sources])
    journals = journal_dir(settings.data_dir)
    tracker = ProgressTracker(len(sources), on_progress)
    tracker.stage("loading models")
    ws.store.before_write()  # an embedded store's one-writer lock: refused now, not after the models load
    recover(ws.store, journals)
    report = ScaleoutReport()
    in_order = [FileResult(s.name, "failed") for s in sources]
    targets: dict = {}
    known: dict = {}  # space -> its collection, or None while it doesn't exist
    seen: set[str] = set()
    order = sorted(range(len(sources)), key=lambda i: pairs_later(sources[i].name, csv_rows, pair_column))
    todo = [(sources[i], in_order[i]) for i in order]
    position = 0  # of the next file of `todo` to read
    retry: list[list[_Pending]] = []  # calls to send again, one file each, after their worker died
    attempts: dict[int, int] = {}  # id(pending) -> calls that were lost with it
    # Known once the workers say which models they loaded: the first space of images, where a CSV's images are.
    pairing = Pairing(lambda: next((targets[s] for s in spaces_for("image", settings) if s in targets), None))
    cluster = None
    store = None

    def finish(result: FileResult) -> None:
        report.results.append(result)
        tracker.finished(result)

    def has(space: str, source_hash: str) -> bool:
        if space not in known:
            try:
                known[space] = ws.store.open(name, space)
            except NotFound:
                known[space] = None
        return known[space] is not None and known[space].has_source(source_hash)

    def next_call() -> list[_Pending]:
        """The next files to send: read and hashed here; known ones skipped, unreadable ones failed, at once. An
        image-caption CSV waits until every file before it is written."""
        nonlocal position
        if retry:
            return retry.pop(0)
        call, size = [], 0
        while position < len(todo):
            source, result = todo[position]
            if pairs_later(source.name, csv_rows, pair_column) and (call or retry or (cluster and cluster.busy())):
                break
            position += 1
            try:
                data = source.read(settings.max_file_bytes)
            except MediaError as e:
                result.reason = e.reason
                finish(result)
                continue
            result.source_hash = hashlib.sha256(data).hexdigest()
            own = [space for m in modalities_of(source.name) for space in spaces_for(m, settings)]
            whole, record, _ = earlier(journals, name, result.source_hash, "",
                                       lambda: any(has(space, result.source_hash) for space in own))
            if result.source_hash in seen or whole:
                result.status, result.reason = "skipped", "already in the collection"
                finish(result)
                continue
            seen.add(result.source_hash)
            pairing.add(result)
            call.append(_Pending(result, None, data, record=record))
            size += len(data)
            if len(call) >= settings.batch_size or size >= CALL_BYTES:
                break
        return call

    with Journal(journals, ws.store) as journal:
        try:
            call = next_call()
            if call:
                cluster = _Cluster(address, settings, needed, speech, csv_rows, cpus, on_note, pair_column)
            while call or (cluster and cluster.busy()):
                while call and cluster.free():
                    for f in call:  # resumed as a local ingest resumes it, now that the workers' reading is known
                        if f.record is not None:
                            f.restart = (f.record.abandoned or f.record.header.get("reading") != cluster.reading
                                         or not any(t.has_source(f.result.source_hash) for t in targets.values()))
                            if not f.restart and journal.path.name not in f.record.writers:
                                f.record.took_on(journal.path.name)
                    cluster.send(call)
                    call = next_call()
                done = cluster.wait()
                if done.infos is not None and not targets:
                    targets.update({space: ws.store.collection(name, info) for space, info in done.infos.items()})
                    known.update(targets)  # skip checks from now on see what this run writes
                    store = PartWriter(ws, journal, name, targets.__getitem__, tag_list(tags), pairing, cluster.reading)
                for f in done.lost:
                    attempts[id(f)] = attempts.get(id(f), 0) + 1
                    if attempts[id(f)] >= 2:  # it may be what kills them
                        f.result.reason = f"a Ray worker died twice while reading or embedding it ({done.error})"
                        finish(f.result)
                    else:
                        retry.append([f])
                if done.files:
                    started = time.perf_counter()
                    _write(store, done.files, tracker)
                    report.seconds["write"] += time.perf_counter() - started
                    for key, value in done.seconds.items():
                        report.seconds[key] += value
                    for f in done.files:
                        finish(f.result)
                if not call:
                    call = next_call()
        finally:
            if cluster is not None:
                report.workers = cluster.close()
    tracker.done()
    report.results = in_order
    if settings.caption_model:  # captions are written here, by this process, as a local ingest writes them
        from .captions import caption_added

        caption_added(ws, name, report)
    return report


def _write(store: PartWriter, files: list[_Pending], tracker: ProgressTracker) -> None:
    """Write files the workers read and embedded whole: a big one in groups of GROUP_ITEMS, the last groups of all
    together in one group."""
    last = []
    for f in files:
        if not f.failed:
            tracker.reading(f.result, len(f.chunks))
            tracker.embedded(f.result, len(f.chunks))
        if f.failed or not f.chunks:
            last.append(_Part(f, last=True))
            continue
        f.embedded = len(f.chunks)
        while len(f.chunks) > GROUP_ITEMS:
            store.write([f.take_part(GROUP_ITEMS, last=False)])
        last.append(f.take_part(len(f.chunks), last=True))
    store.write(last)


@dataclass
class _Done:
    """What one wait brought: workers' model infos, files embedded (or failed), files lost with a worker."""

    infos: dict | None = None
    files: list[_Pending] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    lost: list[_Pending] = field(default_factory=list)
    error: str = ""


class _Cluster:
    """The driver's side of the workers: connects to Ray, starts the actors, sends calls, collects results."""

    def __init__(self, address: str, settings: Settings, spaces: list[str], speech: bool, csv_rows: bool,
                 cpus: int | None, on_note: Callable[[str], None] | None, pair_column: str = "auto"):
        try:
            import ray
        except ImportError:
            raise MMError("--ray needs Ray: pip install ray (see requirements.txt for the tested version)") from None
        self.ray = ray
        self.note = on_note or (lambda message: None)
        self.connected_here = not ray.is_initialized()
        if self.connected_here:
            _connect(ray, address)
        self.workers: list[WorkerInfo] = []  # every worker that became ready, dead ones too
        self.actors: dict = {}  # live ready actor -> its WorkerInfo
        self.starting: dict = {}  # ref of an actor's start() -> actor
        self.running: dict = {}  # ref of a process() call -> (actor, its WorkerInfo, files)
        self.infos: dict | None = None
        self.reading = ""  # how the workers read files (mmcore.ingest.reading_key): the same on every one
        self.last_error = ""
        try:
            resources = ray.cluster_resources()
            gpus = int(resources.get("GPU", 0))
            nodes = [n for n in ray.nodes() if n.get("Alive")]
            if gpus:
                count, options = gpus, {"num_gpus": 1, "num_cpus": 1}
                shape = "1 GPU"
            else:
                largest = max((int(n["Resources"].get("CPU", 0)) for n in nodes), default=0)
                per = max(1, min(cpus or DEFAULT_CPUS, largest or 1))
                count = max(1, sum(int(n["Resources"].get("CPU", 0)) // per for n in nodes))
                options = {"num_cpus": per}
                shape = f"{per} CPU{'s' if per > 1 else ''}"
            self.request = f"{count} worker(s) of {shape} each, on a cluster with {_resources(resources)}"
            self.note(f"Ray: starting {self.request}")
            actor_class = ray.remote(max_restarts=0, **options)(_Worker)
            for _ in range(count):
                actor = actor_class.remote(settings, csv_rows, options["num_cpus"], pair_column)
                self.starting[actor.start.remote(spaces, speech)] = actor
        except BaseException:
            self.close()
            raise
        self.started = time.monotonic()

    def free(self) -> bool:
        """Whether a ready worker has room for another call."""
        return any(self._load(a) < IN_FLIGHT for a in self.actors)

    def busy(self) -> bool:
        return bool(self.running)

    def send(self, files: list[_Pending]) -> None:
        actor = min(self.actors, key=self._load)
        ref = actor.process.remote([(f.result.name, f.data, None if f.restart else f.record) for f in files])
        self.running[ref] = (actor, self.actors[actor], files)

    def wait(self) -> _Done:
        """Block until a worker is ready or a call is done; return what came."""
        ray = self.ray
        while True:
            if not self.actors and not self.starting:
                raise MMError(f"every Ray worker failed ({self.request}); the last: {self.last_error}")
            left = START_TIMEOUT_S - (time.monotonic() - self.started)
            if not self.actors and left <= 0:
                raise MMError(f"no Ray worker became ready within {START_TIMEOUT_S / 60:.0f} minutes: asked for "
                              f"{self.request}. Check the cluster has room for them (`ray status`).")
            refs = list(self.starting) + list(self.running)
            ready, _ = ray.wait(refs, num_returns=1, timeout=None if self.actors else max(left, 1.0))
            if ready:
                return self._take(ready[0])

    def _take(self, ref) -> _Done:
        ray = self.ray
        if ref in self.starting:
            actor = self.starting.pop(ref)
            try:
                node, device, infos, reading = ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                self.close()
                cause = e.cause if isinstance(e.cause, MMError) else MMError(f"a Ray worker could not start: {e}")
                raise cause from None
            except ray.exceptions.RayError as e:  # it could not be created (mmcore not importable), or its node went
                self.last_error = _first_line(e)
                self.note(f"Ray: a worker could not start ({self.last_error})")
                return _Done()
            if self.infos is None:
                self.infos, self.reading = infos, reading
            elif infos != self.infos or reading != self.reading:
                self.close()
                raise SpaceMismatch(f"the Ray workers loaded different models: {_described(self.infos)} on one node, "
                                    f"{_described(infos)} on {node}. Give every node the same checkpoints.")
            self.actors[actor] = WorkerInfo(node, device)
            self.workers.append(self.actors[actor])
            self.note(f"Ray: worker {len(self.workers)} ready on {node} ({device})")
            return _Done(infos=self.infos)
        actor, worker, files = self.running.pop(ref)
        try:
            outcomes, seconds = ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # a bug, not a bad file (readers raise MediaError only)
            for f in files:
                f.failed = f"the Ray worker failed on it ({_first_line(e.cause or e)})"
            return _Done(self.infos, files)
        except ray.exceptions.RayError as e:  # the worker died: its node lost, or killed for memory
            self.last_error = _first_line(e)
            if not worker.died:  # its other calls come back the same way
                self.note(f"Ray: a worker died on {worker.node} ({self.last_error}); its files go to the others")
                self._drop(actor, worker)
            return _Done(self.infos, lost=files, error=self.last_error)
        for f, (failed, decoded, chunks, vectors, tokens, indices, resumed) in zip(files, outcomes):
            f.failed, f.decoded, f.chunks, f.vectors, f.tokens, f.indices, f.resumed = \
                failed, decoded, chunks, vectors, tokens, indices, resumed
            f.count = len(chunks) + resumed
        worker.files += sum(1 for f in files if not f.failed)
        return _Done(self.infos, files, seconds)

    def _load(self, actor) -> int:
        return sum(1 for a, _, _ in self.running.values() if a is actor)

    def _drop(self, actor, worker: WorkerInfo) -> None:
        worker.died = True
        self.actors.pop(actor, None)
        try:
            self.ray.kill(actor)
        except Exception:
            pass

    def close(self) -> list[WorkerInfo]:
        """Stop the workers (and disconnect, or stop the local instance, if this connected); return them all."""
        for actor in list(self.actors) + list(self.starting.values()):
            try:
                self.ray.kill(actor)
            except Exception:
                pass
        self.actors, self.starting, self.running = {}, {}, {}
        if self.connected_here and self.ray.is_initialized():
            self.ray.shutdown()
        return self.workers


class _Worker:
    """A Ray actor: loads the models once, then reads, transcribes and embeds the files it is sent."""

    def __init__(self, settings: Settings, csv_rows: bool, cpus: int, pair_column: str = "auto"):
        self.settings = settings
        self.csv_rows = csv_rows
        self.cpus = cpus
        self.pair_column = pair_column

    def start(self, spaces: list[str], speech: bool) -> tuple[str, str, dict, str]:
        """Load the models; return this worker's node, device, {space: SpaceInfo} and how it reads files."""
        from .spaces import get_space
        from .speech import get_transcriber

        try:
            import torch

            if not torch.cuda.is_available():
                torch.set_num_threads(max(1, self.cpus))
        except ImportError:
            pass
        try:
            self.spaces = {name: get_space(name, self.settings) for name in spaces}
            self.transcriber = get_transcriber(self.settings) if speech else None
        except MMError as e:  # the same error, saying where
            raise _on_node(e) from None
        self.options = read_options(self.settings, self.spaces, self.csv_rows, self.pair_column)
        device = str(getattr(next(iter(self.spaces.values()), None), "device", "cpu"))
        reading = reading_key(self.options, self.transcriber is not None)
        return socket.gethostname(), device, {name: space.info for name, space in self.spaces.items()}, reading

    def process(self, files: list[tuple[str, bytes, PartialFile | None]]) -> tuple[list[tuple], dict[str, float]]:
        """Per file (name, bytes, the record of what an earlier ingest committed of it, to pass over), in order:
        (failure reason or None, Decoded without chunks, chunks without pixels, their vectors, their token matrices
        (multi-vector spaces), their indices in the file, items passed over), and the seconds spent reading, transcribing and embedding: `mmcore.ingest.Runner`'s
        work, as in a local ingest."""
        seconds = {"read": 0.0, "transcribe": 0.0, "embed": 0.0}
        runner = Runner(self.spaces, self.transcriber, self.options, self.settings.batch_size, seconds)
        out = [_Pending(FileResult(name, "failed"), None, data, record=record) for name, data, record in files]
        for f in out:
            runner.read(f)
        runner.flush()
        return [(None, replace(f.decoded, chunks=[]), f.chunks, f.vectors, f.tokens, f.indices, f.resumed)
                if not f.failed else (f.failed, None, [], [], [], [], 0) for f in out], seconds


def _connect(ray, address: str) -> None:
    """Connect to the cluster at `address`, or start a local instance for "local"; ship mmcore to the workers."""
    import logging

    import mmcore

    package = Path(mmcore.__file__).resolve().parent
    env_vars = {k: os.environ[k] for k in PASSED_ENV if os.environ.get(k)}
    runtime_env = {"py_modules": [str(package)], "excludes": ["__pycache__", "*.pyc"], "env_vars": env_vars}
    kwargs = {"runtime_env": runtime_env, "logging_level": logging.WARNING, "log_to_driver": False}
    try:
        if address == "local":
            ray.init(include_dashboard=False, **kwargs)
        else:
            _reachable(address)  # Ray itself retries an address that doesn't answer for minutes
            ray.init(address=address, **kwargs)
    except Exception as e:  # ConnectionError, ValueError, RuntimeError: whatever Ray raises for "can't"
        raise MMError(f"could not connect to the Ray cluster at {address!r}: {_first_line(e).rstrip('.')}. Give `auto` (the "
                      "cluster this machine is part of), HOST:6379 (its head), ray://HOST:10001 (Ray Client) or `local`; "
                      "for a cluster with token authentication set RAY_AUTH_MODE=token and provide its token "
                      "(RAY_AUTH_TOKEN or ~/.ray/auth_token).") from None


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Raise ConnectionError unless HOST:PORT (ray:// or not) accepts a TCP connection; "auto" passes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray will judge itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConnectionError(f"nothing answers at {host}:{port} ({e.strerror or e})") from None


def _on_node(error: MMError) -> MMError:
    """`error` of the same type with "on Ray node HOST: " before its message (as is where that type can't)."""
    try:
        return type(error)(f"on Ray node {socket.gethostname()}: {error}")
    except TypeError:
        return error


def _portable(settings: Settings) -> Settings:
    """The settings the workers get: model folders as absolute paths (the same path must exist on every node)."""
    def absolute(value: str | None) -> str | None:
        return str(Path(value).expanduser().resolve()) if value and Path(value).expanduser().is_dir() else value

    return replace(settings, models={space: absolute(model) for space, model in settings.models},
                   asr_model=absolute(settings.asr_model))


def _resources(resources: dict) -> str:
    shown = [f"{resources[k]:g} {k}" for k in ("CPU", "GPU") if resources.get(k)]
    return ", ".join(shown) or "no CPUs"


def _described(infos: dict) -> str:
    return ", ".join(f"{i.space}={i.model_id}@{i.revision} ({i.dim}-d)" for i in infos.values())


def _first_line(error: BaseException) -> str:
    """The gist of an error: the exception a Ray error carries ("ModuleNotFoundError: ..."), else its first line."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception|Exit|Interrupt)\b.*:", line)]
    return (raised or lines or [type(error).__name__])[-1 if raised else 0]
