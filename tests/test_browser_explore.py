"""From an empty data dir: load the demo, see the map, name a cluster that survives a restart, review
outliers and duplicates — in a real browser against a real Streamlit server."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from browser import ROOT, chromium_page, streamlit_server

ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 180_000  # the first map pays numba's compile when its disk cache is cold


@pytest.fixture(scope="module")
def browser_page():
    with chromium_page(TIMEOUT_MS, height=1000) as page:
        yield page


def test_demo_map_clusters_outliers_duplicates(tmp_path, browser_page):
    page = browser_page
    ARTIFACTS.mkdir(exist_ok=True)
    env = {"MMCORE_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"}
    with streamlit_server(env, ARTIFACTS / "streamlit-explore.log") as url:
        page.goto(f"{url}/collections")  # directly: the root URL switches page itself, which may land after a click
        page.get_by_role("button", name="Load the demo").click()
        expect(page.get_by_role("combobox", name="Collection")).to_have_value("digits-demo (1,797 items)")

        page.get_by_role("link", name="Map").click()
        expect(page.locator(".js-plotly-plot .legendtext").first).to_be_visible()
        expect(page.get_by_text("1,797 items ·")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "map.png")
        lasso_and_tag(page, tmp_path / "data")

        page.get_by_role("link", name="Clusters").click()
        first = page.locator("[class*='st-key-cluster-']").first
        name_box = first.get_by_role("textbox")
        name_box.fill("sea birds")
        name_box.press("Enter")
        save = first.get_by_role("button", name="Save name")
        expect(save).to_be_enabled()
        save.click()
        expect(save).to_be_disabled()  # the saved name is now the cluster's name
        page.screenshot(path=ARTIFACTS / "clusters.png")

    with streamlit_server(env, ARTIFACTS / "streamlit-explore-2.log") as url:  # a restart
        page.goto(f"{url}/collections")  # directly: the root URL switches page itself, which may land after a click
        page.get_by_role("button", name="Load the demo").click()  # idempotent: selects the demo collection
        expect(page.get_by_role("combobox", name="Collection")).to_have_value("digits-demo (1,797 items)")
        page.get_by_role("link", name="Clusters").click()
        expect(page.locator("[class*='st-key-cluster-']").first.get_by_role("textbox")).to_have_value("sea birds")
        page.get_by_role("link", name="Map").click()
        expect(page.locator(".js-plotly-plot .legendtext").filter(has_text="sea birds")).to_have_count(1)

        page.get_by_role("link", name="Outliers").click()
        expect(page.locator("[class*='st-key-outlier-'] img").first).to_be_visible()
        page.screenshot(path=ARTIFACTS / "outliers.png")

        page.get_by_role("link", name="Duplicates").click()
        expect(page.get_by_text("to review").or_(page.get_by_text("No near-duplicates left"))).to_be_visible()
        page.screenshot(path=ARTIFACTS / "duplicates-demo.png")


def lasso_and_tag(page, data_dir) -> None:
    """Draw a lasso round the middle of the map, tag what it caught, and check the store has the tags."""
    import re

    from mmcore.config import Settings
    from mmcore.workspace import Workspace

    box = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    corners = [(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8), (0.2, 0.21)]
    page.mouse.move(x0 + w * corners[0][0], y0 + h * corners[0][1])
    page.mouse.down()
    for cx, cy in corners[1:]:
        page.mouse.move(x0 + w * cx, y0 + h * cy, steps=8)
    page.mouse.up()
    heading = page.get_by_role("heading", name=re.compile(r"[\d,]+ selected"))
    expect(heading).to_be_visible()
    selected = int(re.match(r"([\d,]+)", heading.inner_text()).group(1).replace(",", ""))
    assert 0 < selected < 1797
    page.get_by_placeholder("e.g. needs-review").fill("lassoed")
    page.get_by_role("button", name=f"Tag {selected:,}").click()
    expect(page.get_by_text("Tagged")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "map-selection.png")
    items = Workspace(Settings(data_dir=data_dir)).store.open("digits-demo", "pixels").all(with_vectors=False)
    tagged = sum("lassoed" in (m.get("tags") or []) for m in items.metadatas)
    assert tagged == selected
