"""The Collections page in a real browser: from an empty data dir, the Upload page points to the demo; import
vectors with metadata by upload, see them listed and selected, and download them with their clusters."""

from __future__ import annotations

import json

import numpy as np
import pytest
from playwright.sync_api import expect

from browser import ROOT, chromium_page, streamlit_server

ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 120_000  # the first map pays numba's compile when its disk cache is cold


@pytest.fixture(scope="module")
def page():
    with chromium_page(TIMEOUT_MS, height=1400) as page:
        yield page


def test_import_by_upload_then_export_with_clusters(tmp_path, page):
    ARTIFACTS.mkdir(exist_ok=True)
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, 12)) * 4
    np.save(tmp_path / "blobs.npy", np.concatenate([c + rng.normal(scale=0.3, size=(20, 12)) for c in centres]))
    (tmp_path / "blobs.csv").write_text(
        "id,label,tags\n" + "".join(f"p{i},{i // 20},blob{i // 20}|planted\n" for i in range(60)))

    with streamlit_server({"MMCORE_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1"},
                          ARTIFACTS / "streamlit-collections.log") as url:
        page.goto(url)
        expect(page.get_by_text("or load the demo on the Collections page")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "upload-empty.png")

        page.get_by_role("link", name="Collections").click()
        expect(page.get_by_role("button", name="Load the demo (handwritten digits, no download)")).to_be_visible()
        form = page.locator("[data-testid='stForm']")
        form.locator("input[type=file]").nth(0).set_input_files(str(tmp_path / "blobs.npy"))
        form.locator("input[type=file]").nth(1).set_input_files(str(tmp_path / "blobs.csv"))
        form.get_by_role("textbox", name="Collection").fill("blobs")
        form.get_by_role("textbox", name="Space name").fill("mine")
        form.get_by_role("button", name="Import").click()
        expect(page.get_by_text("60 vectors added to blobs (mine, 12-d)")).to_be_visible()

        page.get_by_role("link", name="Collections").click()  # a fresh run: the table and sidebar show the import
        expect(page.get_by_role("combobox", name="Collection")).to_have_value("blobs (60 items)")
        table = page.locator("[data-testid='stDataFrame']").first
        expect(table).to_contain_text("imported:blobs.npy")

        page.get_by_role("radio", name="json", exact=True).click()
        page.get_by_role("button", name="Prepare the export").click()
        with page.expect_download() as download:
            page.get_by_role("button", name="Download blobs.json").click()
        page.screenshot(path=ARTIFACTS / "collections.png", full_page=True)

    rows = json.loads(download.value.path().read_text())
    assert sorted(r["id"] for r in rows) == sorted(f"p{i}" for i in range(60))
    by_id = {r["id"]: r for r in rows}
    assert by_id["p5"]["tags"] == ["blob0", "planted"] and by_id["p45"]["label"] == 2
    clusters = {blob: {by_id[f"p{i}"]["cluster"] for i in range(20 * blob, 20 * blob + 20)} - {-1} for blob in range(3)}
    assert all(len(c) == 1 for c in clusters.values()) and len(set().union(*clusters.values())) == 3
    assert all(isinstance(r["x"], float) and r["cluster_name"] for r in rows)


def test_the_space_picked_in_the_sidebar_stays_picked_on_every_page(tmp_path, page):
    from mmcore.config import Settings
    from mmcore.vectors import import_vectors
    from mmcore.workspace import Workspace

    vectors = np.random.default_rng(5).normal(size=(30, 8))
    for space in ("alpha", "beta"):
        np.save(tmp_path / f"{space}.npy", vectors)
        import_vectors(Workspace(Settings(data_dir=tmp_path / "data")), tmp_path / f"{space}.npy", None, "two", space)

    with streamlit_server({"MMCORE_DATA_DIR": str(tmp_path / "data"), "MMCORE_COLLECTION": "two", "HF_HUB_OFFLINE": "1"},
                          ARTIFACTS / "streamlit-spaces.log") as url:
        page.goto(f"{url}/collections")
        picker = page.get_by_role("combobox", name="Space")
        expect(picker).to_have_value("alpha")
        picker.click()
        page.get_by_role("option", name="beta").click()
        expect(picker).to_have_value("beta")
        for name in ("Outliers", "Search", "Collections"):
            page.get_by_role("link", name=name).click()
            expect(page.get_by_role("heading", name=name)).to_be_visible()
            expect(page.get_by_role("combobox", name="Space")).to_have_value("beta")
