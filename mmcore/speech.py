"""Speech: transcripts of audio and of videos' sound tracks with a Whisper-family model (MMCORE_ASR_MODEL).

A transcript becomes text items in the spaces that embed text, one per window of the file's own audio windows or video
segments, so "where does someone say X" finds the segment. Off unless a model is configured.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .config import Settings
from .errors import MediaError, MMError, ModelUnavailable
from .media.audio import decode_track
from .media.base import Chunk, ReadOptions
from .media.text import text_windows
from .models import LoadedOnce
from .spaces.hf import load_pretrained, revision

SUGGESTED_MODEL = "openai/whisper-base"
HOW_TO_PROVIDE = (
    "To use it offline, download it on a machine with internet access "
    "(`hf download {model} --local-dir ./models/whisper`), copy that folder here and set "
    "MMCORE_ASR_MODEL=./models/whisper; or set MMCORE_ASR_MODEL to the hub id or local folder of another "
    "Whisper checkpoint that has model.safetensors, or unset MMCORE_ASR_MODEL to ingest without transcripts."
)
PIECE_S = 600.0  # longer audio is transcribed in pieces of about this length, so its spectrogram stays small
QUIET_SEARCH_S = 20.0  # a piece ends at the quietest tenth of a second in its last this many seconds


@dataclass(frozen=True)
class Segment:
    """A stretch of speech: its start and end in seconds from the start of the audio, and what was said."""

    start_s: float
    end_s: float
    text: str


class Transcriber:
    """A loaded Whisper-family model that turns mono audio into timed text segments."""

    def __init__(self, model, processor, source: str, device: str):
        self.model = model
        self.processor = processor
        self.source = source
        self.revision = revision(model)
        self.device = device

    @classmethod
    def load(cls, model: str, device: str | None = None) -> "Transcriber":
        """Load a checkpoint by hub id (cache first, then the hub) or local folder: safetensors only, no remote code.

        Raises:
            ModelUnavailable: it is neither cached nor reachable, has no safetensors weights, or isn't Whisper.
        """
        net, processor, source, device = load_pretrained(
            model, "speech-recognition", HOW_TO_PROVIDE, SUGGESTED_MODEL, device, auto_class="AutoModelForSpeechSeq2Seq"
        )
        if net.config.model_type != "whisper" or not hasattr(processor, "feature_extractor"):
            raise ModelUnavailable(
                f"MMCORE_ASR_MODEL={model!r} is a {type(net).__name__}, not a Whisper-family model; mmscope needs "
                "Whisper's timestamps to place transcripts in time."
            )
        return cls(net, processor, source, device)

    @property
    def sampling_rate(self) -> int:
        """The rate, in Hz, of the samples `transcribe` takes (16 kHz for Whisper)."""
        return int(self.processor.feature_extractor.sampling_rate)

    def transcribe(self, samples: np.ndarray, piece_s: float = PIECE_S) -> list[Segment]:
        """Timed segments of the speech in `samples` (mono float32 at `sampling_rate`), in order; none for silence.

        Whisper reads 30 s at a time and moves on from its last timestamp; audio longer than `piece_s` is fed in
        pieces cut where it is quietest. Times are clamped to the audio's length.
        """
        rate = self.sampling_rate
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        segments: list[Segment] = []
        cuts = _cut_points(samples, rate, piece_s)
        for start, end in zip(cuts, cuts[1:]):
            offset, length = start / rate, (end - start) / rate
            for seg in self._segments(samples[start:end]):
                seg_start, seg_end = float(seg["start"]), float(seg["end"])
                text = self.processor.tokenizer.decode(seg["tokens"], skip_special_tokens=True).strip()
                if text and seg_start < length:  # past the end is the padding, where models make things up
                    begin = round(offset + max(0.0, seg_start), 3)
                    segments.append(Segment(begin, max(begin, round(offset + min(seg_end, length), 3)), text))
        return segments

    def _segments(self, samples: np.ndarray) -> list[dict]:
        import torch

        extractor = self.processor.feature_extractor
        long_form = len(samples) > extractor.n_samples  # longer than one 30 s window: keep all of it, unpadded
        features = extractor(
            samples, sampling_rate=self.sampling_rate, return_tensors="pt", return_attention_mask=True,
            **({"truncation": False, "padding": "longest"} if long_form else {}),
        )
        # A multilingual checkpoint detects the language; "transcribe" keeps it from translating to English.
        task = {"task": "transcribe"} if hasattr(self.model.generation_config, "task_to_id") else {}
        with torch.inference_mode():
            out = self.model.generate(
                features["input_features"].to(self.device, self.model.dtype),
                attention_mask=features["attention_mask"].to(self.device),
                return_timestamps=True,
                return_segments=True,
                **task,
            )
        return out["segments"][0]


def transcript_chunks(
    transcriber: Transcriber, name: str, data: bytes, timed: Sequence[Chunk], options: ReadOptions
) -> list[Chunk]:
    """Text chunks of what is said in the file, one per window of `timed` (its audio windows or video segments).

    Each window's segments (by their midpoint) are joined; a window with no speech gets no chunk, and one over
    the CLIP token limit is split into token windows (locator char_start/char_end). A chunk has its window's
    start_s/end_s and picture, and meta transcript=True. A file without a sound track gives none.
    Raises:
        MediaError: the sound track can't be decoded or the model fails on it.
    """
    samples = decode_track(name, data, transcriber.sampling_rate, options.max_media_seconds)
    windows = sorted((c for c in timed if "start_s" in c.locator), key=lambda c: c.locator["start_s"])
    if samples is None or not len(samples) or not windows:
        return []
    try:
        segments = transcriber.transcribe(samples)
    except Exception as e:  # a model failing on one file must not stop the others
        raise MediaError(name, f"speech recognition failed on its sound track ({type(e).__name__}: {e})") from None
    starts = [c.locator["start_s"] for c in windows]
    said: dict[int, list[str]] = {}
    for seg in segments:
        k = max(0, bisect.bisect_right(starts, (seg.start_s + seg.end_s) / 2) - 1)
        said.setdefault(k, []).append(seg.text)
    chunks = []
    for k, texts in sorted(said.items()):
        window, text = windows[k], " ".join(texts)
        span = {"start_s": window.locator["start_s"], "end_s": window.locator["end_s"]}
        pieces = text_windows(text, options.token_spans, options.max_tokens, options.overlap_tokens)
        for a, b in pieces if len(pieces) > 1 else [(0, len(text))]:
            chars = {"char_start": a, "char_end": b} if len(pieces) > 1 else {}
            chunks.append(Chunk("text", text[a:b], {**span, **chars}, {"transcript": True}, window.thumbnail))
    return chunks


_models: LoadedOnce[Transcriber] = LoadedOnce()


def get_transcriber(settings: Settings) -> Transcriber:
    """The speech-recognition model the settings name, loaded on first use and shared after.

    Raises:
        MMError: no model is configured (MMCORE_ASR_MODEL is unset).
        ModelUnavailable: the model can't be found locally or downloaded, or isn't a Whisper-family model.
    """
    if not settings.asr_model:
        raise MMError("speech recognition is off: set MMCORE_ASR_MODEL to a Whisper model to transcribe speech")
    return _models.get(_key(settings), lambda: Transcriber.load(settings.asr_model, device=settings.device))


def is_loaded(settings: Settings) -> bool:
    """Whether the settings' speech-recognition model is already loaded in this process."""
    return bool(settings.asr_model) and _models.is_loaded(_key(settings))


def load_failure(settings: Settings) -> str | None:
    """Why the last attempt to load the speech model failed, or None (loaded, or not tried yet)."""
    return _models.failure(_key(settings))


def _key(settings: Settings) -> tuple:
    return (settings.asr_model, settings.device)


def _cut_points(samples: np.ndarray, rate: int, piece_s: float) -> list[int]:
    """Sample indexes that cut `samples` into pieces of at most `piece_s` seconds, first 0 and last the end."""
    piece, hop = max(1, int(piece_s * rate)), max(1, rate // 10)
    search = min(piece // 2, int(QUIET_SEARCH_S * rate)) // hop * hop
    cuts = [0]
    while len(samples) - cuts[-1] > piece:
        end = cuts[-1] + piece
        if search < hop:
            cuts.append(end)
            continue
        frames = samples[end - search : end].reshape(-1, hop)
        cuts.append(end - search + int(np.argmin(np.square(frames).mean(axis=1))) * hop + hop // 2)
    return cuts + [len(samples)]
