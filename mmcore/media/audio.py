"""Audio: WAV, FLAC, MP3, Ogg (Vorbis, Opus) and M4A, decoded with PyAV into mono windows at the space's rate."""

from __future__ import annotations

import io
from typing import Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..errors import MediaError
from .base import Chunk, Decoded, ReadOptions

EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a")
# ffmpeg demuxer -> (mime, stored extension). The demuxer is chosen from the file's magic bytes, never probed:
# probing would also try demuxers such as HLS playlists, which open further files or URLs named inside.
CONTAINERS = {
    "wav": ("audio/wav", ".wav"),
    "flac": ("audio/flac", ".flac"),
    "mp3": ("audio/mpeg", ".mp3"),
    "ogg": ("audio/ogg", ".ogg"),
    "mp4": ("audio/mp4", ".m4a"),
}
MIN_LAST_WINDOW_S = 1.0  # a shorter tail is merged into the window before it
THUMBNAIL_SIZE = (320, 80)
BACKGROUND, WAVE_COLOUR = (248, 248, 250), (46, 92, 158)


def read_audio(name: str, data: bytes, options: ReadOptions) -> Decoded:
    """Decode one audio file into windows of `options.audio_segment_s` seconds (mono float32 at `options.audio_rate`).

    The last window ends at the real end of the audio; a tail shorter than a second joins the window before it.
    """
    import av

    container_format = sniff_container(data)
    if container_format is None:
        raise MediaError(name, "not a readable audio file (the content is not WAV, FLAC, MP3, Ogg or M4A)")
    claimed = _wav_claimed_bytes(data) if container_format == "wav" else 0
    if claimed > options.max_file_bytes:  # only the real samples would be read, but a header that lies is corrupt
        raise MediaError(
            name,
            f"the WAV header claims {claimed / 2**20:,.0f} MB of audio, over the {options.max_file_bytes / 2**20:.0f} MB"
            f" file limit, in a file of {len(data) / 2**20:.1f} MB: the header is corrupt",
        )
    rate = int(options.audio_rate)
    try:
        with av.open(io.BytesIO(data), format=container_format) as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise MediaError(name, "the file has no audio track (is it a video without sound?)")
            if stream.codec_context is None:
                raise MediaError(name, "this build of FFmpeg has no decoder for its audio codec")
            declared = _declared_seconds(container, stream)
            if declared > options.max_media_seconds:
                raise MediaError(name, _too_long(options.max_media_seconds, declared))
            channels = stream.codec_context.layout.nb_channels
            source_rate = stream.codec_context.sample_rate
            size = max(1, round(options.audio_segment_s * rate))
            blocks = _mono_blocks(container, stream, rate, name, options.max_media_seconds)
            windows = _split(blocks, size, round(MIN_LAST_WINDOW_S * rate))
    except MediaError:
        raise
    except (av.FFmpegError, ValueError, EOFError) as e:
        raise MediaError(name, f"the audio is corrupt or truncated ({e})") from None
    total = sum(len(w) for w in windows)
    if total == 0:
        raise MediaError(name, "the audio track holds no samples")
    scale = max(max(float(np.abs(w).max()) for w in windows), 1e-3)  # one scale for all pictures: quiet parts look quiet
    meta = {"sample_rate": int(source_rate), "channels": int(channels), "duration_s": round(total / rate, 3)}
    chunks, start = [], 0
    for window in windows:
        locator = {"start_s": round(start / rate, 3), "end_s": round((start + len(window)) / rate, 3)}
        chunks.append(Chunk("audio", window, locator=locator, meta=dict(meta), thumbnail=waveform([window], scale)))
        start += len(window)
    mime, stored_ext = CONTAINERS[container_format]
    return Decoded(mime=mime, stored_ext=stored_ext, chunks=chunks, thumbnail=waveform(windows, scale))


def decode_track(name: str, data: bytes, rate: int, max_seconds: float) -> np.ndarray | None:
    """The first audio track of an audio file or an MP4/MOV/WebM/MKV video: mono float32 samples at `rate`.

    Returns None when the file has no audio track. A video cut short keeps the sound decoded before the cut,
    as its frames do.
    Raises:
        MediaError: the container is none of those, the track is unreadable, or it runs past `max_seconds`.
    """
    import av

    container_format = _track_container(data)
    if container_format is None:
        raise MediaError(name, "its sound track can't be read (not an audio file or MP4, MOV, WebM or MKV video)")
    blocks: list[np.ndarray] = []
    try:
        with av.open(io.BytesIO(data), format=container_format, metadata_errors="ignore") as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                return None
            if stream.codec_context is None:
                raise MediaError(name, "its sound track can't be read: this build of FFmpeg has no decoder for its codec")
            declared = _declared_seconds(container, stream)
            if declared > max_seconds:
                raise MediaError(name, _too_long(max_seconds, declared))
            for block in _mono_blocks(container, stream, rate, name, max_seconds):
                blocks.append(block)
    except MediaError:
        raise
    except (av.FFmpegError, ValueError, EOFError) as e:
        if not blocks:
            raise MediaError(name, f"its sound track is corrupt or truncated ({e})") from None
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def sniff_container(data: bytes) -> str | None:
    """The ffmpeg demuxer for `data`, from its leading bytes; None when it is none of the supported containers."""
    if data[:4] in (b"RIFF", b"RF64") and data[8:12] == b"WAVE":
        return "wav"
    if data[4:8] == b"ftyp":
        return "mp4"
    if data[:4] == b"OggS":
        return "ogg"
    body = data
    if data[:3] == b"ID3" and len(data) >= 10:  # an ID3v2 tag may precede MP3 and FLAC; its size is 4 x 7 bits
        body = data[10 + int.from_bytes(bytes(b & 0x7F for b in data[6:10]), "big") :]
    if body[:4] == b"fLaC":
        return "flac"
    if data[:3] == b"ID3" or (len(body) > 1 and body[0] == 0xFF and body[1] & 0xE0 == 0xE0 and body[1] & 0x06):
        return "mp3"  # a frame sync with a layer (ADTS AAC has layer bits 00)
    return None


def waveform(windows: Sequence[np.ndarray], scale: float = 1.0, size: tuple[int, int] = THUMBNAIL_SIZE) -> Image.Image:
    """A picture of the min/max envelope of the samples in `windows`, one column per slice of time."""
    width, height = size
    hop = 256  # envelope the windows in small steps first, so the whole signal is never copied into one array
    lows = np.concatenate([np.minimum.reduceat(w, np.arange(0, len(w), hop)) for w in windows if len(w)])
    highs = np.concatenate([np.maximum.reduceat(w, np.arange(0, len(w), hop)) for w in windows if len(w)])
    starts = np.arange(width) * len(lows) // width  # repeated starts (fewer steps than columns) take one step
    lows, highs = np.minimum.reduceat(lows, starts), np.maximum.reduceat(highs, starts)
    middle = (height - 1) / 2
    top = np.clip(middle - highs / scale * middle, 0, height - 1)
    bottom = np.clip(middle - lows / scale * middle, 0, height - 1)
    im = Image.new("RGB", size, BACKGROUND)
    draw = ImageDraw.Draw(im)
    for x, (y0, y1) in enumerate(zip(top.tolist(), bottom.tolist())):
        draw.line([(x, y0), (x, max(y1, y0 + 1))], fill=WAVE_COLOUR)
    return im


def _track_container(data: bytes) -> str | None:
    """The ffmpeg demuxer for an audio file or a video, from its leading bytes (never probed, as above)."""
    if data[:4] == b"\x1a\x45\xdf\xa3":  # the EBML header of Matroska and WebM
        return "matroska"
    if data[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):  # QuickTime movies without an ftyp atom
        return "mp4"
    return sniff_container(data)


def _wav_claimed_bytes(data: bytes) -> int:
    """The size a RIFF WAV's headers claim: its RIFF size or its data chunk's, the larger (0 for RF64, whose
    RIFF and data sizes are placeholders)."""
    if data[:4] != b"RIFF":
        return 0
    claimed = int.from_bytes(data[4:8], "little") + 8
    at = 12
    for _ in range(64):  # the data chunk comes after a few others; a file of a million empty chunks is not read
        if at + 8 > len(data):
            break
        size = int.from_bytes(data[at + 4 : at + 8], "little")
        if data[at : at + 4] == b"data":
            return max(claimed, size)
        at += 8 + size + (size & 1)
    return claimed


def _declared_seconds(container, stream) -> float:
    """The longest duration the file's headers claim (0 when they claim none)."""
    claims = [container.duration / 1e6 if container.duration else 0.0]
    if stream.duration and stream.time_base:
        claims.append(float(stream.duration * stream.time_base))
    return max(claims)


def _mono_blocks(container, stream, rate: int, name: str, max_seconds: float) -> Iterator[np.ndarray]:
    """The decoded audio as consecutive float32 mono blocks at `rate`; raises once it runs past the limit."""
    import av

    # Keep the source's channels and average them here: ffmpeg's own mono downmix weights each stereo
    # channel by 1/sqrt(2), which makes a centred sound 3 dB louder than either channel.
    resampler = av.AudioResampler(format="fltp", rate=rate)
    limit = int(max_seconds * rate) + rate  # a second of slack for resampler rounding
    decoded = 0

    def mono(frames) -> Iterator[np.ndarray]:
        for frame in frames:
            yield frame.to_ndarray().mean(axis=0, dtype=np.float32)

    for frame in container.decode(stream):
        for block in mono(resampler.resample(frame)):
            decoded += len(block)
            if decoded > limit:
                raise MediaError(name, _too_long(max_seconds))
            yield block
    yield from mono(resampler.resample(None))


def _split(blocks: Iterator[np.ndarray], size: int, min_last: int) -> list[np.ndarray]:
    """Consecutive windows of `size` samples; the remainder is a last window, or joins the one before when short."""
    windows: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    held = 0
    for block in blocks:
        pending.append(block)
        held += len(block)
        if held >= size:
            joined = np.concatenate(pending)
            cut = len(joined) - len(joined) % size
            windows.extend(joined[i : i + size] for i in range(0, cut, size))
            pending, held = [joined[cut:]], len(joined) - cut
    rest = np.concatenate(pending) if pending else np.zeros(0, dtype=np.float32)
    if len(rest) and windows and len(rest) < min_last:
        windows[-1] = np.concatenate([windows[-1], rest])
    elif len(rest):
        windows.append(rest)
    return windows


def _too_long(max_seconds: float, declared: float | None = None) -> str:
    limit = _duration(max_seconds)
    what = f"lasts {_duration(declared)} (says its header), over" if declared else "runs past"
    return f"the audio {what} the {limit} limit (raise MMCORE_MAX_MEDIA_MINUTES to accept it)"


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:,.1f} min"
