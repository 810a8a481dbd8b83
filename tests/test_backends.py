"""Inference backends with the real (tiny, random-weight) CLIP checkpoint: openvino-bf16 keeps parity with eager
float32, collections record their backends, and only backends in parity share a collection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import media_factory as mf
from mmcore.config import Settings
from mmcore.errors import MMError, SpaceMismatch
from mmcore.ingest import SourceFile, ingest
from mmcore.search import Query, search
from mmcore.spaces import SpaceInfo, get_space
from mmcore.spaces.backends import OPENVINO_BF16, PARITY_MIN_COSINE, BackendUnavailable, cache_root
from mmcore.spaces.clip import ClipSpace
from mmcore.store import open_client
from mmcore.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["a red square", "the harbour at dawn", "mackerel and crushed ice", "42", "tide tables, 1012 hPa", "x",
         mf.LONG_TEXT * 3]


@pytest.fixture(scope="module", autouse=True)
def own_cache(tmp_path_factory):
    """Converted models go to a temp cache, not the user's ~/.cache."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield Path(os.environ["XDG_CACHE_HOME"])
    if before is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = before


def settings_for(tmp_path, clip_dir, backend, batch_size=4):
    return Settings(data_dir=tmp_path / "data", models={"clip": str(clip_dir)}, batch_size=batch_size, backend=backend)


@pytest.fixture(scope="module")
def spaces(tmp_path_factory, clip_dir):
    """The same checkpoint run by eager torch and by openvino-bf16, loaded through get_space."""
    tmp = tmp_path_factory.mktemp("backends")
    return get_space("clip", settings_for(tmp, clip_dir, "torch")), get_space("clip", settings_for(tmp, clip_dir, OPENVINO_BF16))


def pictures():
    made = [mf.picture(size, colour, pattern) for size, colour, pattern in mf.IMAGE_SPECS.values()]
    rng = np.random.default_rng(0)
    made += [Image.fromarray(rng.integers(0, 256, (48 + 7 * i, 40, 3), dtype=np.uint8)) for i in range(5)]  # noise
    return made


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)  # both are L2-normalised rows


def test_openvino_bf16_image_vectors_keep_parity_with_float32(spaces):
    eager, fast = spaces
    assert fast.info.backend == OPENVINO_BF16 and eager.info.backend == "torch"
    images = pictures()
    assert len(images) > fast.batch_size  # several batches, the last one short
    want, got = eager.embed_images(images), fast.embed_images(images)
    assert got.dtype == np.float32 and got.shape == want.shape == (len(images), 16)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert cosines(want, got).min() >= PARITY_MIN_COSINE


def test_openvino_bf16_text_vectors_keep_parity_with_float32(spaces):
    eager, fast = spaces
    # Batches of different padded lengths, a one-character text and one cut at the context length.
    want, got = eager.embed_texts(TEXTS), fast.embed_texts(TEXTS)
    assert got.shape == want.shape == (len(TEXTS), 16)
    assert cosines(want, got).min() >= PARITY_MIN_COSINE
    assert not np.allclose(got[0], got[1], atol=1e-3)


def test_openvino_bf16_vectors_do_not_depend_on_the_rest_of_the_batch(spaces):
    _, fast = spaces
    images = pictures()
    batched = fast.embed_images(images)
    single = np.concatenate([fast.embed_images([im]) for im in images])
    assert cosines(batched, single).min() >= 0.9999
    texts = fast.embed_texts(TEXTS)
    alone = np.concatenate([fast.embed_texts([t]) for t in TEXTS])
    assert cosines(texts, alone).min() >= 0.9999


def test_converted_towers_are_cached_on_disk_and_read_back(spaces, clip_dir, own_cache):
    _, fast = spaces
    assert cache_root() == own_cache / "mmscope" / "openvino"
    entries = [p for p in cache_root().iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and {p.name for p in entries[0].iterdir()} == {"image.xml", "image.bin", "text.xml", "text.bin"}
    again = ClipSpace.load(str(clip_dir), backend=OPENVINO_BF16, batch_size=4)  # from the cache
    np.testing.assert_allclose(again.embed_texts(TEXTS), fast.embed_texts(TEXTS), atol=1e-6)
    # A damaged entry is converted again, not used or refused.
    (entries[0] / "text.xml").write_text("not a model")
    damaged = ClipSpace.load(str(clip_dir), backend=OPENVINO_BF16, batch_size=4)
    np.testing.assert_allclose(damaged.embed_texts(TEXTS), fast.embed_texts(TEXTS), atol=1e-6)
    assert (entries[0] / "text.xml").read_text().startswith("<?xml")


def test_a_collection_records_the_backend_that_made_its_vectors(tmp_path, clip_dir, spaces):
    ws = Workspace(settings_for(tmp_path, clip_dir, OPENVINO_BF16))
    picture = mf.encode(Image.new("RGB", (32, 32), (220, 20, 20)), "PNG")
    assert ingest(ws, [SourceFile("red.png", data=picture)]).ok
    assert ws.collection(create=False).raw.metadata["mm_backend"] == OPENVINO_BF16
    [info] = ws.store.list()
    assert info.space.backend == OPENVINO_BF16 and info.space.model_id == str(Path(clip_dir).resolve())
    out = subprocess.run([sys.executable, "-m", "mmcore", "info", "--json"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "MMCORE_DATA_DIR": str(ws.settings.data_dir)}, check=True)
    assert json.loads(out.stdout)[0]["backend"] == OPENVINO_BF16


def test_backends_in_parity_share_a_collection_and_both_are_recorded(tmp_path, clip_dir, spaces):
    red = mf.encode(Image.new("RGB", (32, 32), (220, 20, 20)), "PNG")
    blue = mf.encode(Image.new("RGB", (32, 32), (20, 20, 220)), "PNG")
    with Workspace(settings_for(tmp_path, clip_dir, "torch")) as eager:
        assert ingest(eager, [SourceFile("red.png", data=red)]).ok
        assert eager.collection(create=False).space.backend == "torch"
    with Workspace(settings_for(tmp_path, clip_dir, OPENVINO_BF16)) as fast:
        assert ingest(fast, [SourceFile("blue.png", data=blue)]).ok
        assert fast.collection(create=False).space.backend == f"torch+{OPENVINO_BF16}"
        # An openvino query finds the torch-made item as itself.
        [hit] = search(fast, Query(image=red, image_name="red.png"), k=1)
        assert hit.source == "red.png" and hit.score >= PARITY_MIN_COSINE
    with Workspace(settings_for(tmp_path, clip_dir, "torch")) as eager:  # and torch may still write
        assert ingest(eager, [SourceFile("green.png", data=mf.encode(Image.new("RGB", (32, 32), (20, 220, 20)), "PNG"))]).ok
        assert eager.collection(create=False).space.backend == f"torch+{OPENVINO_BF16}"


def test_a_backend_out_of_parity_is_refused_both_ways(tmp_path, clip_dir, spaces):
    eager, fast = spaces
    # A backend outside the float32 parity family (say an int8 one from another version) made this collection.
    int8 = SpaceInfo("clip", eager.info.model_id, eager.info.revision, eager.info.dim, "onnx-int8")
    ws = Workspace(settings_for(tmp_path, clip_dir, OPENVINO_BF16))
    ws.store.collection("quantised", int8).add(["a"], eager.embed_texts(["a"]), [{"modality": "text"}], ["a"])
    for backend in ("torch", OPENVINO_BF16):
        with pytest.raises(SpaceMismatch) as caught:
            ws.store.collection("quantised", SpaceInfo("clip", eager.info.model_id, eager.info.revision, 16, backend))
        message = str(caught.value)
        assert "onnx-int8" in message and backend in message and "MMCORE_BACKEND=onnx-int8" in message
    with pytest.raises(SpaceMismatch):  # a reader is refused too: its query vectors aren't comparable
        ws.collection("quantised", create=False)
    # The other way: a torch collection refuses the int8 backend's vectors.
    ws.store.collection("eager", eager.info)
    with pytest.raises(SpaceMismatch, match="MMCORE_BACKEND=torch"):
        ws.store.collection("eager", int8)


def test_a_collection_from_before_backends_counts_as_torch(tmp_path, clip_dir, spaces):
    eager, _ = spaces
    settings = settings_for(tmp_path, clip_dir, OPENVINO_BF16)
    client = open_client(settings)
    info = eager.info
    client.create_collection("old.clip", metadata={"mm_collection": "old", "mm_space": "clip", "mm_model": info.model_id,
                                                    "mm_revision": info.revision, "mm_dim": info.dim},
                             configuration={"hnsw": {"space": "cosine"}}, embedding_function=None)
    ws = Workspace(settings)
    assert ws.store.open("old").space.backend == "torch"
    collection = ws.collection("old")  # openvino-bf16 is in parity with torch
    collection.add(["b"], ws.space().embed_texts(["b"]), [{"modality": "text"}], ["b"])
    assert ws.store.open("old").space.backend == f"torch+{OPENVINO_BF16}"


def test_an_unknown_backend_is_refused_by_name(tmp_path, clip_dir):
    with pytest.raises(MMError) as caught:
        Settings.from_env({"MMCORE_BACKEND": "tensorrt"})
    message = str(caught.value)
    assert "MMCORE_BACKEND='tensorrt'" in message and "torch" in message and OPENVINO_BF16 in message
    assert Settings.from_env({"MMCORE_BACKEND": OPENVINO_BF16}).backend == OPENVINO_BF16
    assert Settings.from_env({}).backend == "torch"
    with pytest.raises(MMError, match="not a known inference backend"):
        get_space("clip", settings_for(tmp_path, clip_dir, "onnx"))
    with pytest.raises(MMError, match="not a known inference backend"):
        ClipSpace.load(str(clip_dir), backend="bf16")


def test_openvino_refuses_a_gpu_device_instead_of_ignoring_it(tmp_path, clip_dir):
    with pytest.raises(BackendUnavailable, match="MMCORE_DEVICE=cpu"):
        get_space("clip", Settings(data_dir=tmp_path, models={"clip": str(clip_dir)}, device="cuda", backend=OPENVINO_BF16))


def test_openvino_missing_is_a_clear_error(tmp_path, clip_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if the package were not installed
    with pytest.raises(BackendUnavailable, match="needs the openvino package"):
        ClipSpace.load(str(clip_dir), backend=OPENVINO_BF16)


def test_openvino_sends_no_telemetry(tmp_path, clip_dir):
    """Importing OpenVINO's converter sends a usage event and writes an id under ~/intel unless disabled: mmscope
    disables it. A fresh process with its own HOME loads the backend; nothing is written there."""
    home = tmp_path / "home"
    home.mkdir()
    code = (
        "import sys\nfrom mmcore.spaces.clip import ClipSpace\n"
        f"space = ClipSpace.load({str(clip_dir)!r}, backend='openvino-bf16')\n"
        "space.embed_texts(['a'])\n"
        "import openvino.tools.ovc.telemetry_utils as t\n"
        "print(sys.modules['openvino_telemetry'], t.tm.__name__)\n"
    )
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("CI", None)  # OpenVINO stays quiet in CI anyway: test the case a user has
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["None", "openvino.tools.ovc.telemetry_stub"]
    assert list(home.iterdir()) == []


def test_a_siglip_checkpoint_keeps_parity_too(tmp_path):
    """The other CLIP-family layout: texts padded to the maximum length, no projection_dim (probed)."""
    from checkpoints import tiny_siglip

    folder = str(tiny_siglip(tmp_path / "siglip"))
    eager, fast = ClipSpace.load(folder), ClipSpace.load(folder, backend=OPENVINO_BF16)
    assert fast.pad_to_max and fast.info.dim == 32 and fast.info.backend == OPENVINO_BF16
    assert cosines(eager.embed_texts(TEXTS), fast.embed_texts(TEXTS)).min() >= PARITY_MIN_COSINE
    assert cosines(eager.embed_images(pictures()), fast.embed_images(pictures())).min() >= PARITY_MIN_COSINE
