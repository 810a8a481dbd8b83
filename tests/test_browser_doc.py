"""The app with the doc space on: a PDF uploaded in the browser, a text search, and the page's heat map of where
the query matched ("Why this page"), from the page's stored token matrix."""

from __future__ import annotations

from media_pdf import make_pdf
from playwright.sync_api import expect

from browser import ROOT, chromium_page, drop_files, streamlit_server
from checkpoints import tiny_colmodernvbert

ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 120_000


def test_a_pdf_page_found_by_text_shows_where_the_query_matched(tmp_path, clip_dir):
    ARTIFACTS.mkdir(exist_ok=True)
    doc = tiny_colmodernvbert(tmp_path / "cmvb")
    env = {"MMCORE_DATA_DIR": str(tmp_path / "data"), "MMCORE_CLIP_MODEL": str(clip_dir), "MMCORE_DOC_MODEL": str(doc),
           "HF_HUB_OFFLINE": "1"}
    pdf = make_pdf(["Quarterly tide tables for the harbour", "Berth fees and mooring rules"])
    with streamlit_server(env, ARTIFACTS / "streamlit-doc.log") as url, chromium_page(TIMEOUT_MS) as page:
        page.goto(url)
        page.get_by_role("link", name="Upload").click()
        drop_files(page, [{"name": "report.pdf", "mimeType": "application/pdf", "buffer": pdf}]).click()
        expect(page.get_by_test_id("stMetric").filter(has_text="Added")).to_contain_text("1")
        page.get_by_role("link", name="Search").click()
        page.get_by_role("textbox", name="Describe what you are looking for").fill("tide tables")
        page.keyboard.press("Enter")
        main = page.get_by_test_id("stMain")
        expect(main).to_contain_text("Document pages")
        expect(main).to_contain_text("clip + doc")
        page.get_by_text("Why this page", exact=True).first.click()
        expect(main).to_contain_text("late-interaction score")
        heat = main.get_by_test_id("stImage").filter(has_text="late-interaction score")
        expect(heat).to_have_count(1)
        heat.scroll_into_view_if_needed()
        page.screenshot(path=ARTIFACTS / "doc-why-this-page.png")
