"""The Upload page keeps the good files: with no CLAP model, a mixed upload stores its pictures and text, refuses
its sounds by name with the reason, and shows items embedded, items/s and the time left while it works. A CSV
of image file names and captions pairs each caption with its image, and Search shows the pairs together."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

import media_factory as mf
from browser import ROOT, chromium_page, drop_files, expect_loaded, streamlit_server
from media_audio import make_wav

ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 120_000  # the first upload loads torch and the model inside the server
ROWS = 4000  # enough rows for the progress to be seen while they embed


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, clip_dir):
    data = tmp_path_factory.mktemp("browser-upload")
    env = {"MMCORE_DATA_DIR": str(data), "MMCORE_CLIP_MODEL": str(clip_dir), "HF_HUB_OFFLINE": "1",
           "MMCORE_CLAP_MODEL": str(data / "no-such-clap")}
    ARTIFACTS.mkdir(exist_ok=True)
    with streamlit_server(env, ARTIFACTS / "streamlit-upload.log") as url:
        yield url


@pytest.fixture(scope="module")
def page():
    with chromium_page(TIMEOUT_MS, height=1100) as page:
        yield page


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("upload-files")
    made = {
        "kite.jpg": mf.encode(mf.picture((96, 64), (230, 40, 40), "cross"), "JPEG"),
        "boats.png": mf.encode(mf.picture((64, 96), (20, 150, 70), "stripes"), "PNG"),
        "birds.wav": make_wav(3, freqs=[2000, 3100]),
        "notes.csv": ("id,note\n" + "".join(f"{i},harbour log entry {i}: tide {i % 7} m\n" for i in range(ROWS))).encode(),
        "captions.csv": (b"image,caption\nkite.jpg,a red kite above the dunes\nkite.jpg,someone flies a kite\n"
                         b"boats.png,green boats moored in the harbour\n"),
    }
    for name, data in made.items():
        (root / name).write_bytes(data)
    return {name: root / name for name in made}


def test_a_mixed_upload_without_a_clap_model_keeps_the_good_files_and_shows_item_progress(app_url, page, files):
    page.goto(f"{app_url}/upload")
    drop_files(page, [files["kite.jpg"], files["birds.wav"], files["notes.csv"], files["boats.png"]], csv_rows=True).click()
    progress = page.get_by_test_id("stProgress")
    expect(progress).to_contain_text(re.compile(rf"of {ROWS + 2:,} items · [\d,.]+ items/s · \d+:\d\d left · \d of 4 files"))
    page.screenshot(path=ARTIFACTS / "upload-progress.png", full_page=True)

    summary = page.get_by_test_id("stMetric")
    expect(summary.filter(has_text="Added")).to_contain_text("3")
    expect(summary.filter(has_text="Refused")).to_contain_text("1")
    expect(summary.filter(has_text="Items embedded")).to_contain_text(f"{ROWS + 2:,}")
    refused = page.get_by_test_id("stAlert")
    expect(refused).to_contain_text("birds.wav")
    expect(refused).to_contain_text("needs the CLAP model, which could not be loaded")
    expect(refused).to_contain_text("MMCORE_CLAP_MODEL")
    page.screenshot(path=ARTIFACTS / "upload-partial.png", full_page=True)


def test_captions_uploaded_with_their_images_are_shown_with_them_in_search(app_url, page, files):
    page.goto(f"{app_url}/upload")
    drop_files(page, [files["captions.csv"], files["kite.jpg"], files["boats.png"]], csv_rows=True).click()
    expect(page.get_by_test_id("stMetric").filter(has_text="Added")).to_contain_text("1")  # the images were in already
    expect(page.get_by_text("3 caption(s) linked to their image")).to_be_visible()

    page.get_by_role("link", name="Search").click()
    box = page.get_by_label("Describe what you are looking for")
    box.fill("green boats moored in the harbour")
    box.press("Enter")
    caption = page.locator(".st-key-hit-text-0")
    expect(caption.get_by_test_id("stText")).to_have_text("green boats moored in the harbour")
    expect(caption).to_contain_text("image boats.png")
    image = caption.locator("img")
    expect(image).to_have_count(1)
    expect_loaded(image, "the caption's image")
    page.screenshot(path=ARTIFACTS / "search-caption-pairs.png", full_page=True)

    page.get_by_role("radio", name="Image").click()
    page.locator("input[type=file]").first.set_input_files(str(files["kite.jpg"]))
    first = page.locator(".st-key-hit-image-0")
    expect(first).to_contain_text("kite.jpg")
    expect(first.get_by_test_id("stText")).to_contain_text("a red kite above the dunes")
    expect(first.get_by_test_id("stText")).to_contain_text("someone flies a kite")
    page.screenshot(path=ARTIFACTS / "search-image-captions.png", full_page=True)
