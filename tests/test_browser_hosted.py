"""The app with the hosted Twelve Labs space on (its key set, the service a local stand-in on 127.0.0.1): the
sidebar says plainly that media in that space is sent to Twelve Labs, a video uploaded in the browser goes to the
service and its segments are found by a text search there. Without the key, no page says any media is sent."""

from __future__ import annotations

import media_av as mav
from playwright.sync_api import expect

from browser import ROOT, chromium_page, drop_files, streamlit_server
from fake_twelvelabs import API_KEY, twelvelabs_server

ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 120_000
NOTICE = "Media in the twelvelabs space is sent to Twelve Labs (127.0.0.1), and so are the queries searched in it."


def test_the_sidebar_says_media_goes_to_twelve_labs_and_a_video_is_found_through_it(tmp_path, clip_dir):
    ARTIFACTS.mkdir(exist_ok=True)
    with twelvelabs_server() as fake:
        fake.polls_before_ready = 0
        env = {"MMCORE_DATA_DIR": str(tmp_path / "data"), "MMCORE_CLIP_MODEL": str(clip_dir), "HF_HUB_OFFLINE": "1",
               "MMCORE_TWELVELABS_API_KEY": API_KEY, "MMCORE_TWELVELABS_URL": fake.url}
        with streamlit_server(env, ARTIFACTS / "streamlit-hosted.log") as url, chromium_page(TIMEOUT_MS) as page:
            page.goto(url)
            sidebar = page.get_by_test_id("stSidebar")
            expect(sidebar.get_by_test_id("stAlert")).to_contain_text(NOTICE)
            expect(sidebar).to_contain_text("Twelve Labs marengo3.0")
            page.get_by_role("link", name="Upload").click()
            video = mav.make_video(seconds=25, fps=10, size=(64, 48))  # the stand-in's videos last 25 s
            drop_files(page, [{"name": "sea.mp4", "mimeType": "video/mp4", "buffer": video}]).click()
            expect(page.get_by_test_id("stMetric").filter(has_text="Added")).to_contain_text("1")
            expect(page.get_by_test_id("stMetric").filter(has_text="Refused")).to_contain_text("0")
            assert len(fake.posts("/v1.3/embed-v2/tasks")) == 1
            page.get_by_role("link", name="Search").click()
            page.get_by_role("textbox", name="Describe what you are looking for").fill("waves on a beach")
            page.keyboard.press("Enter")
            expect(page.get_by_test_id("stMain")).to_contain_text("Video segments")
            expect(page.get_by_test_id("stMain")).to_contain_text("clip + twelvelabs")  # both spaces' lists had it
            page.screenshot(path=ARTIFACTS / "hosted-sidebar-search.png")
            assert fake.posts("/v1.3/embed-v2")[-1]["body"]["text"] == {"input_text": "waves on a beach"}
