"""The app with a space that binds sound and sight on (PE-AV's bind space; ImageBind's where its package is
installed): a sound and a video uploaded in the browser, a search by the sound, and the video's segment among the
results, answered by that space, its card showing the segment's keyframe; the Map of that space opens coloured by
kind of media, sounds and video in one picture. With ImageBind, the sidebar states its licence."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

import media_audio as ma
import media_av as mav
from browser import ROOT, chromium_page, drop_files, expect_loaded, streamlit_server
from checkpoints import tiny_clap, tiny_imagebind, tiny_pe_av
from mmcore.spaces import imagebind

ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 180_000


def pe_av_env(tmp_path) -> tuple[dict, int]:
    rate = 16_000
    return {"MMCORE_CLAP_MODEL": str(tiny_clap(tmp_path / "clap")),
            "MMCORE_BIND_MODEL": str(tiny_pe_av(tmp_path / "pe-av", sampling_rate=rate))}, rate


def imagebind_env(tmp_path) -> tuple[dict, int]:
    rate = imagebind.RATE  # what ImageBind is given (48 kHz, real CLAP's): the tiny CLAP at the same
    return {"MMCORE_CLAP_MODEL": str(tiny_clap(tmp_path / "clap", sampling_rate=rate)),
            "MMCORE_IMAGEBIND_WEIGHTS": str(tiny_imagebind(tmp_path / "imagebind"))}, rate


@pytest.mark.parametrize("space, make_env", [
    ("bind", pe_av_env),
    pytest.param("imagebind", imagebind_env, marks=pytest.mark.skipif(
        not imagebind.installed(), reason="imagebind-unofficial is not installed here (see tests/test_imagebind.py)")),
])
def test_a_sound_finds_a_video_segment_through_a_binding_space(tmp_path, clip_dir, space, make_env):
    ARTIFACTS.mkdir(exist_ok=True)
    models, rate = make_env(tmp_path)
    env = {"MMCORE_DATA_DIR": str(tmp_path / "data"), "MMCORE_CLIP_MODEL": str(clip_dir), "HF_HUB_OFFLINE": "1", **models}
    video = mav.make_video(seconds=4, fps=4, size=(64, 48))
    with streamlit_server(env, ARTIFACTS / f"streamlit-{space}.log") as url, chromium_page(TIMEOUT_MS) as page:
        page.goto(url)
        if space == "imagebind":  # its licence, said where every user sees it
            expect(page.get_by_test_id("stSidebar")).to_contain_text("CC BY-NC-SA 4.0")
        page.get_by_role("link", name="Upload").click()
        drop_files(page, [
            {"name": "bark.wav", "mimeType": "audio/wav", "buffer": ma.make_wav(3.0, rate, 600.0)},
            {"name": "street.mp4", "mimeType": "video/mp4", "buffer": video}]).click()
        expect(page.get_by_test_id("stMetric").filter(has_text="Added")).to_contain_text("2")
        page.get_by_role("link", name="Search").click()
        page.get_by_role("radio", name="Sound").click()
        query = page.get_by_test_id("stFileUploader").filter(has_text="Query sound")
        query.locator("input[type=file]").set_input_files(
            [{"name": "query.wav", "mimeType": "audio/wav", "buffer": ma.make_wav(2.0, rate, 620.0)}])
        main = page.get_by_test_id("stMain")
        videos = main.get_by_test_id("stHeading").filter(has_text="Video segments")
        expect(videos).to_have_count(1)
        expect(main).to_contain_text("street.mp4")
        expect(main).to_contain_text("0:00–0:04")
        expect(videos.locator("xpath=following::*").filter(has_text=space).first).to_be_visible()
        segment = main.locator(".st-key-hit-video-0")  # the segment's keyframe, as for any video hit
        expect(segment).to_contain_text("street.mp4")
        thumbnail = segment.locator("img")
        expect(thumbnail).to_have_count(1)
        expect_loaded(thumbnail, "the segment's thumbnail")
        page.screenshot(path=ARTIFACTS / f"search-sound-finds-video-{space}.png", full_page=True)

        page.get_by_role("link", name="Map").click()
        sidebar = page.get_by_test_id("stSidebar")
        sidebar.get_by_test_id("stSelectbox").filter(has_text="Space").click()
        page.get_by_role("option", name=space, exact=True).click()
        chart = page.locator(".js-plotly-plot").first
        expect(chart.locator(".legendtext").first).to_be_visible()
        entries = chart.locator(".legendtext").all_text_contents()
        assert any(e.startswith("audio") for e in entries) and any(e.startswith("video") for e in entries), entries
        page.screenshot(path=ARTIFACTS / f"map-{space}-by-modality.png", full_page=True)
