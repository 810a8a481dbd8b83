"""Synthetic audio for tests: tones, noise and silence as WAV (stdlib `wave`) or encoded with PyAV."""

from __future__ import annotations

import io
import wave
from typing import Sequence

import numpy as np

# Extension -> (PyAV container format, encoder, sample rate the encoder accepts or None for any).
ENCODINGS = {
    ".flac": ("flac", "flac", None),
    ".mp3": ("mp3", "libmp3lame", None),
    ".ogg": ("ogg", "libopus", 48_000),  # ffmpeg's native Vorbis encoder is experimental: Opus in Ogg instead
    ".m4a": ("ipod", "aac", None),
}


def signal(seconds: float, rate: int = 16_000, freqs: float | Sequence[float] = 440.0, noise: float = 0.0,
           amplitude: float = 0.5, seed: int = 0) -> np.ndarray:
    """Mono float32 samples: a sine at `freqs`, or equal consecutive segments at each of them (0 = silence)."""
    n = int(round(seconds * rate))
    freqs = [freqs] if np.isscalar(freqs) else list(freqs)
    per_sample = np.asarray(freqs, dtype=np.float64)[np.arange(n) * len(freqs) // max(n, 1)]
    x = amplitude * np.sin(2 * np.pi * per_sample * np.arange(n) / rate)
    if noise:
        x += noise * np.random.default_rng(seed).standard_normal(n)
    return np.clip(x, -1, 1).astype(np.float32)


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """16-bit PCM WAV of `samples`, shaped (n,) for mono or (n, channels)."""
    samples = np.asarray(samples, dtype=np.float32)
    frames = samples if samples.ndim == 2 else samples[:, None]
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(frames, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def make_wav(seconds: float, rate: int = 16_000, freqs: float | Sequence[float] = 440.0, channels: int = 1,
             noise: float = 0.0, seed: int = 0) -> bytes:
    """A WAV of a tone (or consecutive tones, see `signal`), the same in every channel."""
    x = signal(seconds, rate, freqs, noise=noise, seed=seed)
    return wav_bytes(np.repeat(x[:, None], channels, axis=1), rate)


def encode(samples: np.ndarray, rate: int, ext: str) -> bytes:
    """`samples` (mono, float32) encoded as `ext` (.flac, .mp3, .ogg, .m4a) with PyAV's ffmpeg."""
    import av

    container_format, codec, codec_rate = ENCODINGS[ext]
    if codec_rate and codec_rate != rate:
        raise ValueError(f"{codec} wants {codec_rate} Hz audio")
    buf = io.BytesIO()
    with av.open(buf, "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        x = np.asarray(samples, dtype=np.float32)
        for i in range(0, len(x), 4096):
            frame = av.AudioFrame.from_ndarray(x[None, i : i + 4096].copy(), format="flt", layout="mono")
            frame.sample_rate, frame.pts = rate, i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()


def video_only_mp4(seconds: float = 1.0, fps: int = 10) -> bytes:
    """An MP4 with one small video track and no audio."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i * 20 % 256, dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buf.getvalue()
