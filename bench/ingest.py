"""Ingest throughput on real JPEGs through the real pipeline, beside the raw model forward pass on the same
already-decoded images, in the same run. Prints figures; asserts nothing.

Usage: python bench/ingest.py [N] [--model DIR]   (N images from ../shared/data/flickr8k-300, repeated with
distinct bytes so none is skipped as a duplicate; default 300). Without --model, a random-weight checkpoint of
the real ViT-B/32 architecture is used (real cost, meaningless vectors), and the output says so.
"""

from __future__ import annotations

import argparse
import io
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
    args = parser.parse_args()

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
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Settings(data_dir=Path(tmp), clip_model=model, batch_size=args.batch))
        space = ws.space()
        decoded = [Image.open(io.BytesIO(s.data)).convert("RGB") for s in sources[: min(args.n, 256)]]
        space.embed_images(decoded[: args.batch])  # warm-up
        runs = []
        for _ in range(3):
            started = time.perf_counter()
            space.embed_images(decoded)
            runs.append(len(decoded) / (time.perf_counter() - started))
        raw = statistics.median(runs)
        started = time.perf_counter()
        report = ingest(ws, sources)
        elapsed = time.perf_counter() - started
        pipeline = report.items_added / elapsed
        s = report.seconds
        print(f"raw forward pass: {raw:.1f} images/s (median of 3 over {len(decoded)} decoded images, batch {args.batch})")
        print(f"pipeline: {report.items_added} images in {elapsed:.1f}s = {pipeline:.1f} images/s "
              f"(read+decode {s['read']:.1f}s, embed {s['embed']:.1f}s, write {s['write']:.1f}s)")
        print(f"pipeline / raw = {pipeline / raw:.0%}; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
