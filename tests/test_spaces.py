"""The clip space with a real (tiny, random-weight) checkpoint: vectors, determinism, batching, loading errors."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

import media_factory as mf
from mmcore.config import Settings
from mmcore.errors import MMError, ModelUnavailable
from mmcore.spaces import get_space, is_loaded, load_failure
from mmcore.spaces.registry import require

TEXTS = ["a red square", "the harbour at dawn", "mackerel and crushed ice", "42", "tide tables, 1012 hPa", "x"]


@pytest.fixture
def space(ws):
    return ws.space()


def images():
    return [mf.picture(size, colour, pattern) for size, colour, pattern in mf.IMAGE_SPECS.values()]


def assert_unit_rows(vectors: np.ndarray, n: int, dim: int) -> None:
    assert isinstance(vectors, np.ndarray)
    assert vectors.dtype == np.float32
    assert vectors.shape == (n, dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_space_describes_its_model(space, clip_dir):
    assert space.info.space == "clip"
    assert space.info.model_id == str(Path(clip_dir).resolve())
    assert space.info.dim == 16
    assert require("clip").modalities == {"image", "text", "page", "video"} and require("clip").queries == {"text", "image"}
    assert space.max_text_tokens == 75  # 77 positions less the start and end tokens


def test_embed_texts_gives_unit_float32_rows(space):
    assert_unit_rows(space.embed_texts(TEXTS), len(TEXTS), 16)


def test_embed_images_gives_unit_float32_rows(space):
    assert_unit_rows(space.embed_images(images()), len(mf.IMAGE_SPECS), 16)


def test_embedding_nothing_gives_an_empty_matrix(space):
    assert space.embed_texts([]).shape == (0, 16)
    assert space.embed_images([]).shape == (0, 16)


def test_same_input_same_vector_and_different_texts_differ(space):
    tokenizer = space.processor.tokenizer
    assert tokenizer("a red square")["input_ids"] != tokenizer("the harbour at dawn")["input_ids"]
    first = space.embed_texts(["a red square", "the harbour at dawn"])
    again = space.embed_texts(["a red square", "the harbour at dawn"])
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first[0], first[1], atol=1e-3)


def test_different_images_differ(space):
    vectors = space.embed_images(images())
    similarity = vectors @ vectors.T
    off_diagonal = similarity[~np.eye(len(vectors), dtype=bool)]
    assert off_diagonal.max() < 0.9999


def test_text_batches_equal_one_at_a_time(space):
    assert space.batch_size == 4 and len(TEXTS) > space.batch_size  # several batches, with padding inside each
    batched = space.embed_texts(TEXTS)
    single = np.concatenate([space.embed_texts([t]) for t in TEXTS])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_image_batches_equal_one_at_a_time(space):
    pictures = images()
    batched = space.embed_images(pictures)
    single = np.concatenate([space.embed_images([p]) for p in pictures])
    np.testing.assert_allclose(batched, single, atol=1e-5)


def test_pictures_prepared_ahead_embed_as_the_model_thread_would(space, monkeypatch):
    """The model inputs made in a decoder thread (prepare_decoded, for a model on an accelerator) give the vectors
    embed_images gives."""
    from mmcore.media import Chunk, Decoded
    from mmcore.spaces.embed import embed_chunks, prepare_decoded

    assert not space.prepares_ahead, "on the CPU the model's thread prepares its own inputs"
    monkeypatch.setattr(space, "prepares_ahead", True)  # as on a GPU
    pictures = images()
    decoded = Decoded("image/png", ".png", [Chunk("image", p) for p in pictures] + [Chunk("text", "a caption")])
    prepared = prepare_decoded({"clip": space}, decoded)
    assert all(c.prepared and "clip" in c.prepared for c in prepared.chunks[:-1]) and prepared.chunks[-1].prepared is None
    vectors = embed_chunks(space, prepared.chunks)
    np.testing.assert_allclose(vectors[:-1], space.embed_images(pictures), atol=1e-5)
    np.testing.assert_allclose(vectors[-1:], space.embed_texts(["a caption"]), atol=1e-5)


def test_an_ingest_prepares_pictures_in_its_decoder_threads_not_the_model_thread(ws, media, monkeypatch):
    import threading

    from mmcore.ingest import SourceFile, ingest
    from mmcore.media import ReadOptions, read_media

    space, threads = ws.space(), []
    real = space._image_inputs

    def image_inputs(batch):
        threads.append(threading.current_thread().name)
        return real(batch)

    monkeypatch.setattr(space, "_image_inputs", image_inputs)
    monkeypatch.setattr(space, "prepares_ahead", True)  # as on a GPU
    names = ["img.jpg", "img.png", "img.webp"]
    report = ingest(ws, [SourceFile(n, path=media[n]) for n in names], collection="prepared")
    assert [r.status for r in report.results] == ["added"] * 3
    assert len(threads) == 3 and all(t.startswith("ingest-decode") for t in threads), threads
    stored = ws.store.open("prepared", "clip").all(with_vectors=True)
    decoded = [read_media(n, media[n].read_bytes(), ReadOptions(lambda _: [], 1)).chunks[0].payload for n in names]
    direct = real.__self__.embed_images(decoded)
    assert np.allclose(np.sort(stored.vectors @ direct.T, axis=1)[:, -1], 1.0, atol=1e-5), "the same vectors"


def test_over_long_text_is_truncated_not_refused(space):
    vectors = space.embed_texts([mf.LONG_TEXT * 5])
    assert_unit_rows(vectors, 1, 16)


def test_get_space_loads_once_and_shares(settings, ws):
    first = get_space("clip", settings)
    assert is_loaded("clip", settings)
    assert get_space("clip", settings) is first
    assert ws.space() is first
    assert get_space("clip", Settings(data_dir=settings.data_dir / "elsewhere", models={"clip": settings.model_for("clip")}, batch_size=4)) is first


def test_unknown_space_is_refused(settings):
    with pytest.raises(MMError, match="unknown space"):
        get_space("audio-magic", settings)


def test_missing_local_folder_names_the_setting(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelUnavailable) as caught:
        get_space("clip", Settings(data_dir=tmp_path, models={"clip": str(missing)}))
    assert "MMCORE_CLIP_MODEL" in str(caught.value)
    assert str(missing) in str(caught.value)


def test_folder_that_is_not_a_checkpoint_is_unavailable(tmp_path):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(ModelUnavailable, match="MMCORE_CLIP_MODEL"):
        get_space("clip", Settings(data_dir=tmp_path, models={"clip": str(empty)}))


def test_uncached_hub_id_is_unavailable(tmp_path):
    with pytest.raises(ModelUnavailable) as caught:
        get_space("clip", Settings(data_dir=tmp_path, models={"clip": "nobody/not-a-model"}))
    assert "nobody/not-a-model" in str(caught.value)
    assert "MMCORE_CLIP_MODEL" in str(caught.value)
    assert not is_loaded("clip", Settings(data_dir=tmp_path, models={"clip": "nobody/not-a-model"}))


def test_a_failed_load_is_remembered_until_one_succeeds(tmp_path, clip_dir):
    """The sidebar shows why a model is missing instead of "loads on first use"; providing it clears that."""
    folder = tmp_path / "clip-later"
    settings = Settings(data_dir=tmp_path, models={"clip": str(folder)})
    assert load_failure("clip", settings) is None
    with pytest.raises(ModelUnavailable) as caught:
        get_space("clip", settings)
    assert load_failure("clip", settings) == str(caught.value)
    assert not is_loaded("clip", settings)
    shutil.copytree(clip_dir, folder)  # the user provides the model: the next use loads it
    get_space("clip", settings)
    assert is_loaded("clip", settings) and load_failure("clip", settings) is None


class _CreatesMarker:
    """Unpickling this runs `Path(marker).touch()`: what a malicious pytorch_model.bin could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_weights_are_refused_and_never_unpickled(tmp_path, clip_dir):
    # The payload works: unpickling it does create its marker.
    probe = tmp_path / "probe-marker"
    pickle.loads(pickle.dumps(_CreatesMarker(probe)))
    assert probe.exists()

    model_dir = tmp_path / "pickled-clip"
    shutil.copytree(clip_dir, model_dir)
    (model_dir / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    (model_dir / "pytorch_model.bin").write_bytes(pickle.dumps(_CreatesMarker(marker)))

    with pytest.raises(ModelUnavailable) as caught:
        get_space("clip", Settings(data_dir=tmp_path, models={"clip": str(model_dir)}))
    assert "safetensors" in str(caught.value)
    assert not marker.exists(), "the pickled weights were unpickled"


def test_siglip_checkpoint_loads_through_the_same_code(tmp_path):
    from checkpoints import tiny_siglip
    from mmcore.spaces.clip import ClipSpace
    from PIL import Image

    space = ClipSpace.load(str(tiny_siglip(tmp_path / "siglip")))
    assert space.pad_to_max and space.max_text_tokens == 63
    assert space.info.dim == 32  # SigLIP has no projection_dim: the dimension is probed
    texts = space.embed_texts(["red square", "blue circle"])
    images = space.embed_images([Image.new("RGB", (40, 30), (200, 10, 10))])
    assert texts.shape == (2, 32) and images.shape == (1, 32)
    np.testing.assert_allclose(np.linalg.norm(np.vstack([texts, images]), axis=1), 1.0, atol=1e-5)
    assert not np.allclose(texts[0], texts[1])


def test_a_model_in_bfloat16_gets_its_inputs_in_bfloat16_and_keeps_parity(clip_dir, clap_dir):
    """What a GPU runs (load_pretrained puts the weights in bfloat16 on CUDA), here on the CPU: pixels and sound
    are cast to the model's dtype, and the vectors stay within cosine 0.99 of float32's."""
    import torch

    from mmcore.spaces.clap import ClapSpace
    from mmcore.spaces.clip import ClipSpace

    images = [mf.picture((64, 48), colour, "stripes") for colour in ((200, 30, 30), (30, 200, 30), (30, 30, 200))]
    texts = ["a red square", "a green stripe", "blue"]
    rng = np.random.default_rng(0)
    waves = [rng.standard_normal(16_000).astype(np.float32) * 0.1 for _ in range(2)]
    clip, clap = ClipSpace.load(str(clip_dir), device="cpu"), ClapSpace.load(str(clap_dir), device="cpu")
    before = [clip.embed_images(images), clip.embed_texts(texts), clap.embed_audio(waves), clap.embed_texts(texts)]
    clip.model.to(torch.bfloat16), clap.model.to(torch.bfloat16)
    after = [clip.embed_images(images), clip.embed_texts(texts), clap.embed_audio(waves), clap.embed_texts(texts)]
    for full, half in zip(before, after):
        assert half.dtype == np.float32
        assert np.all(np.sum(full * half, axis=1) > 0.99)
