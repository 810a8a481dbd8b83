"""Analysis time (map + clusters + outliers) for N items, cold and cached, vector reads, and the Map figure's size.

Synthetic data shaped like a real collection: 512-d unit vectors in 40 clusters of varied spread plus 1%
scattered points, written to a real embedded Chroma store in a temporary data dir; a third are text items
with a caption-length document, the rest images with dataset-style source paths. Prints figures; asserts
nothing. Vector reads: the vector cache's first read (from the store), its next one (from disk), and one
after 1% more items were added (incremental). The cold analysis then reads from the cache, like any
analysis after the first. The figure size is what st.plotly_chart sends the browser (plotly.io.to_json).
Usage: python bench/analysis.py [--figure-only | --clustering-ab] [N ...]   (default: 10000 50000; --figure-only
skips the analysis and measures the figure of a frame with random coordinates, in seconds; --clustering-ab times
the clustering stage alone, the defaults before issue 12 against today's, in alternating rounds on the same points,
so a machine's changing load hits both alike)
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.io

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))

from mmcore.analysis.figures import map_figure  # noqa: E402
from mmcore.analysis.frame import analysis_frame  # noqa: E402
from mmcore.analysis.maps import analyze  # noqa: E402
from mmcore.config import Settings  # noqa: E402
from mmcore.spaces import SpaceInfo, normalize  # noqa: E402
from mmcore.vector_cache import read_vectors, vector_cache_dir  # noqa: E402
from mmcore.workspace import Workspace  # noqa: E402

DIM = 512


def collection_of(ws: Workspace, n: int, start: int = 0):
    """The bench collection with items start..n-1 of the synthetic data added (a new or an existing one)."""
    rng = np.random.default_rng(0)
    centers = normalize(rng.standard_normal((40, DIM)))
    if start:
        rng = np.random.default_rng(start)
    count = n - start
    labels = rng.integers(0, 40, count)
    spread = rng.uniform(0.02, 0.06, 40)[labels][:, None]
    vectors = normalize(centers[labels] + spread * rng.standard_normal((count, DIM)))
    scattered = rng.random(count) < 0.01
    vectors[scattered] = normalize(rng.standard_normal((int(scattered.sum()), DIM)))
    target = ws.store.collection("bench", SpaceInfo("vecs", "synthetic", "", DIM))
    ids, metas, docs = items(n, start)
    step = 5000
    for i in range(0, count, step):
        target.add(ids[i : i + step], vectors[i : i + step], metas[i : i + step], docs[i : i + step])
    return target


def items(n: int, start: int = 0) -> tuple[list[str], list[dict], list[str | None]]:
    """Ids, metadata and documents like ingest writes them: a third text, the rest images."""
    rng = np.random.default_rng(1 + start)
    ids, metas, docs = [], [], []
    for i in range(start, n):
        text = i % 3 == 0
        stem = f"{rng.integers(10**9, 10**10)}_{rng.integers(16**9):09x}"
        ids.append(f"{rng.integers(16**15):015x}{i:017x}:{'chunk-0' if text else 'image'}")
        metas.append({"modality": "text" if text else "image", "added_at": 0,
                      "source": f"flickr8k-300/{'captions' if text else 'images'}/{stem}.{'txt' if text else 'jpg'}"})
        docs.append(f"A black dog runs through the long grass beside a wooden fence while a child in a red coat "
                    f"watches from the path ({i})" if text else None)
    return ids, metas, docs


def figure_mb(frame: pd.DataFrame) -> float:
    return len(plotly.io.to_json(map_figure(frame), validate=False)) / 1e6


def figure_only(sizes: list[int]) -> None:
    """The Map figure's size for frames with random coordinates and the benchmark's items, 30 clusters + noise."""
    for n in sizes:
        ids, metas, docs = items(n)
        rng = np.random.default_rng(2)
        clusters = rng.integers(-1, 30, n)
        frame = pd.DataFrame({
            "id": ids, "x": rng.normal(size=n), "y": rng.normal(size=n), "cluster": clusters,
            "cluster_name": [f"cluster {c} · harbour · gulls" if c >= 0 else "noise" for c in clusters],
            "probability": rng.random(n), "outlier_score": rng.random(n),
            "modality": [m["modality"] for m in metas], "source": [m["source"] for m in metas],
            "snippet": [d or "" for d in docs], "thumbnail": ["" if d else f"/data/media/thumbs/{i}.webp" for i, d in enumerate(docs)],
        })
        print(f"n={n:>7,}: map figure {figure_mb(frame):.2f} MB")


def timed(work) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def clustering_ab(sizes: list[int], rounds: int = 3) -> None:
    """The clustering stage (10-D UMAP, HDBSCAN, and now stability) on N items (a sample of at most 20,000, as
    analyze fits), before and after issue 12, alternating."""
    from dataclasses import replace

    from mmcore.analysis import clusters
    from mmcore.analysis.clusters import Hdbscan, find_clusters, stability
    from mmcore.analysis.maps import Sampling
    from mmcore.analysis.projection import CLUSTER_DIMS, Umap, fit_projection, nearest, use_numba_cache

    use_numba_cache()
    rng = np.random.default_rng(0)
    centers = normalize(rng.standard_normal((40, DIM)))
    for n in sizes:
        fitted = min(n, Sampling().size)
        labels = rng.integers(0, 40, fitted)
        vectors = normalize(centers[labels] + rng.uniform(0.02, 0.06, 40)[labels][:, None] * rng.standard_normal((fitted, DIM)))
        share = fitted / n
        own = nearest(vectors, vectors, 15)
        resolved = Hdbscan().resolved(n)
        old = Hdbscan(resolved.min_cluster_size, resolved.min_cluster_size, "eom")
        old, new = (p if share == 1 else p.scaled(share) for p in (old, resolved))
        times: dict[str, list[float]] = {"before": [], "now": []}
        for _ in range(rounds):
            for which in ("before", "now"):
                started = time.perf_counter()
                if which == "before":
                    saved, clusters.MAX_CLUSTER_SHARE = clusters.MAX_CLUSTER_SHARE, 2.0  # no second look
                    _, coords = fit_projection(vectors, Umap(), CLUSTER_DIMS, own)
                    find_clusters(coords, old)
                    clusters.MAX_CLUSTER_SHARE = saved
                else:
                    _, coords = fit_projection(vectors, replace(Umap(), min_dist=0.0), CLUSTER_DIMS, own)
                    _, found = find_clusters(coords, new)
                    stability(coords, found.labels, new)
                times[which].append(time.perf_counter() - started)
        print(f"n={n:>7,} (fitted on {fitted:,}): clustering stage before {np.median(times['before']):.1f}s "
              f"(HDBSCAN min_samples {old.min_samples}), now {np.median(times['now']):.1f}s (min_samples {new.min_samples}, "
              f"stability included); rounds {[round(t, 1) for t in times['before']]} / {[round(t, 1) for t in times['now']]}; "
              f"load {os.getloadavg()[0]:.1f}", flush=True)


def main(sizes: list[int]) -> None:
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; numba cache {os.environ['NUMBA_CACHE_DIR']}")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            ws = Workspace(Settings(data_dir=Path(tmp)))
            target = collection_of(ws, n)
            cache_dir = vector_cache_dir(ws.settings.data_dir)
            first, again = timed(lambda: read_vectors(target, cache_dir)), timed(lambda: read_vectors(target, cache_dir))
            started = time.perf_counter()
            cold = analyze(ws, "bench", "vecs")
            cold_s = time.perf_counter() - started
            started = time.perf_counter()
            cached = analyze(ws, "bench", "vecs")
            cached_s = time.perf_counter() - started
            assert cached.from_cache
            frame = analysis_frame(target, cold)
            stages = ", ".join(f"{k} {v:.1f}s" for k, v in cold.seconds.items())
            peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
            collection_of(ws, n + n // 100, start=n)
            refreshed = timed(lambda: read_vectors(target, cache_dir))
            print(f"n={n:>7,}: vectors read {first:.2f}s from the store, {again:.3f}s from the cache, "
                  f"{refreshed:.2f}s after adding 1%; load {os.getloadavg()[0]:.1f}")
            print(f"           cold {cold_s:6.1f}s, {cold.method} ({stages}); cached {cached_s:.2f}s; "
                  f"{len(cold.cluster_ids)} clusters; map figure {figure_mb(frame):.2f} MB; peak RSS {peak_gb:.2f} GB")


if __name__ == "__main__":
    sizes = [int(a) for a in sys.argv[1:] if not a.startswith("--")] or [10_000, 50_000]
    if "--figure-only" in sys.argv:
        figure_only(sizes)
    elif "--clustering-ab" in sys.argv:
        clustering_ab(sizes)
    else:
        main(sizes)
