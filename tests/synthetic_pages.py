"""A synthetic multi-vector collection for late interaction: pages of unit token vectors with the structure real ones
have (a few topics per page, details of its own, tokens every page shares), and for each of some pages a query
built from that page's details and topics. Used by tests/test_late_interaction.py and bench/doc.py."""

from __future__ import annotations

import numpy as np


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def synthetic_pages(n_pages: int, dim: int = 128, lengths: tuple[int, int] = (60, 120), n_topics: int = 40,
                    n_queries: int = 50, noise: float = 1.0, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """(pages: float16 token matrices, queries: float32 token matrices, targets: the page each query was built from).

    A page: 20 tokens shared by all pages (a prompt), then tokens near 3 of `n_topics` topics (most of them) or
    near 8 details of its own, with noise. A query: 4 tokens near its page's details, 2 near its topics, 4 near
    the shared tokens (the augmentation tokens real queries end with).
    """
    rng = np.random.default_rng(seed)
    topics = _unit(rng.standard_normal((n_topics, dim)))
    shared = _unit(rng.standard_normal((20, dim)))
    pages, own = [], []
    for _ in range(n_pages):
        n = int(rng.integers(lengths[0], lengths[1] + 1)) - len(shared)
        mine = topics[rng.choice(n_topics, 3, replace=False)]
        details = _unit(rng.standard_normal((8, dim)))
        n_details = max(8, n // 5)
        centres = np.concatenate([mine[rng.integers(0, 3, n - n_details)], details[rng.integers(0, 8, n_details)]])
        tokens = _unit(centres + noise * rng.standard_normal(centres.shape) / np.sqrt(dim))
        pages.append(np.concatenate([shared, tokens]).astype(np.float16))
        own.append((mine, details))
    targets = rng.choice(n_pages, min(n_queries, n_pages), replace=False)
    queries = []
    for page in targets:
        mine, details = own[page]
        centres = np.concatenate([details[rng.choice(8, 4, replace=False)], mine[rng.choice(3, 2, replace=False)],
                                  shared[rng.choice(20, 4, replace=False)]])
        queries.append(_unit(centres + noise * rng.standard_normal(centres.shape) / np.sqrt(dim)).astype(np.float32))
    return pages, queries, targets
