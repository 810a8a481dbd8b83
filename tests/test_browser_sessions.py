"""Several people at once, and who may change things, in a real browser against a real server.

Sessions: two browser contexts (two Streamlit sessions) upload at the same time to different collections; each
sees only its own upload summary, query, results and collection. Access: without [auth] the sidebar says the
app is open; with [auth] pointing at a small local OpenID Connect provider (tests/fake_oidc.py), st.login runs
its real flow: a visitor sees only a login button, a logged-in non-editor sees write actions disabled and a
click forged on the websocket is refused by the server, and an editor uploads.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo
from playwright.sync_api import expect

from browser import ROOT, chromium_browser, drop_files, new_page, streamlit_server
from fake_oidc import oidc_provider

ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 90_000  # the first upload loads torch and the model inside the server
OPEN_NOTE = "Open access: anyone who can reach this server can upload and delete"


@pytest.fixture(scope="module")
def browser():
    with chromium_browser(TIMEOUT_MS) as browser:
        yield browser


def files_for(folder: Path, prefix: str, colour: tuple[int, int, int], words: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / f"{prefix}-picture.png"
    im = Image.new("RGB", (80, 64), colour)
    ImageDraw.Draw(im).ellipse([10, 10, 50, 50], fill=(255 - colour[0], 255 - colour[1], 255 - colour[2]))
    im.save(image)
    notes = folder / f"{prefix}-notes.txt"
    notes.write_text(words)
    broken = folder / f"{prefix}-broken.png"
    broken.write_bytes(b"MZ\x90\x00 not an image")
    return [image, notes, broken]


def pick(page, label: str, option: str) -> None:
    page.get_by_role("combobox", name=label).click()
    page.get_by_role("option", name=option).click()


def expect_collection(page, value: str) -> None:
    expect(page.get_by_role("combobox", name="Collection")).to_have_value(value)


def expect_own_upload(page, mine: str, theirs: str) -> None:
    """The Last upload summary lists this session's files only."""
    expect(page.get_by_role("heading", name="Last upload")).to_be_visible()
    metrics = page.get_by_test_id("stMetric")
    expect(metrics.filter(has_text="Added")).to_contain_text("2")
    expect(metrics.filter(has_text="Refused")).to_contain_text("1")
    refused = page.get_by_test_id("stAlert").filter(has_text="Refused")
    expect(refused).to_contain_text(f"{mine}-broken.png")
    expect(refused).not_to_contain_text(f"{theirs}-broken.png")
    page.get_by_text("Every file (3)").click()
    table = page.get_by_test_id("stDataFrame").first
    expect(table).to_contain_text(f"{mine}-picture.png")
    expect(table).not_to_contain_text(f"{theirs}-")


def test_two_sessions_keep_their_own_uploads_searches_and_collections(browser, tmp_path, clip_dir):
    a_files = files_for(tmp_path / "a", "alpha", (250, 120, 30), "zebra crossing near the old harbour at dawn")
    b_files = files_for(tmp_path / "b", "bravo", (20, 60, 200), "violet kites over the quiet salt marsh")
    env = {"MMCORE_DATA_DIR": str(tmp_path / "data"), "MMCORE_CLIP_MODEL": str(clip_dir), "HF_HUB_OFFLINE": "1"}
    ARTIFACTS.mkdir(exist_ok=True)
    with streamlit_server(env, ARTIFACTS / "streamlit-sessions.log") as url:
        a, b = new_page(browser, TIMEOUT_MS), new_page(browser, TIMEOUT_MS)
        for page in (a, b):
            page.goto(url)
            expect(page.get_by_role("heading", name="Upload")).to_be_visible()
            expect(page.get_by_test_id("stSidebar")).to_contain_text(OPEN_NOTE)
        pick(b, "Collection", "+ New collection…")
        b.get_by_role("textbox", name="New collection name").fill("bravo-coll")
        b.get_by_role("textbox", name="New collection name").press("Enter")
        expect_collection(b, "bravo-coll (0 items)")
        expect_collection(a, "default (0 items)")

        a_add, b_add = drop_files(a, a_files), drop_files(b, b_files)
        a_add.click()  # both ingest at once: the clicks return before the server is done
        b_add.click()
        expect_own_upload(a, "alpha", "bravo")
        expect_own_upload(b, "bravo", "alpha")
        a.screenshot(path=ARTIFACTS / "sessions-a-upload.png", full_page=True)
        b.screenshot(path=ARTIFACTS / "sessions-b-upload.png", full_page=True)

        a.get_by_role("link", name="Search").click()
        a_box = a.get_by_label("Describe what you are looking for")
        a_box.fill("zebra crossing near the old harbour at dawn")
        a_box.press("Enter")
        expect(a.locator(".st-key-hit-text-0")).to_contain_text("alpha-notes.txt")
        b.get_by_role("link", name="Search").click()
        b_box = b.get_by_label("Describe what you are looking for")
        expect(b_box).to_have_value("")  # not A's query
        b_box.fill("violet kites over the quiet salt marsh")
        b_box.press("Enter")
        expect(b.locator(".st-key-hit-text-0")).to_contain_text("bravo-notes.txt")
        expect(b.locator(".st-key-hit-image-0")).to_contain_text("bravo-picture.png")
        a.get_by_text("All media in one list").click()  # A reruns after B searched: still A's
        expect(a_box).to_have_value("zebra crossing near the old harbour at dawn")
        a_hits = a.locator("[class*='st-key-hit-']")
        expect(a_hits).to_have_count(2)
        expect(a_hits.filter(has_text="alpha-")).to_have_count(2)

        # Each switches to the other's collection; the queries stay theirs, now searching the other collection.
        # Waiting for the new results also waits out the rerun the switch starts, which a click could cut short.
        pick(a, "Collection", "bravo-coll (2 items)")
        expect(a_hits.filter(has_text="bravo-")).to_have_count(2)
        pick(b, "Collection", "default (2 items)")
        expect(b.locator(".st-key-hit-text-0")).to_contain_text("alpha-notes.txt")
        for page, collection, mine in ((a, "bravo-coll (2 items)", "alpha"), (b, "default (2 items)", "bravo")):
            page.get_by_role("link", name="Upload").click()  # a fresh run after the other switched
            expect(page.get_by_role("heading", name="Upload", exact=True)).to_be_visible()
            expect_collection(page, collection)
            expect(page.get_by_test_id("stAlert").filter(has_text="Refused")).to_contain_text(f"{mine}-broken.png")


class Wire:
    """The page's websocket to the server, relayed through the test, which can also speak on it: what any script
    can send a Streamlit server, whatever the page shows."""

    def __init__(self, page):
        self.page = page
        self.buttons: dict[str, str] = {}  # label -> widget id, from the elements the server sent
        self.alerts: list[str] = []  # the bodies of the alerts the server sent
        self.last_run = None  # the page's latest rerun request
        self.server = None
        page.route_web_socket(re.compile(r"/_stcore/stream"), self._route)

    def _route(self, ws) -> None:
        self.server = ws.connect_to_server()
        ws.on_message(self._from_page)
        self.server.on_message(lambda message: self._from_server(ws, message))

    def _from_page(self, message) -> None:
        from streamlit.proto.BackMsg_pb2 import BackMsg

        msg = BackMsg.FromString(message)
        if msg.WhichOneof("type") == "rerun_script":
            self.last_run = msg
        self.server.send(message)

    def _from_server(self, ws, message) -> None:
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        msg = ForwardMsg.FromString(message)
        if msg.WhichOneof("type") == "delta" and msg.delta.WhichOneof("type") == "new_element":
            element = msg.delta.new_element
            if element.WhichOneof("type") == "button":
                self.buttons[element.button.label] = element.button.id
            elif element.WhichOneof("type") == "alert":
                self.alerts.append(element.alert.body)
        ws.send(message)

    def click(self, label: str) -> None:
        """Ask the server to rerun the page as if the button `label` had been clicked."""
        from streamlit.proto.BackMsg_pb2 import BackMsg

        msg = BackMsg()
        msg.CopyFrom(self.last_run)
        msg.rerun_script.widget_states.widgets.add(id=self.buttons[label], trigger_value=True)
        self.server.send(msg.SerializeToString())

    def expect_alert(self, text: str, timeout_s: float = 30) -> None:
        for _ in range(int(timeout_s * 10)):
            if any(text in alert for alert in self.alerts):
                return
            self.page.wait_for_timeout(100)  # lets Playwright deliver the relayed messages
        raise AssertionError(f"the server sent no alert with {text!r}; it sent {self.alerts}")


def write_auth_secrets(path: Path, issuer: str) -> None:
    path.write_text(f"""[auth]
redirect_uri = "http://127.0.0.1:{{port}}/oauth2callback"
cookie_secret = "mmscope-browser-test-cookie-secret-0123456789"
client_id = "mmscope-test"
client_secret = "not-checked-by-the-test-provider"
server_metadata_url = "{issuer}/.well-known/openid-configuration"
""")


def log_in(page, email: str) -> None:
    page.get_by_role("button", name="Log in").click()
    page.get_by_label("Email").fill(email)  # on the provider's page
    page.get_by_role("button", name="Sign in").click()
    expect_in_sidebar(page, f"Signed in as {email}")
    expect(page.get_by_test_id("stSidebar").locator("a[href^='mailto:']")).to_have_count(0)  # the email is text, not a link


def expect_in_sidebar(page, text: str) -> None:
    """`text` in the sidebar as a person reads it (an email in Markdown carries a word joiner: mmcore.plaintext)."""
    page.wait_for_function("text => document.querySelector('[data-testid=stSidebar]')?.innerText"
                           ".replaceAll('\\u2060', '').includes(text)", arg=text)


def test_login_lets_only_editors_change_things(browser, tmp_path, clip_dir):
    files = tmp_path / "files"
    files.mkdir()
    (files / "memo.txt").write_text("a memo about lighthouses")
    picture = Image.new("RGB", (64, 48), (40, 160, 90))
    picture.save(files / "copy-1.png")
    extra = PngInfo()
    extra.add_text("comment", "the same pixels, other bytes")
    picture.save(files / "copy-2.png", pnginfo=extra)  # a near-duplicate pair to review
    env = {"MMCORE_DATA_DIR": str(tmp_path / "data"), "MMCORE_CLIP_MODEL": str(clip_dir), "HF_HUB_OFFLINE": "1",
           "MMCORE_EDITORS": "Editor@Example.com"}
    ARTIFACTS.mkdir(exist_ok=True)
    with oidc_provider() as issuer:
        write_auth_secrets(tmp_path / "secrets.toml", issuer)
        with streamlit_server(env, ARTIFACTS / "streamlit-login.log", tmp_path / "secrets.toml") as url:
            viewer = new_page(browser, TIMEOUT_MS)
            wire = Wire(viewer)
            for path in ("", "/collections"):  # every page, deep links too, shows only the login button
                viewer.goto(url + path)
                expect(viewer.get_by_role("button", name="Log in")).to_be_visible()
                expect(viewer.locator("input[type=file]")).to_have_count(0)
                expect(viewer.get_by_role("button", name="Load the demo (handwritten digits, no download)")).to_have_count(0)
                expect(viewer.get_by_test_id("stSidebar")).not_to_contain_text(OPEN_NOTE)
            viewer.screenshot(path=ARTIFACTS / "login.png")

            log_in(viewer, "viewer@example.com")
            expect_in_sidebar(viewer, "Signed in as viewer@example.com. Read-only: you are not among the editors (MMCORE_EDITORS)")
            viewer.get_by_role("link", name="Upload").click()
            expect(viewer.get_by_role("heading", name="Upload")).to_be_visible()
            expect(viewer.locator("input[type=file]")).to_be_disabled()
            expect(viewer.get_by_role("button", name="Add files")).to_be_disabled()
            viewer.get_by_role("link", name="Collections").click()
            expect(viewer.get_by_role("button", name="Load the demo (handwritten digits, no download)")).to_be_disabled()
            expect(viewer.get_by_role("button", name="Import")).to_be_disabled()
            viewer.screenshot(path=ARTIFACTS / "login-read-only.png", full_page=True)

            editor = new_page(browser, TIMEOUT_MS)
            editor.goto(url)
            log_in(editor, "editor@example.com")
            expect(editor.get_by_test_id("stSidebar")).to_contain_text("you may upload, tag and delete")
            editor.get_by_role("link", name="Upload").click()
            editor.locator("input[type=file]").first.set_input_files(sorted(str(f) for f in files.iterdir()))
            editor.get_by_role("button", name="Add 3 file(s)").click()
            expect(editor.get_by_test_id("stMetric").filter(has_text="Added")).to_contain_text("3")
            expect_collection(editor, "default (3 items)")

            viewer.get_by_role("link", name="Duplicates").click()
            expect(viewer.get_by_text("Set 1 of 1")).to_be_visible()
            expect(viewer.get_by_role("button", name="Keep first, tag the rest")).to_be_disabled()
            expect(viewer.get_by_role("button", name="Not duplicates")).to_be_disabled()
            # "Delete for good" sits inside a disabled popover, so Streamlit itself would accept a click on it:
            # sent straight to the server, the click is refused by the page's own check, and nothing is deleted.
            wire.click("Delete for good")
            wire.expect_alert("Read-only: you are not among the editors")
            viewer.get_by_role("link", name="Collections").click()
            expect_collection(viewer, "default (3 items)")

            editor.get_by_role("button", name="Log out").click()
            expect(editor.get_by_role("button", name="Log in")).to_be_visible()
