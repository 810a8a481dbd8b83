"""Video, sound and a PDF in a real browser: upload them, find a video segment by a frame of it and play it
from the segment's start, find a sound by text in the clap space and play its window, see a PDF page."""

from __future__ import annotations


from PIL import Image
from playwright.sync_api import expect

from browser import ROOT, chromium_page, streamlit_server
from media_audio import make_wav
from media_av import make_video
from media_pdf import make_pdf

ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 120_000  # the first search loads torch and both models inside the server
COLOURS = [(220, 30, 30), (30, 200, 40), (30, 60, 220)]


def test_upload_video_sound_and_pdf_then_play_the_segment_a_frame_finds(tmp_path, clip_dir, clap_dir):
    ARTIFACTS.mkdir(exist_ok=True)
    files = tmp_path / "files"
    files.mkdir()
    make_video(files / "harbour.mp4", seconds=30, fps=5, colours=COLOURS, colour_s=10, audio=True)
    (files / "tones.wav").write_bytes(make_wav(12, freqs=[440, 2000]))
    (files / "ferry-report.pdf").write_bytes(make_pdf(["night ferry timetable", "harbour lights"], colours=[(200, 30, 30), None]))
    frame = tmp_path / "green-frame.png"
    Image.new("RGB", (64, 48), COLOURS[1]).save(frame)

    env = {"MMCORE_DATA_DIR": str(tmp_path / "data"), "MMCORE_CLIP_MODEL": str(clip_dir),
           "MMCORE_CLAP_MODEL": str(clap_dir), "HF_HUB_OFFLINE": "1"}
    with streamlit_server(env, ARTIFACTS / "streamlit-media.log") as url, chromium_page(TIMEOUT_MS, height=1300) as page:
        page.goto(f"{url}/upload")
        page.locator("input[type=file]").first.set_input_files(sorted(str(p) for p in files.iterdir()))
        page.get_by_role("button", name="Add 3 file(s)").click()
        expect(page.get_by_text("Last upload")).to_be_visible()
        added = page.get_by_test_id("stMetric").filter(has_text="Added")
        expect(added).to_contain_text("3")
        expect(page.get_by_test_id("stMetric").filter(has_text="Items embedded")).to_contain_text("9")  # 3 segments, 2 windows, 2 pages and their 2 texts

        page.get_by_role("link", name="Search").click()
        page.get_by_role("radio", name="Image").click()
        page.locator("input[type=file]").first.set_input_files(str(frame))
        expect(page.get_by_role("heading", name="Video segments")).to_be_visible()
        first = page.locator("[class*='st-key-hit-video-0']")
        expect(first).to_contain_text("harbour.mp4 · 0:10–0:20")  # the green frame finds the green segment
        first.get_by_role("button", name="Play").click()
        video = page.locator("[class*='st-key-hit-video-0'] video")
        expect(video).to_have_count(1)
        video.evaluate("v => new Promise(ok => v.readyState >= 1 ? ok() : v.addEventListener('loadedmetadata', ok))")
        page.wait_for_function("v => v.currentTime >= 10 && v.currentTime < 20", arg=video.element_handle())
        assert 29 < video.evaluate("v => v.duration") < 31
        page.screenshot(path=ARTIFACTS / "search-video.png", full_page=True)

        page.get_by_role("radio", name="Text").click()
        page.get_by_label("Describe what you are looking for").fill("a high whistle")
        page.get_by_label("Describe what you are looking for").press("Enter")
        expect(page.get_by_role("heading", name="Audio")).to_be_visible()
        expect(page.get_by_role("heading", name="Document pages")).to_be_visible()
        sound = page.locator("[class*='st-key-hit-audio-0']")
        expect(sound).to_contain_text("clap")
        sound.get_by_role("button", name="Play").click()
        audio = page.locator("[class*='st-key-hit-audio-0'] audio")
        expect(audio).to_have_count(1)
        page.get_by_text("All media in one list").click()
        expect(page.get_by_role("heading", name="All media")).to_be_visible()
        expect(page.get_by_text("fused").first).to_be_visible()
        cards = page.locator("[class*='st-key-hit-']")
        expect(cards.filter(has_not=page.get_by_role("button", name="More like this"))).to_have_count(0)  # all drawn
        page.screenshot(path=ARTIFACTS / "search-all-media.png", full_page=True)
