"""One big CSV read one row per item (`ingest --csv-rows`), end to end: rows/s and items/s, where the time
goes, how soon progress shows, and the memory it takes. Prints figures; asserts nothing.

The CSV: N rows of `id,caption,photographer` (captions from ../shared/data/flickr8k-300/captions.csv, cycled, with
the row number in them so every row differs; about 75 bytes a row). It goes through mmcore.ingest.ingest into a
fresh embedded Chroma store, committing a group every GROUP_ITEMS items as a big file does.

Models: `--model tiny` (default), the 16-d random-weight CLIP of the tests (tests/checkpoints.py): the model costs
almost nothing, so the figure is the pipeline's own (reading, tokenizing, writing); its tokenizer reads one token
per character, the worst case for text windows. `--model fullsize`: the real ViT-B/32 text tower with random
weights (bench/fullsize.py), what a real CLIP costs on this machine; or a checkpoint folder.

Usage: python bench/csv_ingest.py [ROWS] [--model tiny|fullsize|DIR] [--backend torch|openvino-bf16] [--batch B]
[--threads T] (default 200000 rows). On a machine other work keeps busy, torch's threads wait on each other (the
tiny model on 2 busy cores: 70 texts/s with 2 threads, 1,900 with 1): give --threads 1 there. MMCORE_MAX_TEXT_MB is raised to fit the file if it is over the 10 MB default (the bench
says so).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
CAPTIONS = ROOT.parent / "shared" / "data" / "flickr8k-300" / "captions.csv"
TINY = ROOT / ".cache" / "bench-clip-tiny"


def write_csv(path: Path, rows: int) -> int:
    import csv

    if CAPTIONS.exists():
        with open(CAPTIONS, newline="") as f:
            captions = [row[1].strip() for row in list(csv.reader(f))[1:] if len(row) > 1]
    else:
        words = "a dog runs on the beach while two children fly a red kite near the old harbour".split()
        captions = [" ".join(words[i % 7: i % 7 + 8]) for i in range(50)]
    people = ["ana", "bo", "chen", "dara", "eli", "fay"]
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "caption", "photographer"])
        for i in range(rows):
            out.writerow([i, f"{captions[i % len(captions)]} ({i})", people[i % len(people)]])
    return path.stat().st_size


def model_dir(choice: str) -> tuple[str, str]:
    if choice == "tiny":
        from checkpoints import tiny_clip

        if not (TINY / "model.safetensors").exists():
            tiny_clip(TINY, projection_dim=16, seed=0)
        return str(TINY), "the tests' 16-d random-weight CLIP (2 layers, character tokenizer): the pipeline's own cost"
    if choice == "fullsize":
        from fullsize import fullsize_clip

        return str(fullsize_clip()), "ViT-B/32 architecture, random weights: a real CLIP's cost"
    return choice, "a checkpoint folder"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rows", nargs="?", type=int, default=200_000)
    parser.add_argument("--model", default="tiny", help="tiny (default), fullsize, or a checkpoint folder")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own, one per core)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from mmcore import journal
    from mmcore.config import Settings
    from mmcore.ingest import GROUP_ITEMS, GROUP_SECONDS, SourceFile, ingest
    from mmcore.workspace import Workspace

    commits: list[float] = []  # when each group was committed (the journal's commit, counted here)
    commit = journal.Journal.commit
    journal.Journal.commit = lambda self, group: (commit(self, group), commits.append(time.perf_counter()))[0]

    model, about = model_dir(args.model)
    print(f"model: {model} ({about}); backend {args.backend}, batch {args.batch}")
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.csv"
        size = write_csv(path, args.rows)
        limit_mb = max(10, -(-size // 2**20))
        print(f"CSV: {args.rows:,} rows, {size / 2**20:.1f} MB" + (f" (MMCORE_MAX_TEXT_MB raised to {limit_mb})" if limit_mb > 10 else ""))
        settings = Settings(data_dir=Path(tmp) / "data", models={"clip": model}, batch_size=args.batch, backend=args.backend,
                            max_text_bytes=limit_mb * 2**20)
        ws = Workspace(settings)
        ws.space()  # the model loads before the clock starts
        seen = []
        started = time.perf_counter()
        report = ingest(ws, [SourceFile(path.name, path=path)], csv_rows=True,
                        on_progress=lambda p: seen.append((time.perf_counter() - started, p)))
        elapsed = time.perf_counter() - started
        [result] = report.results
        first = next((t for t, p in seen if p.items_done), float("nan"))
        total_known = next((t for t, p in seen if p.items_total), float("nan"))
        s = report.seconds
        print(f"result: {result.status}, {result.items:,} items" + (f" ({result.reason})" if result.reason else ""))
        print(f"end to end: {elapsed:.1f} s = {args.rows / elapsed:,.0f} rows/s, {result.items / elapsed:,.0f} items/s")
        print(f"busy (overlapping): read + tokenize {s['read']:.1f} s, embed {s['embed']:.1f} s, write {s['write']:.1f} s")
        print(f"progress: item count known after {total_known:.1f} s, first items embedded after {first:.1f} s; "
              f"{len(seen)} updates")
        gaps = [b - a for a, b in zip([started + first] + commits, commits)]  # from the first item embedded
        print(f"groups (at most {GROUP_ITEMS:,} items or {GROUP_SECONDS:.0f} s): {len(commits)} commits, "
              f"{result.items / max(1, len(commits)):,.0f} items and {max(gaps, default=0):.1f} s of work at most each")
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB; load {os.getloadavg()[0]:.1f}")
        ws.close()


if __name__ == "__main__":
    main()
