"""Evaluate and the tag suggestion queue in a real browser, on the digits demo with five digits of each kind tagged:
the Collections page's figures, then the Gallery's queue: accept one, reject one, accept all above a threshold; the
tags and the rejection are in the data dir afterwards."""

from __future__ import annotations

import re

import numpy as np
import pytest
from playwright.sync_api import expect

from browser import ROOT, chromium_page, screenshot_main, settled, streamlit_server
from mmcore.analysis.maps import analyze
from mmcore.config import Settings
from mmcore.demo import load_digits_demo
from mmcore.suggest import Reviews
from mmcore.workspace import Workspace

ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ROOT / "docs" / "screenshots"
TIMEOUT_MS = 240_000  # the first map pays UMAP's fit and numba's compile when its cache is cold
CARDS = "[class*='st-key-suggestion-']"


@pytest.fixture(scope="module")
def browser_page():
    with chromium_page(TIMEOUT_MS, height=1400) as page:
        yield page


def card(locator) -> tuple[str, str]:
    """A suggestion card's (source, tag)."""
    source, suggested = [line for line in locator.inner_text().split("\n") if line.strip()][:2]
    return source, suggested.split(" · ")[0]


def count(page) -> int:
    settled(page)
    return int(page.get_by_text(re.compile(r"^[\d,]+ suggestions, most confident first$")).inner_text().split()[0].replace(",", ""))


def test_evaluate_panel_and_suggestion_queue(tmp_path, browser_page):
    page = browser_page
    ARTIFACTS.mkdir(exist_ok=True)
    data_dir = tmp_path / "data"
    with Workspace(Settings(data_dir=data_dir)) as ws:
        load_digits_demo(ws)
        target = ws.store.open("digits-demo", "pixels")
        items = target.all(with_vectors=False)
        rng = np.random.default_rng(0)
        for digit in range(10):
            mine = [i for i, m in zip(items.ids, items.metadatas) if m["label"] == digit]
            target.update_tags(list(rng.choice(mine, 5, replace=False)), add=[f"digit {digit}"])
        analyze(ws, "digits-demo", "pixels")  # the Map page's defaults: the Gallery finds it cached
    env = {"MMCORE_DATA_DIR": str(data_dir), "MMCORE_COLLECTION": "digits-demo", "HF_HUB_OFFLINE": "1"}
    with streamlit_server(env, ARTIFACTS / "streamlit-suggest.log") as url:
        page.goto(f"{url}/collections")
        page.get_by_role("button", name="Evaluate").click()
        expect(page.get_by_text(re.compile(r"of the 10 nearest tagged items of a tagged item, \d+% share one of its tags"))).to_be_visible()
        expect(page.get_by_text(re.compile(r"a linear probe puts one of an item's own tags first for \d+% of 50 tagged items"))).to_be_visible()
        expect(page.get_by_text(re.compile("no pairs: ingest an image-caption CSV"))).to_be_visible()
        page.screenshot(path=ARTIFACTS / "evaluate.png", full_page=True)

        page.goto(f"{url}/gallery")
        page.get_by_text("Review tag suggestions").click()
        expect(page.locator(CARDS)).to_have_count(12)
        expect(page.get_by_text(re.compile(r"Linear probe: \d+% cross-validated accuracy"))).to_be_visible()
        page.screenshot(path=ARTIFACTS / "suggestions.png", full_page=True)
        screenshot_main(page, SCREENSHOTS / "suggestions.png", height=1250)

        first = page.locator(CARDS).first
        accepted_source, accepted_tag = card(first)
        first.get_by_role("button", name="Accept").click()
        expect(page.locator(CARDS).filter(has_text=accepted_source)).to_have_count(0)

        second = page.locator(CARDS).first
        rejected_source, rejected_tag = card(second)
        second.get_by_role("button", name="Reject").click()
        expect(page.locator(CARDS).filter(has_text=rejected_source).filter(has_text=rejected_tag)).to_have_count(0)

        page.get_by_role("slider", name="Confidence at least").focus()
        sure = re.compile(r"^Accept all [\d,]+$")
        expect(page.get_by_role("button", name=sure)).to_be_visible()
        settled(page)
        many = int(page.get_by_role("button", name=sure).inner_text().split()[-1].replace(",", ""))
        assert many > 0
        before = count(page)
        page.get_by_role("button", name=sure).click()
        expect(page.get_by_text(f"{before:,} suggestions, most confident first")).to_have_count(0)  # done and refitted
        settled(page)
        page.screenshot(path=ARTIFACTS / "suggestions-after.png", full_page=True)

    with Workspace(Settings(data_dir=data_dir)) as ws:
        items = ws.store.open("digits-demo", "pixels").all(with_vectors=False)
        tags = {m["source"]: m.get("tags") or [] for m in items.metadatas}
        reviews = Reviews(data_dir, "digits-demo", "pixels")
    assert tags[accepted_source] == [accepted_tag]
    assert sum(bool(t) for t in tags.values()) >= 50 + 1 + many
    rejected_id = next(i for i, m in zip(items.ids, items.metadatas) if m["source"] == rejected_source)
    assert reviews.rejected == {rejected_tag: {rejected_id}}
