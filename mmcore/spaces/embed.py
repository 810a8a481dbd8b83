"""Chunks and queries to vectors, for every space built from towers (`embed_texts`, `embed_images`, `embed_audio`).

The one place that dispatches by modality and pools video: ingest (in this process or on Ray) and search call a
space's `embed` / `embed_query`, which families built from towers take from `Towers`. A family with its own idea of
a video (a temporal model) defines `embed_videos(list of frame lists)` and is used for segments instead of the
frame mean. A family that embeds a whole video file at once (a hosted model) defines
`embed_video_file(mmcore.media.Source) -> (vectors, spans)`: one vector per segment of its own, which are matched
to the file's segments by their start and end.

A space that can't embed one file of a batch (a hosted model refused it) raises `FilesFailed` from `embed`, with
the vectors of the rest; `embed_in_spaces` turns that into a reason for each of that file's chunks, so only that
file fails.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Mapping, Sequence

import numpy as np

from ..errors import MediaError, MMError
from . import normalize
from .registry import spec_of

# A hosted model may leave out a short last piece of a video (Twelve Labs' v1 dropped one under 2 s): a segment no
# piece of the model's overlaps takes the nearest one this close in time.
MAX_GAP_S = 2.0


class FilesFailed(MMError):
    """A space embedded some chunks and could not embed others' files: `vectors` has a row per chunk (zeros for
    those that failed), `reasons` maps the index of each failed chunk to why its file failed."""

    def __init__(self, vectors: np.ndarray, reasons: dict[int, str]):
        super().__init__(f"{len(reasons)} chunk(s) could not be embedded: {next(iter(reasons.values()))}")
        self.vectors, self.reasons = vectors, reasons


def embed_in_spaces(spaces: Mapping[str, object], chunks: Sequence) \
        -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]], list[str | None]]:
    """Each chunk's vector in every space of `spaces` (name -> loaded space) that takes its modality (space ->
    vector), its token matrix in every multi-vector space among them (space -> matrix; from the same forward pass),
    and per chunk why its file could not be embedded (None where it was).

    Raises whatever a model raises other than FilesFailed; the vectors are then incomplete.
    """
    vectors: list[dict[str, np.ndarray]] = [{} for _ in chunks]
    tokens: list[dict[str, np.ndarray]] = [{} for _ in chunks]
    failed: list[str | None] = [None] * len(chunks)
    for name, space in spaces.items():
        own = [i for i, c in enumerate(chunks) if spec_of(name).takes(c.modality)]
        if not own:
            continue
        try:
            if spec_of(name).multivector:
                rows, matrices = space.embed_with_tokens([chunks[i] for i in own])
                for i, matrix in zip(own, matrices):
                    tokens[i][name] = matrix
            else:
                rows = space.embed([chunks[i] for i in own])
        except FilesFailed as e:
            rows = e.vectors
            for j, reason in e.reasons.items():
                failed[own[j]] = failed[own[j]] or reason
        for i, row in zip(own, rows):
            vectors[i][name] = row
    return vectors, tokens, failed

TOWER_OF = {"image": "embed_images", "page": "embed_images", "text": "embed_texts", "audio": "embed_audio"}
QUERY_TOWER = {"image": "embed_images", "text": "embed_texts", "audio": "embed_audio"}


PREPARED_MODALITIES = ("image", "page")


def prepare_decoded(spaces: Mapping[str, object], decoded):
    """`decoded` with the model inputs of its pictures made ahead, for every space that does (`prepares_ahead`: one
    on an accelerator) and takes their modality: an ingest calls it in its decoder threads, so the model's thread (a
    GPU's feeder) only runs the model. A file read lazily (a stream of chunks) is left as it is."""
    if not isinstance(decoded.chunks, list) or not any(c.modality in PREPARED_MODALITIES for c in decoded.chunks):
        return decoded
    ahead = {name: space for name, space in spaces.items() if getattr(space, "prepares_ahead", False)}
    takers = {m: {name: space for name, space in ahead.items() if m in spec_of(name).modalities} for m in PREPARED_MODALITIES}
    chunks = [replace(chunk, prepared={name: space.prepare_image(chunk.payload) for name, space in taking.items()})
              if (taking := takers.get(chunk.modality)) and chunk.payload is not None else chunk
              for chunk in decoded.chunks]
    return replace(decoded, chunks=chunks)


def embed_chunks(space, chunks: Sequence) -> np.ndarray:
    """float32, L2-normalised vectors for chunks of mixed modality, in the chunks' order.

    A video segment (a list of frames) is embedded from its whole file by the space's `embed_video_file` where it
    has one, else by its `embed_videos`, else as the mean of its frames' image vectors, re-normalised.

    Raises:
        FilesFailed: `embed_video_file` refused some files (the other chunks' vectors are in it).
    """
    vectors = np.zeros((len(chunks), space.info.dim), dtype=np.float32)
    name = space.info.space
    for modality, method in TOWER_OF.items():
        idx = [i for i, c in enumerate(chunks) if c.modality == modality]
        if idx and all(chunks[i].prepared and name in chunks[i].prepared for i in idx):
            vectors[idx] = space.embed_prepared_images([chunks[i].prepared[name] for i in idx])
        elif idx:
            vectors[idx] = getattr(space, method)([chunks[i].payload for i in idx])
    segments = [i for i, c in enumerate(chunks) if c.modality == "video"]
    if segments and hasattr(space, "embed_video_file"):
        reasons = {}
        for idx in _by_file(space, chunks, segments):
            source = chunks[idx[0]].source
            try:
                found, spans = space.embed_video_file(source)
                for i in idx:
                    vectors[i] = match_segment(found, spans, chunks[i].locator, source.name)
            except MediaError as e:
                reasons.update({i: e.reason for i in idx})
        if reasons:
            raise FilesFailed(vectors, reasons)
    elif segments and hasattr(space, "embed_videos"):
        vectors[segments] = space.embed_videos([chunks[i].payload for i in segments])
    elif segments:
        frames = [frame for i in segments for frame in chunks[i].payload]
        frame_vectors = space.embed_images(frames)
        ends = np.cumsum([len(chunks[i].payload) for i in segments])
        for i, part in zip(segments, np.split(frame_vectors, ends[:-1])):
            vectors[i] = part.mean(axis=0)
        vectors[segments] = normalize(vectors[segments])
    return vectors


def match_segment(vectors: np.ndarray, spans: Sequence[tuple[float, float]], locator: dict, name: str) -> np.ndarray:
    """The vector of the segment at `locator` (start_s, end_s) from a model's own segments (`spans[i]` = (start,
    end) of `vectors[i]`): the mean of those it overlaps, weighted by the overlap, re-normalised; where none
    overlaps, the nearest within MAX_GAP_S. Raises MediaError naming the file when none is that close."""
    start, end = float(locator["start_s"]), float(locator["end_s"])
    bounds = np.asarray(spans, dtype=np.float64).reshape(-1, 2)
    overlap = np.clip(np.minimum(bounds[:, 1], end) - np.maximum(bounds[:, 0], start), 0.0, None)
    if overlap.sum() > 0:
        return normalize((overlap[:, None] * vectors).sum(axis=0, keepdims=True))[0]
    gap = np.maximum(bounds[:, 0] - end, start - bounds[:, 1])
    nearest = int(np.argmin(gap)) if len(gap) else -1
    if nearest < 0 or gap[nearest] > MAX_GAP_S:
        raise MediaError(name, f"the model returned no vectors for seconds {start:g}-{end:g} of it")
    return normalize(vectors[nearest:nearest + 1])[0]


def _by_file(space, chunks: Sequence, segments: list[int]) -> list[list[int]]:
    """The indices of video segments grouped by the file they were cut from, in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for i in segments:
        if chunks[i].source is None:
            raise MMError(f"the {space.info.space} space embeds whole video files: a segment came without its file")
        groups.setdefault(id(chunks[i].source), []).append(i)
    return list(groups.values())


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


class ModelTowers(Towers):
    """Towers of a transformers model and its processor (clip, clap, xclip, bind): the state they share, and text cut
    into windows by the processor's tokenizer."""

    def __init__(self, model, processor, info, device: str, batch_size: int):
        self.model, self.processor, self.info, self.device, self.batch_size = model, processor, info, device, batch_size
        # A fast tokenizer keeps its padding/truncation settings between calls, so sessions (threads) sharing this
        # space would reset each other's mid-call; the other processors and the forward pass are safe to share.
        self._tokenizer_lock = threading.Lock()

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        with self._tokenizer_lock:
            encoded = self.processor.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(span) for span in encoded["offset_mapping"]]
