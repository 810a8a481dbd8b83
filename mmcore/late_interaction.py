"""Late interaction (ColBERT, ColPali): a query and a page are each a matrix of unit token vectors, and their score is
MaxSim, the sum over the query's tokens of each one's best match among the page's tokens.

No model here: `mmcore.spaces.doc` makes the token matrices. `PackedPages` holds many pages' tokens in one flat
block with offsets (no padding, so pages of 300 and 1,100 tokens cost what they hold), and `maxsim` scores a query
against all of them, or a subset of candidates, a chunk at a time. `similarity_map` says where on a page a query
matched, from the page's `Tile`s (which token is which patch of which part of the page). `pool_tokens` shrinks a
page's matrix by hierarchical clustering, as ColPali's authors do, to store fewer vectors per page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

# Rows of the packed block multiplied at once: big enough for the matrix product to run at speed, small enough that
# the scores of one chunk (rows x query tokens, float32) stay a few tens of MB.
CHUNK_ROWS = 262_144


@dataclass(frozen=True)
class Tile:
    """A part of a page the model saw as a grid of patches: `rows[i, j]` is the row of the page's token matrix for
    patch (i, j), and `box` is (top, left, bottom, right) of the page it covers, as fractions of its height and width.

    ColPali and ColQwen2 see a page as one tile; ColModernVBert as rows x cols tiles and a shrunk view of the whole.
    """

    rows: np.ndarray
    box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)


class PackedPages:
    """Many pages' token matrices in one block (`tokens`, a torch tensor, rows of every page in order) with
    `offsets` (page i is rows offsets[i]:offsets[i+1]). bfloat16 by default: on a CPU with AVX512-BF16 its matrix
    product runs twice as fast as float32 in half the memory (bench/doc.py measures what it does to rankings).
    """

    def __init__(self, pages: Sequence[np.ndarray], dtype: str = "bfloat16"):
        import torch

        lengths = np.array([len(p) for p in pages], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        dim = pages[0].shape[1] if len(pages) else 0
        # Joined in the pages' own dtype (float16 as stored: half the bytes of a float32 copy), then converted once.
        block = np.concatenate([np.asarray(p) for p in pages]) if len(pages) else np.zeros((0, dim), np.float32)
        if block.dtype not in (np.float16, np.float32):
            block = block.astype(np.float32)
        self.tokens = torch.from_numpy(block).to(getattr(torch, dtype))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def rows_of(self, pages: np.ndarray):
        """The rows of `pages` (indices), one page after another, as a new block."""
        import torch

        if not len(pages):
            return self.tokens[:0]
        # Copied as slices through a numpy view of the same bits: 3x faster than torch's row indexing of bfloat16.
        raw = self.tokens.view({2: torch.int16, 4: torch.int32}[self.tokens.element_size()]).numpy()
        picked = np.concatenate([raw[self.offsets[p]:self.offsets[p + 1]] for p in pages])
        return torch.from_numpy(picked).view(self.tokens.dtype)

    @classmethod
    def joined(cls, kept: "PackedPages", positions: np.ndarray, fresh: "PackedPages | None") -> "PackedPages":
        """A new block of `kept`'s pages at `positions`, then every page of `fresh` (of the same dimension), if any.
        Runs of consecutive positions are copied a slice each, straight into the new block."""
        import torch

        block = cls.__new__(cls)
        lengths = [kept.lengths[positions]] + ([] if fresh is None else [fresh.lengths])
        block.offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths))]).astype(np.int64)
        block.tokens = torch.empty((int(block.offsets[-1]), kept.tokens.shape[1]), dtype=kept.tokens.dtype)
        breaks = np.flatnonzero(np.diff(positions) != 1) + 1
        for first, last in zip(np.concatenate([[0], breaks]), np.concatenate([breaks, [len(positions)]])):
            if last > first:
                rows = kept.tokens[kept.offsets[positions[first]]:kept.offsets[positions[last - 1] + 1]]
                block.tokens[block.offsets[first]:block.offsets[first] + len(rows)] = rows
        if fresh is not None:
            block.tokens[block.offsets[len(positions)]:] = fresh.tokens
        return block

    def nbytes(self) -> int:
        return self.tokens.element_size() * self.tokens.numel()


def maxsim(query: np.ndarray, pages: PackedPages | Sequence[np.ndarray], subset: Sequence[int] | None = None) -> np.ndarray:
    """MaxSim of a query's token matrix (n x dim) against every page (or only the pages at `subset`, in its order):
    float32 scores, one per page. A page without tokens scores 0.
    """
    import torch

    if not isinstance(pages, PackedPages):
        pages = PackedPages(pages)
    query_t = torch.from_numpy(np.asarray(query, dtype=np.float32)).to(pages.tokens.dtype)
    if subset is None:
        return _segment_maxsim(query_t, pages.tokens, pages.offsets)
    idx = np.asarray(subset, dtype=np.int64)
    return _segment_maxsim(query_t, pages.rows_of(idx), np.concatenate([[0], np.cumsum(pages.lengths[idx])]))


def _segment_maxsim(query, block, offsets: np.ndarray) -> np.ndarray:
    """Sum over query tokens of the max over each segment of `block` (segments cut at `offsets`)."""
    n = len(offsets) - 1
    scores = np.zeros(n, dtype=np.float32)
    lengths = np.diff(offsets)
    page = 0
    while page < n:
        # Whole pages per chunk, at least one, so each page's max is taken within one product.
        last = max(page + 1, int(np.searchsorted(offsets, offsets[page] + CHUNK_ROWS, side="right")) - 1)
        last = min(last, n)
        start, end = offsets[page], offsets[last]
        if end > start:
            # (query tokens, rows): each page's maximum is then taken along contiguous memory, 2.5x faster than
            # over the rows of a (rows, query tokens) block (bench/RESULTS.md).
            sims = (query @ block[start:end].T).float().numpy()
            filled = np.flatnonzero(lengths[page:last])
            best = np.maximum.reduceat(sims, (offsets[page:last] - start)[filled], axis=1)
            scores[page + filled] = best.sum(axis=0)
        page = last
    return scores


class Summaries:
    """Each page of a `PackedPages` as a few vectors (`k`): its rows in k clusters by spherical k-means (started from
    k evenly spaced rows, a few rounds), each cluster's mean renormalised. MaxSim against them ranks every page in a
    fraction of exact MaxSim's time and keeps the pages exact MaxSim ranks high among the first few hundred (PLAID's
    centroid interaction, with centroids per page instead of a shared codebook; bench/doc.py measures recall).
    `vectors` is (pages, k, dim) bfloat16; a page with fewer than k rows repeats some, one without rows is zeros."""

    def __init__(self, pages: PackedPages, k: int = 8, rounds: int = 3, chunk: int = 32):
        import torch

        dim = pages.tokens.shape[1]
        self.vectors = torch.zeros((len(pages), k, dim), dtype=pages.tokens.dtype)
        raw = pages.tokens.view({2: torch.int16, 4: torch.int32}[pages.tokens.element_size()])  # same bits, fast rows
        lengths = torch.from_numpy(pages.lengths)
        for first in range(0, len(pages), chunk):
            n = lengths[first:first + chunk]
            if int(n.max()) == 0:
                continue
            steps = torch.arange(int(n.max()))
            rows = torch.from_numpy(pages.offsets[:-1][first:first + chunk])[:, None] + steps[None, :]
            # Padded to the chunk's longest page with zero rows: they add nothing to a cluster's sum, whichever they join.
            x = raw[rows.clamp_max(len(raw) - 1)].masked_fill_((steps[None, :] >= n[:, None])[..., None], 0)
            x = x.view(pages.tokens.dtype)
            starts = (torch.linspace(0, 1, k)[None, :] * (n - 1).clamp_min(0)[:, None]).round().long()
            centres = torch.gather(x, 1, starts[..., None].expand(-1, -1, dim))
            for _ in range(rounds):
                sims = torch.bmm(x, centres.transpose(1, 2))
                # Each row's cluster as a one-hot matrix (ties in all they tie in): the sums are one more product.
                member = (sims == sims.amax(-1, keepdim=True)).to(x.dtype)
                sums = torch.bmm(member.transpose(1, 2), x).float()
                norms = sums.norm(dim=-1, keepdim=True)
                centres = torch.where(norms > 0, sums / norms.clamp_min(1e-12), centres.float()).to(x.dtype)
            self.vectors[first:first + len(n)] = centres

    @classmethod
    def joined(cls, kept: "Summaries", positions: np.ndarray, fresh: "Summaries | None") -> "Summaries":
        """The summaries of `PackedPages.joined(...)` over the pages these summed up: `kept`'s at `positions`, then
        `fresh`'s (with as many vectors a page), if any."""
        import torch

        summaries = cls.__new__(cls)
        picked = kept.vectors[torch.from_numpy(np.asarray(positions, dtype=np.int64))]
        summaries.vectors = picked if fresh is None else torch.cat([picked, fresh.vectors])
        return summaries

    def scores(self, query: np.ndarray) -> np.ndarray:
        """Every page's MaxSim against its summary vectors (float32): sum over query tokens of the best one."""
        import torch

        pages, k, dim = self.vectors.shape
        query_t = torch.from_numpy(np.asarray(query, dtype=np.float32)).to(self.vectors.dtype)
        sims = self.vectors.reshape(pages * k, dim) @ query_t.T  # rows x query tokens: the fast orientation here
        return sims.view(pages, k, -1).amax(dim=1).float().sum(dim=1).numpy()


def similarity_map(query: np.ndarray, page: np.ndarray, grid: Sequence[Tile]) -> np.ndarray:
    """Where on the page the query matched: per patch, the best similarity any query token has with it, painted
    over the whole page (rows x cols at the finest tile's resolution; where tiles overlap, the higher value)."""
    sims = np.asarray(page, dtype=np.float32) @ np.asarray(query, dtype=np.float32).T
    return page_map(sims.max(axis=1), grid)


def regrouped(grid: Sequence[Tile], groups: np.ndarray) -> tuple[Tile, ...]:
    """The tiles of a page stored pooled (`groups[row]`: the stored row that token row went into): each patch
    points at its group's row, so `similarity_map` paints every patch with the value of the row standing for it."""
    return tuple(Tile(np.asarray(groups)[tile.rows], tile.box) for tile in grid)


def page_map(values: np.ndarray, grid: Sequence[Tile]) -> np.ndarray:
    """A value per token row (`values[row]`) painted over the page through its tiles: a float32 array whose cells
    are the page's patches at the finest tile's resolution; each cell takes the highest value of the tiles over it."""
    height = max(round(t.rows.shape[0] / (t.box[2] - t.box[0])) for t in grid)
    width = max(round(t.rows.shape[1] / (t.box[3] - t.box[1])) for t in grid)
    ys, xs = (np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width  # cell centres, page fractions
    out = np.full((height, width), -np.inf, dtype=np.float32)
    for tile in grid:
        top, left, bottom, right = tile.box
        inside_y = np.flatnonzero((ys >= top) & (ys < bottom))
        inside_x = np.flatnonzero((xs >= left) & (xs < right))
        i = np.minimum(((ys[inside_y] - top) / (bottom - top) * tile.rows.shape[0]).astype(int), tile.rows.shape[0] - 1)
        j = np.minimum(((xs[inside_x] - left) / (right - left) * tile.rows.shape[1]).astype(int), tile.rows.shape[1] - 1)
        painted = np.asarray(values, dtype=np.float32)[tile.rows[np.ix_(i, j)]]
        block = out[np.ix_(inside_y, inside_x)]
        out[np.ix_(inside_y, inside_x)] = np.maximum(block, painted)
    return out


def cluster_tokens(tokens: np.ndarray, factor: float) -> np.ndarray:
    """Cluster labels (0 .. k-1, k = ceil(n / factor)) of a page's token rows: Ward's hierarchical clustering of the
    unit vectors (Euclidean distance between them is monotone in cosine distance), cut into k clusters."""
    from scipy.cluster.hierarchy import fcluster, linkage

    tokens = np.asarray(tokens, dtype=np.float32)
    n = len(tokens)
    k = max(1, int(np.ceil(n / factor)))
    if n <= 1 or k >= n:
        return np.arange(n)
    labels = fcluster(linkage(tokens.astype(np.float64), method="ward"), t=k, criterion="maxclust")
    _, labels = np.unique(labels, return_inverse=True)  # 0 .. k-1, even if the cut gave fewer clusters
    return labels


def pool_tokens(tokens: np.ndarray, factor: float, labels: np.ndarray | None = None) -> np.ndarray:
    """A page's token matrix shrunk about `factor`-fold (ColPali's hierarchical token pooling): its rows clustered
    (`cluster_tokens`, or the `labels` given), each cluster's mean renormalised, in the dtype of `tokens`."""
    labels = cluster_tokens(tokens, factor) if labels is None else np.asarray(labels)
    rows = np.asarray(tokens, dtype=np.float32)
    sums = np.zeros((labels.max() + 1 if len(labels) else 0, rows.shape[1]), dtype=np.float32)
    np.add.at(sums, labels, rows)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.maximum(norms, 1e-12)).astype(np.asarray(tokens).dtype)
