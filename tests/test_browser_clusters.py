"""The Clusters page in a real browser: rename a cluster, write names as tags, restart the server, and find
the name on the Clusters page and in the Map's legend. No model: a collection of synthetic vectors."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from browser import ROOT, chromium_page, expect_loaded, streamlit_server
from mmcore.config import Settings
from mmcore.spaces import SpaceInfo, normalize
from mmcore.workspace import Workspace

ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 120_000  # the first map pays numba's compile when its disk cache is cold
DIM, PER_BLOB = 16, 40
BLOBS = [  # (label, modality, colour for image thumbnails)
    ("sea", "image", (40, 110, 190)),
    ("notes", "text", None),
    ("forest", "image", (40, 140, 70)),
]
NOTES = ["gull on the harbour wall", "terns diving at dawn", "cormorant drying its wings", "puffins on the cliff"]


def thumbnail(ws: Workspace, key: str, colour: tuple[int, int, int], i: int) -> str:
    """A small distinct picture (a disc on a tinted ground), stored the way ingest stores thumbnails."""
    im = Image.new("RGB", (96, 96), tuple(min(255, c + 12 * (i % 5)) for c in colour))
    ImageDraw.Draw(im).ellipse([20 + i % 7 * 4, 24, 70, 74 - i % 5 * 4], fill=(245, 240, 220))
    path = ws.files.save_thumbnail(hashlib.sha1(key.encode()).hexdigest(), im)
    return path.relative_to(ws.files.root).as_posix()


def make_collection(data_dir) -> None:
    """'review': three blobs (two of images with thumbnails, one of text notes) in a space of its own.

    The workspace is closed afterwards, so the app's server may write the store (one writing process at a time)."""
    with Workspace(Settings(data_dir=data_dir)) as ws:
        rng = np.random.default_rng(5)
        centers = normalize(rng.standard_normal((len(BLOBS), DIM)))
        collection = ws.store.collection("review", SpaceInfo("vecs", "synthetic", "", DIM))
        for b, (label, modality, colour) in enumerate(BLOBS):
            vectors = normalize(centers[b] + 0.07 * rng.standard_normal((PER_BLOB, DIM)))
            ids = [f"{label}-{i:03d}" for i in range(PER_BLOB)]
            metas, docs = [], []
            for i, id_ in enumerate(ids):
                meta = {"modality": modality, "label": label, "source": f"{id_}.{'png' if colour else 'txt'}"}
                if colour:
                    meta["thumbnail"] = thumbnail(ws, id_, colour, i)
                metas.append(meta)
                docs.append(f"{NOTES[i % len(NOTES)]} ({i})" if modality == "text" else None)
            collection.add(ids, vectors, metas, docs)


@pytest.fixture(scope="module")
def browser_page():
    with chromium_page(TIMEOUT_MS, height=1100) as page:
        yield page


def test_a_renamed_cluster_survives_a_restart_and_names_the_map(tmp_path, browser_page):
    page = browser_page
    ARTIFACTS.mkdir(exist_ok=True)
    data_dir = tmp_path / "data"
    make_collection(data_dir)
    env = {"MMCORE_DATA_DIR": str(data_dir), "MMCORE_COLLECTION": "review", "HF_HUB_OFFLINE": "1"}
    rows = page.locator("[class*='st-key-cluster-']")

    with streamlit_server(env, ARTIFACTS / "streamlit-clusters.log") as url:
        page.goto(f"{url}/clusters")
        expect(page.get_by_role("heading", name="Clusters")).to_be_visible()
        expect(rows).to_have_count(len(BLOBS))  # no noise in well-separated blobs
        for i in range(len(BLOBS)):
            expect(rows.nth(i).get_by_role("textbox")).not_to_have_value("")  # names arrive after the rows
        names = [rows.nth(i).get_by_role("textbox").input_value() for i in range(len(BLOBS))]
        assert {"label sea (100%)", "label forest (100%)"} < set(names)  # text notes get keywords instead
        image = rows.locator("img").first
        expect_loaded(image, "a sample thumbnail")

        first = rows.first
        old_name = names[0]
        box = first.get_by_role("textbox")
        box.fill("sea birds")
        box.press("Enter")
        save = first.get_by_role("button", name="Save name")
        expect(save).to_be_enabled()
        save.click()
        expect(page.get_by_text(f"Renamed '{old_name}' to 'sea birds'.")).to_be_visible()
        expect(rows.first.get_by_role("textbox")).to_have_value("sea birds")
        expect(rows.first.get_by_role("button", name="Save name")).to_be_disabled()

        page.get_by_role("button", name="Write names to items as tags").click()
        expect(page.get_by_text(f"Tagged {len(BLOBS) * PER_BLOB} items")).to_be_visible()
        items = Workspace(Settings(data_dir=data_dir)).store.open("review", "vecs").all(with_vectors=False)
        tagged = [m["label"] for m in items.metadatas if "taxon:sea birds" in (m.get("tags") or [])]
        assert len(tagged) == PER_BLOB and len(set(tagged)) == 1, "one whole blob carries the new name"

        review = rows.nth(1).get_by_test_id("stCheckbox").filter(has_text="Review").locator("label")
        expect(review).to_have_count(1)  # not while a rerun still shows the old row beside the new one
        review.click()
        # The row that opened (rows of equal size may be redrawn in another order by the rerun the click starts).
        opened = rows.filter(has_text="Merge other clusters into this one")
        expect(opened).to_have_count(1)
        expect(opened.get_by_text(f"{PER_BLOB} items")).to_be_visible()
        expect(opened.get_by_role("button", name=f"Tag {PER_BLOB}")).to_be_visible()
        expect(opened.get_by_text("-039.")).to_have_count(1)  # the gallery shows every member's source
        page.screenshot(path=ARTIFACTS / "clusters-review.png", full_page=True)

    with streamlit_server(env, ARTIFACTS / "streamlit-clusters-2.log") as url:  # a restart
        page.goto(f"{url}/clusters")
        expect(rows.first.get_by_role("textbox")).to_have_value("sea birds")
        page.get_by_role("link", name="Map").click()
        expect(page.locator(".js-plotly-plot .legendtext").filter(has_text="sea birds")).to_have_count(1)
        page.screenshot(path=ARTIFACTS / "map-review.png")


def test_a_coarse_clustering_is_named_and_the_finer_one_is_one_click_away(tmp_path, browser_page):
    """Two plain blobs of 600 items: two clusters, too coarse to review; one click gives leaf selection's finer
    clusters, whose stability says they are fragments (a plain blob has no real sub-groups)."""
    page = browser_page
    ARTIFACTS.mkdir(exist_ok=True)
    data_dir = tmp_path / "data"
    with Workspace(Settings(data_dir=data_dir)) as ws:
        rng = np.random.default_rng(0)
        centers = normalize(rng.standard_normal((2, DIM)))
        truth = np.repeat([0, 1], 600)
        vectors = normalize(centers[truth] + 0.05 * rng.standard_normal((1200, DIM)))
        collection = ws.store.collection("plain", SpaceInfo("vecs", "synthetic", "", DIM))
        collection.add([f"p{i:04d}" for i in range(1200)], vectors, [{"modality": "vector", "blob": int(t)} for t in truth],
                       [None] * 1200)
    env = {"MMCORE_DATA_DIR": str(data_dir), "MMCORE_COLLECTION": "plain", "HF_HUB_OFFLINE": "1"}
    metric = page.get_by_test_id("stMetric").filter(has_text="Clusters")
    warning = page.get_by_text("These clusters are too coarse to review: only 2 clusters for 1,200 items")
    with streamlit_server(env, ARTIFACTS / "streamlit-coarse.log") as url:
        page.goto(f"{url}/clusters")
        expect(warning).to_be_visible()
        expect(metric).to_contain_text("2")
        expect(page.get_by_text("stability 1.00, stable")).to_have_count(2)
        page.screenshot(path=ARTIFACTS / "clusters-coarse.png")
        page.get_by_role("button", name="Show finer clusters").click()
        expect(warning).to_have_count(0)
        expect(page.get_by_text(", unstable").first).to_be_visible()
        assert int(metric.locator("[data-testid='stMetricValue']").inner_text()) >= 5
        page.screenshot(path=ARTIFACTS / "clusters-finer.png", full_page=True)
        page.get_by_role("link", name="Map").click()  # the Map shows the same, finer clustering
        expect(page.get_by_text("fine clusters · fitted on every item", exact=False)).to_be_visible()
        expect(page.get_by_text("too coarse")).to_have_count(0)
        page.screenshot(path=ARTIFACTS / "map-finer.png")
