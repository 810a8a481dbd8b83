"""Shared fixtures: a tiny real CLIP checkpoint, settings and a workspace on a temp dir, and test media."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

# Before anything imports huggingface_hub (it reads this once): a hub lookup fails at once instead of retrying.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One numba JIT cache for the whole suite (and its subprocesses), kept between runs.
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "numba"))

import pytest

from browser import free_port, serving
from checkpoints import tiny_clip
from media_factory import write_media
from mmcore.config import Settings
from mmcore.workspace import Workspace


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed browser test that holds a `page` fixture reports what the page showed: CI keeps no screenshots."""
    report = yield
    page = getattr(item, "funcargs", {}).get("page")
    if report.failed and call.when == "call" and page is not None:
        try:
            shown = page.locator("body").inner_text(timeout=5_000)
        except Exception as e:  # a closed or hung page must not hide the test's own failure
            shown = f"(the page could not be read: {e})"
        report.sections.append(("what the page showed", f"{page.url}\n{shown[-4000:]}"))
    return report


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`chroma run` on a free port of 127.0.0.1, one per test module that asks; yields the port."""
    base = tmp_path_factory.mktemp("chroma-server")
    chroma = Path(sys.executable).parent / "chroma"
    port = free_port()
    command = [str(chroma if chroma.exists() else shutil.which("chroma")), "run", "--path", str(base / "db"),
               "--host", "127.0.0.1", "--port", str(port)]
    with serving(command, {"ANONYMIZED_TELEMETRY": "False"}, base / "chroma.log", f"http://127.0.0.1:{port}/api/v2/heartbeat"):
        yield port


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory):
    """A 16-d random-weight CLIP checkpoint, built once per session."""
    return tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip", projection_dim=16, seed=0)


@pytest.fixture(scope="session")
def other_clip_dir(tmp_path_factory):
    """A different (24-d) checkpoint, for model mismatch tests; built only when a test asks for it."""
    return tiny_clip(tmp_path_factory.mktemp("models") / "other-clip", projection_dim=24, seed=1)


@pytest.fixture
def settings(tmp_path, clip_dir):
    # A small batch size, so ingesting a handful of files already takes several model batches.
    return Settings(data_dir=tmp_path / "data", models={"clip": str(clip_dir)}, batch_size=4)


@pytest.fixture
def ws(settings):
    return Workspace(settings)


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """The standard test files by name ("img.jpg", ..., "long.txt", "table.csv"), all in one folder."""
    return write_media(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="session")
def clap_dir(tmp_path_factory):
    """A 16-d random-weight CLAP checkpoint that hears 16 kHz audio, built once per session."""
    from checkpoints import tiny_clap

    return tiny_clap(tmp_path_factory.mktemp("models") / "tiny-clap", projection_dim=16, seed=0)


@pytest.fixture(scope="session")
def whisper_dir(tmp_path_factory):
    """A random-weight Whisper checkpoint (16 mel bins, 30 s windows, letters-only vocabulary), built once per session."""
    from checkpoints import tiny_whisper

    return tiny_whisper(tmp_path_factory.mktemp("models") / "tiny-whisper", seed=0)


SLOW_FILES = ("test_browser", "test_scaleout", "test_chroma_server")  # real servers and browsers: minutes, not seconds
SLOW_FIXTURES = {"app_url"}  # a served app, wherever a test file uses one (browser tests name it so)


def pytest_collection_modifyitems(items):
    """Tests that start a browser, a Ray cluster or a Chroma server are `slow`: `pytest -m "not slow"` is the
    day-to-day tier, CI runs everything."""
    for item in items:
        if item.path.name.startswith(SLOW_FILES) or SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
