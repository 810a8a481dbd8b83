"""`python -m mmcore ingest | search | info | analyze | evaluate | adapt | caption | export | demo | import-vectors | index | check | backup | restore`:
the same functions the pages call."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import MMError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmcore", description="mmscope: embed, store and search media.")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("ingest", help="add files and folders (recursively) to a collection")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--collection", help="collection name (default: MMCORE_COLLECTION or 'default')")
    p.add_argument("--tag", action="append", default=[], help="tag every added item (repeatable)")
    p.add_argument("--csv-rows", action="store_true", help="read each CSV row as its own item")
    p.add_argument("--pair-column", metavar="COLUMN", default="auto",
                   help="with --csv-rows (implied): the CSV column of image file names whose rows' captions pair with "
                        "those images (default: found when a column holds image file names; 'none': no pairs)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="read and embed on a Ray cluster's workers (GPUs where present): auto, HOST:6379, "
                        "ray://HOST:10001, or local (a Ray instance on this machine); this process writes")
    p.add_argument("--ray-cpus", type=int, metavar="N",
                   help="with --ray on a cluster without GPUs: CPUs per worker (default 4; one worker per GPU otherwise)")

    p = commands.add_parser("search", help="find items by text, image, sound or another item")
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--text", help="a text query (every space of the collection that embeds text)")
    query.add_argument("--image", type=Path, help="an image file as the query (images, pages, video segments)")
    query.add_argument("--audio", type=Path, help="a sound file as the query (its windows, in the spaces that take sound)")
    query.add_argument("--like", metavar="ID", help="the id of an item: find more like it")
    p.add_argument("--collection")
    p.add_argument("-k", type=int, default=10, help="how many hits per kind of media, or in all with --all (default 10)")
    p.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                   help="filter: modality=, source=, tag=, added_from=/added_to=YYYY-MM-DD, or any metadata key")
    p.add_argument("--space", help="for --like: which space of the collection (default: its only one, else the default space)")
    p.add_argument("--all", action="store_true",
                   help="every modality and space the query reaches, merged by reciprocal rank fusion")
    p.add_argument("--json", action="store_true", help="print hits as JSON")

    p = commands.add_parser("info", help="list collections with their model, dimension and size")
    p.add_argument("--json", action="store_true")

    p = commands.add_parser("analyze", help="map, clusters and outlier scores of a collection (cached)")
    _analysis_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object per item in a list")

    p = commands.add_parser("evaluate", help="how well the space fits the collection: retrieval between image-caption "
                            "pairs (recall@1/5/10, mean rank) and how well the tags are told apart (k-NN, linear probe)")
    p.add_argument("--collection")
    p.add_argument("--space", help="which space of the collection (default: its only one, else the default space)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")

    p = commands.add_parser("adapt", help="learn a residual linear adapter from the collection's pairs or tags; kept, as "
                            "the derived space SPACE-adapted, only if it does better on held-out items")
    p.add_argument("--collection")
    p.add_argument("--space", help="which space of the collection (default: its only one, else the default space)")
    p.add_argument("--from", dest="source", choices=("auto", "pairs", "tags"), default="auto",
                   help="learn from image-caption pairs or from tags (default: pairs where 10 or more pictures have one)")
    p.add_argument("--dry-run", action="store_true", help="measure only; write nothing")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = commands.add_parser("caption", help="caption the collection's pictures that have none yet (MMCORE_CAPTION_MODEL): "
                            "each caption becomes a text item paired with its picture")
    p.add_argument("--collection")
    p.add_argument("--id", action="append", default=None, metavar="ID", help="only this item (repeatable; default: every picture)")

    p = commands.add_parser("export", help="write items with metadata, tags, map coordinates and clusters")
    _analysis_arguments(p)
    p.add_argument("--format", choices=("csv", "json", "parquet"), default="csv")
    p.add_argument("--out", type=Path, help="output file (default: COLLECTION.FORMAT here); never inside the data dir")
    p.add_argument("--force", action="store_true", help="replace the output file if it exists")
    p.add_argument("--no-analysis", action="store_true", help="items and metadata only: no map or cluster columns")

    p = commands.add_parser("demo", help="load the offline demo collection (scikit-learn's handwritten digits)")
    p.add_argument("--collection", default="digits-demo")

    p = commands.add_parser("import-vectors", help="add vectors made elsewhere (.npy or .parquet) as a space of their own")
    p.add_argument("vectors", type=Path, metavar="VECTORS", help=".npy array [n, d], or .parquet (a 'vector'/'embedding' list column, or numeric columns)")
    p.add_argument("--meta", type=Path, metavar="META.csv", help="one row per vector: id, tags, text/caption, image/path, any metadata")
    p.add_argument("--collection", required=True)
    p.add_argument("--space", default="custom", help="name of the space these vectors live in (default: custom)")
    p.add_argument("--wait", action="store_true", help="return only once the search index holds every item (by "
                   "default a new collection's index is built by a background process; searches wait for it)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = commands.add_parser("index", help="put staged imports into the search index (what import-vectors starts in the background)")
    p.add_argument("--background", action="store_true", help=argparse.SUPPRESS)

    p = commands.add_parser("check", help="verify the store (counts, metadata, vectors, media files); changes nothing")
    p.add_argument("--json", action="store_true", help="print the report as JSON")

    p = commands.add_parser("backup", help="write the whole data dir to a new .tar.gz (refused while another process writes the store)")
    p.add_argument("out", type=Path, metavar="OUT.tar.gz", help="the archive to write; never inside the data dir")
    p.add_argument("--force", action="store_true", help="replace the archive if it exists")

    p = commands.add_parser("restore", help="unpack a backup as the data dir (MMCORE_DATA_DIR), which must be new or empty")
    p.add_argument("archive", type=Path, metavar="ARCHIVE")
    p.add_argument("--force", action="store_true", help="replace a data dir that is not empty")

    args = parser.parse_args(argv)
    try:
        commands_run = {"ingest": _ingest, "search": _search, "info": _info, "analyze": _analyze, "evaluate": _evaluate, "adapt": _adapt, "caption": _caption, "export": _export, "demo": _demo,
                        "import-vectors": _import_vectors, "index": _index, "check": _check, "backup": _backup,
                        "restore": _restore}
        return commands_run[args.command](args)
    except MMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _workspace(collection: str | None = None):
    """The workspace, using the local model folders that `collection` (default: MMCORE_COLLECTION) records
    where no model is configured; notes on stderr, among them where a hosted space sends media."""
    from .spaces.registry import notices
    from .workspace import Workspace

    ws = Workspace()
    for note in ws.use_recorded_models(collection) + [f"note: {n}" for n in notices(ws.settings)]:
        print(note, file=sys.stderr)
    return ws


def _ingest(args) -> int:
    from .ingest import collect_files, ingest

    ws = _workspace(args.collection)
    files, early = collect_files(args.paths)
    csv_rows = args.csv_rows or args.pair_column != "auto"
    progress = None if args.json else _ProgressLines()
    try:
        if args.ray:
            from .scaleout import ingest_on_ray

            if args.ray_cpus is not None and args.ray_cpus < 1:
                raise MMError(f"--ray-cpus must be at least 1, got {args.ray_cpus}")
            report = ingest_on_ray(ws, files, args.ray, collection=args.collection, tags=args.tag, csv_rows=csv_rows,
                                   on_progress=progress, cpus=args.ray_cpus, pair_column=args.pair_column,
                                   on_note=progress.note if progress else None)
        elif args.ray_cpus is not None:
            raise MMError("--ray-cpus goes with --ray ADDRESS")
        else:
            report = ingest(ws, files, collection=args.collection, tags=args.tag, csv_rows=csv_rows,
                            on_progress=progress, pair_column=args.pair_column)
    finally:
        if progress:
            progress.close()
    report.results[:0] = early
    workers = getattr(report, "workers", None)
    if args.json:
        out = {"results": [vars(r) for r in report.results], "seconds": report.seconds}
        if workers is not None:
            out["workers"] = [vars(w) for w in workers]
        print(json.dumps(out, indent=2))
    else:
        added, skipped, failed = (report.by_status(s) for s in ("added", "skipped", "failed"))
        print(f"added {len(added)} files ({report.items_added} items), skipped {len(skipped)}, failed {len(failed)}")
        for r in skipped:
            print(f"  skipped: {r.name}: {r.reason}")
        for reason, names in _by_reason(failed).items():
            if len(names) > 2:  # a missing model fails every file of its kind with one reason: say it once
                print(f"  failed: {len(names)} files: {reason}\n" + "\n".join(f"    {n}" for n in names))
            else:
                print("\n".join(f"  failed: {n}: {reason}" for n in names))
        for r in report.results:
            for note in r.notes:
                print(f"  note: {r.name}: {note}")
        s = report.seconds
        print(f"time: read {s['read']:.1f}s, embed {s['embed']:.1f}s, write {s['write']:.1f}s"
              + (f", caption {s['caption']:.1f}s" if "caption" in s else "")
              + (" (read and embed summed over the workers)" if workers is not None else ""))
        if workers:
            print(f"Ray workers: {len(workers)}: " + ", ".join(
                f"{w.node} {w.device} {w.files} files" + (" (died)" if w.died else "") for w in workers))
    return 0 if report.ok else 1


def _by_reason(results) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for r in results:
        grouped.setdefault(r.reason or "", []).append(r.name)
    return grouped


class _ProgressLines:
    """An ingest's progress on stderr: a line per file as it is finished and, on a terminal, a bar (tqdm) with
    items embedded, items/s and the time left; elsewhere (a log) that summary as a line every LOG_EVERY_S."""

    LOG_EVERY_S = 15.0

    def __init__(self):
        import time

        from tqdm import tqdm

        self.clock = time.monotonic
        self.bar = tqdm(total=1000, file=sys.stderr, bar_format="{bar:24} {desc}", dynamic_ncols=True,
                        leave=False, disable=not sys.stderr.isatty())
        self.logged = self.clock()
        self.read = None  # the file last said to be read

    def __call__(self, p) -> None:
        if p.finished is not None:
            r = p.finished
            self.note(f"[{p.files_done}/{p.files_total}] {r.status:7} {r.name}" + (f": {r.reason}" if r.reason else ""))
        line = f"reading {p.current}… · {p.summary()}" if p.stage == "reading" else p.summary()
        if not self.bar.disable:
            self.bar.n = round(p.fraction * 1000)
            self.bar.set_description_str(line + (f" · {p.current}" if p.current and p.stage == "embedding" else ""), refresh=True)
        elif (p.stage == "reading" and p.current != self.read) or (
                p.stage == "embedding" and self.clock() - self.logged >= self.LOG_EVERY_S):
            self.logged, self.read = self.clock(), p.current if p.stage == "reading" else self.read
            self.note(line)

    def note(self, line: str) -> None:
        self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def _search(args) -> int:
    from .search import Filters, Query, search_each_modality, search_fused, with_pairs

    ws = _workspace(args.collection)
    filters = Filters.parse(args.where)
    space = None
    if args.like is not None:
        query = Query(like=args.like)
        space = _space_of(ws, args.collection, args.space)
    elif args.text is not None:
        query = Query(text=args.text)
    elif args.image is not None:
        query = Query(image=_read(args.image), image_name=args.image.name)
    else:
        query = Query(audio=_read(args.audio), audio_name=args.audio.name)
    # As on the Search page: each kind ranked on its own (a text query scores higher against texts than against
    # images, so one list by score would bury the images), or all of them fused by rank with --all.
    if args.all:
        sections = {"all media, fused by rank": search_fused(ws, query, args.collection, args.k, filters, space)}
    else:
        sections = search_each_modality(ws, query, args.collection, args.k, filters, space)
    sections = {kind: with_pairs(ws, hits, args.collection) for kind, hits in sections.items()}
    if args.json:
        print(json.dumps([h.to_json() for hits in sections.values() for h in hits], indent=2))
        return 0
    for kind, hits in sections.items():
        print(f"{kind} ({len(hits)})")
        for rank, h in enumerate(hits, 1):
            where = " ".join(f"{k}={v}" for k, v in h.locator.items())
            snippet = f"  {h.document[:80]!r}" if h.document else ""
            score = f"fused {h.fused:.4f} (cosine {h.score:.3f})" if h.fused is not None else f"{h.score:.4f}"
            score += f" p={h.probability:.3f}" if h.probability is not None else ""
            spaces = "+".join(h.found_in or (h.space,))  # every space whose list had it
            print(f"{rank:3}. {score}  {spaces:4}  {h.modality:5}  {h.source} {where}  [{h.id}]{snippet}")
            for pair in h.pairs:  # an image-caption pair: the caption's image, or the image's captions
                print(f"       {pair.modality}: {pair.source}" + (f"  {pair.document[:80]!r}" if pair.document else ""))
    if not any(sections.values()):
        print("no hits")
    return 0


def _read(path: Path) -> bytes:
    from .config import Settings
    from .safe_io import read_bounded

    return read_bounded(path, Settings.from_env().max_file_bytes, "MMCORE_MAX_FILE_MB")


def _info(args) -> int:
    ws = _workspace()
    collections = ws.store.list()
    if args.json:
        print(json.dumps([
            {"collection": c.name, "space": c.space.space, "model": c.space.model_id, "revision": c.space.revision,
             "backend": c.space.backend, "dimension": c.space.dim, "items": c.count}
            for c in collections
        ], indent=2))
    else:
        where = f"Chroma server {ws.settings.chroma_host}:{ws.settings.chroma_port}" if ws.settings.chroma_host else f"data dir {ws.settings.data_dir}"
        print(f"{where}: {len(collections)} collection(s)")
        for c in collections:
            print(f"  {c.name}  space={c.space.space}  model={c.space.model_id}  backend={c.space.backend}  dim={c.space.dim}  items={c.count}")
    return 0


def _analysis_arguments(p) -> None:
    p.add_argument("--collection")
    p.add_argument("--space", help="which space of the collection (default: its only one, else the default space)")
    p.add_argument("--neighbors", type=int, default=None, help="UMAP neighbours (default 15)")
    p.add_argument("--min-dist", type=float, default=None, help="UMAP min_dist (default 0.1)")
    p.add_argument("--min-cluster-size", type=int, default=None, help="HDBSCAN (default: from the size)")
    p.add_argument("--min-samples", type=int, default=None,
                   help="HDBSCAN's density smoothing (default 10, at most the cluster size)")
    p.add_argument("--selection", choices=("leaf", "eom"), default=None,
                   help="clusters from HDBSCAN's tree: leaf = fine, homogeneous (default); eom = broad (excess of mass)")
    p.add_argument("--refit", action="store_true", help="fit from scratch instead of placing new items")


def _taxonomy_analysis(ws, name: str, space: str, args):
    """The cached analysis with the taxonomy's labels and names, as the Clusters page shows them:
    (analysis, labels, names)."""
    from .analysis.clusters import DEFAULT_SELECTION, Hdbscan
    from .analysis.maps import analyze
    from .analysis.naming import cluster_names
    from .analysis.projection import DEFAULT_MIN_DIST, DEFAULT_NEIGHBORS, Umap
    from .analysis.taxonomy import load_taxonomy

    umap = Umap(args.neighbors or DEFAULT_NEIGHBORS, DEFAULT_MIN_DIST if args.min_dist is None else args.min_dist)
    hdbscan = Hdbscan(args.min_cluster_size, args.min_samples, args.selection or DEFAULT_SELECTION)
    say = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    analysis = analyze(ws, name, space, umap, hdbscan, refit=args.refit, on_progress=lambda stage: say(f"{stage}…"),
                       on_stage=lambda partial: say(f"ready: {', '.join(partial.done)}"))
    if not analysis.from_cache:
        say("Naming the clusters…")
    labels, names = load_taxonomy(ws.settings.data_dir, name, space).apply(analysis, cluster_names(ws, analysis))
    return analysis, labels, names


def _analysis_frame(args):
    from .analysis.frame import analysis_frame

    ws = _workspace(args.collection)
    name = args.collection or ws.settings.collection
    space = _space_of(ws, name, args.space)
    analysis, labels, names = _taxonomy_analysis(ws, name, space, args)
    return analysis, analysis_frame(ws.store.open(name, space), analysis, names, media_root=ws.files.root, labels=labels)


def _analyze(args) -> int:
    columns = ["id", "x", "y", "cluster", "cluster_name", "cluster_stability", "outlier_score", "probability"]
    if args.json:  # straight from the analysis: no item metadata to read, no table to build (1 s at 100k items)
        ws = _workspace(args.collection)
        name = args.collection or ws.settings.collection
        analysis, labels, names = _taxonomy_analysis(ws, name, _space_of(ws, name, args.space), args)
        stabilities = analysis.stabilities(labels)
        rows = zip(analysis.ids, analysis.xy[:, 0].tolist(), analysis.xy[:, 1].tolist(), labels.tolist(),
                   analysis.outlier_scores.tolist(), analysis.probabilities.tolist())
        # one item per line; no stability (noise, a merged cluster): null
        lines = (json.dumps(dict(zip(columns, (id_, x, y, label, names.get(label, "noise" if label < 0 else f"cluster {label}"),
                                               stabilities.get(label), score, probability))))
                 for id_, x, y, label, score, probability in rows)
        sys.stdout.write("[\n" + ",\n".join(lines) + "\n]\n")
    else:
        analysis, frame = _analysis_frame(args)
        print(frame[columns + ["source"]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if reason := analysis.coarse:
        finer = f" For finer ones: {_finer_flags(analysis)}" if analysis.finer != analysis.requested else ""
        print(f"note: these clusters are too coarse to review: {reason}.{finer}", file=sys.stderr)
    return 0


def _evaluate(args) -> int:
    from .evaluate import evaluate

    ws = _workspace(args.collection)
    name = args.collection or ws.settings.collection
    report = evaluate(ws, name, _space_of(ws, name, args.space))
    print(json.dumps(report.to_json(), indent=2) if args.json else "\n".join(report.lines()))
    return 0


def _adapt(args) -> int:
    from dataclasses import asdict

    from .adapter import adapt

    ws = _workspace(args.collection)
    name = args.collection or ws.settings.collection
    report = adapt(ws, name, _space_of(ws, name, args.space), args.source, write=not args.dry_run)
    print(json.dumps(asdict(report), indent=2) if args.json else "\n".join(report.lines()))
    return 0


def _caption(args) -> int:
    from .captions import caption_collection

    ws = _workspace(args.collection)
    name = args.collection or ws.settings.collection
    progress = lambda done, total: print(f"captioned {done:,} of {total:,}", file=sys.stderr)  # noqa: E731
    report = caption_collection(ws, name, ids=args.id, on_progress=progress)
    print(f"{report.captioned:,} caption(s) written for {report.pictures:,} picture(s) without one, into "
          f"{', '.join(report.spaces)} ({report.seconds:.1f}s)")
    for problem in report.problems:
        print(f"  problem: {problem}")
    return 1 if report.problems else 0


def _finer_flags(analysis) -> str:
    """The `analyze` flags that ask for `analysis.finer`."""
    from .analysis.projection import DEFAULT_MIN_DIST, DEFAULT_NEIGHBORS

    finer = analysis.finer
    flags = [f"--selection {finer.selection}"]
    if finer.min_cluster_size is not None:
        flags.append(f"--min-cluster-size {finer.min_cluster_size}")
    if finer.min_samples is not None:
        flags.append(f"--min-samples {finer.min_samples}")
    if analysis.umap.n_neighbors != DEFAULT_NEIGHBORS:
        flags.append(f"--neighbors {analysis.umap.n_neighbors}")
    if analysis.umap.min_dist != DEFAULT_MIN_DIST:
        flags.append(f"--min-dist {analysis.umap.min_dist}")
    return " ".join(flags)


def _export(args) -> int:
    from .export import export_items
    from .safe_io import output_target

    ws = _workspace(args.collection)
    name = args.collection or ws.settings.collection
    out = args.out or Path(f"{name}.{args.format}")
    output_target(out, ws.settings.data_dir, args.force)  # refused before the analysis, not after it
    space = _space_of(ws, name, args.space)
    analysis = None if args.no_analysis else _analysis_for_export(ws, name, space, args)
    path = export_items(ws, name, space, args.format, out, analysis, force=args.force)
    print(f"wrote {ws.store.open(name, space).count():,} items to {path}"
          + ("" if analysis is not None else " (without map and cluster columns)"))
    return 0


def _analysis_for_export(ws, name: str, space: str, args):
    """What `export` joins to the items (ids, xy, labels, probabilities, outlier_scores, names), or None
    (with a note) when the collection can't be analysed."""
    from types import SimpleNamespace

    try:
        analysis, labels, names = _taxonomy_analysis(ws, name, space, args)
    except MMError as e:
        print(f"note: exporting without map and cluster columns: {e}", file=sys.stderr)
        return None
    return SimpleNamespace(ids=analysis.ids, xy=analysis.xy, labels=labels, probabilities=analysis.probabilities,
                           outlier_scores=analysis.outlier_scores, names=names, stabilities=analysis.stabilities(labels))


def _demo(args) -> int:
    from .demo import load_digits_demo

    report = load_digits_demo(_workspace(), args.collection)
    print(f"demo collection {args.collection!r}: {report.added:,} items added"
          + (f", {report.skipped:,} already there" if report.skipped else ""))
    return 0


def _import_vectors(args) -> int:
    from dataclasses import asdict

    from .vectors import import_vectors

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\rwritten {done:,} of {total:,}", end="\n" if done == total else "", file=sys.stderr)

    ws = _workspace()
    report = import_vectors(ws, args.vectors, args.meta, args.collection, args.space, on_progress=progress, stage=True)
    staged = ws.store.open(report.collection, report.space.space).staged_count()
    if staged and args.wait:
        _build_index(ws)
    elif staged:
        if hasattr(ws.store.client, "write_catalogue"):
            ws.store.client.write_catalogue()  # for the builder to mark, and commands meanwhile to read (mmcore.catalogue)
        ws.close()  # the builder takes the store's write claim from here
        _start_index_builder(ws.settings.data_dir)
        print(f"note: the search index of these {staged:,} items is being built in the background; the map and "
              "analysis can start now, and searches wait for it", file=sys.stderr)
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        print(f"imported {report.source} into {report.collection!r} (space {report.space.space!r}, {report.space.dim}-d): "
              f"{report.rows:,} rows, {report.added:,} added, {report.skipped:,} already there, "
              f"{report.images:,} images stored ({report.seconds:.1f}s)")
        for problem in report.problems:
            print(f"  problem: {problem}")
    return 1 if report.problems else 0


def _index(args) -> int:
    from .workspace import Workspace

    _build_index(Workspace(), background=args.background)
    return 0


def _build_index(ws, background: bool = False) -> None:
    """Put every staged collection's items into Chroma (mmcore.pending), with a progress line on a terminal. In the
    background, another process writing the store (one that took its lock before this one started) is waited for."""
    import time

    from .errors import StoreLocked
    from .pending import staged_keys

    # The lock first, Chroma after: the catalogue the import left is then still the store's when the builder marks
    # it (LazyClient.building), so commands started meanwhile never need Chroma.
    while background:
        try:
            ws.claim()
            break
        except StoreLocked:  # the import that started this builder, on its way out
            time.sleep(0.2)
    store = ws.store
    for key in staged_keys(store.pending_root) if store.pending_root else []:
        name, _, space = key.rpartition(".")
        def progress(done: int, total: int) -> None:
            if not background and sys.stderr.isatty():
                print(f"\rindexed {done:,} of {total:,} items of {name}/{space}", end="\n" if done == total else "",
                      file=sys.stderr)
        while True:
            try:
                store.open(name, space).settle(progress)
                break
            except StoreLocked:
                if not background:
                    raise
                time.sleep(0.5)


def _start_index_builder(data_dir: Path) -> None:
    """Start `python -m mmcore index --background` behind this command: in a process group of its own (Ctrl-C here
    doesn't stop it, and a closed terminal's hangup is ignored) but in this session, so that the kernel weighs it
    against the analysis that follows (a new session gets a scheduling group and an equal share of its own), and
    at idle priority: it takes the CPU only when the analysis leaves some. Output goes to <data dir>/logs/index.log."""
    import os
    import signal
    import subprocess

    def lower_priority() -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError):
            os.nice(19)

    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "index.log", "ab") as log:
        subprocess.Popen([sys.executable, "-m", "mmcore", "index", "--background"], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=log, process_group=0, preexec_fn=lower_priority,
                         env={**os.environ, "MMCORE_DATA_DIR": str(data_dir)})


def _check(args) -> int:
    from dataclasses import asdict

    from .config import Settings
    from .health import check_store

    report = check_store(Settings.from_env(), on_progress=None if args.json else lambda c: print(f"checking {c}…", file=sys.stderr))
    if args.json:
        print(json.dumps({"ok": report.ok, "location": report.location, "collections": [asdict(c) for c in report.collections],
                          "problems": [asdict(p) for p in report.problems]}, indent=2))
        return 0 if report.ok else 1
    print(f"{report.location}: {len(report.collections)} collection space(s)")
    for c in report.collections:
        print(f"  {c.name}  space={c.space}  dim={c.dim}  items={c.count}")
    for p in report.problems:
        print(f"problem: {p.where + ': ' if p.where else ''}[{p.kind}] {p.message}")
    print("healthy" if report.ok else f"{len(report.problems)} problem(s); nothing was changed")
    return 0 if report.ok else 1


def _backup(args) -> int:
    from .backup import backup
    from .config import Settings

    settings = Settings.from_env()
    report = backup(settings, args.out, force=args.force)
    print(f"backed up {settings.data_dir} to {report.path}: {report.files:,} files, {report.bytes / 1e6:,.1f} MB")
    if not report.with_store:
        print(f"note: the collections are on the Chroma server {settings.chroma_host}:{settings.chroma_port} and are not in "
              "this backup (only originals, thumbnails, caches and names are): back the server up by its own means, "
              "e.g. its --path directory while it is stopped.")
    return 0


def _restore(args) -> int:
    from .backup import restore
    from .config import Settings

    settings = Settings.from_env()
    report = restore(args.archive, settings.data_dir, force=args.force, max_bytes=settings.max_restore_bytes,
                     max_files=settings.max_restore_files)
    print(f"restored {report.files:,} files of {args.archive} ({report.manifest.get('written_by', '?')}, "
          f"{report.manifest.get('created', '?')}) into {report.data_dir}")
    if report.manifest.get("store") != "embedded":
        print(f"note: this backup holds no collections: they were on a {report.manifest.get('store')}.")
    return 0


def _space_of(ws, name: str | None, given: str | None) -> str:
    """The space asked for, else the collection's only one, else the default space."""
    if given:
        return given
    name = name or ws.settings.collection
    spaces = [c.space.space for c in ws.store.list() if c.name == name]
    from .spaces.registry import DEFAULT_SPACE

    return spaces[0] if len(spaces) == 1 else DEFAULT_SPACE
