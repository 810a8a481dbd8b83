"""Analysis time (map + clusters + outliers) for N items, cold and cached, and the Map figure's size.

Synthetic data shaped like a real collection: 512-d unit vectors in 40 clusters of varied spread plus 1%
scattered points, written to a real embedded Chroma store in a temporary data dir. Prints figures; asserts
nothing. Usage: python bench/analysis.py [N ...]   (default: 10000 50000)
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))

from mmcore.analysis.figures import map_figure  # noqa: E402
from mmcore.analysis.frame import analysis_frame  # noqa: E402
from mmcore.analysis.maps import analyze  # noqa: E402
from mmcore.config import Settings  # noqa: E402
from mmcore.spaces import SpaceInfo, normalize  # noqa: E402
from mmcore.workspace import Workspace  # noqa: E402

DIM = 512


def collection_of(ws: Workspace, n: int):
    rng = np.random.default_rng(0)
    centers = normalize(rng.standard_normal((40, DIM)))
    labels = rng.integers(0, 40, n)
    spread = rng.uniform(0.02, 0.06, 40)[labels][:, None]
    vectors = normalize(centers[labels] + spread * rng.standard_normal((n, DIM)))
    scattered = rng.random(n) < 0.01
    vectors[scattered] = normalize(rng.standard_normal((int(scattered.sum()), DIM)))
    target = ws.store.collection("bench", SpaceInfo("vecs", "synthetic", "", DIM))
    ids = [f"item-{i:06d}" for i in range(n)]
    metas = [{"modality": "image", "source": f"img/{i}.jpg", "added_at": 0} for i in range(n)]
    step = 5000
    for i in range(0, n, step):
        target.add(ids[i : i + step], vectors[i : i + step], metas[i : i + step], [None] * len(ids[i : i + step]))
    return target


def main(sizes: list[int]) -> None:
    print(f"machine: {os.cpu_count()} cores; numba cache {os.environ['NUMBA_CACHE_DIR']}")
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            ws = Workspace(Settings(data_dir=Path(tmp)))
            target = collection_of(ws, n)
            started = time.perf_counter()
            cold = analyze(ws, "bench", "vecs")
            cold_s = time.perf_counter() - started
            started = time.perf_counter()
            cached = analyze(ws, "bench", "vecs")
            cached_s = time.perf_counter() - started
            assert cached.from_cache
            frame = analysis_frame(target, cold)
            figure_mb = len(map_figure(frame).to_json()) / 1e6
            stages = ", ".join(f"{k} {v:.1f}s" for k, v in cold.seconds.items())
            peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
            print(f"n={n:>7,}: cold {cold_s:6.1f}s ({stages}); cached {cached_s:.2f}s; "
                  f"{len(cold.cluster_ids)} clusters; map figure {figure_mb:.1f} MB; peak RSS {peak_gb:.2f} GB")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10_000, 50_000])
