"""Fuzzing every reader with random bytes and with mutations of valid files (bit flips, truncations, splices,
overwritten size fields): the only outcomes allowed are a decoded file or our own MediaError, in bounded time.

Derandomized: the same examples on every run, so a failure here is reproducible, not a flake. For a deeper
run, MMCORE_FUZZ_EXAMPLES=1000 (examples per test; 25 by default).
"""

from __future__ import annotations

import dataclasses
import os
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import media_audio as ma
import media_av as mav
import media_factory as mf
import media_pdf as mp
from mmcore.errors import MediaError
from mmcore.media import Decoded, ReadOptions, read_media
from mmcore.media.base import MODALITIES

# Pillow warns about every broken TIFF tag it skips: expected here, and noise in the report.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.*")

FUZZ = settings(
    max_examples=int(os.environ.get("MMCORE_FUZZ_EXAMPLES", 25)),
    deadline=timedelta(seconds=5),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# Size fields set to the values that break parsers: all ones, zero, just under 2**31.
INTERESTING = [b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00", b"\x00\x00\x00\x01"]


def _seeds() -> dict[str, bytes]:
    rate = 16_000
    tone = ma.signal(1.0, rate)
    seeds = {f"img{ext}": mf.image_bytes(ext) for ext in mf.IMAGE_FORMATS}
    seeds.update({
        "note.txt": mf.long_text_content(1).encode(),
        "note.md": "# Tides\n\nHigh water at *dawn*, <b>low</b> at dusk.\n".encode(),
        "table.csv": mf.CSV_TEXT.encode(),
        "doc.pdf": mp.make_pdf(["High tide at dawn.", ""], size=(200, 100), colours=[(200, 0, 0), None]),
        "clip.mp4": mav.make_video(seconds=2, fps=5, size=(32, 24)),
        "clip.webm": mav.make_video(seconds=2, fps=5, size=(32, 24), container="webm"),
        "clip.mkv": mav.make_video(seconds=2, fps=5, size=(32, 24), container="mkv", audio=True),
        "tone.wav": ma.wav_bytes(tone, rate),
        "tone.flac": ma.encode(tone, rate, ".flac"),
        "tone.mp3": ma.encode(tone, rate, ".mp3"),
        "tone.ogg": ma.encode(ma.signal(1.0, 48_000), 48_000, ".ogg"),
        "tone.m4a": ma.encode(tone, rate, ".m4a"),
    })
    return seeds


SEEDS = _seeds()


@pytest.fixture(scope="module")
def options(clip_dir) -> ReadOptions:
    """The tiny CLIP's real tokenizer, as ingest passes it, and small limits that keep each example cheap (they
    are checked like any others, not skipped)."""
    from mmcore.spaces.clip import ClipSpace

    space = ClipSpace.load(str(clip_dir), device="cpu")
    return ReadOptions(
        token_spans=space.token_spans,
        max_tokens=space.max_text_tokens,
        audio_rate=16_000,
        max_pdf_pages=8,
        max_media_seconds=60.0,
        max_image_pixels=4_000_000,
        max_file_bytes=1 << 20,
    )


@st.composite
def mutations(draw, seed: bytes) -> bytes:
    """`seed` with one to four edits: bit flips, cuts, inserted or deleted runs, copied slices, size-field values."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "copy", "field"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 256))]
        elif op == "copy":
            start = draw(st.integers(0, len(seed) - 1))
            data[at:at] = seed[start : start + draw(st.integers(1, 512))]
        elif op == "field":
            data[at : at + 4] = draw(st.sampled_from(INTERESTING))
    return bytes(data)


def check(name: str, data: bytes, options: ReadOptions, csv_rows: bool = False) -> None:
    """Reading `data` as `name` gives a decoded file with chunks, or a MediaError naming the file; nothing else."""
    try:
        decoded = read_media(name, data, dataclasses.replace(options, csv_rows=csv_rows))
    except MediaError as e:
        assert e.name == name and e.reason
        return
    assert isinstance(decoded, Decoded) and decoded.chunks
    assert all(chunk.modality in MODALITIES for chunk in decoded.chunks)


@pytest.mark.parametrize("name", sorted(SEEDS))
@FUZZ
@given(data=st.data())
def test_mutated_files_are_read_or_refused(name, data, options):
    check(name, data.draw(mutations(SEEDS[name]), label="file"), options)


@FUZZ
@given(data=st.data())
def test_mutated_csv_read_row_by_row_is_read_or_refused(data, options):
    check("table.csv", data.draw(mutations(SEEDS["table.csv"]), label="file"), options, csv_rows=True)


@pytest.mark.parametrize("name", sorted(SEEDS))
@FUZZ
@given(noise=st.binary(min_size=1, max_size=4096), keep=st.integers(0, 64))
def test_random_bytes_are_read_or_refused(name, noise, keep, options):
    # Behind the seed's first bytes (its magic number and header), noise reaches each format's parser.
    check(name, SEEDS[name][:keep] + noise, options)


def test_seeds_are_valid(options):
    """The mutations start from files that read: otherwise the fuzzing would only ever test refusals."""
    for name, seed in SEEDS.items():
        assert read_media(name, seed, options).chunks, name
    assert np.frombuffer(SEEDS["tone.wav"][44:], dtype="<i2").any()
