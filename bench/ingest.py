"""Ingest throughput on real JPEGs through the real pipeline, beside the raw model forward pass on the same
already-decoded images, in the same run. Prints figures; asserts nothing.

The raw pass embeds images already decoded in memory (the CLIP processor's resize and normalisation
included, as in the pipeline); the pipeline reads the JPEG bytes, decodes, embeds, writes thumbnails,
originals and vectors. Raw and pipeline alternate over --rounds rounds, each in a fresh data dir.

Usage: python bench/ingest.py [N] [--model DIR] [--rounds R]   (N images from ../shared/data/flickr8k-300, repeated with
distinct bytes so none is skipped as a duplicate; default 300). Without --model, a random-weight checkpoint of
the real ViT-B/32 architecture is used (real cost, meaningless vectors), and the output says so.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
IMAGES = ROOT.parent / "shared" / "data" / "flickr8k-300" / "images"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", nargs="?", type=int, default=300)
    parser.add_argument("--model", help="a real checkpoint folder (default: random full-size ViT-B/32)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default="torch", help="MMCORE_BACKEND: torch or openvino-bf16")
    args = parser.parse_args()

    import torch
    from fullsize import fullsize_clip
    from PIL import Image

    from mmcore.config import Settings
    from mmcore.ingest import SourceFile, ingest
    from mmcore.workspace import Workspace

    model = args.model or str(fullsize_clip())
    print(f"model: {model}" + ("" if args.model else " (random weights, real ViT-B/32 cost)"))
    originals = sorted(IMAGES.glob("*.jpg"))
    if not originals:
        sys.exit(f"no sample images in {IMAGES}")
    # JPEG decoders ignore bytes after the end-of-image marker: distinct hashes, identical pixels.
    sources = [
        SourceFile(f"img{i:06d}.jpg", data=originals[i % len(originals)].read_bytes() + i.to_bytes(4, "big"))
        for i in range(args.n)
    ]
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, torch threads {torch.get_num_threads()}, backend {args.backend}")
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):  # raw and pipeline alternate, so a change in machine load hits both
            ws = Workspace(Settings(data_dir=Path(tmp) / str(round_), models={"clip": model}, batch_size=args.batch, backend=args.backend))
            space = ws.space()
            decoded = [Image.open(io.BytesIO(s.data)).convert("RGB") for s in sources[: min(args.n, 256)]]
            space.embed_images(decoded[: args.batch])  # warm-up
            started = time.perf_counter()
            space.embed_images(decoded)
            raw = len(decoded) / (time.perf_counter() - started)
            del decoded
            started = time.perf_counter()
            report = ingest(ws, sources)
            elapsed = time.perf_counter() - started
            ws.close()
            pipeline = report.items_added / elapsed
            s = report.seconds
            rounds.append((raw, pipeline))
            print(f"round {round_ + 1}: raw forward pass {raw:.1f} images/s; pipeline {report.items_added} images in "
                  f"{elapsed:.1f} s = {pipeline:.1f} images/s (busy: read+decode {s['read']:.1f} s, embed {s['embed']:.1f} s, "
                  f"write {s['write']:.1f} s, overlapping); ratio {pipeline / raw:.0%}; load {os.getloadavg()[0]:.1f}", flush=True)
    raw, pipeline = (statistics.median(r[i] for r in rounds) for i in (0, 1))
    ratio = statistics.median(p / r for r, p in rounds)
    print(f"median: raw {raw:.1f} images/s, pipeline {pipeline:.1f} images/s, pipeline / raw = {ratio:.0%}; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
