"""The bind space with a real (tiny, random-weight) PE-AV checkpoint: its vectors are the ones PeAudioVideoModel's
contrastive losses compare (audio head, video head, a text head per target), unit rows of one space; loading errors;
and as a registered space beside CLIP and CLAP: sounds, video segments and pictures ingested into it, a sound finding
the video segments and pictures, a picture finding the sounds, a text ranked in each head and fused by rank."""

from __future__ import annotations

import json
import re
import shutil
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import media_audio as ma
import media_av as mav
import media_factory as mf
from checkpoints import tiny_clap, tiny_clip, tiny_pe_av
from mmcore.analysis.figures import default_coloring
from mmcore.config import Settings
from mmcore.errors import MMError, ModelUnavailable
from mmcore.ingest import SourceFile, ingest
from mmcore.media import Chunk
from mmcore.search import Query, search, search_each_modality, search_fused
from mmcore.spaces import get_space
from mmcore.spaces.bind import BindSpace, pe_av_config
from mmcore.spaces.registry import enabled, require, spaces_for
from mmcore.workspace import Workspace

RATE = 16_000


@pytest.fixture(scope="module")
def pe_dir(tmp_path_factory):
    return tiny_pe_av(tmp_path_factory.mktemp("models") / "tiny-pe-av", seed=0, sampling_rate=RATE)


@pytest.fixture(scope="module")
def space(pe_dir):
    return BindSpace.load(str(pe_dir), device="cpu", batch_size=4)


def frames(colour, n=3, size=(64, 48)):
    return [Image.new("RGB", size, tuple(int(c) for c in np.clip(np.asarray(colour) + 9 * i, 0, 255))) for i in range(n)]


def assert_unit_rows(vectors, n, dim=32):
    assert vectors.shape == (n, dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_space_describes_its_model(space, pe_dir):
    assert space.info.space == "bind" and space.info.dim == 32 and space.info.model_id == str(pe_dir.resolve())
    assert space.sampling_rate == RATE


def test_vectors_are_those_the_model_trains_against_each_other(space):
    """Sound and sight meet in PeAudioVideoModel's audio_video_loss (audio head against video head), text in
    audio_text_loss and video_text_loss (one text head each): the space's vectors are exactly those, normalised."""
    waves = [ma.signal(1.0, RATE, 440.0), ma.signal(1.0, RATE, 2000.0, noise=0.1)]
    videos = [frames((200, 30, 30)), frames((30, 60, 220))]
    texts = ["a dog barks", "rain on a roof"]
    tok, au, vi = space._text_inputs(texts), space._audio_inputs(waves), space._video_inputs(videos)
    with torch.no_grad():
        out = space.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"], input_values=au["input_values"],
                          padding_mask=au["padding_mask"], pixel_values_videos=vi["pixel_values_videos"])
    unit = lambda x: F.normalize(x.float(), dim=-1).numpy()  # noqa: E731
    np.testing.assert_allclose(space.embed_audio(waves), unit(out.audio_embeds), atol=1e-5)
    np.testing.assert_allclose(space.embed_videos(videos), unit(out.video_embeds), atol=1e-5)
    np.testing.assert_allclose(space.embed_texts(texts, target="audio"), unit(out.text_audio_embeds), atol=1e-5)
    np.testing.assert_allclose(space.embed_texts(texts, target="video"), unit(out.text_video_embeds), atol=1e-5)


def test_every_modality_gives_unit_rows_of_one_dimension(space):
    assert_unit_rows(space.embed_audio([ma.signal(2.0, RATE), ma.signal(0.3, RATE, 900.0)]), 2)
    assert_unit_rows(space.embed_videos([frames((10, 200, 10), 5), frames((10, 200, 10), 1)]), 2)
    assert_unit_rows(space.embed_images([Image.new("RGB", (40, 30), (250, 250, 0))]), 1)
    assert_unit_rows(space.embed_texts(["a siren"], target="audio"), 1)


def test_a_text_has_a_vector_per_head(space):
    to_audio = space.embed_query("text", ["a siren"], target="audio")
    to_video = space.embed_query("text", ["a siren"], target="video")
    assert to_audio.shape == to_video.shape == (32,)
    assert float(to_audio @ to_video) < 0.999  # two heads, two vectors
    np.testing.assert_allclose(space.embed_query("text", ["a siren"], target="image"), to_video, atol=1e-6)
    np.testing.assert_allclose(space.embed_query("text", ["a siren"]), to_video, atol=1e-6)


def test_an_image_is_a_one_frame_video(space):
    picture = Image.new("RGB", (64, 48), (200, 30, 30))
    np.testing.assert_allclose(space.embed_images([picture]), space.embed_videos([[picture]]), atol=1e-6)


def test_batches_and_padding_do_not_change_a_vector(space):
    waves = [ma.signal(1.0, RATE, 440.0), ma.signal(3.0, RATE, 700.0), ma.signal(0.5, RATE, 300.0)]
    together = space.embed_audio(waves)
    alone = np.concatenate([space.embed_audio([w]) for w in waves])
    np.testing.assert_allclose(together, alone, atol=1e-4)
    videos = [frames((200, 30, 30), 4), frames((30, 60, 220), 2)]
    np.testing.assert_allclose(space.embed_videos(videos), np.concatenate([space.embed_videos([v]) for v in videos]), atol=1e-4)


def test_the_space_interface_embeds_chunks_by_modality(space):
    chunks = [Chunk("audio", ma.signal(1.0, RATE)), Chunk("video", frames((0, 0, 200))),
              Chunk("image", Image.new("RGB", (32, 32), (5, 5, 5)))]
    vectors = space.embed(chunks)
    np.testing.assert_allclose(vectors[0], space.embed_audio([chunks[0].payload])[0], atol=1e-6)
    np.testing.assert_allclose(vectors[1], space.embed_videos([chunks[1].payload])[0], atol=1e-6)
    np.testing.assert_allclose(vectors[2], space.embed_images([chunks[2].payload])[0], atol=1e-6)


def test_the_checkpoint_loads_as_saved_with_its_own_frame_encoder(space, pe_dir):
    """config.json records a ViT frame encoder, which transformers' PeVideoEncoderConfig alone would rebuild as a timm
    model: the space's config keeps the ViT, every weight is read from the file (none missing, none left over) and
    the space runs those."""
    from transformers import PeAudioVideoModel

    vision = space.model.video_model.video_encoder.embedder.vision_model
    assert type(vision).__name__ == "ViTForImageClassification" and vision.config.num_labels == 16
    raw = json.loads((pe_dir / "config.json").read_text())
    assert raw["audio_video_config"]["video_config"]["vision_config"]["model_type"] == "vit"
    loaded, info = PeAudioVideoModel.from_pretrained(pe_dir, config=pe_av_config(raw, str(pe_dir)), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    state = space.model.state_dict()
    for name, tensor in loaded.state_dict().items():
        torch.testing.assert_close(state[name], tensor, rtol=0, atol=0, msg=name)


def _timm_checkpoint(tmp_path, pe_dir):
    """The tiny checkpoint with the released checkpoints' frame encoder in its config.json: a timm PE-Core."""
    folder = tmp_path / "timm-pe-av"
    shutil.copytree(pe_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["audio_video_config"]["video_config"]["vision_config"] = {
        "model_type": "timm_wrapper", "architecture": "vit_pe_core_large_patch14_336", "do_pooling": True,
        "global_pool": "map", "num_classes": 1024, "initializer_range": 0.02}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_timm_frame_encoder_without_timm_says_what_to_install(tmp_path, pe_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # this machine's state, whether or not timm is installed
    with pytest.raises(ModelUnavailable) as caught:
        BindSpace.load(str(_timm_checkpoint(tmp_path, pe_dir)))
    message = str(caught.value)
    assert "timm model (vit_pe_core_large_patch14_336)" in message
    assert re.search(r"timm (and torchvision are|is) not installed", message)
    assert "pip install torch==2.14.1 torchvision==0.29.1 timm==1.0.28" in message and "MMCORE_BIND_MODEL" in message


def test_a_missing_folder_names_the_variable(tmp_path):
    with pytest.raises(ModelUnavailable) as caught:
        BindSpace.load(str(tmp_path / "nowhere"))
    message = str(caught.value)
    assert "PE-AV model folder" in message and "MMCORE_BIND_MODEL=./models/pe-av" in message
    assert "hf download facebook/pe-av-large" in message


def test_an_uncached_hub_id_says_how_to_provide_it():
    with pytest.raises(ModelUnavailable) as caught:  # HF_HUB_OFFLINE=1 (conftest): nothing is downloaded
        BindSpace.load("facebook/pe-av-large")
    assert "not in the local Hugging Face cache" in str(caught.value) and "MMCORE_BIND_MODEL" in str(caught.value)


def test_a_folder_without_weights_is_refused_never_initialised_at_random(tmp_path, pe_dir):
    folder = tmp_path / "no-weights"
    shutil.copytree(pe_dir, folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelUnavailable, match="has no model.safetensors"):
        BindSpace.load(str(folder))


def test_a_clip_checkpoint_is_not_taken_for_pe_av(tmp_path):
    with pytest.raises(ModelUnavailable, match="not a PE-AV model"):
        BindSpace.load(str(tiny_clip(tmp_path / "clip")))


def test_bind_is_registered_off_unless_its_variable_is_set(tmp_path):
    spec = require("bind")
    assert (spec.variable, spec.default_model, spec.title) == ("MMCORE_BIND_MODEL", None, "PE-AV")
    assert spec.modalities == {"audio", "video", "image"} and spec.queries == {"text", "image", "audio"}
    assert spec.text_heads and spec.binds and not require("clip").binds and not require("clap").binds
    assert "bind" not in [s.name for s in enabled(Settings())]
    on = Settings.from_env({"MMCORE_BIND_MODEL": "facebook/pe-av-large"})
    assert spaces_for("audio", on) == ["clap", "bind"] and spaces_for("video", on) == ["clip", "bind"]
    assert spaces_for("image", on) == ["clip", "bind"] and spaces_for("text", on) == ["clip"]
    assert default_coloring("bind") == "modality" and default_coloring("clip") == "cluster"
    with pytest.raises(ModelUnavailable, match="MMCORE_BIND_MODEL"):
        get_space("bind", Settings(data_dir=tmp_path))


@pytest.fixture(scope="module")
def bound_ws(tmp_path_factory, pe_dir):
    """CLIP, CLAP and PE-AV configured; a 15 s video (red, then blue from 10 s), two sounds and a picture ingested."""
    models = tmp_path_factory.mktemp("models")
    settings = Settings(data_dir=tmp_path_factory.mktemp("bound") / "data", batch_size=4, models={
        "clip": str(tiny_clip(models / "clip")), "clap": str(tiny_clap(models / "clap")), "bind": str(pe_dir)})
    ws = Workspace(settings)
    sources = [SourceFile("scene.mp4", mav.make_video(seconds=15, fps=4, size=(64, 48), colours=((220, 30, 30), (30, 60, 220)))),
               SourceFile("tone.wav", ma.make_wav(12.0, RATE, 440.0)),
               SourceFile("hiss.wav", ma.make_wav(3.0, RATE, 3000.0, noise=0.3)),
               SourceFile("yellow.png", mf.encode(mf.picture((40, 30), (240, 220, 20)), "PNG"))]
    report = ingest(ws, sources)
    assert report.ok, [(r.name, r.reason) for r in report.results]
    return ws


def test_sounds_video_and_pictures_go_into_the_bind_space_as_the_same_items(bound_ws):
    ws = bound_ws
    assert sorted(ws.store.spaces("default")) == ["bind", "clap", "clip"]
    bind = ws.store.open("default", "bind").all(with_vectors=True)
    assert sorted(m["modality"] for m in bind.metadatas) == ["audio", "audio", "audio", "image", "video", "video"]
    np.testing.assert_allclose(np.linalg.norm(np.asarray(bind.vectors), axis=1), 1.0, atol=1e-4)
    clip, clap = ws.store.open("default", "clip"), ws.store.open("default", "clap")
    assert sorted(bind.ids) == sorted(clip.ids({"modality": {"$in": ["video", "image"]}}) + clap.ids())
    segments = sorted((m["start_s"], m["end_s"]) for m in bind.metadatas if m["modality"] == "video")
    assert segments == [(0.0, 10.0), (10.0, 15.0)]


def test_a_sound_finds_video_segments_and_pictures_and_says_which_space_answered(bound_ws):
    results = search_each_modality(bound_ws, Query(audio=ma.make_wav(2.0, RATE, 440.0), audio_name="q.wav"), k=5)
    assert set(results) == {"video", "image", "audio"}
    assert {h.space for h in results["video"]} == {"bind"} and {h.space for h in results["image"]} == {"bind"}
    assert len(results["video"]) == 2 and results["image"][0].source == "yellow.png"
    assert {s for h in results["audio"] for s in h.found_in} == {"clap", "bind"}  # both spaces' lists, fused by rank
    query = bound_ws.space("bind").embed_query("audio", [ma.signal(2.0, RATE, 440.0)])
    vectors = dict(zip(*_bind_items(bound_ws)))
    for hit in results["video"]:  # scored in the bind space, by the audio head against the video head
        assert hit.score == pytest.approx(float(vectors[hit.id] @ query), abs=1e-4)


def test_a_picture_finds_sounds(bound_ws):
    picture = mf.encode(mf.picture((40, 30), (220, 30, 30)), "PNG")
    results = search_each_modality(bound_ws, Query(image=picture, image_name="red.png"), k=5)
    assert {h.source for h in results["audio"]} == {"tone.wav", "hiss.wav"} and {h.space for h in results["audio"]} == {"bind"}
    assert {s for h in results["image"] for s in h.found_in} == {"clip", "bind"}


def test_a_text_is_ranked_in_each_head_and_fused_with_the_other_spaces(bound_ws):
    ws = bound_ws
    results = search_each_modality(ws, Query(text="a red scene"), k=5)
    assert {s for h in results["video"] for s in h.found_in} == {"clip", "bind"}
    assert {s for h in results["audio"] for s in h.found_in} == {"clap", "bind"}
    model = ws.space("bind")
    ids, vectors = _bind_items(ws)
    for modality, target in (("audio", "audio"), ("video", "video")):
        own = search_each_modality(ws, Query(text="a red scene"), k=5, space="bind")[modality]
        expected = model.embed_query("text", ["a red scene"], target=target)
        for hit in own:
            assert hit.score == pytest.approx(float(vectors[ids.index(hit.id)] @ expected), abs=1e-4)
    fused = search_fused(ws, Query(text="a red scene"), k=50)
    assert {h.modality for h in fused} >= {"audio", "video", "image"} and all(h.fused for h in fused)
    one = search(ws, Query(text="a red scene"), k=50, space="bind")  # one space, its heads' lists fused by rank
    assert sorted(h.id for h in one) == sorted(ids)


def _bind_items(ws):
    items = ws.store.open("default", "bind").all(with_vectors=True)
    return list(items.ids), np.asarray(items.vectors)


def test_spaces_of_sound_at_different_rates_are_refused_by_name_before_anything_is_stored(tmp_path, pe_dir):
    """Sounds are read once, at one rate, for every space of sound: the tiny CLAP hears 16 kHz, this PE-AV 8 kHz."""
    models = tmp_path / "models"
    settings = Settings(data_dir=tmp_path / "data", batch_size=4, models={
        "clip": str(tiny_clip(models / "clip")), "clap": str(tiny_clap(models / "clap")),
        "bind": str(tiny_pe_av(models / "pe-av-8k", sampling_rate=8_000))})
    ws = Workspace(settings)
    with pytest.raises(MMError) as caught:
        ingest(ws, [SourceFile("tone.wav", ma.make_wav(2.0, RATE, 440.0))])
    message = str(caught.value)
    assert "the clap space 16,000 Hz" in message and "the bind space 8,000 Hz" in message
    assert sum(info.count for info in ws.store.list()) == 0
