"""Chunks and queries to vectors, for every space built from towers (`embed_texts`, `embed_images`, `embed_audio`).

The one place that dispatches by modality and pools video: ingest (in this process or on Ray) and search call a
space's `embed` / `embed_query`, which families built from towers take from `Towers`. A family with its own idea of
a video (a temporal model) defines `embed_videos(list of frame lists)` and is used for segments instead of the
frame mean.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import normalize

TOWER_OF = {"image": "embed_images", "page": "embed_images", "text": "embed_texts", "audio": "embed_audio"}
QUERY_TOWER = {"image": "embed_images", "text": "embed_texts", "audio": "embed_audio"}


def embed_chunks(space, chunks: Sequence) -> np.ndarray:
    """float32, L2-normalised vectors for chunks of mixed modality, in the chunks' order.

    A video segment (a list of frames) is embedded by the space's `embed_videos` where it has one, else as the
    mean of its frames' image vectors, re-normalised.
    """
    vectors = np.zeros((len(chunks), space.info.dim), dtype=np.float32)
    for modality, method in TOWER_OF.items():
        idx = [i for i, c in enumerate(chunks) if c.modality == modality]
        if idx:
            vectors[idx] = getattr(space, method)([chunks[i].payload for i in idx])
    segments = [i for i, c in enumerate(chunks) if c.modality == "video"]
    if segments and hasattr(space, "embed_videos"):
        vectors[segments] = space.embed_videos([chunks[i].payload for i in segments])
    elif segments:
        frames = [frame for i in segments for frame in chunks[i].payload]
        frame_vectors = space.embed_images(frames)
        ends = np.cumsum([len(chunks[i].payload) for i in segments])
        for i, part in zip(segments, np.split(frame_vectors, ends[:-1])):
            vectors[i] = part.mean(axis=0)
        vectors[segments] = normalize(vectors[segments])
    return vectors


def embed_query(space, kind: str, payloads: Sequence) -> np.ndarray:
    """One vector for a query of `kind` ("text", "image", "audio"): the mean of its parts' vectors (a sound's
    windows), re-normalised; a text or an image is one part."""
    return normalize(getattr(space, QUERY_TOWER[kind])(list(payloads)).mean(axis=0, keepdims=True))[0]


class Towers:
    """The Space methods of a family built from towers: `embed` for chunks, `embed_query` for queries."""

    def embed(self, chunks: Sequence) -> np.ndarray:
        return embed_chunks(self, chunks)

    def embed_query(self, kind: str, payloads: Sequence) -> np.ndarray:
        return embed_query(self, kind, payloads)
