"""The xclip space with a real (tiny, random-weight) X-CLIP checkpoint: loading, text and video-segment vectors,
frame sampling, segments read from a real encoded video, and loading errors; and as a registered space beside CLIP:
a video ingested into both, listed by `info --json`, found by text through X-CLIP, the two lists fused by rank."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import media_av as mav
import media_factory as mf
from checkpoints import tiny_clip, tiny_xclip
from mmcore import cli
from mmcore.config import Settings
from mmcore.errors import ModelUnavailable
from mmcore.ingest import SourceFile, ingest
from mmcore.media import Chunk, ReadOptions, read_media
from mmcore.media.video import sample_frames
from mmcore.search import RRF_K, Query, search, search_each_modality
from mmcore.spaces import get_space, normalize
from mmcore.spaces.registry import enabled, require, spaces_for
from mmcore.spaces.xclip import XClipSpace
from mmcore.workspace import Workspace

TEXTS = ["a red square", "waves breaking on rocks", "42", "x"]
COLOURS = [(220, 30, 30), (30, 200, 40), (30, 60, 220), (240, 220, 20), (200, 0, 200), (0, 0, 0), (255, 255, 255), (90, 90, 90)]


@pytest.fixture(scope="module")
def xclip_dir(tmp_path_factory):
    return tiny_xclip(tmp_path_factory.mktemp("models") / "tiny-xclip", projection_dim=16, seed=0)


@pytest.fixture(scope="module")
def space(xclip_dir):
    return XClipSpace.load(str(xclip_dir), device="cpu", batch_size=32)


def frames(colours, pattern="none", size=(40, 30)):
    return [mf.picture(size, colour, pattern) for colour in colours]


def assert_unit_rows(vectors: np.ndarray, n: int, dim: int = 16) -> None:
    assert isinstance(vectors, np.ndarray)
    assert vectors.dtype == np.float32
    assert vectors.shape == (n, dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_space_describes_its_model(space, xclip_dir):
    assert space.info.space == "xclip"
    assert space.info.model_id == str(Path(xclip_dir).resolve())
    assert space.info.revision == "local"
    assert space.info.dim == 16
    assert space.num_frames == 8
    assert space.max_text_tokens == 75
    assert space.token_spans("ab c") == [(0, 1), (1, 2), (3, 4)]


def test_text_vectors_are_the_unconditioned_text_tower(space):
    vectors = space.embed_texts(TEXTS)
    assert_unit_rows(vectors, len(TEXTS))
    assert len({tuple(np.round(v, 5)) for v in vectors}) == len(TEXTS)
    with torch.inference_mode():
        raw = space.model.get_text_features(**space.text_inputs(TEXTS)).pooler_output.numpy()
    np.testing.assert_allclose(vectors, normalize(raw), atol=1e-5)
    assert space.embed_texts([]).shape == (0, 16)


def test_segment_vectors_are_unit_rows_and_differ_by_content(space):
    a = frames(COLOURS)
    b = frames(COLOURS, pattern="stripes")
    vectors = space.embed_videos([a, b, a])
    assert_unit_rows(vectors, 3)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-6)
    assert float(vectors[0] @ vectors[1]) < 0.999
    assert space.embed_videos([]).shape == (0, 16)


def test_frame_order_matters_unlike_a_mean(space):
    """The integration transformer has a position per frame: the same frames reversed make another vector."""
    forward, backward = frames(COLOURS), frames(COLOURS[::-1])
    vectors = space.embed_videos([forward, backward])
    assert float(vectors[0] @ vectors[1]) < 0.9999


def test_video_vectors_match_the_model_and_do_not_depend_on_batching(xclip_dir, space):
    segments = [frames(COLOURS[i:] + COLOURS[:i]) for i in range(5)]
    together = space.embed_videos(segments)  # batch_size 32 frames: 4 segments per forward pass
    one_by_one = XClipSpace.load(str(xclip_dir), device="cpu", batch_size=1).embed_videos(segments)
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    with torch.inference_mode():
        raw = space.model.get_video_features(**space.video_inputs(segments[:2])).pooler_output.numpy()
    np.testing.assert_allclose(together[:2], normalize(raw), atol=1e-5)


def test_a_segment_with_more_or_fewer_frames_than_the_model_takes(space):
    ten = frames(COLOURS + [(10, 120, 120), (120, 10, 120)])
    three = frames(COLOURS[:3])
    vectors = space.embed_videos([ten, three, frames(COLOURS[:1])])
    assert_unit_rows(vectors, 3)
    # What the model saw: 8 of the 10, evenly spaced; the 3 frames repeated in order to fill 8 slots.
    explicit = space.embed_videos([[ten[i] for i in (0, 1, 3, 4, 5, 6, 8, 9)], [three[i] for i in (0, 0, 0, 1, 1, 2, 2, 2)]])
    np.testing.assert_allclose(vectors[:2], explicit, atol=1e-6)
    with pytest.raises(ValueError, match="0"):
        space.embed_videos([ten, []])


def test_sample_frames_spreads_evenly_in_time_order():
    assert sample_frames(list(range(8)), 8) == list(range(8))
    assert sample_frames(list(range(16)), 8) == [1, 3, 5, 7, 9, 11, 13, 15]
    assert sample_frames(list(range(10)), 8) == [0, 1, 3, 4, 5, 6, 8, 9]
    assert sample_frames(list(range(3)), 8) == [0, 0, 0, 1, 1, 2, 2, 2]
    assert sample_frames(["only"], 4) == ["only"] * 4
    long = sample_frames(list(range(1000)), 8)
    assert long == sorted(long) and long[0] < 125 and long[-1] >= 875
    with pytest.raises(ValueError):
        sample_frames([], 8)
    with pytest.raises(ValueError):
        sample_frames([1, 2], 0)


def test_segments_of_a_real_encoded_video(space):
    """A 25 s MP4 (a new colour every 10 s) read as ingest reads it: 10 + 10 + 5 frames, one vector per segment."""
    data = mav.make_video(seconds=25, fps=10, size=(64, 48))
    options = ReadOptions(token_spans=space.token_spans, max_tokens=space.max_text_tokens)
    decoded = read_media("sea.mp4", data, options)
    segments = [chunk.payload for chunk in decoded.chunks]
    assert [len(s) for s in segments] == [10, 10, 5]
    vectors = space.embed_videos(segments)
    assert_unit_rows(vectors, 3)
    assert float(vectors[0] @ vectors[1]) < 0.999  # red, then green
    # Short segments (2 s at 1 frame a second: 2 frames each, the 1 s tail 1) still make full X-CLIP inputs.
    short = read_media("sea.mp4", data, dataclasses.replace(options, video_segment_s=2.0))
    assert [len(c.payload) for c in short.chunks] == [2] * 12 + [1]
    assert_unit_rows(space.embed_videos([c.payload for c in short.chunks]), len(short.chunks))


def test_a_missing_folder_names_the_variable(tmp_path):
    with pytest.raises(ModelUnavailable) as caught:
        XClipSpace.load(str(tmp_path / "nowhere"))
    message = str(caught.value)
    assert "X-CLIP model folder" in message and "nowhere" in message
    assert "MMCORE_XCLIP_MODEL=./models/xclip" in message
    assert "hf download microsoft/xclip-base-patch32" in message


def test_an_uncached_hub_id_says_how_to_provide_it():
    # The test session runs with HF_HUB_OFFLINE=1 (conftest): nothing is downloaded.
    with pytest.raises(ModelUnavailable) as caught:
        XClipSpace.load("microsoft/xclip-large-patch14-kinetics-600")
    message = str(caught.value)
    assert "not in the local Hugging Face cache" in message
    assert "hf download microsoft/xclip-large-patch14-kinetics-600" in message and "MMCORE_XCLIP_MODEL" in message


def test_a_folder_without_weights_is_refused_never_initialised_at_random(tmp_path, xclip_dir):
    folder = tmp_path / "no-weights"
    shutil.copytree(xclip_dir, folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelUnavailable) as caught:
        XClipSpace.load(str(folder))
    assert "X-CLIP model" in str(caught.value) and "has no model.safetensors" in str(caught.value)


def test_a_clip_checkpoint_is_not_taken_for_xclip(tmp_path):
    with pytest.raises(ModelUnavailable) as caught:
        XClipSpace.load(str(tiny_clip(tmp_path / "clip")))
    assert "not an X-CLIP model" in str(caught.value) and "MMCORE_XCLIP_MODEL" in str(caught.value)


def test_xclip_is_registered_video_only_and_off_unless_its_variable_is_set(tmp_path):
    spec = require("xclip")
    assert (spec.variable, spec.default_model, spec.title) == ("MMCORE_XCLIP_MODEL", None, "X-CLIP")
    assert spec.modalities == {"video"} and spec.queries == {"text"} and not spec.names_clusters
    assert "xclip" not in [s.name for s in enabled(Settings())]
    on = Settings.from_env({"MMCORE_XCLIP_MODEL": "microsoft/xclip-base-patch32"})
    assert spaces_for("video", on) == ["clip", "xclip"]
    assert spaces_for("image", on) == ["clip"] and spaces_for("text", on) == ["clip"]  # its text tower is for queries
    with pytest.raises(ModelUnavailable, match="MMCORE_XCLIP_MODEL"):
        get_space("xclip", Settings(data_dir=tmp_path))


def test_the_space_interface_embeds_segments_whole_and_text_queries(space):
    segments = [frames(COLOURS), frames(COLOURS, pattern="stripes")]
    vectors = space.embed([Chunk("video", s, locator={"start_s": 0.0, "end_s": 8.0}) for s in segments])
    np.testing.assert_allclose(vectors, space.embed_videos(segments), atol=1e-6)  # X-CLIP's own, not a frame mean
    query = space.embed_query("text", ["a red square"])
    np.testing.assert_allclose(query, space.embed_texts(["a red square"])[0], atol=1e-6)


@pytest.fixture
def video_ws(tmp_path, clip_dir, xclip_dir):
    """CLIP and X-CLIP configured; a 25 s video (a new colour every 10 s) and an image ingested."""
    settings = Settings(data_dir=tmp_path / "data", models={"clip": str(clip_dir), "xclip": str(xclip_dir)}, batch_size=4)
    ws = Workspace(settings)
    sources = [SourceFile("sea.mp4", mav.make_video(seconds=25, fps=10, size=(64, 48))),
               SourceFile("red.png", mf.encode(mf.picture((40, 30), (200, 10, 10)), "PNG"))]
    report = ingest(ws, sources)
    assert report.ok, [(r.name, r.reason) for r in report.results]
    return ws


def test_a_video_goes_into_clip_and_xclip_and_info_lists_both(video_ws, monkeypatch, capsys):
    ws = video_ws
    assert ws.store.spaces("default") == ["clip", "xclip"]
    xclip = ws.store.open("default", "xclip").all(with_vectors=True)
    assert {m["modality"] for m in xclip.metadatas} == {"video"}
    assert sorted((m["start_s"], m["end_s"]) for m in xclip.metadatas) == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]
    clip_videos = ws.store.open("default", "clip").ids({"modality": "video"})
    assert sorted(xclip.ids) == sorted(clip_videos)  # the same segments, under the same ids
    assert ws.store.open("default", "xclip").space.model_id == ws.settings.model_for("xclip")
    monkeypatch.setenv("MMCORE_DATA_DIR", str(ws.settings.data_dir))
    for space, model in ws.settings.models:
        monkeypatch.setenv(require(space).variable, model)
    assert cli.main(["info", "--json"]) == 0
    listed = {row["space"]: row for row in json.loads(capsys.readouterr().out)}
    assert set(listed) == {"clip", "xclip"}
    assert listed["xclip"]["model"] == ws.settings.model_for("xclip") and listed["xclip"]["items"] == 3
    assert listed["clip"]["items"] == 3 + 1  # the segments and the picture


def test_text_search_finds_the_segments_through_xclip_and_fuses_its_list_with_clips(video_ws):
    ws = video_ws
    own = search(ws, Query(text="waves on a beach"), space="xclip", k=10)
    assert len(own) == 3 and {h.space for h in own} == {"xclip"} and {h.modality for h in own} == {"video"}
    query = ws.space("xclip").embed_query("text", ["waves on a beach"])
    stored = ws.store.open("default", "xclip").all(with_vectors=True)
    cosines = dict(zip(stored.ids, stored.vectors @ query))
    assert [h.id for h in own] == sorted(cosines, key=lambda i: -cosines[i])  # ranked by X-CLIP's text-video cosine
    assert [h.score for h in own] == pytest.approx([float(cosines[h.id]) for h in own], abs=1e-4)
    expected = list(cosines)
    per_kind = search_each_modality(ws, Query(text="waves on a beach"), k=10)
    videos = per_kind["video"]
    assert sorted(h.id for h in videos) == sorted(expected)
    assert all(h.fused > 1 / (RRF_K + 1) for h in videos)  # each segment voted for by both lists
    assert {h.found_in for h in videos} == {("clip", "xclip")}  # and the hit says so
    assert all(h.modality != "video" for m, hits in per_kind.items() if m != "video" for h in hits)

