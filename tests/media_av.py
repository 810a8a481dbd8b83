"""Small synthetic videos (and audio-only files) for the tests, encoded with PyAV itself."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import av
import numpy as np

RGB = tuple[int, int, int]
COLOURS: tuple[RGB, ...] = ((220, 30, 30), (30, 200, 40), (30, 60, 220), (240, 220, 20), (200, 0, 200))

# Muxer name and default codecs (video, audio) per container.
CONTAINERS = {
    "mp4": ("mp4", "libx264", "aac"),
    "mov": ("mov", "libx264", "aac"),
    "mkv": ("matroska", "libx264", "aac"),
    "webm": ("webm", "libvpx-vp9", "libopus"),
}


class _Unseekable(io.RawIOBase):
    """A write-only sink without seek(), so muxers stream and can't go back to write a duration."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.buffer += bytes(b)
        return len(b)


def make_video(
    path: Path | str | None = None,
    *,
    seconds: float = 3.0,
    fps: int = 10,
    size: tuple[int, int] = (64, 48),
    colours: Sequence[RGB] = COLOURS,
    colour_s: float = 10.0,
    container: str = "mp4",
    codec: str | None = None,
    pix_fmt: str = "yuv420p",
    paint: Callable[[float], np.ndarray] | None = None,
    audio: bool = False,
    rotation: float | None = None,
    seekable: bool = True,
) -> bytes:
    """Encode a video of solid frames whose colour moves to the next of `colours` every `colour_s` seconds.

    Odd sizes such as 1 x 1 need a codec and pixel format that allow them, e.g. ffv1 with yuv444p.
    `paint(t)` replaces the solid colour with any (height, width, 3) uint8 picture. `rotation` sets the
    display matrix (degrees counterclockwise, as ffprobe shows it). `seekable=False` streams the file
    (Matroska/WebM only), so it declares no duration. Returns the bytes, also written to `path` if given.
    """
    muxer, default_codec, audio_codec = CONTAINERS[container]
    sink = io.BytesIO() if seekable else _Unseekable()
    width, height = size
    with av.open(sink, mode="w", format=muxer) as out:
        stream = out.add_stream(codec or default_codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if rotation is not None:
            stream.set_display_rotation(rotation)
        sound = _add_audio(out, audio_codec) if audio else None
        for i in range(round(seconds * fps)):
            t = i / fps
            if paint is not None:
                picture = paint(t)
            else:
                colour = colours[min(int(t // colour_s), len(colours) - 1)]
                picture = np.empty((height, width, 3), np.uint8)
                picture[:] = colour
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
        if sound is not None:
            _write_tone(out, sound, seconds)
    data = sink.getvalue() if seekable else bytes(sink.buffer)
    if path is not None:
        Path(path).write_bytes(data)
    return data


def make_audio_only(seconds: float = 2.0, container: str = "mp4") -> bytes:
    """A file in a video container that holds nothing but a sine tone."""
    muxer, _, audio_codec = CONTAINERS[container]
    sink = io.BytesIO()
    with av.open(sink, mode="w", format=muxer) as out:
        _write_tone(out, _add_audio(out, audio_codec), seconds)
    return sink.getvalue()


def _add_audio(out, codec: str):
    stream = out.add_stream(codec, rate=48_000)
    stream.layout = "mono"
    return stream


def _write_tone(out, stream, seconds: float, rate: int = 48_000) -> None:
    fmt = stream.codec_context.format.name  # fltp for aac, s16 for libopus
    block = stream.codec_context.frame_size or 1024
    samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)).astype(np.float32)
    for start in range(0, len(samples), block):
        chunk = samples[start : start + block]
        if len(chunk) < block:
            chunk = np.pad(chunk, (0, block - len(chunk)))
        if fmt.startswith("s16"):
            chunk = (chunk * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format=fmt, layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode())
