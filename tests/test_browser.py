"""The app in a real browser: upload on the Upload page, then find it on the Search page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from browser import ROOT, chromium_page, drop_files, expect_loaded, streamlit_server

ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 90_000  # the first search loads torch and the model inside the server


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, clip_dir):
    data = tmp_path_factory.mktemp("browser-data")
    env = {"MMCORE_DATA_DIR": str(data), "MMCORE_CLIP_MODEL": str(clip_dir), "HF_HUB_OFFLINE": "1"}
    ARTIFACTS.mkdir(exist_ok=True)
    with streamlit_server(env, ARTIFACTS / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def page():
    with chromium_page(TIMEOUT_MS, height=1000) as page:
        yield page


def make_upload_files(folder: Path) -> tuple[Path, Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    sunset = folder / "sunset-stripes.png"
    im = Image.new("RGB", (96, 64), (250, 120, 30))
    draw = ImageDraw.Draw(im)
    for y in range(0, 64, 8):
        draw.rectangle([0, y, 95, y + 3], fill=(90, 20, 120))
    im.save(sunset)
    forest = folder / "forest-dots.jpg"
    im = Image.new("RGB", (80, 80), (20, 140, 60))
    draw = ImageDraw.Draw(im)
    for x in range(5, 80, 15):
        draw.ellipse([x, x, x + 8, x + 8], fill=(240, 240, 200))
    im.save(forest, quality=92)
    notes = folder / "field-notes.txt"
    notes.write_text("zebra crossing near the old harbour at dawn")
    return sunset, forest, notes


def open_directly(page, url: str, title: str) -> None:
    page.goto(url)
    expect(page.get_by_role("heading", name=title)).to_be_visible()
    expect(page.get_by_text("Page not found")).to_have_count(0)


def test_upload_then_search_by_image_and_text(app_url, page, tmp_path):
    sunset, forest, notes = make_upload_files(tmp_path / "files")
    broken = tmp_path / "files" / "broken.png"
    broken.write_bytes(b"MZ\x90\x00 this is not an image")

    for path, title in (("search", "Search"), ("upload", "Upload")):  # the README's links, on an empty collection
        open_directly(page, f"{app_url}/{path}", title)
    open_directly(page, app_url, "Upload")  # an empty collection opens on Upload
    uploader = page.get_by_test_id("stFileUploader")
    expect(uploader).to_contain_text("up to 512 MB each, 2,048 MB in all")  # the README's limits
    expect(uploader.get_by_test_id("stFileUploaderDropzoneInstructions")).to_be_hidden()  # it rounds 512 MB to "1GB"
    drop_files(page, [sunset, forest, notes, broken]).click()
    summary = page.get_by_test_id("stMetric")
    expect(summary.filter(has_text="Added")).to_contain_text("3")
    expect(summary.filter(has_text="Refused")).to_contain_text("1")
    refused = page.get_by_test_id("stAlert")
    expect(refused).to_contain_text("broken.png")
    expect(refused).to_contain_text("not a readable image")
    page.screenshot(path=ARTIFACTS / "upload.png", full_page=True)
    for path, title in (("upload", "Upload"), ("", "Search")):  # with items: the root opens on Search, /upload still works
        open_directly(page, f"{app_url}/{path}", title)

    page.get_by_role("radio", name="Image").click()
    page.locator("input[type=file]").first.set_input_files(str(sunset))
    first = page.locator(".st-key-hit-image-0")
    expect(first).to_contain_text("sunset-stripes.png")
    expect(first).to_contain_text(re.compile(r"1\.000"))
    thumbnail = first.locator("img")
    expect(thumbnail).to_have_count(1)
    expect_loaded(thumbnail, "the thumbnail")
    page.screenshot(path=ARTIFACTS / "search-image.png", full_page=True)

    first.get_by_role("button", name="More like this").click()  # the query is shown as the item, not its id
    banner = page.locator(".st-key-like-banner")
    expect(banner).to_contain_text("More like this item")
    expect(banner).to_contain_text("sunset-stripes.png")
    expect(banner.locator("img")).to_have_count(1)
    images = page.locator("[class*='st-key-hit-image-']")  # once the run is over: no stale cards of the last one
    expect(images.filter(has_text="forest-dots.jpg")).to_have_count(1)
    expect(images.filter(has_text="sunset-stripes.png")).to_have_count(0)  # the item itself is left out
    page.screenshot(path=ARTIFACTS / "search-like.png")
    banner.get_by_role("button", name="Clear").click()
    expect(banner).to_have_count(0)

    page.get_by_role("radio", name="Text").click()
    box = page.get_by_label("Describe what you are looking for")
    box.fill("zebra crossing near the old harbour at dawn")
    box.press("Enter")
    expect(page.locator(".st-key-hit-text-0").get_by_test_id("stText")).to_contain_text("zebra crossing")
    page.screenshot(path=ARTIFACTS / "search-text.png", full_page=True)


def test_a_missing_model_is_explained_where_it_was_needed_and_in_the_sidebar(page, tmp_path):
    missing = tmp_path / "models" / "clip"
    env = {"MMCORE_DATA_DIR": str(tmp_path / "data"), "MMCORE_CLIP_MODEL": str(missing), "HF_HUB_OFFLINE": "1"}
    with streamlit_server(env, ARTIFACTS / "streamlit-missing-model.log") as url:
        page.goto(f"{url}/search")
        sidebar = page.get_by_test_id("stSidebar")
        expect(sidebar).to_contain_text("loads on first use")
        box = page.get_by_label("Describe what you are looking for")
        box.fill("a dog")
        box.press("Enter")
        expect(page.get_by_test_id("stAlert")).to_contain_text("MMCORE_CLIP_MODEL")  # the whole how-to, where it failed
        page.get_by_role("link", name="Map").click()  # and on every page after, in the sidebar
        expect(sidebar).to_contain_text(f"failed to load: The CLIP model folder '{missing}' does not exist.")
