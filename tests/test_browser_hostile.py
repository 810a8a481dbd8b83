"""Every page, in a real browser, on a collection whose every user-controlled field is hostile: markdown images,
HTML with handlers, scripts, javascript: links, autolinkable addresses and emails, plotly's own HTML, Streamlit
shortcodes. File names, tags, texts, CSV cells and headers, ids, sources, metadata keys and values, cluster
names (from a label field, renamed and merged by hand), a collection name and a space name typed into the app,
and the error messages that quote them: all must show as text. Nothing may leave 127.0.0.1, no dialog may
open, no link or image in the page may point anywhere else, and the hostile text must be on screen.

The collection is made through the real code paths: ingest with a tiny CLIP checkpoint, import-vectors with a
metadata CSV, and the pages' own forms for the rest.
"""

from __future__ import annotations

import csv
import io
import re
from urllib.parse import urlparse

import numpy as np
import pytest
from playwright.sync_api import expect

import media_factory as mf
from browser import ROOT, chromium_page, streamlit_server
from mmcore.config import Settings
from mmcore.ingest import SourceFile, ingest
from mmcore.spaces import normalize
from mmcore.vectors import import_vectors
from mmcore.workspace import Workspace

ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 180_000  # the first map pays numba's compile when its disk cache is cold
COLLECTION = "hostile"
HOSTILE = ("![md](http://evil.example/md.png) <img src=//evil.example/i onerror=alert(1)> <script>alert(2)</script> "
           "[js](javascript:alert(3)) www.evil.example me@evil.example <a href='http://evil.example/a'>a</a> :smile:")
PLOTLY = "<span style='fill:url(http://evil.example/s#x)'>s</span>"  # plotly's HTML can fetch through CSS
RENAMED = "![renamed](http://evil.example/renamed.png) www.evil.example/renamed"
DIM, PER_BLOB = 16, 20
BLOBS = ("sea", "notes", "forest")  # blob 0 has pictures, blob 1 texts, blob 2 neither

# Everything on the page that links or loads: external targets, javascript: links, inline handlers, CSS urls.
DOM_CHECK = """() => {
  const XLINK = 'http://www.w3.org/1999/xlink';
  const local = (u) => {
    if (u.startsWith('#')) return true;
    try {
      const x = new URL(u, document.baseURI);
      return ['data:', 'blob:', 'about:'].includes(x.protocol) ||
             (['http:', 'https:', 'ws:'].includes(x.protocol) && ['127.0.0.1', 'localhost'].includes(x.hostname));
    } catch { return false; }
  };
  const bad = [];
  for (const el of document.querySelectorAll('*')) {
    for (const value of [el.getAttribute('href'), el.getAttributeNS(XLINK, 'href'), el.getAttribute('src'),
                         el.getAttribute('srcset'), el.getAttribute('action'), el.getAttribute('formaction')]) {
      if (value && !local(value.trim())) bad.push(`${el.tagName} -> ${value}`);
    }
    for (const attr of el.attributes) {
      if (/^on/i.test(attr.name)) bad.push(`${el.tagName} ${attr.name}=${attr.value}`);
      if (attr.name === 'style' && /url\\(\\s*['"]?\\s*(?!#|data:)[a-z]*:?\\/\\//i.test(attr.value)) bad.push(`${el.tagName} style=${attr.value}`);
    }
    if (el.tagName.toLowerCase() === 'script' && /alert\\(/.test(el.textContent)) bad.push('a script from the data');
  }
  return bad;
}"""
CHART = ".st-key-map-chart .js-plotly-plot"
SHOWS_JS = "(text) => document.body.innerText.replaceAll('\\u2060', '').includes(text)"


def png(colour: tuple[int, int, int], pattern: str) -> bytes:
    return mf.encode(mf.picture((64, 48), colour, pattern), "PNG")


def csv_bytes(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, clip_dir):
    """Collection `hostile`: files ingested into its clip space (a picture, a text and a CSV read by rows, all
    with hostile names, cells and tags) and 60 vectors imported into its space `vecs` with a metadata CSV whose
    ids, sources, tags, texts, labels, a column's name and its values are hostile; two of them are the same
    vector (a duplicate set)."""
    data, files = tmp_path_factory.mktemp("hostile-data"), tmp_path_factory.mktemp("hostile-files")
    captions = csv_bytes([["caption", f"header {HOSTILE}"], [f"harbour caption {HOSTILE}", f"cell {HOSTILE}"],
                          [f"gulls caption {HOSTILE}", f"cell two {HOSTILE}"]])
    sources = [SourceFile(f"image {HOSTILE}.png", data=png((40, 110, 190), "circle")),
               SourceFile(f"text {HOSTILE}.txt", data=f"harbour notes\n\n{HOSTILE}\n\nwww.evil.example\n".encode()),
               SourceFile(f"captions {HOSTILE}.csv", data=captions)]

    rng = np.random.default_rng(11)
    centers = normalize(rng.standard_normal((len(BLOBS), DIM)))
    vectors = np.concatenate([centers[b] + 0.2 * rng.standard_normal((PER_BLOB, DIM)) for b in range(len(BLOBS))])
    vectors[1] = vectors[0]  # one exact duplicate
    np.save(files / "vectors.npy", vectors.astype(np.float32))
    header = ["id", "source", "tags", "text", "image", "label", f"key {HOSTILE}"]
    rows = [header]
    for b, blob in enumerate(BLOBS):
        for i in range(PER_BLOB):
            image = ""
            if blob == "sea":
                image = f"sea-{i}.png"
                (files / image).write_bytes(png((40 + 9 * i, 110, 190), ("stripes", "checker", "cross")[i % 3]))
            rows.append([f"{blob}-{i} {HOSTILE}", f"source {blob}-{i} {HOSTILE}.dat", f"tag {HOSTILE}|plain",
                         f"note {i} about the harbour {HOSTILE}" if blob == "notes" else "", image,
                         f"{blob} {HOSTILE} {PLOTLY}", f"value {b} {HOSTILE} {PLOTLY}"])
    (files / "meta.csv").write_bytes(csv_bytes(rows))

    with Workspace(Settings(data_dir=data, models={"clip": str(clip_dir)})) as ws:
        report = ingest(ws, sources, collection=COLLECTION, tags=[f"tag {HOSTILE}"], csv_rows=True)
        assert report.ok, report.results
        imported = import_vectors(ws, files / "vectors.npy", files / "meta.csv", COLLECTION, "vecs")
        assert imported.added == len(BLOBS) * PER_BLOB and not imported.problems, imported.problems
    return data


@pytest.fixture(scope="module")
def browser_page():
    with chromium_page(TIMEOUT_MS, height=1100) as page:
        yield page


class Watch:
    """What the browser did that it must not: requests off this machine, dialogs, popups, and (checked on each
    page) links, images and handlers in the DOM."""

    def __init__(self, page):
        self.page, self.requests, self.off_machine, self.dialogs, self.dom = page, [], [], [], []
        page.on("request", self.request)
        page.on("websocket", lambda ws: self.request_url(ws.url))
        page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))
        page.on("popup", lambda popup: self.dialogs.append(f"popup {popup.url}"))

    def request(self, request):
        self.request_url(request.url)

    def request_url(self, url: str):
        self.requests.append(url)
        parts = urlparse(url)
        if parts.scheme not in ("data", "blob", "about") and parts.hostname not in ("127.0.0.1", "localhost"):
            self.off_machine.append(url)

    def check(self, where: str, shows: str | None = None):
        """The page holds no outside link or image, and (when given) shows `shows` as text."""
        if shows is not None:
            try:
                self.page.wait_for_function(SHOWS_JS, arg=shows)
            except Exception:
                self.page.screenshot(path=ARTIFACTS / f"hostile-{where}-failed.png", full_page=True)
                raise
        self.page.wait_for_timeout(300)  # images requested by what just rendered
        self.dom += [f"{where}: {problem}" for problem in self.page.evaluate(DOM_CHECK)]
        self.page.screenshot(path=ARTIFACTS / f"hostile-{where}.png", full_page=True)
        assert self.off_machine == [] and self.dialogs == [] and self.dom == [], (self.off_machine, self.dialogs, self.dom)


def idle(page) -> None:
    """Wait for the script to finish: a click on a page link while it runs can be lost."""
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning")


def go(page, title: str, space: str | None = None) -> None:
    """Open a page (in `space`: the sidebar's pick starts afresh on each page)."""
    idle(page)
    heading = page.get_by_role("heading", name=title, exact=True)
    page.get_by_role("link", name=title).click()
    try:
        expect(heading).to_be_visible(timeout=20_000)
    except AssertionError:  # the click came as a rerun started, which swallowed it
        page.get_by_role("link", name=title).click()
        expect(heading).to_be_visible()
    if space is not None:
        choose(page, "Space", space)
        expect(page.get_by_role("combobox", name="Space")).to_have_value(space)


def choose(page, combobox: str, option) -> None:
    """Pick `option` (the whole text, or a pattern) in a selectbox."""
    idle(page)
    page.get_by_role("combobox", name=combobox).click()
    page.get_by_role("option", name=option, exact=isinstance(option, str)).click()


def test_every_page_shows_hostile_strings_as_text_and_nothing_leaves(data_dir, clip_dir, browser_page):
    page = browser_page
    ARTIFACTS.mkdir(exist_ok=True)
    env = {"MMCORE_DATA_DIR": str(data_dir), "MMCORE_CLIP_MODEL": str(clip_dir), "HF_HUB_OFFLINE": "1",
           "MMCORE_COLLECTION": COLLECTION}
    watch = Watch(page)
    with streamlit_server(env, ARTIFACTS / "streamlit-hostile.log") as url:
        page.goto(url)
        expect(page.get_by_role("heading", name="Search", exact=True)).to_be_visible()

        # Upload: a refused file and the progress name their file; tags are typed in.
        go(page, "Upload")
        page.get_by_role("textbox", name="Tags for these files").fill(f"typed tag {HOSTILE}")
        page.keyboard.press("Enter")
        upload(page, [(f"bad {HOSTILE}.png", b"not an image"), (f"notes {HOSTILE}.txt", f"harbour {HOSTILE}".encode())])
        watch.check("upload", shows=f"bad {HOSTILE}.png: not a readable image")

        # A collection name typed into the sidebar, shown on Upload and quoted by the error refusing it.
        choose(page, "Collection", "+ New collection…")
        page.get_by_role("textbox", name="New collection name").fill(f"new {HOSTILE}")
        page.keyboard.press("Enter")
        expect(page.get_by_role("combobox", name="Collection")).to_have_value(f"new {HOSTILE} (0 items)")
        watch.check("upload-new-collection", shows=f"to new {HOSTILE}.")
        upload(page, [(f"more {HOSTILE}.txt", b"harbour")])
        watch.check("upload-refused-collection", shows=f'Invalid collection name "new {HOSTILE}"')
        choose(page, "Collection", re.compile(rf"^{COLLECTION} \("))
        expect(page.get_by_text(f"sound to {COLLECTION}.")).to_be_visible()

        # Search: hits with hostile sources, snippets of hostile texts and CSV cells; then more like one.
        go(page, "Search")
        page.get_by_role("textbox", name="Describe what you are looking for").fill("harbour notes")
        page.keyboard.press("Enter")
        expect(page.locator(".st-key-hit-text-0 [data-testid=stText]")).to_be_visible()
        watch.check("search", shows=f"text {HOSTILE}.txt")
        page.locator(".st-key-hit-text-0").get_by_role("button", name="More like this").click()
        banner = page.locator(".st-key-like-banner")
        expect(banner).to_contain_text("More like this item")
        watch.check("search-like", shows=f"captions {HOSTILE}.csv")
        assert HOSTILE in banner.inner_text().replace("\u2060", "")  # the item's source, as text

        # Map of the imported space, coloured by every option, with a hover card and a lasso.
        go(page, "Map", space="vecs")
        legend = page.locator(f"{CHART} .legendtext")
        expect(legend.filter(has_text=f"label sea {HOSTILE[:30]}")).to_have_count(1)  # named by the label field
        watch.check("map")
        hover_a_point(page, watch)
        options = colour_options(page)
        assert any(o.startswith(f"key {HOSTILE[:30]}") for o in options) and "label" in options, options
        for i in [*range(1, len(options)), 0]:  # every colouring, back to the first
            colour_by(page, i)
            if options[i].startswith("key "):
                expect(legend.filter(has_text=f"value 0 {HOSTILE[:30]}")).to_have_count(1)
            watch.check(f"map-{'key' if 'evil' in options[i] else options[i]}")
        lasso_everything(page)
        watch.check("map-selection", shows=f"{HOSTILE}.dat")
        page.locator(".st-key-like-search").get_by_role("button", name="More like this").click()
        expect(page.get_by_role("heading", name="Search", exact=True)).to_be_visible()
        like = page.locator(".st-key-like-banner")
        expect(like).to_contain_text("More like this item")
        watch.check("search-like-imported")
        assert f"{HOSTILE}.dat" in like.inner_text().replace("\u2060", "")  # the item's source

        # Gallery cards and the item view: sources, cluster names, metadata keys and values, tags.
        go(page, "Gallery", space="vecs")
        watch.check("gallery", shows=f"{HOSTILE}.dat")
        page.locator("[class*='st-key-card-']").first.get_by_role("button", name="Open").click()
        expect(page.get_by_role("heading", name="Item", exact=True)).to_be_visible()
        watch.check("item", shows=f"tag {HOSTILE}")

        # Clusters: rename one to a markdown image, merge another into a third, write the names as tags.
        go(page, "Clusters", space="vecs")
        rows = page.locator("[class*='st-key-cluster-']")
        page.wait_for_function("""(text) => [...document.querySelectorAll("[class*='st-key-cluster-'] input")]
                                  .some(box => box.value.includes(text))""", arg=f"label sea {HOSTILE}")
        names = [row.get_by_role("textbox").input_value() for row in rows.all() if row.get_by_role("textbox").count()]
        assert len(names) >= 3 and any(HOSTILE in name for name in names), names  # named by the label field
        watch.check("clusters")
        box = rows.first.get_by_role("textbox")
        box.fill(RENAMED)
        box.press("Enter")
        rows.first.get_by_role("button", name="Save name").click()
        watch.check("clusters-renamed", shows=f"to '{RENAMED}'.")
        review = rows.nth(1).get_by_test_id("stCheckbox").filter(has_text="Review").locator("label")
        expect(review).to_have_count(1)  # not while a rerun still shows the old row beside the new one
        review.click()
        merge = page.get_by_role("combobox", name="Merge other clusters into this one")
        merge.click()
        clusters = page.get_by_role("option").filter(has_text=re.compile(r"\(\d+\)$"))  # not "Select all"
        clusters.filter(has_not_text="renamed").first.click()  # the renamed one stays
        page.keyboard.press("Escape")
        idle(page)
        page.get_by_role("button", name="Merge", exact=True).click()
        watch.check("clusters-merged", shows="Merged 1 cluster(s) into '")
        page.get_by_role("button", name="Write names to items as tags").click()
        expect(page.get_by_text("Tagged")).to_be_visible()
        watch.check("clusters-tagged")

        go(page, "Map", space="vecs")
        expect(legend.filter(has_text=RENAMED[:40])).to_have_count(1)
        watch.check("map-renamed")

        go(page, "Outliers", space="vecs")
        watch.check("outliers", shows=f"{HOSTILE}.dat")

        go(page, "Duplicates", space="vecs")
        expect(page.get_by_text("1 set to review")).to_be_visible()
        watch.check("duplicates", shows=f"1 · source sea-0 {HOSTILE}.dat")
        page.get_by_role("button", name="Keep first, delete the rest").click()
        expect(page.get_by_text("This can't be undone")).to_be_visible()
        watch.check("duplicates-delete", shows=f"keeping source sea-0 {HOSTILE}.dat.")
        page.keyboard.press("Escape")

        # Collections: an import into a space named by the user is refused, quoting the name.
        go(page, "Collections")
        page.get_by_test_id("stFileUploader").filter(has_text="Vectors").locator("input[type=file]").set_input_files(
            [{"name": "more.npy", "mimeType": "application/octet-stream", "buffer": npy_bytes()}])
        page.get_by_role("textbox", name="Space name").fill(HOSTILE)
        page.get_by_role("button", name="Import").click()
        watch.check("collections", shows=f"Invalid space name \"{HOSTILE}\"")

    assert len(watch.requests) > 20, watch.requests  # the pages did load their scripts, styles, images and socket


def upload(page, files: list[tuple[str, bytes]]) -> None:
    page.get_by_test_id("stFileUploader").filter(has_text="Drop files here").locator("input[type=file]").set_input_files(
        [{"name": name, "mimeType": "application/octet-stream", "buffer": data} for name, data in files])
    expect(page.get_by_test_id("stFileChip")).to_have_count(len(files))
    page.get_by_role("button", name=f"Add {len(files)} file(s)").click()


def npy_bytes() -> bytes:
    out = io.BytesIO()
    np.save(out, np.ones((2, DIM), np.float32))
    return out.getvalue()


def colour_options(page) -> list[str]:
    """The map's "Colour by" menu (the chart's own menu), as shown."""
    page.locator(f"{CHART} .updatemenu-header-group").click()
    options = page.locator(f"{CHART} .updatemenu-item-text").all_text_contents()
    page.locator(f"{CHART} .updatemenu-header-group").click()
    return options


def colour_by(page, index: int) -> None:
    """Colour the map by the menu's `index`th option (switched in the browser: no rerun)."""
    page.locator(f"{CHART} .updatemenu-header-group").click()
    page.locator(f"{CHART} .updatemenu-item-text").nth(index).click()
    expect(page.locator(f"{CHART} .updatemenu-dropdown-button")).to_have_count(0)  # faded out: a lasso would start on it


def hover_a_point(page, watch) -> None:
    """The hover card of a point: its title is the hostile source and its caption the hostile cluster name, as text."""
    point = page.evaluate(f"""() => {{
      const gd = document.querySelector('{CHART}');
      const trace = gd._fullData.find(t => t.name === 'items');
      const {{xaxis, yaxis, _size}} = gd._fullLayout;
      const box = gd.getBoundingClientRect();
      return {{x: box.left + _size.l + xaxis.l2p(trace.x[3]), y: box.top + _size.t + yaxis.l2p(trace.y[3])}};
    }}""")
    page.mouse.move(point["x"] - 30, point["y"] - 30)
    page.mouse.move(point["x"], point["y"], steps=5)
    card = page.get_by_test_id("mmHoverCard")
    expect(card.locator(".mm-hover-title")).to_contain_text(HOSTILE)
    expect(card.locator(".mm-hover-caption")).to_contain_text(HOSTILE)
    watch.check("map-hover")
    page.mouse.move(5, 5)


def lasso_everything(page) -> None:
    box = page.locator(f"{CHART} .nsewdrag").first.bounding_box()
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    corners = [(0.01, 0.01), (0.99, 0.01), (0.99, 0.99), (0.01, 0.99), (0.01, 0.02)]
    page.mouse.move(x0 + w * corners[0][0], y0 + h * corners[0][1])
    page.mouse.down()
    for cx, cy in corners[1:]:
        page.mouse.move(x0 + w * cx, y0 + h * cy, steps=8)
    page.mouse.up()
    expect(page.get_by_role("heading", name=re.compile(r"\d+ selected"))).to_be_visible()
