"""The one k-nearest-neighbour graph an analysis is built on (cosine), found once and shared by every stage: both
UMAPs and their placements, the GLOSH outlier scores (core distances and the minimum spanning tree) and the
placing of items outside a sample.

Exact, by blocked matrix products on torch, which use every core: on CPUs with bfloat16 dot products (AVX512-BF16,
AMX) a bfloat16 pass finds each query's best `k + RESCORED` candidates at twice float32's speed and their
distances are then computed in float32, so the neighbours are float32's own up to ties (recall 0.998-1.0 on real
text and image vectors, bench/RESULTS.md); other CPUs run the float32 pass alone.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BLOCK_FLOATS = 32_000_000  # similarities held at once (128 MB in float32)
RESCORED = 16  # extra candidates of the bfloat16 pass scored again in float32


@dataclass(frozen=True)
class Neighbours:
    """Each query's nearest points, nearest first: indices int32 [m, k] and cosine distances float32 [m, k]."""

    indices: np.ndarray
    distances: np.ndarray

    @property
    def k(self) -> int:
        return self.indices.shape[1]

    def first(self, k: int) -> "Neighbours":
        """The `k` nearest of each query."""
        return self if k == self.k else Neighbours(self.indices[:, :k], self.distances[:, :k])

    def rows(self, rows: np.ndarray) -> "Neighbours":
        return Neighbours(self.indices[rows], self.distances[rows])


@functools.cache
def fast_bf16() -> bool:
    """True on a CPU with bfloat16 dot-product instructions, where torch's bfloat16 matrix product is about twice
    as fast as float32 (elsewhere it is emulated, and slower)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def nearest(queries: np.ndarray, points: np.ndarray, k: int, rough: bool | None = None, rows: np.ndarray | None = None) -> Neighbours:
    """The `k` nearest `points` (cosine) of each of `queries` (of `queries[rows]`, read a block at a time, when
    `rows` is given), nearest first.

    Distances below 1e-6 count as 0: a point is its own nearest neighbour at distance 0, as UMAP expects.
    `rough`: use the bfloat16 candidate pass (default: where the CPU makes it faster).
    """
    import torch  # its matrix product and top-k use every core; numpy's argpartition is 3x slower here

    k = min(k, len(points))
    count = len(queries) if rows is None else len(rows)
    if count == 0 or k == 0:
        return Neighbours(np.zeros((count, k), dtype=np.int32), np.zeros((count, k), dtype=np.float32))
    base = torch.from_numpy(_unit(points))
    pool = min(len(points), k + RESCORED)
    rough = (fast_bf16() if rough is None else rough) and pool < len(points)
    base_rough = base.bfloat16() if rough else None
    block = max(1, BLOCK_FLOATS // max(len(points), 1))
    indices, distances = [], []
    for start in range(0, count, block):
        q = torch.from_numpy(_unit(queries[start : start + block] if rows is None else queries[rows[start : start + block]]))
        if rough:
            candidates = torch.topk(q.bfloat16() @ base_rough.T, pool, dim=1).indices
            sims, order = torch.topk(_rescored(base, q, candidates), k, dim=1)
            idx = candidates.gather(1, order)
        else:
            sims, idx = torch.topk(q @ base.T, k, dim=1)
        indices.append(idx.numpy().astype(np.int32))
        distances.append(np.clip(1.0 - sims.numpy(), 0.0, 2.0))
    found = np.concatenate(distances)
    found[found < 1e-6] = 0.0
    return Neighbours(np.concatenate(indices), found)


def _rescored(base, queries, candidates):
    """The float32 similarity of each query with each of its candidate points (rows of `base`)."""
    import torch

    rows = max(1, BLOCK_FLOATS // (candidates.shape[1] * base.shape[1]))  # candidate vectors gathered at once
    return torch.cat([torch.einsum("qd,qcd->qc", queries[i : i + rows],
                                   torch.index_select(base, 0, candidates[i : i + rows].reshape(-1)).view(
                                       *candidates[i : i + rows].shape, -1))
                      for i in range(0, len(queries), rows)])


def _unit(vectors: np.ndarray) -> np.ndarray:
    v = np.array(vectors, dtype=np.float32)  # a copy: torch wants writable memory and the caller's stays as it is
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(norms > 0, norms, 1)
