"""Privacy and the served configuration: nothing leaves the machine unless the user asks for a model download.

Chroma's anonymized telemetry and Streamlit's usage statistics are off in the shipped configuration, no page
loads anything from the internet (every request a real browser makes is recorded), and the server keeps its
XSRF protection on.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from urllib.parse import urlparse

import pytest
from PIL import Image
from playwright.sync_api import expect

import media_factory as mf
from browser import ROOT, chromium_page, drop_files, streamlit_server
from mmcore.ingest import SourceFile, ingest
from mmcore.plaintext import WORD_JOINER
from mmcore.search import Query, search
from mmcore.store import open_client

ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 180_000  # the first map pays numba's compile when its disk cache is cold
PAGES = ("Upload", "Search", "Map", "Gallery", "Clusters", "Outliers", "Duplicates", "Collections")


def streamlit_options(*keys: str) -> dict[str, tuple[object, str]]:
    """What Streamlit itself reads for `keys` when started in the project folder: (value, where it was set).

    In a fresh interpreter, with no STREAMLIT_* variables, so only the shipped .streamlit/config.toml counts."""
    code = (
        "import json, sys\nfrom streamlit import config\nconfig.get_config_options(force_reparse=True)\n"
        "print(json.dumps({k: [config.get_option(k), config.get_where_defined(k)] for k in sys.argv[1:]}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    out = subprocess.run([sys.executable, "-c", code, *keys], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return {k: tuple(v) for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def test_streamlit_usage_statistics_are_off_and_xsrf_protection_on_in_the_shipped_config():
    options = streamlit_options("browser.gatherUsageStats", "server.enableXsrfProtection", "server.address")
    shipped = str(ROOT / ".streamlit" / "config.toml")
    assert options["browser.gatherUsageStats"] == (False, shipped)
    assert options["server.enableXsrfProtection"] == (True, shipped)
    assert options["server.address"] == ("localhost", shipped)


def test_chroma_telemetry_is_off_in_the_client_mmscope_opens(settings):
    client = open_client(settings)
    assert client.get_settings().anonymized_telemetry is False


def _is_local(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def test_ingest_and_search_open_no_connection_off_this_machine(ws, monkeypatch):
    """With a local model, the whole path (store, models, ingest, search) never connects anywhere else."""
    attempts: list[object] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(real):
        def connect(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(str(address[0])):
                attempts.append(address)
                raise OSError("blocked by the test: a connection off this machine")
            return real(sock, address)

        return connect

    monkeypatch.setattr(socket.socket, "connect", guarded(real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(real_connect_ex))
    files = [SourceFile("red.png", data=mf.encode(Image.new("RGB", (32, 32), (220, 20, 20)), "PNG")),
             SourceFile("notes.txt", data=mf.long_text_content(1).encode())]
    assert ingest(ws, files).ok
    assert search(ws, Query(text="harbour"), k=3)
    assert attempts == []


# --- the served app ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, clip_dir):
    """The app on the digits demo (loaded with `python -m mmcore demo`) plus a few files of the clip space."""
    data = tmp_path_factory.mktemp("privacy-data")
    env = {"MMCORE_DATA_DIR": str(data), "MMCORE_CLIP_MODEL": str(clip_dir), "HF_HUB_OFFLINE": "1",
           "MMCORE_COLLECTION": "digits-demo"}
    subprocess.run([sys.executable, "-m", "mmcore", "demo"], cwd=ROOT, env={**os.environ, **env}, check=True,
                   capture_output=True)
    ARTIFACTS.mkdir(exist_ok=True)
    with streamlit_server(env, ARTIFACTS / "streamlit-privacy.log") as url:
        yield url


def test_the_served_app_refuses_writes_without_its_xsrf_token(app_url):
    """What the running server does, not only what its config says: an upload without the token is refused."""
    request = urllib.request.Request(f"{app_url}/_stcore/upload_file/some-session/some-file", data=b"x", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 403 and b"XSRF" in caught.value.read()


def _off_machine(url: str) -> bool:
    parts = urlparse(url)
    return parts.scheme not in ("data", "blob", "about") and not _is_local(parts.hostname or "")


# Markdown for an image on the internet, in a file name and in a text: shown, it must stay text.
HOSTILE = "![pixel](https://example.com/pixel.png)"


def shown(locator) -> str:
    """The text a person reads (names in Markdown carry invisible word joiners, see mmcore.plaintext)."""
    return locator.inner_text().replace(WORD_JOINER, "")


def test_no_page_loads_anything_from_the_internet(app_url):
    requested: list[str] = []
    with chromium_page(TIMEOUT_MS) as page:
        page.on("request", lambda request: requested.append(request.url))
        page.on("websocket", lambda websocket: requested.append(websocket.url))
        page.goto(app_url)
        expect(page.get_by_role("combobox", name="Collection")).to_have_value("digits-demo (1,797 items)")

        for title in PAGES:
            page.get_by_role("link", name=title).click()
            expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()
            if title == "Map":
                expect(page.locator(".js-plotly-plot .legendtext").first).to_be_visible()
            elif title in ("Outliers", "Clusters", "Gallery"):
                expect(page.locator("[data-testid=stMain] img").first).to_be_visible()
            page.wait_for_timeout(500)  # lazily loaded fonts and images

        # Last, as it adds a clip space to the demo collection, which its map would then ask to choose.
        page.get_by_role("link", name="Upload").click()
        drop_files(page, [
            {"name": f"{HOSTILE}.png", "mimeType": "image/png", "buffer": b"not an image"},
            {"name": f"{HOSTILE}.txt", "mimeType": "text/plain", "buffer": f"harbour notes\n\n{HOSTILE}\n".encode()},
        ]).click()
        refused = page.get_by_test_id("stAlert")
        expect(refused).to_contain_text("not a readable image")
        assert f"{HOSTILE}.png: not a readable image" in shown(refused)
        page.get_by_role("link", name="Search").click()
        page.get_by_role("textbox", name="Describe what you are looking for").fill("harbour notes")
        page.keyboard.press("Enter")
        hit = page.locator(".st-key-hit-text-0")
        expect(hit.get_by_test_id("stText")).to_contain_text(HOSTILE)
        assert f"{HOSTILE}.txt" in shown(hit)
        sidebar = page.get_by_test_id("stSidebar")
        expect(sidebar).to_contain_text("Store")  # drawn after where a hosted space would be named
        assert "is sent to" not in sidebar.inner_text()  # the default configuration has no hosted space
        page.screenshot(path=ARTIFACTS / "privacy-last-page.png")

    assert len(requested) > 20, requested  # the pages did load their scripts, styles, images and socket
    assert [url for url in requested if _off_machine(url)] == []
