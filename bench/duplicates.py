"""Near-duplicate search time for N random 512-d vectors with planted duplicates, in memory (no store).

Half images, half texts; 1% of the items get a near-copy of the same modality (cosine 0.96-0.995) and 0.5%
a caption-like partner of the other modality (cosine 0.45-0.6). Prints the time, the sets found and how
many of the planted pairs they hold; asserts nothing. Usage: python bench/duplicates.py [N ...]
(default: 10000 50000)
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmcore.analysis.duplicates import Thresholds, find_duplicates  # noqa: E402
from mmcore.spaces import normalize  # noqa: E402
from mmcore.store import Items  # noqa: E402

DIM = 512


def near(rng, v: np.ndarray, similarity: np.ndarray) -> np.ndarray:
    """Rows with exactly the given cosine similarity to the rows of v."""
    noise = rng.standard_normal(v.shape)
    noise -= (noise * v).sum(axis=1, keepdims=True) * v
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return similarity[:, None] * v + np.sqrt(1 - similarity[:, None] ** 2) * noise


def planted(n: int, rng) -> tuple[Items, set[tuple[str, str]]]:
    copies, captions = n // 100, n // 200
    base_n = n - copies - captions
    vectors = normalize(rng.standard_normal((base_n, DIM)))
    modalities = ["image" if i % 2 == 0 else "text" for i in range(base_n)]
    twins = rng.choice(base_n, copies + captions, replace=False)
    similarity = np.concatenate([rng.uniform(0.96, 0.995, copies), rng.uniform(0.45, 0.6, captions)])
    vectors = np.concatenate([vectors, near(rng, vectors[twins], similarity)]).astype(np.float32)
    flip = {"image": "text", "text": "image"}
    modalities += [modalities[t] if k < copies else flip[modalities[t]] for k, t in enumerate(twins)]
    ids = [f"item-{i:06d}" for i in range(n)]
    truth = {tuple(sorted((ids[t], ids[base_n + k]))) for k, t in enumerate(twins)}
    metas = [{"modality": m, "added_at": i} for i, m in enumerate(modalities)]
    return Items(ids, vectors, metas, [None] * n), truth


def main(sizes: list[int]) -> None:
    print(f"machine: {os.cpu_count()} cores; {DIM}-d float32; default thresholds {Thresholds()}")
    for n in sizes:
        items, truth = planted(n, np.random.default_rng(0))
        started = time.perf_counter()
        sets = find_duplicates(items, Thresholds())
        seconds = time.perf_counter() - started
        found = {tuple(sorted(p[:2])) for s in sets for p in s.pairs}
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"{n:>7,} items: {seconds:6.1f} s, {len(sets):,} sets, {len(found & truth):,}/{len(truth):,} planted "
              f"pairs found, {len(found - truth):,} others; peak RSS {rss:.1f} GB")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10_000, 50_000])
