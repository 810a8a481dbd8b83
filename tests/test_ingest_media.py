"""Video, documents and audio through the real ingest and search, with tiny real checkpoints: segment items with
time locators and their own keyframes, PDF pages and their text, audio windows in the clap space, and one list
fused by rank across spaces."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from media_av import make_video
from media_pdf import make_pdf
from mmcore.ingest import SourceFile, ingest
from mmcore.search import Hit, Query, fuse, search, search_each_modality, search_image

COLOURS = [(220, 30, 30), (30, 200, 40), (30, 60, 220)]


def png(colour) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), colour).save(out, format="PNG")
    return out.getvalue()


def test_a_video_becomes_one_item_per_segment_with_its_times_and_keyframe(ws):
    data = make_video(seconds=25, fps=5, colours=COLOURS, colour_s=10)
    report = ingest(ws, [SourceFile("clips/sea.mp4", data=data)])
    assert report.ok and report.items_added == 3
    items = ws.collection().all(with_vectors=True)
    segments = sorted(zip(items.metadatas, items.vectors), key=lambda mv: mv[0]["start_s"])
    assert [(m["start_s"], m["end_s"]) for m, _ in segments] == [(0, 10), (10, 20), (20, 25)]
    assert {m["modality"] for m, _ in segments} == {"video"}
    assert all(abs(np.linalg.norm(v) - 1) < 1e-5 for _, v in segments)
    thumbs = [m["thumbnail"] for m, _ in segments]
    assert len(set(thumbs)) == 3, "each segment shows its own keyframe"
    for (meta, _), colour in zip(segments, COLOURS):
        keyframe = np.asarray(Image.open(ws.files.root / meta["thumbnail"]).convert("RGB"), dtype=float)
        assert np.abs(keyframe.mean(axis=(0, 1)) - colour).max() < 25, "the keyframe is a frame of its own segment"
    assert (ws.files.root / segments[0][0]["original"]).read_bytes() == data


def test_a_frame_of_segment_three_finds_segment_three(ws):
    ingest(ws, [SourceFile("sea.mp4", data=make_video(seconds=30, fps=5, colours=COLOURS, colour_s=10))])
    for third, colour in enumerate(COLOURS):
        hits = search_image(ws, "frame.png", png(colour))
        assert hits[0].modality == "video" and hits[0].locator["start_s"] == 10 * third
        assert hits[0].where == f"0:{10 * third:02d}–0:{10 * third + 10:02d}"


def test_pdf_pages_are_images_and_their_text_is_searchable_by_page(ws):
    pages = ["harbour master report on the night ferry", "zebra crossing schedule for the old town", ""]
    data = make_pdf(pages, colours=[(200, 30, 30), None, (30, 30, 200)])
    report = ingest(ws, [SourceFile("docs/report.pdf", data=data)])
    assert report.ok
    items = ws.collection().all(with_vectors=False)
    kinds = sorted((m["modality"], m["page"]) for m in items.metadatas)
    assert kinds == [("page", 1), ("page", 2), ("page", 3), ("text", 1), ("text", 2)], "page 3 has no text"
    hits = search(ws, Query(text=pages[1]), filters=None)
    best_text = next(h for h in hits if h.modality == "text")
    assert best_text.locator["page"] == 2 and best_text.where.startswith("page 2")
    page_thumbs = {m["page"]: m["thumbnail"] for m in items.metadatas if m["modality"] == "page"}
    assert len(set(page_thumbs.values())) == 3 and all((ws.files.root / t).is_file() for t in page_thumbs.values())


def test_a_broken_video_fails_alone_and_stores_nothing_of_itself(ws, media):
    good = make_video(seconds=12, fps=5)
    report = ingest(ws, [
        SourceFile("cut.mp4", data=good[: len(good) // 2]),
        SourceFile("noise.webm", data=np.random.default_rng(0).bytes(5000)),
        SourceFile("img.png", path=Path(media["img.png"])),
        SourceFile("whole.mp4", data=good),
    ])
    status = {r.name: r.status for r in report.results}
    assert status == {"cut.mp4": status["cut.mp4"], "noise.webm": "failed", "img.png": "added", "whole.mp4": "added"}
    sources = {m["source"] for m in ws.collection().all(with_vectors=False).metadatas}
    assert "noise.webm" not in sources
    if status["cut.mp4"] == "failed":  # a cut file may still hold a readable first part; never a half-stored one
        assert "cut.mp4" not in sources
    for r in report.results:
        if r.status == "failed":
            assert r.reason and r.name in ("cut.mp4", "noise.webm")


def test_each_modality_gets_its_own_list_and_fusion_interleaves_them_by_rank(ws, media):
    ingest(ws, [
        SourceFile("sea.mp4", data=make_video(seconds=20, fps=5, colours=COLOURS, colour_s=10)),
        SourceFile("notes.pdf", data=make_pdf(["red sails at sunset", "green hills"])),
        SourceFile("img.png", path=Path(media["img.png"])),
    ])
    lists = search_each_modality(ws, Query(text="red sails"), k=5)
    assert set(lists) == {"image", "text", "page", "video"}
    assert list(lists) == ["image", "text", "page", "video"], "kinds in a fixed order"
    fused = fuse(list(lists.values()), k=6)
    assert [h.fused for h in fused] == sorted((h.fused for h in fused), reverse=True)
    assert {h.modality for h in fused[:4]} == {"image", "text", "page", "video"}, "every list's best is near the top"


def hit(id_: str, score: float) -> Hit:
    return Hit(id_, score, "image", id_, {}, {}, None, None, None)


def test_fusion_sums_reciprocal_ranks_and_never_compares_scores():
    clip = [hit("a", 0.31), hit("b", 0.30), hit("c", 0.29)]
    clap = [hit("c", 0.90), hit("d", 0.80)]
    fused = fuse([clip, clap], k=10)
    assert [h.id for h in fused] == ["c", "a", "d", "b"]  # c: 1/63 + 1/61 beats a: 1/61
    assert fused[0].fused == pytest.approx(1 / 63 + 1 / 61, abs=1e-6)
    assert fuse([clip, clap], k=2) == fused[:2]


@pytest.fixture
def audio_ws(tmp_path, clip_dir, clap_dir):
    from mmcore.config import Settings
    from mmcore.workspace import Workspace

    return Workspace(Settings(data_dir=tmp_path / "data", models={"clip": str(clip_dir), "clap": str(clap_dir)}, batch_size=4))


def test_audio_windows_go_to_the_clap_space_and_a_window_finds_itself(audio_ws, media):
    from media_audio import make_wav, signal, wav_bytes
    from mmcore.search import search_audio

    ws = audio_ws
    tones = make_wav(25, freqs=[220, 880, 3000])  # 25 s: three windows, each its own tone
    report = ingest(ws, [SourceFile("birds/tones.wav", data=tones), SourceFile("img.png", path=Path(media["img.png"]))])
    assert report.ok and report.items_added == 4
    windows = ws.collection(space="clap").all(with_vectors=False)
    assert sorted((m["start_s"], m["end_s"]) for m in windows.metadatas) == [(0, 10), (10, 20), (20, 25)]
    assert {m["modality"] for m in windows.metadatas} == {"audio"}
    assert ws.collection(space="clip").count() == 1, "the image stays in the clip space"
    for i, freq in enumerate([220, 880, 3000]):
        query = wav_bytes(signal(5, freqs=freq), 16_000)
        hits = search_audio(ws, "query.wav", query)
        assert hits[0].space == "clap" and hits[0].locator["start_s"] == [0, 10, 20][i]
    again = ingest(ws, [SourceFile("again.wav", data=tones)])
    assert [r.status for r in again.results] == ["skipped"], "known audio is recognised in its own space"


def test_a_text_query_reaches_both_spaces_and_fusion_names_each_hit_s_space(audio_ws, media):
    ws = audio_ws
    from media_audio import make_wav

    ingest(ws, [SourceFile("tone.wav", data=make_wav(3)), SourceFile("img.png", path=Path(media["img.png"]))])
    lists = search_each_modality(ws, Query(text="a bird singing"), k=3)
    assert set(lists) == {"image", "audio"}
    assert lists["audio"][0].space == "clap" and lists["image"][0].space == "clip"
    fused = fuse(list(lists.values()), k=5)
    assert {h.space for h in fused} == {"clip", "clap"}
