"""A real Streamlit server and a real headless Chromium, for tests that use the app as a person would."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(command: list[str], env: dict[str, str], log_path: Path, health_url: str, healthy=lambda body: True):
    """Run a server `command` (output to `log_path`) until `health_url` answers with a body `healthy` accepts;
    yield its process, then stop it. Fails with the log's tail if it exits or isn't up within 60 s."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 60
            while True:
                try:
                    if healthy(urllib.request.urlopen(health_url, timeout=2).read()):
                        break
                except OSError:
                    pass
                if process.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"{command[0]} did not start; see {log_path}:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.3)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@contextmanager
def streamlit_server(env: dict[str, str], log_path: Path, secrets: Path | None = None):
    """`streamlit run app.py` on a free port; yields its base URL and stops it afterwards.

    Secrets come from `secrets` only (none by default), never from a developer's own .streamlit/secrets.toml,
    whose [auth] section would put every page behind a login."""
    with streamlit_process(env, log_path, secrets) as (_, url):
        yield url


@contextmanager
def streamlit_process(env: dict[str, str], log_path: Path, secrets: Path | None = None):
    """As `streamlit_server`, yielding the server's process too: (process, base URL)."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
               "--server.address", "127.0.0.1", "--server.headless", "true",
               "--secrets.files", str(secrets or ROOT / "tests" / "no-such-secrets.toml")]
    url = f"http://127.0.0.1:{port}"
    with serving(command, env, log_path, f"{url}/_stcore/health", healthy=lambda body: body == b"ok") as process:
        yield process, url


def chromium_path() -> str:
    path = os.environ.get("MMCORE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError("Chromium is not installed: `make test` installs Debian's chromium package (apt-get install chromium).")
    return path


@contextmanager
def chromium_browser(timeout_ms: int):
    """Headless Debian Chromium, with `expect` waiting up to `timeout_ms`; open pages with `new_page`."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        expect.set_options(timeout=timeout_ms)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, timeout_ms: int, width: int = 1400, height: int = 1000):
    """A page in a context of its own: its own cookies, so its own Streamlit session and login."""
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.set_default_timeout(timeout_ms)
    return page


@contextmanager
def chromium_page(timeout_ms: int, width: int = 1400, height: int = 1000):
    """A page in headless Debian Chromium, with actions and `expect` both waiting up to `timeout_ms`."""
    with chromium_browser(timeout_ms) as browser:
        yield new_page(browser, timeout_ms, width, height)


def settled(page) -> None:
    """Wait until the app's run in progress is over: its stale elements (the last run's output) are gone."""
    page.wait_for_function("() => document.querySelectorAll('[data-stale=\"true\"]').length === 0")


def expect_loaded(image, what: str) -> None:
    """An <img> scrolled into view has loaded a real picture (`what` names it in the failure)."""
    from playwright.sync_api import expect

    image.scroll_into_view_if_needed()
    expect(image).to_have_js_property("complete", True)
    assert image.evaluate("img => img.naturalWidth") > 0, f"{what} did not load"


def screenshot_main(page, path, height: int = 1700) -> None:
    """The page's main column for the README, from its top down to `height` pixels: Streamlit scrolls it inside
    the window, so the window is made that tall for the shot."""
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": height})
    page.wait_for_timeout(1500)  # charts and images redraw at the new size
    main = page.locator("[data-testid='stMain']")
    main.evaluate("el => el.scrollTo(0, 0)")
    box = page.locator("[data-testid='stMainBlockContainer']").bounding_box()
    page.screenshot(path=path, clip={"x": box["x"], "y": 0, "width": box["width"], "height": min(height, box["y"] + box["height"])})
    page.set_viewport_size(size)


def drop_files(page, files: list, csv_rows: bool = False):
    """On the Upload page, drop `files` (paths, or Playwright's name/mimeType/buffer payloads) on the uploader,
    ticking "one item per row" first when `csv_rows`; return the Add button once it has taken every file.

    The drop waits for the page's run to settle, and is made once more if after a minute the uploader still
    holds nothing: a drop that lands while a rerun replaces the uploader can be lost (it was, rarely, in CI)."""
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", name="Upload", exact=True)).to_be_visible()
    if csv_rows:
        page.get_by_text("CSV files: one item per row").click()
        expect(page.get_by_role("checkbox", name="CSV files: one item per row")).to_be_checked()
    add = page.get_by_role("button", name=f"Add {len(files)} file(s)")
    for attempt in range(2):
        settled(page)
        uploader = page.get_by_test_id("stFileUploader").filter(has_text="Drop files here")
        uploader.locator("input[type=file]").set_input_files([str(f) if isinstance(f, Path) else f for f in files])
        try:
            expect(add).to_be_enabled(timeout=60_000)
            return add
        except AssertionError:
            if attempt or page.get_by_role("button", name="Add files").count() == 0:
                raise
