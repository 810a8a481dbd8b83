"""The Duplicates page in a real browser: one picture stored twice (PNG and JPEG) is offered as a set, and
"Keep first, tag the rest" tags the other copy in the store."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from browser import ROOT, chromium_page, streamlit_server
from mmcore.config import Settings
from mmcore.ingest import SourceFile, ingest
from mmcore.workspace import Workspace

ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 60_000


def harbour() -> Image.Image:
    im = Image.new("RGB", (120, 90), (250, 200, 40))
    draw = ImageDraw.Draw(im)
    draw.ellipse([30, 15, 90, 75], fill=(200, 30, 30))
    for x in range(0, 120, 12):
        draw.line([x, 0, x, 89], fill=(40, 40, 160), width=2)
    return im


def night() -> Image.Image:
    im = Image.new("RGB", (120, 90), (5, 5, 12))
    ImageDraw.Draw(im).ellipse([90, 10, 104, 24], fill=(235, 235, 210))
    return im


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, clip_dir):
    """A data dir holding the same picture as PNG and as a quality-95 JPEG (different bytes, nearly the same
    vector), plus an unrelated picture: ingested before the server starts, which then may write the store."""
    files = tmp_path_factory.mktemp("duplicate-files")
    harbour().save(files / "harbour.png")
    harbour().save(files / "harbour-copy.jpg", quality=95)
    night().save(files / "night.png")
    data = tmp_path_factory.mktemp("duplicates-data")
    with Workspace(Settings(data_dir=data, models={"clip": str(clip_dir)})) as ws:
        report = ingest(ws, [SourceFile(p.name, path=p) for p in sorted(files.iterdir())])
    assert report.items_added == 3, report.results
    return data


@pytest.fixture(scope="module")
def page():
    with chromium_page(TIMEOUT_MS, height=900) as page:
        yield page


def test_review_a_duplicate_set_and_tag_the_copy(data_dir, clip_dir, page):
    ARTIFACTS.mkdir(exist_ok=True)
    env = {"MMCORE_DATA_DIR": str(data_dir), "MMCORE_CLIP_MODEL": str(clip_dir), "HF_HUB_OFFLINE": "1"}
    with streamlit_server(env, ARTIFACTS / "streamlit-duplicates.log") as url:
        page.goto(f"{url}/duplicates")
        expect(page.get_by_role("heading", name="Duplicates")).to_be_visible()
        expect(page.get_by_text("1 set to review")).to_be_visible()
        card = page.locator(".st-key-dupset-1")
        expect(card).to_contain_text("harbour.png")
        expect(card).to_contain_text("harbour-copy.jpg")
        expect(card).not_to_contain_text("night.png")
        thumbnails = card.locator("img")
        expect(thumbnails).to_have_count(2)
        for i in range(2):
            expect(thumbnails.nth(i)).to_have_js_property("complete", True)
            assert thumbnails.nth(i).evaluate("img => img.naturalWidth") > 0, "a thumbnail did not load"
        page.screenshot(path=ARTIFACTS / "duplicates.png", full_page=True)

        page.get_by_role("button", name="Keep first, tag the rest").click()
        expect(page.get_by_text("tagged 1 other item(s)")).to_be_visible()
        expect(page.get_by_text("No near-duplicates left to review")).to_be_visible()

    items = Workspace(Settings(data_dir=data_dir, models={"clip": str(clip_dir)})).store.open("default").all(with_vectors=False)
    by_source = {meta["source"]: (id_, meta) for id_, meta in zip(items.ids, items.metadatas)}
    copies = sorted((by_source[name] for name in ("harbour.png", "harbour-copy.jpg")), key=lambda x: (x[1]["added_at"], x[0]))
    (kept_id, kept), (_, other) = copies  # the suggested keeper: earliest added, then smallest id
    assert set(other["tags"]) == {"duplicate", f"duplicate-of:{kept_id}"}
    assert not kept.get("tags") and not by_source["night.png"][1].get("tags")
