"""The space registry, proven by a family added as one module: SigLIP (fixed resolution) and SigLIP 2 (NaFlex),
each a tiny random-weight checkpoint built from its config, embedded beside CLIP in the same collection."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import media_audio as ma
from mmcore import cli
from mmcore.analysis.duplicates import Thresholds
from mmcore.config import Settings
from mmcore.errors import ModelUnavailable, SpaceMismatch
from mmcore.ingest import SourceFile, ingest
from mmcore.media import Chunk
from mmcore.search import RRF_K, Query, search, search_each_modality, search_fused
from mmcore.spaces import get_space
from mmcore.spaces.registry import calibration, enabled, require, spaces_for
from mmcore.workspace import Workspace

PICTURES = [Image.new("RGB", (40, 20), (200, 10, 10)), Image.new("RGB", (20, 60), (10, 10, 200)),
            Image.new("RGB", (32, 32), (10, 180, 10))]


@pytest.fixture(scope="session")
def siglip_dir(tmp_path_factory):
    from checkpoints import tiny_siglip

    return tiny_siglip(tmp_path_factory.mktemp("models") / "tiny-siglip", seed=0)


@pytest.fixture(scope="session")
def siglip2_dir(tmp_path_factory):
    from checkpoints import tiny_siglip2

    return tiny_siglip2(tmp_path_factory.mktemp("models") / "tiny-siglip2", seed=0)


@pytest.fixture(params=["siglip", "siglip2"])
def checkpoint(request):
    return request.getfixturevalue(f"{request.param}_dir")


def siglip_settings(tmp_path, clip_dir, folder, **more) -> Settings:
    return Settings(data_dir=tmp_path / "data", models={"clip": str(clip_dir), "siglip": str(folder), **more}, batch_size=4)


def test_siglip_is_registered_and_off_unless_its_variable_is_set(tmp_path):
    spec = require("siglip")
    assert (spec.variable, spec.default_model) == ("MMCORE_SIGLIP_MODEL", None)
    assert spec.modalities == {"image", "text", "page", "video"} and spec.queries == {"text", "image"}
    assert spec.names_clusters and spec.calibration.probability is not None
    assert [s.name for s in enabled(Settings())] == ["clip", "clap"]
    assert spaces_for("image", Settings()) == ["clip"]
    on = Settings.from_env({"MMCORE_SIGLIP_MODEL": "google/siglip2-base-patch16-naflex"})
    assert on.model_for("siglip") == "google/siglip2-base-patch16-naflex" and on.model_for("clip")  # clip stays on
    assert spaces_for("image", on) == ["clip", "siglip"] and spaces_for("audio", on) == ["clap"]
    with pytest.raises(ModelUnavailable, match="MMCORE_SIGLIP_MODEL"):
        get_space("siglip", Settings(data_dir=tmp_path))


def test_both_kinds_of_checkpoint_embed_texts_and_images(tmp_path, clip_dir, checkpoint):
    space = get_space("siglip", siglip_settings(tmp_path, clip_dir, checkpoint))
    assert space.info.space == "siglip" and space.info.backend == "torch"
    texts = space.embed_query("text", ["a red square"])
    images = space.embed([Chunk("image", p) for p in PICTURES])
    assert texts.shape == (space.info.dim,) and images.shape == (3, space.info.dim)
    assert np.allclose(np.linalg.norm(images, axis=1), 1, atol=1e-5)
    assert space.max_text_tokens == 63  # 64 positions, room for the end token
    # SigLIP was trained on texts padded to the full length: a short text is padded, not cut to its own length.
    assert space._text_inputs(["a"])["input_ids"].shape[1] == 64


def test_naflex_keeps_each_images_aspect_ratio_and_masks_its_padding(tmp_path, clip_dir, siglip2_dir):
    space = get_space("siglip", siglip_settings(tmp_path, clip_dir, siglip2_dir))
    inputs = space._image_inputs(PICTURES)
    assert inputs["spatial_shapes"].tolist()[:2] == [[11, 22], [27, 9]]  # wide stays wide, tall stays tall
    assert inputs["pixel_attention_mask"].sum(axis=1).tolist() == [11 * 22, 27 * 9, 16 * 16]
    # Padding patches are masked out: an image's vector is the same alone as beside images of other shapes.
    together = space.embed_images(PICTURES)
    alone = np.concatenate([space.embed_images([p]) for p in PICTURES])
    assert np.allclose(together, alone, atol=1e-5)


def test_probability_is_the_models_own_sigmoid(tmp_path, clip_dir, checkpoint):
    import torch

    space = get_space("siglip", siglip_settings(tmp_path, clip_dir, checkpoint))
    texts = ["red", "a blue thing"]
    cosines = space.embed_images(PICTURES) @ np.stack([space.embed_query("text", [t]) for t in texts]).T
    inputs = space.processor(text=texts, images=PICTURES, padding="max_length", max_length=64, return_tensors="pt")
    with torch.inference_mode():
        logits = space.model(**inputs).logits_per_image.numpy()
    expected = 1 / (1 + np.exp(-logits))
    got = calibration("siglip").probability(space, cosines)
    assert space.logit_scale != 1.0 and space.logit_bias != 0.0  # the checkpoint's values, not the defaults
    assert np.allclose(got, expected, atol=1e-4)


def test_a_clip_checkpoint_is_not_a_siglip_model(tmp_path, clip_dir):
    with pytest.raises(ModelUnavailable, match="not a SigLIP"):
        get_space("siglip", siglip_settings(tmp_path, clip_dir, clip_dir))


def test_siglip_thresholds_come_from_its_calibration():
    own, clip = Thresholds.for_space("siglip"), Thresholds.for_space("clip")
    assert own.image_text == require("siglip").calibration.image_text < clip.image_text == 0.40
    assert clip.image_image == clip.text_text == 0.95
    assert Thresholds.for_space("custom") == Thresholds()  # imported vectors: the defaults


@pytest.fixture
def both(tmp_path, clip_dir, clap_dir, siglip2_dir, media):
    """A collection ingested with clip, clap and siglip on: images, a text, a CSV and a sound."""
    ws = Workspace(siglip_settings(tmp_path, clip_dir, siglip2_dir, clap=str(clap_dir)))
    sources = [SourceFile("img.png", path=media["img.png"]), SourceFile("img.jpg", path=media["img.jpg"]),
               SourceFile("long.txt", path=media["long.txt"]), SourceFile("tone.wav", ma.make_wav(3, freqs=440.0))]
    report = ingest(ws, sources)
    assert report.ok, [(r.name, r.reason) for r in report.results]
    return ws


def test_every_item_goes_to_every_enabled_space_that_takes_its_modality(both):
    ws = both
    assert ws.store.spaces("default") == ["clap", "clip", "siglip"]
    clip, siglip, clap = (ws.store.open("default", s).all(with_vectors=False) for s in ("clip", "siglip", "clap"))
    assert sorted(clip.ids) == sorted(siglip.ids) and len(clip.ids) > 2  # the same items, under the same ids
    assert {m["modality"] for m in siglip.metadatas} == {"image", "text"}
    assert {m["modality"] for m in clap.metadatas} == {"audio"} and not set(clap.ids) & set(clip.ids)
    assert ws.store.open("default", "siglip").space.model_id == ws.settings.model_for("siglip")


def test_search_shows_siglips_probability_beside_the_cosine_and_fuses_spaces(both):
    ws = both
    own = search_each_modality(ws, Query(text="a red square"), k=5, space="siglip")
    pictures, texts = own["image"], own["text"]
    space = ws.space("siglip")
    for h in pictures:  # a text query against a picture: the model's own probability of a match
        assert h.probability == pytest.approx(float(space.probability(h.score)), abs=1e-5)
    assert all(h.probability is None for h in texts)  # text against text: SigLIP was not trained to score that
    assert all(h.probability is None for h in search(ws, Query(text="a red square"), space="clip", k=10))
    per_kind = search_each_modality(ws, Query(text="a red square"), k=5)
    # Images live in both spaces under the same ids: their two lists are merged by rank, each image voted for twice.
    assert sorted(h.id for h in per_kind["image"]) == sorted(h.id for h in pictures)
    assert all(h.fused > 1 / (RRF_K + 1) for h in per_kind["image"])
    # ... each shown with the score of the space that has a probability, so the probability stands beside it
    assert all(h.space == "siglip" and h.probability is not None for h in per_kind["image"])
    fused = search_fused(ws, Query(text="a tone"), k=50)  # one item, one hit: SigLIP's are CLIP's items
    assert {h.modality for h in fused} == {"image", "text", "audio"} and len({h.id for h in fused}) == len(fused)


def test_a_file_needing_a_space_whose_model_fails_fails_whole(tmp_path, clip_dir, clap_dir, media):
    ws = Workspace(siglip_settings(tmp_path, clip_dir, tmp_path / "no-such-siglip", clap=str(clap_dir)))
    report = ingest(ws, [SourceFile("img.png", path=media["img.png"]), SourceFile("tone.wav", ma.make_wav(3))])
    by_name = {r.name: r for r in report.results}
    assert by_name["img.png"].status == "failed" and "SigLIP" in by_name["img.png"].reason
    assert by_name["tone.wav"].status == "added"
    assert ws.store.spaces("default") == ["clap"]  # nothing of the image in clip either


def test_a_mismatch_names_the_spaces_own_variable(tmp_path, clip_dir, siglip_dir, siglip2_dir, media):
    ws = Workspace(siglip_settings(tmp_path, clip_dir, siglip_dir))
    assert ingest(ws, [SourceFile("img.png", path=media["img.png"])]).ok
    other = Workspace(siglip_settings(tmp_path, clip_dir, siglip2_dir))
    with pytest.raises(SpaceMismatch, match=f"set MMCORE_SIGLIP_MODEL={siglip_dir.resolve()}"):
        other.collection("default", "siglip", create=False)


def test_info_lists_each_space_with_its_model_and_items(both, monkeypatch, capsys):
    settings = both.settings
    monkeypatch.setenv("MMCORE_DATA_DIR", str(settings.data_dir))
    for space, model in settings.models:
        monkeypatch.setenv(require(space).variable, model)
    assert cli.main(["info", "--json"]) == 0
    listed = {row["space"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(listed) == {"clip", "clap", "siglip"}
    assert listed["siglip"]["model"] == settings.model_for("siglip")
    assert listed["siglip"]["items"] == listed["clip"]["items"] == both.store.open("default", "clip").count()
