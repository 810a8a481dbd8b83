"""The imagebind space: registered off, its licence said wherever it is on, clear errors for a missing file, a
missing install and a weights file that is a pickle with code; and, where imagebind-unofficial and its model's
imports are installed (not beside this project's torch 2.13: see README, ImageBind), a tiny random ImageBindModel
saved as a user's weights file, loaded through the space and used end to end by ingest and search.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import media_audio as ma
import media_av as mav
import media_factory as mf
from checkpoints import tiny_imagebind
from mmcore.config import Settings
from mmcore.errors import ModelUnavailable
from mmcore.spaces import get_space
from mmcore.spaces import imagebind as ib
from mmcore.spaces.registry import enabled, notices, require, spaces_for

needs_package = pytest.mark.skipif(not ib.installed(), reason="imagebind-unofficial and its model's imports are not "
                                   "installed here (they need torchvision and timm, which torch 2.13's CPU build lacks)")


def test_imagebind_is_registered_off_and_its_licence_is_said_when_on(tmp_path):
    spec = require("imagebind")
    assert (spec.variable, spec.default_model, spec.title) == ("MMCORE_IMAGEBIND_WEIGHTS", None, "ImageBind")
    assert spec.binds and spec.modalities == {"audio", "video", "image"} and not spec.text_heads
    assert "imagebind" not in [s.name for s in enabled(Settings())] and notices(Settings()) == []
    on = Settings.from_env({"MMCORE_IMAGEBIND_WEIGHTS": str(tmp_path / "imagebind_huge.pth")})
    assert spaces_for("audio", on) == ["clap", "imagebind"] and spaces_for("image", on) == ["clip", "imagebind"]
    assert notices(on) == [ib.LICENCE] and "ImageBind" in ib.LICENCE and "CC BY-NC-SA 4.0" in ib.LICENCE
    # Given sounds at the rate CLAP and PE-AV hear, so an ingest reads a sound once for all of them.
    from mmcore.media.base import ReadOptions

    assert ib.ImageBindSpace.sampling_rate == ReadOptions.audio_rate == 48_000


def test_a_missing_weights_file_names_the_variable(tmp_path):
    with pytest.raises(ModelUnavailable, match=r"does not exist.*MMCORE_IMAGEBIND_WEIGHTS"):
        get_space("imagebind", Settings(data_dir=tmp_path, models={"imagebind": str(tmp_path / "nope.pth")}))


def test_a_missing_install_says_what_to_install_and_the_licence(tmp_path, monkeypatch):
    weights = tmp_path / "imagebind_huge.pth"
    torch.save({"w": torch.zeros(1)}, weights)
    monkeypatch.setattr(ib, "NEEDS", ("no_such_module_for_imagebind",))
    with pytest.raises(ModelUnavailable, match=r"no_such_module_for_imagebind.*pip install --no-deps imagebind-unofficial.*CC BY-NC-SA"):
        ib.ImageBindSpace.load(str(weights), device="cpu")


def test_weights_are_read_without_running_code(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (type(marker).touch, (marker,))

    pickled = tmp_path / "evil.pth"
    torch.save({"w": Payload()}, pickled)
    with pytest.raises(ModelUnavailable, match="can't be read as ImageBind weights"):
        ib.read_weights(pickled)
    assert not marker.exists()
    plain = tmp_path / "plain.pth"
    torch.save({"w": torch.ones(2)}, plain)
    assert torch.equal(ib.read_weights(plain)["w"], torch.ones(2))
    from safetensors.torch import save_file

    save_file({"w": torch.ones(3)}, tmp_path / "w.safetensors")
    assert torch.equal(ib.read_weights(tmp_path / "w.safetensors")["w"], torch.ones(3))
    torch.save([torch.ones(1)], tmp_path / "list.pth")
    with pytest.raises(ModelUnavailable, match="not a state dict"):
        ib.read_weights(tmp_path / "list.pth")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_imagebind(tmp_path_factory.mktemp("imagebind"))


@pytest.fixture(scope="module")
def space(weights):
    return ib.ImageBindSpace.load(str(weights), device="cpu", batch_size=2)


@needs_package
def test_every_modality_gives_unit_vectors_of_one_space(space, weights):
    assert space.info.dim == 16 and space.info.model_id == str(weights.resolve())
    red, blue = mf.picture((64, 48), (220, 30, 30)), mf.picture((48, 64), (30, 60, 220))
    for vectors, n in ((space.embed_images([red, blue, red]), 3), (space.embed_texts(["a red door", "rain"]), 2),
                       (space.embed_audio([ma.signal(5.0, ib.RATE, 440.0), ma.signal(1.0, ib.RATE, 880.0)]), 2),
                       (space.embed_videos([[red, blue, red], [blue]]), 2)):
        assert vectors.shape == (n, 16) and vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Batches don't change a vector (three images at batch size 2).
    np.testing.assert_allclose(space.embed_images([red, blue, red])[2], space.embed_images([red])[0], atol=1e-5)


@needs_package
def test_a_picture_is_a_clip_of_its_frame_repeated_and_a_segment_the_mean_of_its_clips(space):
    red, blue = mf.picture((64, 48), (220, 30, 30)), mf.picture((64, 48), (30, 60, 220))
    np.testing.assert_allclose(space.embed_images([red])[0], space.embed_videos([[red, red]])[0], atol=1e-5)
    np.testing.assert_allclose(space.embed_videos([[red]])[0], space.embed_images([red])[0], atol=1e-5)
    clips = space.embed_videos([[red, blue], [blue, blue]])
    whole = space.embed_videos([[red, blue, blue, blue]])[0]
    # The model averages its clips' unit vectors (each scaled alike), so the segment is their normalised mean.
    mean = clips.mean(axis=0)
    np.testing.assert_allclose(whole, mean / np.linalg.norm(mean), atol=1e-4)


@needs_package
def test_a_sound_is_three_clips_spread_over_it(space):
    parts = [ma.signal(2.0, ib.RATE, f) for f in (300.0, 1200.0, 3000.0)]
    each = space.embed_audio(parts)  # a 2 s sound: its one clip, three times
    whole = space.embed_audio([np.concatenate(parts)])[0]
    mean = each.mean(axis=0)
    np.testing.assert_allclose(whole, mean / np.linalg.norm(mean), atol=1e-4)


@needs_package
def test_the_filterbank_is_imagebinds(space):
    bank = space._sound_clips([ma.signal(2.0, ib.RATE, 440.0)])
    assert tuple(bank.shape) == (1, ib.CLIPS, 1, ib.MEL_BINS, ib.MEL_FRAMES)
    # 2 s (resampled to 16 kHz) is 198 frames of 25 ms every 10 ms; the 6 after them are zero before normalising.
    padded = bank[0, 0, 0, :, 198:]
    torch.testing.assert_close(padded, torch.full_like(padded, (0 - ib.MEL_MEAN) / ib.MEL_STD))


@needs_package
def test_a_sound_finds_pictures_and_video_through_imagebind(tmp_path, weights):
    from checkpoints import tiny_clip
    from mmcore.ingest import SourceFile, ingest
    from mmcore.search import Query, search_each_modality
    from mmcore.workspace import Workspace

    # CLAP off: the tests' tiny CLAP hears 16 kHz, ImageBind is given sounds at 48 kHz as real CLAP is.
    settings = Settings(data_dir=tmp_path / "data", batch_size=4, models={
        "clip": str(tiny_clip(tmp_path / "clip")), "clap": None, "imagebind": str(weights)})
    with Workspace(settings) as ws:
        report = ingest(ws, [SourceFile("scene.mp4", mav.make_video(seconds=4, fps=2, size=(64, 48))),
                             SourceFile("tone.wav", ma.make_wav(3.0, ib.RATE, 440.0)),
                             SourceFile("yellow.png", mf.encode(mf.picture((40, 30), (240, 220, 20)), "PNG"))])
        assert report.ok, [(r.name, r.reason) for r in report.results]
        assert sorted(ws.store.spaces("default")) == ["clip", "imagebind"]
        results = search_each_modality(ws, Query(audio=ma.make_wav(2.0, ib.RATE, 440.0), audio_name="q.wav"), k=5)
        assert {h.space for h in results["video"]} == {"imagebind"} and {h.space for h in results["image"]} == {"imagebind"}
        assert results["image"][0].source == "yellow.png" and results["video"][0].source == "scene.mp4"


def test_a_config_beside_the_weights_is_data_only(tmp_path):
    class Code:
        @staticmethod
        def ImageBindModel(out_embed_dim=768, vision_embed_dim=1024):  # noqa: N802 (the package's name)
            return None

    weights = tmp_path / "w.pth"
    assert ib.architecture(weights, Code) == ib.HUGE
    (tmp_path / ib.CONFIG_FILE).write_text(json.dumps({"out_embed_dim": 16}))
    assert ib.architecture(weights, Code) == {"out_embed_dim": 16}
    for bad in ({"out_embed_dim": "16"}, {"no_such_argument": 1}, [1, 2], {"out_embed_dim": True}):
        (tmp_path / ib.CONFIG_FILE).write_text(json.dumps(bad))
        with pytest.raises(ModelUnavailable, match="ImageBindModel's arguments"):
            ib.architecture(weights, Code)
