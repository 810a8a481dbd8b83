"""The Gallery and the item view in a real browser on the digits demo: pages, orders and Search's filters; an item's
original, metadata, cluster, tags and nearest neighbours; the item view reached from the Gallery, the Map's
selection and Search results."""

from __future__ import annotations

import re

import numpy as np
import pytest
from playwright.sync_api import expect

from browser import ROOT, chromium_page, screenshot_main, settled, streamlit_server
from mmcore.analysis.maps import analyze
from mmcore.config import Settings
from mmcore.demo import load_digits_demo
from mmcore.workspace import Workspace

ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ROOT / "docs" / "screenshots"
TIMEOUT_MS = 240_000  # the first map pays UMAP's fit and numba's compile when its cache is cold
CARDS = "[class*='st-key-card-']"


@pytest.fixture(scope="module")
def browser_page():
    with chromium_page(TIMEOUT_MS, height=1100) as page:
        yield page


def sources(page) -> list[str]:
    settled(page)
    return [c.split("\n")[0] for c in page.locator(CARDS).all_inner_texts()]


def outliers(page) -> list[float]:
    settled(page)
    return [float(re.search(r"outlier (\d\.\d\d)", c).group(1)) for c in page.locator(CARDS).all_inner_texts()]


def test_gallery_pages_orders_filters_and_the_item_view(tmp_path, browser_page):
    page = browser_page
    ARTIFACTS.mkdir(exist_ok=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    data_dir = tmp_path / "data"
    with Workspace(Settings(data_dir=data_dir)) as ws:
        load_digits_demo(ws)
        analysis = analyze(ws, "digits-demo", "pixels")  # the Map page's defaults: the pages find it cached
    env = {"MMCORE_DATA_DIR": str(data_dir), "MMCORE_COLLECTION": "digits-demo", "HF_HUB_OFFLINE": "1"}
    with streamlit_server(env, ARTIFACTS / "streamlit-gallery.log") as url:
        page.goto(f"{url}/gallery")
        expect(page.get_by_text("1,797 of 1,797 items · page 1 of 38")).to_be_visible()
        expect(page.locator(CARDS)).to_have_count(48)
        expect(page.locator(f"{CARDS} img").first).to_have_js_property("complete", True)
        first = sources(page)

        page.get_by_role("spinbutton", name="Page (of 38)").fill("2")
        page.get_by_role("spinbutton", name="Page (of 38)").press("Enter")
        expect(page.get_by_text("page 2 of 38")).to_be_visible()
        expect(page.locator(CARDS).filter(has_text=first[0])).to_have_count(0)
        assert not set(sources(page)) & set(first)

        page.get_by_role("combobox", name="Sort by").click()
        page.get_by_role("option", name="outlier score").click()
        expect(page.get_by_text("page 1 of 38")).to_be_visible()  # a new order starts at page 1
        expect(page.locator(CARDS).first).to_contain_text(f"outlier {analysis.outlier_scores.max():.2f}")
        scores = outliers(page)
        assert scores == sorted(scores, reverse=True)
        page.screenshot(path=ARTIFACTS / "gallery.png")
        screenshot_main(page, SCREENSHOTS / "gallery.png")

        page.get_by_text("Filters").click()  # Search's own filters
        page.get_by_role("textbox", name="Source file names (comma-separated, exact)").fill("digits/5.png, digits/7.png")
        page.get_by_role("textbox", name="Source file names (comma-separated, exact)").press("Enter")
        expect(page.get_by_text("2 of 1,797 items · page 1 of 1")).to_be_visible()
        assert sorted(sources(page)) == ["digits/5.png", "digits/7.png"]

        # The item view from the Gallery: the original, metadata, cluster, tags and nearest neighbours.
        page.locator(CARDS).filter(has_text="digits/5.png").get_by_role("button", name="Open").click()
        expect(page.get_by_role("heading", name="digits/5.png")).to_be_visible()
        assert "item=" in page.url
        original = page.locator("[data-testid=stMain] img").first
        expect(original).to_have_js_property("complete", True)
        assert original.evaluate("img => img.naturalWidth") == 64  # the stored original PNG, not its thumbnail
        metadata = page.get_by_test_id("stDataFrame")
        expect(metadata).to_contain_text("label")
        expect(metadata).to_contain_text("digits/5.png")
        expect(page.get_by_test_id("stMetric").filter(has_text="Cluster")).to_be_visible()
        expect(page.get_by_test_id("stMetric").filter(has_text="Outlier score")).to_contain_text(re.compile(r"\d\.\d\d"))
        neighbours = page.locator("[class*='st-key-near-']")
        expect(neighbours).to_have_count(12)
        expect(neighbours.first.locator("img")).to_have_js_property("complete", True)

        tags = page.get_by_role("combobox", name="Tags")
        tags.fill("keeper")
        tags.press("Enter")
        page.keyboard.press("Escape")
        page.get_by_role("button", name="Save tags").click()
        expect(page.get_by_role("button", name="Save tags")).to_be_disabled()
        page.screenshot(path=ARTIFACTS / "item.png", full_page=True)
        screenshot_main(page, SCREENSHOTS / "item.png")
        with Workspace(Settings(data_dir=data_dir)) as ws:
            items = ws.store.open("digits-demo", "pixels").all(with_vectors=False)
        tagged = [m["source"] for m in items.metadatas if "keeper" in (m.get("tags") or [])]
        assert tagged == ["digits/5.png"]

        near = neighbours.first.inner_text().split(" · ")[-1].split("\n")[0]
        neighbours.first.get_by_role("button", name="Open").click()
        expect(page.get_by_role("heading", name=near)).to_be_visible()

        # From Search results ("more like this" from the item view, then a result's Open).
        page.get_by_role("button", name="More like this").click()
        expect(page.get_by_role("heading", name="Search")).to_be_visible()
        hit = page.locator("[class*='st-key-hit-']").first
        expect(hit).to_contain_text(re.compile(r"digits/\d+\.png"))
        settled(page)
        hit_source = re.search(r"digits/\d+\.png", hit.inner_text()).group(0)
        hit.get_by_role("button", name="Open").click()
        expect(page.get_by_role("heading", name=hit_source)).to_be_visible()

        # From a selection on the Map.
        page.get_by_role("link", name="Map").click()
        chart = page.locator(".st-key-map-chart .js-plotly-plot")
        expect(chart.locator(".legendtext").first).to_be_visible()
        box = chart.locator(".nsewdrag").first.bounding_box()
        x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
        page.mouse.move(x0 + w * 0.05, y0 + h * 0.05)
        page.mouse.down()
        for cx, cy in [(0.95, 0.05), (0.95, 0.95), (0.05, 0.95), (0.05, 0.06)]:
            page.mouse.move(x0 + w * cx, y0 + h * cy, steps=8)
        page.mouse.up()
        expect(page.get_by_role("heading", name=re.compile(r"[\d,]+ selected"))).to_be_visible()
        picked = page.get_by_role("combobox", name="Item").input_value()
        page.locator(".st-key-open-pick button").click()
        expect(page.get_by_role("heading", name=picked.split(" (")[0])).to_be_visible()
    assert np.isfinite(analysis.outlier_scores).all()
