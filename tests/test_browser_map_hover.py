"""The Map page in a real browser: hovering a point shows a card with its thumbnail (or its text) and its source.
No model: a collection of synthetic vectors with stored thumbnails."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from browser import ROOT, chromium_page, streamlit_server
from test_browser_clusters import NOTES, TIMEOUT_MS, make_collection

ARTIFACTS = ROOT / "test-artifacts"

POINT_JS = """([name, index]) => {
  // The page pixel of point `index` of the category whose legend entry contains `name` (every category when
  // `name` is empty). A category's code in the points' colours is its place in the shown legend.
  const gd = document.querySelector('.st-key-map-chart .js-plotly-plot');
  const code = gd._fullData.filter(t => t.legendgroup && t.visible === true).findIndex(t => t.name.includes(name));
  const items = gd._fullData.find(t => t.name === 'items');
  const points = Array.from(items.marker.color).map((c, i) => [c, i]).filter(([c]) => !name || c === code);
  const trace = {x: points.map(([, i]) => items.x[i]), y: points.map(([, i]) => items.y[i])};
  const {xaxis, yaxis, _size} = gd._fullLayout;
  const box = gd.getBoundingClientRect();
  return {x: box.left + _size.l + xaxis.l2p(trace.x[index]), y: box.top + _size.t + yaxis.l2p(trace.y[index])};
}"""


@pytest.fixture(scope="module")
def browser_page():
    with chromium_page(TIMEOUT_MS, height=1100) as page:
        yield page


def hover(page, name: str, index: int):
    """Move the real mouse onto a point, as a person would, and return the card."""
    card = page.get_by_test_id("mmHoverCard")
    for _ in range(3):  # a rerun that redraws the chart (or moves it) under a still pointer leaves no hover
        page.locator(".st-key-map-chart .js-plotly-plot").scroll_into_view_if_needed()
        point = page.evaluate(POINT_JS, [name, index])
        page.mouse.move(point["x"] - 30, point["y"] - 30)
        page.mouse.move(point["x"], point["y"], steps=5)
        try:
            expect(card).to_be_visible(timeout=15_000)
            break
        except AssertionError:
            continue
    return card


def expect_card_for_hovered_point(page) -> None:
    """The card is for the point plotly hovers (plotly throttles hovers, so its last one may still be on its way)."""
    page.wait_for_function("""() => {
      const card = document.querySelector('.mm-hover-card');
      const hovered = document.querySelector('.st-key-map-chart .js-plotly-plot')?._hoverdata;  // none mid-rerun
      return card && !card.hidden && hovered?.length > 0 && String(hovered[0].customdata) === card.dataset.row;
    }""")


def test_hovering_a_point_shows_its_thumbnail_or_text(tmp_path, browser_page):
    page = browser_page
    ARTIFACTS.mkdir(exist_ok=True)
    data_dir = tmp_path / "data"
    make_collection(data_dir)
    env = {"MMCORE_DATA_DIR": str(data_dir), "MMCORE_COLLECTION": "review", "HF_HUB_OFFLINE": "1"}
    with streamlit_server(env, ARTIFACTS / "streamlit-map-hover.log") as url:
        page.goto(f"{url}/map")
        expect(page.locator(".js-plotly-plot .legendtext").filter(has_text="sea")).to_have_count(1)

        card = hover(page, "sea", 3)
        expect(card).to_be_visible()
        expect_card_for_hovered_point(page)
        image = card.locator("img")
        expect(image).to_have_js_property("complete", True)
        assert image.evaluate("img => img.naturalWidth") > 0, "the thumbnail did not load"
        expect(card.locator(".mm-hover-title")).to_have_text(re.compile(r"^sea-\d{3}\.png$"))
        expect(card.locator(".mm-hover-caption")).to_contain_text("outlier")
        page.screenshot(path=ARTIFACTS / "map-hover.png")

        page.mouse.move(5, 5)  # off the chart
        expect(card).to_be_hidden()

        card = hover(page, "forest", 5)  # another image blob: a second round trip, not the first card again
        expect(card.locator(".mm-hover-title")).to_have_text(re.compile(r"^forest-\d{3}\.png$"))

        names = page.evaluate("() => document.querySelector('.st-key-map-chart .js-plotly-plot')._fullData"
                              ".filter(t => t.legendgroup && t.visible === true).map(t => t.name)")
        notes = next(n for n in names if not re.search("sea|forest|noise", n))  # text clusters get keywords
        card = hover(page, notes, 2)
        expect(card.locator(".mm-hover-title")).to_have_text(re.compile(r"^notes-\d{3}\.txt$"))
        expect(card.locator("img")).to_have_count(0)
        snippet = card.locator(".mm-hover-text")
        expect(snippet).to_have_text(re.compile("|".join(NOTES)))
        page.screenshot(path=ARTIFACTS / "map-hover-text.png")

        chart = page.locator(".st-key-map-chart .js-plotly-plot")
        chart.locator(".updatemenu-header-group").click()  # the chart's own menu: no rerun
        chart.locator(".updatemenu-item-text", has_text="label").click()
        expect(chart.locator(".legendtext").first).to_have_text("label")
        card = hover(page, "forest", 7)  # the card says what the map is coloured by
        expect_card_for_hovered_point(page)
        expect(card.locator(".mm-hover-caption")).to_contain_text(re.compile(r"outlier \d\.\d\d · label forest$"))

        chart.locator(".updatemenu-header-group").click()
        chart.locator(".updatemenu-item-text", has_text="outlier score").click()
        expect(chart.locator(".colorbar")).to_have_count(1)  # one continuous colouring, a colour bar
        card = hover(page, "", 10)
        expect_card_for_hovered_point(page)
        expect(card.locator(".mm-hover-title")).to_have_text(re.compile(r"^(sea|forest|notes)-\d{3}\.(png|txt)$"))
