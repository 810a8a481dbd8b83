"""Captions in a real browser: images ingested with a tiny random BLIP as the captioning model show their written
captions on the Gallery's cards, as plain text, and the sidebar names the captioning model."""

from __future__ import annotations

import pytest
from checkpoints import tiny_blip
from playwright.sync_api import expect

from browser import ROOT, chromium_page, settled, streamlit_server
from mmcore.analysis.maps import analyze
from mmcore.captions import captions_of
from mmcore.config import Settings
from mmcore.ingest import SourceFile, ingest
from mmcore.workspace import Workspace

ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def browser_page():
    with chromium_page(TIMEOUT_MS, height=1100) as page:
        yield page


def test_gallery_cards_show_written_captions(tmp_path, browser_page, clip_dir, media):
    page = browser_page
    ARTIFACTS.mkdir(exist_ok=True)
    blip = tiny_blip(tmp_path / "blip")
    settings = Settings(data_dir=tmp_path / "data", models={"clip": str(clip_dir)}, caption_model=str(blip), batch_size=4)
    with Workspace(settings) as ws:
        names = ("img.jpg", "img.png", "img.webp")
        assert ingest(ws, [SourceFile(n, path=media[n]) for n in names], collection="cap").ok
        clip = ws.store.open("cap", "clip")
        pictures = clip.all(with_vectors=False, where={"modality": "image"}).ids
        captions = captions_of(clip, pictures)
        assert len(captions) == 3
        analyze(ws, "cap", "clip")
    env = {"MMCORE_DATA_DIR": str(settings.data_dir), "MMCORE_COLLECTION": "cap", "MMCORE_CLIP_MODEL": str(clip_dir),
           "MMCORE_CAPTION_MODEL": str(blip), "HF_HUB_OFFLINE": "1"}
    with streamlit_server(env, ARTIFACTS / "streamlit-captions.log") as url:
        page.goto(f"{url}/gallery")
        expect(page.locator("[class*='st-key-card-']")).to_have_count(6)  # 3 images, 3 captions
        for caption in captions.values():
            expect(page.locator("[class*='st-key-card-']").filter(has_text=caption).first).to_be_visible()
        expect(page.get_by_text("Captions", exact=True)).to_be_visible()  # the sidebar's model line
        settled(page)
        expect(page.locator("[class*='st-key-card-'] img").first).to_have_js_property("complete", True)
        page.screenshot(path=ARTIFACTS / "gallery-captions.png", full_page=True)
