"""The Map page in a real browser on the digits demo: colour by any column without a rerun, cluster names on the map,
a table linked both ways to the selection, facets that cross-filter the map, and the 3D toggle."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect
from streamlit.proto.BackMsg_pb2 import BackMsg

from browser import ROOT, chromium_page, screenshot_main, streamlit_server
from mmcore.config import Settings
from mmcore.demo import load_digits_demo
from mmcore.workspace import Workspace

ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ROOT / "docs" / "screenshots"
TIMEOUT_MS = 240_000  # the first map (and the 3D one) pays UMAP's fit and numba's compile when its cache is cold
CHART = ".st-key-map-chart .js-plotly-plot"
# Null-safe: while a rerun replaces the chart there is a moment without one (no traces then).
TRACES = f"() => (document.querySelector('{CHART}')?._fullData ?? [])" \
         ".filter(t => t.x && t.x.length > 1 || t.name === 'picked').map(t => [t.name, t.x.length])"


POINT_JS = f"""(index) => {{
  // The page pixel of point `index` of the map's points.
  const gd = document.querySelector('{CHART}');
  const trace = gd._fullData.find(t => t.name === 'items');
  const {{xaxis, yaxis, _size}} = gd._fullLayout;
  const box = gd.getBoundingClientRect();
  return {{x: box.left + _size.l + xaxis.l2p(trace.x[index]), y: box.top + _size.t + yaxis.l2p(trace.y[index])}};
}}"""


@pytest.fixture(scope="module")
def browser_page():
    with chromium_page(TIMEOUT_MS, height=1200) as page:
        yield page


def full_reruns(page) -> list[str]:
    """Records every script run the browser asks for: '' for the whole page, else the fragment's id."""
    runs: list[str] = []

    def sent(payload) -> None:
        message = BackMsg()
        message.ParseFromString(payload if isinstance(payload, bytes) else payload.encode())
        if message.WhichOneof("type") == "rerun_script":
            runs.append(message.rerun_script.fragment_id)

    page.on("websocket", lambda ws: ws.on("framesent", sent))
    return runs


def legend(page) -> list[str]:
    return page.locator(f"{CHART} .legendtext").all_text_contents()


def colour_by(page, label: str) -> None:
    """Pick a colouring in the chart's menu and wait for its list to close, as a person sees it close: plotly fades
    the list out over 250 ms, and until then its items, over the plot's top left, take the pointer (a lasso started
    on them draws nothing)."""
    page.locator(f"{CHART} .updatemenu-header-group").click()
    page.locator(f"{CHART} .updatemenu-item-text", has_text=re.compile(f"^{label}$")).click()
    expect(page.locator(f"{CHART} .updatemenu-dropdown-button")).to_have_count(0)


def lasso(page, corners) -> None:
    box = page.locator(f"{CHART} .nsewdrag").first.bounding_box()
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x0 + w * corners[0][0], y0 + h * corners[0][1])
    page.mouse.down()
    for cx, cy in corners[1:]:
        page.mouse.move(x0 + w * cx, y0 + h * cy, steps=8)
    page.mouse.up()


def open_facet(page, name: str) -> None:
    """Open a facet's list of values. Scrolled into view first, on its own: the list closes when anything around it
    scrolls, and a click scrolls and presses at once, so on a busy machine the scroll's event, which comes with the
    next frame, came after the list had opened and closed it again."""
    expect(page.get_by_role("listbox")).to_have_count(0)  # the list last opened has faded out
    box = page.get_by_role("combobox", name=name)
    box.scroll_into_view_if_needed()
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    box.click()
    expect(page.get_by_role("listbox")).to_be_visible()


def pick_rows(page, rows) -> None:
    """Tick rows of the items table (a canvas grid: its row checkboxes sit at its left edge, 35 px a row)."""
    table = page.locator("[class*='st-key-map-table'] [data-testid='stDataFrame']")
    expect(table).to_have_count(1)  # the table of the last run only (each set of rows is a new table)
    table.scroll_into_view_if_needed()
    box = table.bounding_box()
    for n, row in enumerate(rows, start=1):
        page.mouse.click(box["x"] + 18, box["y"] + 35 + 35 * row + 17)
        expect(page.get_by_role("heading", name=f"{n} selected")).to_be_visible()


def cloud_extent(page) -> float:
    """How much of the plot area the coloured points span, as the larger of width and height fractions; 1.0 or
    more when the cloud is cut at the plot's edge."""
    size = page.evaluate(f"() => document.querySelector('{CHART}')._fullLayout._size")
    shot = Image.open(io.BytesIO(page.locator(CHART).screenshot())).convert("RGB")
    plot = np.asarray(shot.crop((size["l"], size["t"], size["l"] + size["w"], size["t"] + size["h"]))).astype(int)
    coloured = np.argwhere(plot.max(axis=2) - plot.min(axis=2) > 40)  # points, not the white ground or grey
    (top, left), (bottom, right) = coloured.min(axis=0), coloured.max(axis=0)
    if min(top, left) < 2 or bottom > size["h"] - 3 or right > size["w"] - 3:
        return 1.0
    return max((right - left) / size["w"], (bottom - top) / size["h"])


def test_colour_switching_labels_table_facets_and_3d(tmp_path, browser_page):
    page = browser_page
    ARTIFACTS.mkdir(exist_ok=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    data_dir = tmp_path / "data"
    with Workspace(Settings(data_dir=data_dir)) as ws:
        load_digits_demo(ws)
    env = {"MMCORE_DATA_DIR": str(data_dir), "MMCORE_COLLECTION": "digits-demo", "HF_HUB_OFFLINE": "1"}
    runs = full_reruns(page)
    with streamlit_server(env, ARTIFACTS / "streamlit-map.log") as url:
        page.goto(f"{url}/map")
        expect(page.locator(f"{CHART} .legendtext").first).to_be_visible()
        expect(page.get_by_text("1,797 items in the map")).to_be_visible()

        # Cluster names on the map, as many as fit, each a name from the legend; the legend biggest first, noise last.
        names = page.locator(f"{CHART} .annotation-text").all_text_contents()
        entries = legend(page)
        # (Whether the digits leave any noise depends on the CPU's rounding: none on some.)
        clusters = [e for e in entries[1:] if not e.startswith("noise (")]
        assert entries[0] == "cluster" and entries[1:len(clusters) + 1] == clusters and len(entries) - len(clusters) <= 2, entries
        sizes = [int(re.search(r"\(([\d,]+)\)$", e).group(1).replace(",", "")) for e in clusters]
        assert sizes == sorted(sizes, reverse=True)
        assert len(names) >= 5 and all(any(e.startswith(n + " (") for e in entries) for n in names)
        # The legend sits below the toolbar, never under it.
        page.locator(CHART).hover()
        bar, first = page.locator(f"{CHART} .modebar").bounding_box(), page.locator(f"{CHART} .legend").bounding_box()
        assert first["y"] >= bar["y"] + bar["height"] or first["x"] >= bar["x"] + bar["width"]
        page.screenshot(path=ARTIFACTS / "map.png")
        screenshot_main(page, SCREENSHOTS / "map.png")

        # Colour by: switched in the browser, with no run of the page's script (the chart's menu reports its
        # choice to the hover card's fragment only).
        page.wait_for_timeout(1000)
        before = len(runs)
        colour_by(page, "label")
        expect(page.locator(f"{CHART} .legendtext").first).to_have_text("label")
        assert legend(page)[1:4] == [entries for entries in legend(page)[1:4]] and len(legend(page)) == 11  # 10 digits
        colour_by(page, "outlier score")
        expect(page.locator(f"{CHART} .colorbar")).to_have_count(1)
        expect(page.locator(f"{CHART} .colorbar .cbtitle")).to_have_text("outlier score")
        colour_by(page, "added at")  # one upload: one date, in the legend
        expect(page.locator(f"{CHART} .legendtext").nth(1)).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \(1,797\)$"))
        expect(page.locator(f"{CHART} .annotation-text")).to_have_count(0)  # names only with clusters
        colour_by(page, "cluster")
        expect(page.locator(f"{CHART} .annotation-text")).to_have_count(len(names))
        page.wait_for_timeout(1500)
        assert "" not in runs[before:], f"the page's script ran again: {runs[before:]}"
        colour_by(page, "label")

        # Lasso -> the table lists the selection; rows picked in it -> ringed on the map and the selection panel.
        lasso(page, [(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8), (0.2, 0.21)])
        caption = page.get_by_text(re.compile(r"^[\d,]+ items selected on the map"))
        expect(caption).to_be_visible()
        lassoed = int(re.match(r"([\d,]+)", caption.text_content()).group(1).replace(",", ""))
        assert 0 < lassoed < 1797
        expect(page.locator(f"{CHART} .legendtext").first).to_have_text("label")  # the colouring chosen survives
        pick_rows(page, [0, 2])
        expect(page.get_by_role("heading", name="2 selected")).to_be_visible()
        ringed = page.evaluate(f"""() => {{
          const t = document.querySelector('{CHART}')._fullData.find(t => t.name === 'picked');
          return t ? Array.from(t.customdata) : [];
        }}""")
        assert len(ringed) == 2
        page.screenshot(path=ARTIFACTS / "map-table.png", full_page=True)

        # Facets: pick a digit; the map fades the rest, the table lists what is kept, other facets count within it.
        page.get_by_role("button", name="Clear the map selection").click()
        expect(page.get_by_text("1,797 items in the map")).to_be_visible()
        open_facet(page, "label")
        option = page.get_by_role("option", name=re.compile(r"^3 \(\d+\)$"))
        threes = int(re.search(r"\((\d+)\)", option.text_content()).group(1))
        option.click()
        page.keyboard.press("Escape")
        expect(page.get_by_text(f"{threes:,} items kept by the filters")).to_be_visible()
        page.wait_for_function(f"() => ({TRACES})().some(([name, n]) => name === 'filtered out')")  # the chart comes after the table
        traces = dict(page.evaluate(TRACES))
        assert traces["items"] == threes and traces["filtered out"] == 1797 - threes
        open_facet(page, "cluster")
        options = [o for o in page.get_by_role("option").all_text_contents() if o != "Select all"]
        counts = [int(re.search(r"\(([\d,]+)\)$", o).group(1).replace(",", "")) for o in options if "(" in o]
        assert len(counts) == len(options), options
        assert sum(counts) == threes  # each cluster counts its threes only
        page.keyboard.press("Escape")
        page.screenshot(path=ARTIFACTS / "map-facets.png", full_page=True)
        screenshot_main(page, SCREENSHOTS / "map-facets.png")

        # 3D: no card left floating from a hover in 2D; the cloud fills its canvas.
        open_facet(page, "label")
        page.keyboard.press("Backspace")  # unpick the 3
        page.keyboard.press("Escape")
        expect(page.get_by_text("1,797 items in the map")).to_be_visible()
        # The redrawn figure is a new chart to Streamlit, drawn above the old one until the run ends: wait for the
        # new chart, then for the old one to go.
        page.wait_for_function(f"() => {{ const t = ({TRACES})(); return t.length > 0 && !t.some(([name]) => name === 'filtered out'); }}")
        expect(page.locator(CHART)).to_have_count(1)
        page.locator(CHART).scroll_into_view_if_needed()
        point = page.evaluate(POINT_JS, 500)
        page.mouse.move(point["x"] - 30, point["y"] - 30)
        page.mouse.move(point["x"], point["y"], steps=5)
        card = page.get_by_test_id("mmHoverCard")
        expect(card).to_be_visible()
        page.get_by_text("3D", exact=True).click()
        expect(page.locator(f"{CHART} .gl-container canvas").first).to_be_visible()
        page.wait_for_function(f"() => document.querySelector('{CHART}')?._fullLayout?.scene !== undefined")
        expect(card).to_be_hidden()
        page.wait_for_timeout(1500)  # WebGL paints after the layout
        extent = cloud_extent(page)
        print(f"3D cloud spans {extent:.2f} of its plot")
        assert 0.65 < extent < 1.0, "the 3D cloud is a small blot in its canvas, or cut at its edge"
        page.wait_for_timeout(1500)
        page.screenshot(path=ARTIFACTS / "map-3d.png")
