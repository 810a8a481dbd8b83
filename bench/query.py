"""Text query latency over N items, p50/p95, unfiltered and filtered, text encoding included. Prints figures;
asserts nothing.

Each query goes through mmcore.search.search: the text tower of a full-size CLIP (ViT-B/32 text tower; a
random-weight one unless --model names a real checkpoint, and the output says so) embeds it, then the top 20 come
from the collection. The collection: N synthetic 512-d vectors in 40 clusters, in a real embedded Chroma store,
two thirds images and one third text (bench/analysis.py's items), 2% tagged "review". Filters: modality=text (a
third), modality=image (two thirds), tag=review (2%). The first query with a filter lists the items it keeps once
(per collection content and tags); that first query is shown apart, the percentiles are over the next ones.

Usage: python bench/query.py [N ...] [--model DIR] [--queries Q] [--keep DIR]   (default 10000 100000; --keep
builds the data dir once in DIR and reuses it on the next run)
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from analysis import items  # noqa: E402
from fullsize import fullsize_clip  # noqa: E402

from mmcore.config import Settings  # noqa: E402
from mmcore.search import Filters, Query, search  # noqa: E402
from mmcore.spaces import normalize  # noqa: E402
from mmcore.vector_cache import read_vectors, vector_cache_dir  # noqa: E402
from mmcore.workspace import Workspace  # noqa: E402

WORDS = "dog beach child red bicycle snow mountain street market boat harbour football crowd kitchen guitar bird".split()
FILTERS = {
    "none": None,
    "modality=text (1/3)": Filters(modalities=("text",)),
    "modality=image (2/3)": Filters(modalities=("image",)),
    "tag=review (2%)": Filters(tags=("review",)),
}


def build(ws: Workspace, n: int) -> None:
    info = ws.space().info
    rng = np.random.default_rng(0)
    centers = normalize(rng.standard_normal((40, info.dim)))
    labels = rng.integers(0, 40, n)
    vectors = normalize(centers[labels] + 0.05 * rng.standard_normal((n, info.dim)))
    ids, metas, docs = items(n)
    for i, meta in enumerate(metas):
        if i % 50 == 7:
            meta["tags"] = ["review"]
    target = ws.store.collection("bench", info)
    started = time.perf_counter()
    for i in range(0, n, 5000):
        target.add(ids[i : i + 5000], vectors[i : i + 5000], metas[i : i + 5000], docs[i : i + 5000])
    print(f"  built {n:,} items in {time.perf_counter() - started:.0f} s", flush=True)


def percentiles(times: list[float]) -> str:
    times = sorted(times)
    return f"p50 {statistics.median(times) * 1000:6.1f} ms, p95 {times[int(0.95 * (len(times) - 1))] * 1000:6.1f} ms"


def run(data_dir: Path, n: int, model: str, queries: list[str], backend: str) -> None:
    ws = Workspace(Settings(data_dir=data_dir, models={"clip": model}, collection="bench", backend=backend))
    try:
        if not ws.store.list():
            build(ws, n)
        target = ws.collection("bench", "clip", create=False)
        started = time.perf_counter()
        read_vectors(target, vector_cache_dir(data_dir))  # what an ingest or the Map page leaves behind
        print(f"  vector cache ready in {time.perf_counter() - started:.1f} s", flush=True)
        space = ws.space()
        space.embed_texts(queries[:2])
        encode = []
        for text in queries:
            started = time.perf_counter()
            space.embed_texts([text])
            encode.append(time.perf_counter() - started)
        print(f"  text encoding alone:        {percentiles(encode)}")
        baseline = None
        for label, filters in FILTERS.items():
            started = time.perf_counter()
            search(ws, Query(text=queries[0]), k=20, filters=filters)
            first = time.perf_counter() - started
            times = []
            for text in queries[1:]:
                started = time.perf_counter()
                hits = search(ws, Query(text=text), k=20, filters=filters)
                times.append(time.perf_counter() - started)
                assert len(hits) == 20 and (filters is None or all(filters.matches(h.metadata) for h in hits))
            p50 = statistics.median(times)
            baseline = baseline or p50
            print(f"  {label:<26}  {percentiles(times)}  ({p50 / baseline:.1f}x unfiltered; first query {first * 1000:.0f} ms)")
    finally:
        ws.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("sizes", nargs="*", type=int, default=[10_000, 100_000])
    parser.add_argument("--model", help="a real CLIP checkpoint folder (default: random full-size ViT-B/32)")
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--backend", default="torch", help="MMCORE_BACKEND: torch or openvino-bf16")
    parser.add_argument("--keep", type=Path, help="build data dirs under this folder and reuse them")
    args = parser.parse_args()
    model = args.model or str(fullsize_clip())
    print(f"model: {model}" + ("" if args.model else " (random weights, real ViT-B/32 text tower cost)"))
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; backend {args.backend}")
    rng = np.random.default_rng(4)
    queries = [f"a {' '.join(rng.choice(WORDS, 3))} {i}" for i in range(args.queries + 1)]
    for n in args.sizes:
        print(f"n={n:,}:", flush=True)
        if args.keep:
            run(args.keep / f"query-{n}-{args.backend}", n, model, queries, args.backend)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                run(Path(tmp), n, model, queries, args.backend)
        print(f"  load {os.getloadavg()[0]:.1f}; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB", flush=True)


if __name__ == "__main__":
    main()
