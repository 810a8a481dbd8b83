"""Video reader: segments and their locators, sampled frames, thumbnails, containers, and refusals."""

from __future__ import annotations

import dataclasses
import random
import struct

import numpy as np
import pytest

import media_av as mav
import media_factory as mf
from mmcore.errors import MediaError
from mmcore.media import ReadOptions, is_supported, read_media
from mmcore.media import video

OPTIONS = ReadOptions(token_spans=lambda t: [], max_tokens=10)


def options(**changes) -> ReadOptions:
    return dataclasses.replace(OPTIONS, **changes)


def reason_of(name: str, data: bytes, opts: ReadOptions = OPTIONS) -> str:
    with pytest.raises(MediaError) as caught:
        read_media(name, data, opts)
    assert caught.value.name == name
    return caught.value.reason


def colour_of(im) -> np.ndarray:
    return np.asarray(im, dtype=np.float32).reshape(-1, 3).mean(axis=0)


def grey_clock(t: float, size=(64, 48)) -> np.ndarray:
    """A frame whose grey level tells its time: 20 levels a second."""
    return np.full((size[1], size[0], 3), round(t * 20), np.uint8)


@pytest.fixture(scope="module")
def clip25() -> bytes:
    """25 s at 10 fps, 64 x 48, a new colour every 10 s."""
    return mav.make_video(seconds=25, fps=10)


def test_video_extensions_are_registered():
    assert all(is_supported(f"clip{ext}") for ext in (".mp4", ".M4V", ".mov", ".webm", ".MKV"))


def test_segments_cover_the_video_and_the_last_ends_at_its_end(clip25):
    decoded = read_media("clip.mp4", clip25, OPTIONS)

    assert (decoded.mime, decoded.stored_ext) == ("video/mp4", ".mp4")
    assert [c.locator for c in decoded.chunks] == [
        {"start_s": 0.0, "end_s": 10.0},
        {"start_s": 10.0, "end_s": 20.0},
        {"start_s": 20.0, "end_s": 25.0},
    ]
    assert [c.locator_key for c in decoded.chunks] == ["video.t0-10", "video.t10-20", "video.t20-25"]
    for chunk in decoded.chunks:
        assert chunk.modality == "video"
        assert chunk.meta == {"codec": "h264", "fps": 10.0, "width": 64, "height": 48, "duration_s": 25.0}
        assert all(frame.mode == "RGB" and frame.size == (64, 48) for frame in chunk.payload)
    # One frame a second (the default), the last segment only for its 5 s.
    assert [len(c.payload) for c in decoded.chunks] == [10, 10, 5]


def test_each_segment_shows_its_own_colour(clip25):
    decoded = read_media("clip.mp4", clip25, OPTIONS)
    for chunk, colour in zip(decoded.chunks, mav.COLOURS):
        for frame in chunk.payload + [chunk.thumbnail]:
            assert np.abs(colour_of(frame) - colour).max() < 12


@pytest.mark.parametrize(
    "fps, cap, counts",
    [(2.0, 4, [4, 4, 2]), (0.5, 10, [5, 5, 3]), (1.0, 3, [3, 3, 2]), (0.01, 10, [1, 1, 1])],
)
def test_frames_per_segment_follow_the_rate_and_the_cap(clip25, fps, cap, counts):
    decoded = read_media("clip.mp4", clip25, options(frames_per_second=fps, max_frames_per_segment=cap))
    assert [len(c.payload) for c in decoded.chunks] == counts


def test_frames_are_spread_evenly_over_the_segment():
    data = mav.make_video(seconds=10, fps=10, paint=grey_clock)
    [chunk] = read_media("clock.mp4", data, options(max_frames_per_segment=4)).chunks
    times = [colour_of(frame).mean() / 20 for frame in chunk.payload]
    assert times == pytest.approx([0.0, 2.5, 5.0, 7.5], abs=0.15)
    # The keyframe is the middle one.
    assert colour_of(chunk.thumbnail).mean() / 20 == pytest.approx(5.0, abs=0.15)


def test_frames_are_downscaled_and_thumbnails_small():
    decoded = read_media("big.mp4", mav.make_video(seconds=2, fps=5, size=(640, 360)), OPTIONS)
    [chunk] = decoded.chunks
    assert chunk.meta["width"] == 640 and chunk.meta["height"] == 360
    assert {frame.size for frame in chunk.payload} == {(video.FRAME_SIZE, 288)}
    assert chunk.thumbnail.mode == "RGB" and chunk.thumbnail.size == (video.THUMBNAIL_SIZE, 180)
    assert decoded.thumbnail is chunk.thumbnail


def test_a_short_tail_joins_the_segment_before():
    [chunk] = read_media("a.mp4", mav.make_video(seconds=10.5, fps=10), OPTIONS).chunks
    assert chunk.locator == {"start_s": 0.0, "end_s": 10.5} and len(chunk.payload) == 10
    chunks = read_media("b.mp4", mav.make_video(seconds=11.5, fps=10), OPTIONS).chunks
    assert [c.locator for c in chunks] == [{"start_s": 0.0, "end_s": 10.0}, {"start_s": 10.0, "end_s": 11.5}]


@pytest.mark.parametrize(
    "container, name, mime, ext",
    [
        ("mp4", "clip.m4v", "video/mp4", ".mp4"),
        ("mov", "clip.MOV", "video/quicktime", ".mov"),
        ("mkv", "clip.mkv", "video/x-matroska", ".mkv"),
        ("webm", "clip.webm", "video/webm", ".webm"),
    ],
)
def test_every_container_reads_with_its_sound_track(container, name, mime, ext):
    data = mav.make_video(seconds=12, fps=10, container=container, audio=True)
    decoded = read_media(name, data, OPTIONS)
    assert (decoded.mime, decoded.stored_ext) == (mime, ext)
    assert [c.locator for c in decoded.chunks] == [{"start_s": 0.0, "end_s": 10.0}, {"start_s": 10.0, "end_s": 12.0}]
    assert np.abs(colour_of(decoded.chunks[1].payload[0]) - mav.COLOURS[1]).max() < 12


def test_a_stream_that_declares_no_duration_is_timed_by_its_frames():
    data = mav.make_video(seconds=12, fps=10, container="webm", seekable=False)
    decoded = read_media("live.webm", data, OPTIONS)
    assert [c.locator for c in decoded.chunks] == [{"start_s": 0.0, "end_s": 10.0}, {"start_s": 10.0, "end_s": 12.0}]
    assert decoded.chunks[0].meta["duration_s"] == 12.0


def test_a_phone_video_stored_sideways_is_turned_upright():
    def left_red_right_blue(t: float) -> np.ndarray:
        picture = np.zeros((48, 64, 3), np.uint8)
        picture[:, :32] = (255, 0, 0)
        picture[:, 32:] = (0, 0, 255)
        return picture

    # -90 in the display matrix (ffprobe: "rotation of -90.00 degrees"): shown turned a quarter clockwise.
    data = mav.make_video(seconds=1, fps=5, paint=left_red_right_blue, rotation=-90)
    [chunk] = read_media("portrait.mp4", data, OPTIONS).chunks
    frame = chunk.payload[0]
    assert frame.size == (48, 64) and (chunk.meta["width"], chunk.meta["height"]) == (48, 64)
    assert np.abs(colour_of(frame.crop((0, 0, 48, 28))) - (255, 0, 0)).max() < 20  # the left side is on top
    assert np.abs(colour_of(frame.crop((0, 36, 48, 64))) - (0, 0, 255)).max() < 20


def test_a_long_video_is_thinned_evenly_to_the_frame_budget(monkeypatch):
    monkeypatch.setattr(video, "MAX_FRAMES", 12)
    data = mav.make_video(seconds=60, fps=2, size=(16, 16), paint=lambda t: grey_clock(t % 10, (16, 16)))
    chunks = read_media("long.mp4", data, OPTIONS).chunks
    assert len(chunks) == 6
    # 10 a segment would be 60: halved to 5, to 3 (0, 4, 8 s in), then to 2 (0 and 8 s in).
    for chunk in chunks:
        times = [colour_of(frame).mean() / 20 for frame in chunk.payload]
        assert times == pytest.approx([0.0, 8.0], abs=0.3)


# --- refusals -------------------------------------------------------------------------------------------


def test_an_empty_video_file_is_refused():
    assert "empty" in reason_of("empty.mp4", b"")


def test_random_bytes_are_not_a_video():
    noise = random.Random(0).randbytes(20_000)
    assert "not" in reason_of("noise.mp4", noise) and "video" in reason_of("noise.webm", noise)


def test_a_picture_named_mp4_is_not_a_video():
    assert "not" in reason_of("photo.mp4", mf.image_bytes(".png"))


def test_a_truncated_mp4_is_refused(clip25):
    # The index (moov) is written last, so half the file has frames but no way to find them.
    assert "not a readable video" in reason_of("cut.mp4", clip25[: len(clip25) // 2])


def test_a_truncated_webm_keeps_what_was_written():
    data = mav.make_video(seconds=25, fps=10, container="webm")
    chunks = read_media("cut.webm", data[: len(data) * 6 // 10], OPTIONS).chunks
    assert 1 <= len(chunks) <= 2 and 5 < chunks[-1].locator["end_s"] < 25


def test_an_audio_only_file_is_not_a_video():
    reason = reason_of("song.mp4", mav.make_audio_only(seconds=2))
    assert "no video stream" in reason and "only audio" in reason


def test_a_video_declared_over_the_length_limit_is_refused_before_decoding(clip25):
    reason = reason_of("clip.mp4", clip25, options(max_media_seconds=20))
    assert "25.0 s long" in reason and "MMCORE_MAX_MEDIA_MINUTES" in reason


def lie_about_length(mkv: bytes, seconds: float) -> bytes:
    """The Matroska file with its Duration element (an 8-byte float, in milliseconds) overwritten."""
    at = mkv.index(b"\x44\x89\x88") + 3
    return mkv[:at] + struct.pack(">d", seconds * 1000) + mkv[at + 8 :]


@pytest.mark.parametrize("header", ["declares no length", "says 1.0 s"])
def test_decoding_stops_at_the_length_limit_whatever_the_header_says(header):
    # 10 minutes of 1 x 1 frames: stopped at the limit, well before the end.
    streamed = header == "declares no length"
    data = mav.make_video(
        seconds=600, fps=25, size=(1, 1), codec="ffv1", pix_fmt="yuv444p", container="mkv", seekable=not streamed
    )
    data = data if streamed else lie_about_length(data, 1.0)
    reason = reason_of("endless.mkv", data, options(max_media_seconds=30))
    assert "runs past the limit of 30.0 s" in reason and header in reason


def test_a_one_pixel_video_reads():
    data = mav.make_video(seconds=3, fps=25, size=(1, 1), codec="ffv1", pix_fmt="yuv444p", container="mkv")
    [chunk] = read_media("dot.mkv", data, OPTIONS).chunks
    assert len(chunk.payload) == 3 and chunk.payload[0].size == (1, 1) and chunk.thumbnail.size == (1, 1)


def test_frames_packed_tighter_than_the_frame_rate_limit_are_refused(monkeypatch):
    monkeypatch.setattr(video, "MAX_FPS", 50)
    reason = reason_of("fast.mp4", mav.make_video(seconds=2, fps=100, size=(16, 16)))
    assert "over 50 frames" in reason


def test_frames_over_the_pixel_limit_are_refused(clip25):
    reason = reason_of("clip.mp4", clip25, options(max_image_pixels=1000))
    assert "64 x 48" in reason and "MMCORE_MAX_IMAGE_PIXELS" in reason
