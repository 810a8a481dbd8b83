"""Videos: MP4, MOV, WebM, MKV. Decoded once, front to back, with PyAV and cut into segments of
`video_segment_s` seconds; each segment is a few frames sampled at `frames_per_second`, evenly spaced."""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Iterator, Sequence, TypeVar

from PIL import Image

from ..errors import MediaError
from .base import Chunk, Decoded, ReadOptions, Source

if TYPE_CHECKING:
    import av

EXTENSIONS = (".mp4", ".m4v", ".mov", ".webm", ".mkv")
THUMBNAIL_SIZE = 320
FRAME_SIZE = 512  # longest side of a kept frame: CLIP looks at 224 x 224 anyway, and memory stays bounded
MAX_FRAMES = 1000  # frames kept in all; past this the sampling thins out, evenly over the whole video
MAX_FPS = 240  # more frames than this per second of timestamps is a broken or hostile file
MIN_TAIL_S = 1.0  # a last segment shorter than this (e.g. 10.08 s cut into 10 s) joins the one before

Frame = TypeVar("Frame")


def read_video(name: str, data: bytes, options: ReadOptions) -> Decoded:
    """Decode a video into one chunk per segment (a list of RGB frames, its start_s/end_s) and a thumbnail."""
    import av  # here, not above: a process that reads no video (a `search --like`) doesn't pay for it

    try:
        container = av.open(io.BytesIO(data), metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError) as e:
        why = getattr(e, "strerror", None) or e
        raise MediaError(name, f"not a readable video: not MP4, MOV, WebM or MKV, or truncated ({why})") from None
    with container:
        kind = _mime_and_ext(container, data)
        if kind is None:
            raise MediaError(name, f"not an MP4, MOV, WebM or MKV video (it reads as {container.format.long_name})")
        attached = av.stream.Disposition.attached_pic  # cover art shows up as a one-frame "video" stream
        stream = next((s for s in container.streams.video if not s.disposition & attached), None)
        if stream is None:
            only = " (it holds only audio)" if container.streams.audio else ""
            raise MediaError(name, f"the file has no video stream{only}")
        if stream.codec_context is None:
            raise MediaError(name, "this build of FFmpeg has no decoder for its video codec")
        _check_pixels(name, stream.codec_context.width, stream.codec_context.height, options)
        declared = _declared_seconds(container, stream)
        if declared is not None and declared > options.max_media_seconds:
            raise MediaError(name, f"the video is {_duration(declared)} long, over the {_limit(options)}")
        segments, end, info = _sample(name, container, stream, declared, options)

    seg_s = options.video_segment_s
    last = max(segments)
    if last - 1 in segments and end - last * seg_s < min(MIN_TAIL_S, seg_s / 2):
        del segments[last]
        last -= 1
    meta = {**info, "duration_s": round(end, 3)}
    chunks = []
    source = Source(name, data, seg_s)
    for k, frames in sorted(segments.items()):
        thumb = frames[len(frames) // 2].copy()
        thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        locator = {"start_s": round(k * seg_s, 3), "end_s": round(end if k == last else min((k + 1) * seg_s, end), 3)}
        chunks.append(Chunk("video", frames, locator=locator, meta=dict(meta), thumbnail=thumb, source=source))
    mime, ext = kind
    return Decoded(mime=mime, stored_ext=ext, chunks=chunks, thumbnail=chunks[0].thumbnail)


def sample_frames(frames: Sequence[Frame], n: int) -> list[Frame]:
    """`n` of a segment's frames (a chunk's payload), evenly spaced and in order, for a model that takes exactly `n`.

    Each of `n` equal slices of the segment takes the frame at its middle; with fewer than `n` frames some are
    repeated, so a short last segment still fills the model's frame slots in time order.
    Raises:
        ValueError: `frames` is empty or `n` < 1.
    """
    if not frames or n < 1:
        raise ValueError(f"cannot sample {n} frames from a segment of {len(frames)}")
    return [frames[(2 * i + 1) * len(frames) // (2 * n)] for i in range(n)]


def _sample(
    name: str, container, stream, declared: float | None, options: ReadOptions
) -> tuple[dict[int, list[Image.Image]], float, dict[str, int | float | str]]:
    """Sampled frames per segment index, the video's end in seconds, and its size, frame rate and codec.

    A segment's sampling points are its start plus multiples of `step`; each takes the first frame at or
    after it. Doubling `step` when over MAX_FRAMES keeps every other frame already taken: the same grid.
    """
    seg_s = options.video_segment_s
    step = seg_s / max(1, min(options.max_frames_per_segment, math.ceil(seg_s * options.frames_per_second - 1e-9)))
    rate = float(stream.average_rate or stream.guessed_rate or 0)
    sar = float(stream.sample_aspect_ratio or 1)
    time_base = float(stream.time_base or 0)
    stream.codec_context.thread_type = "AUTO"
    origin = container.start_time / 1e6 if container.start_time is not None else None
    segments: dict[int, list[Image.Image]] = {}
    info: dict[str, int | float | str] = {"codec": stream.codec_context.name}
    if rate:
        info["fps"] = round(rate, 3)
    points = math.ceil(seg_s / step - 1e-6)  # sampling points in a segment
    decoded = kept = 0
    t = end = 0.0
    last_point = -1.0
    for frame in _frames(stream):
        decoded += 1
        _check_pixels(name, frame.width, frame.height, options)
        if frame.pts is not None and time_base:
            origin = frame.pts * time_base if origin is None else origin
            t = max(0.0, frame.pts * time_base - origin)
        elif decoded > 1 and rate:
            t += 1 / rate
        # Both bound the work whatever the header says: a lying duration, or timestamps that stand still.
        if t > options.max_media_seconds:
            said = "declares no length" if declared is None else f"says {_duration(declared)}"
            raise MediaError(name, f"the video runs past the {_limit(options)}; its header {said}")
        if decoded > MAX_FPS * (t + 1):
            raise MediaError(name, f"the video packs over {MAX_FPS} frames into a second (broken timestamps?)")
        end = max(end, t + ((frame.duration or 0) * time_base or (1 / rate if rate else 0.0)))

        k = int(t / seg_s + 1e-9)
        point = k * seg_s + min(int((t - k * seg_s) / step + 1e-6), points - 1) * step
        if point <= last_point:
            continue
        last_point = point
        if not segments:
            width, height = _display_size(frame, sar)
            info.update(width=round(width), height=round(height))
        segments.setdefault(k, []).append(_picture(frame, sar))
        kept += 1
        if kept > MAX_FRAMES and step < seg_s:
            step, points = step * 2, math.ceil(points / 2)
            for frames in segments.values():
                frames[:] = frames[::2]
            kept = sum(map(len, segments.values()))
    if not segments:
        raise MediaError(name, "no video frame could be decoded (the file is corrupt or truncated)")
    if declared is not None:  # the header's end where it is plausible: the last frame's duration is a guess
        end = min(end, max(declared, t))
    return segments, end, info


def _frames(stream) -> Iterator[av.VideoFrame]:
    """Every frame that decodes, in order. A packet that fails to decode is skipped, as players do; where
    the file breaks off (truncated), the decoder is flushed and the video ends there."""
    import av

    packets = stream.container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError:
            packet = None
        try:
            yield from stream.decode(packet)
        except av.error.FFmpegError:
            pass
        if packet is None:
            return


def _rotation(frame: av.VideoFrame) -> int:
    """Degrees counterclockwise that turn the frame upright (phones store portrait video sideways)."""
    return round(frame.rotation / 90) * 90 % 360


def _display_size(frame: av.VideoFrame, sar: float) -> tuple[float, float]:
    width, height = frame.width * sar, frame.height
    return (height, width) if _rotation(frame) in (90, 270) else (width, height)


def _picture(frame: av.VideoFrame, sar: float) -> Image.Image:
    """The frame as an upright RGB image, no larger than FRAME_SIZE on its long side."""
    width, height = frame.width * sar, frame.height
    scale = min(1.0, FRAME_SIZE / max(width, height))
    size = {"width": max(1, round(width * scale)), "height": max(1, round(height * scale))}
    im = frame.to_image(**size, interpolation="AREA", threads=1)  # one thread: 3x faster for a single frame
    rotation = _rotation(frame)
    return im.rotate(rotation, expand=True) if rotation else im


def _mime_and_ext(container, data: bytes) -> tuple[str, str] | None:
    formats = container.format.name.split(",")
    if "mp4" in formats:  # the one ISO/QuickTime demuxer; the brand tells a QuickTime movie apart
        if container.metadata.get("major_brand", "").strip() == "qt":
            return "video/quicktime", ".mov"
        return "video/mp4", ".mp4"
    if "matroska" in formats:  # WebM is Matroska with "webm" as the DocType in its first bytes
        return ("video/webm", ".webm") if b"webm" in data[:64] else ("video/x-matroska", ".mkv")
    return None


def _declared_seconds(container, stream) -> float | None:
    if container.duration:
        return container.duration / 1e6
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def _check_pixels(name: str, width: int, height: int, options: ReadOptions) -> None:
    if width * height > options.max_image_pixels:
        raise MediaError(
            name,
            f"the video's frames are {width} x {height} pixels, over the limit of {options.max_image_pixels:,}"
            " (raise MMCORE_MAX_IMAGE_PIXELS to accept it)",
        )


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def _limit(options: ReadOptions) -> str:
    return f"limit of {_duration(options.max_media_seconds)} (raise MMCORE_MAX_MEDIA_MINUTES to accept it)"
