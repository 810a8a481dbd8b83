"""The Twelve Labs space against a fake Embed API v2 on 127.0.0.1 (tests/fake_twelvelabs.py): a real HTTP server,
so the space's real requests, retries, polling and error handling run; only the service behind them is a stand-in.
As a registered space: off by default (no hosted space in the default configuration), on with its key; a video
ingested beside CLIP goes to the service once, its segments matched to ours by time; `info --json` lists it; text
and image queries find the segments; a file the service refuses fails by name with nothing of it stored."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest
from PIL import Image

import hashlib
import io
import json

import media_av as mav
import media_factory as mf
from fake_twelvelabs import API_KEY, DIM, twelvelabs_server, unit, vector_of
from mmcore import cli
from mmcore.config import Settings
from mmcore.errors import MediaError, MMError, ModelUnavailable
from mmcore.ingest import SourceFile, ingest
from mmcore.search import Query, search, search_each_modality
from mmcore.spaces import SpaceInfo, get_space, normalize
from mmcore.spaces.embed import MAX_GAP_S, match_segment
from mmcore.spaces.registry import enabled, hosted_notices, require, spaces_for
from mmcore.workspace import Workspace
from mmcore.spaces.twelvelabs import (
    INLINE_LIMIT_BYTES, UPLOAD_LIMIT_BYTES, SegmentVectors, TwelveLabsConfig, TwelveLabsSpace,
)

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40  # the fake doesn't decode it; it only has to arrive whole


class Clock:
    """How the space waits, for a test: every wait is recorded; long ones are cut short so tests stay quick."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        time.sleep(min(seconds, 0.02))


@pytest.fixture
def fake():
    with twelvelabs_server() as server:
        yield server


def connect(fake, clock=None, **config) -> TwelveLabsSpace:
    options = {"api_key": API_KEY, "url": fake.url, "poll_s": 0.01, "timeout_s": 5.0, **config}
    return TwelveLabsSpace.load(TwelveLabsConfig(**options), sleep=clock or Clock())


def all_text(error: BaseException) -> str:
    return f"{error} {error!r} {error.args} {getattr(error, 'reason', '')}"


def test_text_queries_are_the_services_vectors_normalised_and_the_key_goes_in_x_api_key(fake):
    space = connect(fake)
    assert space.info == SpaceInfo("twelvelabs", "marengo3.0", "", DIM, "hosted")
    vectors = space.embed_texts(["a dog on a beach", "a red car"])
    assert vectors.dtype == np.float32 and vectors.shape == (2, DIM)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(vectors[0], unit(vector_of("text", "a dog on a beach")), atol=1e-6)
    np.testing.assert_allclose(vectors[1], unit(vector_of("text", "a red car")), atol=1e-6)
    bodies = [r["body"] for r in fake.posts("/v1.3/embed-v2")]
    assert bodies[-1] == {"model_name": "marengo3.0", "input_type": "text", "text": {"input_text": "a red car"}}
    assert {r["headers"]["x-api-key"] for r in fake.requests} == {API_KEY}
    assert space.embed_texts([]).shape == (0, DIM)
    assert space.max_text_tokens == 250
    text = "A dog, running."
    assert [text[a:b] for a, b in space.token_spans(text)] == ["A", "dog", ",", "running", "."]


def test_images_are_sent_as_jpegs_scaled_into_the_services_bounds(fake):
    space = connect(fake)
    small, wide = Image.new("RGB", (64, 48), (200, 10, 10)), Image.new("RGB", (5000, 2500), (10, 200, 10))
    vectors = space.embed_images([small, wide])
    assert vectors.shape == (2, DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert fake.images == [(171, 128), (2048, 1024)]  # at least 128 px a side; at most 2048
    assert not np.allclose(vectors[0], vectors[1])


def test_a_video_gets_one_vector_per_fixed_segment_with_its_times_after_polling(fake, tmp_path):
    clock = Clock()
    space = connect(fake, clock)
    path = tmp_path / "clip.mp4"
    path.write_bytes(VIDEO)
    result = space.embed_video(path, "clip.mp4", 10)
    assert isinstance(result, SegmentVectors)
    assert result.spans == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]
    assert result.vectors.shape == (3, DIM) and result.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-6)
    import hashlib

    digest = hashlib.sha256(VIDEO).hexdigest()
    for row, (start, _) in zip(result.vectors, result.spans):  # the mean of its visual and audio vectors
        both = unit(vector_of("video", digest, "visual", start)) + unit(vector_of("video", digest, "audio", start))
        np.testing.assert_allclose(row, unit(both), atol=1e-6)
    (task,) = fake.posts("/v1.3/embed-v2/tasks")
    video = task["body"]["video"]
    assert task["body"]["model_name"] == "marengo3.0" and task["body"]["input_type"] == "video"
    assert video["segmentation"] == {"strategy": "fixed", "fixed": {"duration_sec": 10}}
    assert video["embedding_option"] == ["visual", "audio"] and video["embedding_scope"] == ["clip"]
    assert [r["path"] for r in fake.gets()] == ["/v1.3/embed-v2/tasks/task1"] * 3  # processing, processing, ready
    assert clock.waits == [0.01, 0.01]
    # The same bytes given directly, another segment length and one option: the request follows the settings.
    visual = connect(fake, video_options=("visual",), model="marengo3.5")
    again = visual.embed_video(VIDEO, "clip.mp4", 6)
    assert again.spans == [(0.0, 6.0), (6.0, 12.0), (12.0, 18.0), (18.0, 24.0), (24.0, 25.0)]
    np.testing.assert_allclose(again.vectors[1], unit(vector_of("video", digest, "visual", 6.0)), atol=1e-6)
    body = fake.posts("/v1.3/embed-v2/tasks")[-1]["body"]
    assert body["video"]["segmentation"] == {"temporal": {"strategy": "fixed", "fixed": {"duration_sec": 6}}}
    assert body["video"]["embedding_option"] == ["visual"] and body["model_name"] == "marengo3.5"


def test_429_is_retried_after_the_wait_retry_after_asks_then_with_doubling_waits(fake):
    clock = Clock()
    space = connect(fake, clock)
    fake.refusals.extend([(429, {"Retry-After": "3"}, {"message": "slow down"})] * 2)
    vector = space.embed_texts(["a cat"])[0]
    np.testing.assert_allclose(vector, unit(vector_of("text", "a cat")), atol=1e-6)
    assert clock.waits == [3.0, 3.0]
    assert len(fake.posts("/v1.3/embed-v2")) == 1 + 3  # the probe at load, then two refusals and the answer
    clock.waits.clear()
    fake.refusals.extend([(429, {}, {"message": "slow down"})] * 3)  # no Retry-After: 1 s, 2 s, 4 s
    space.embed_texts(["a cat"])
    assert clock.waits == [1.0, 2.0, 4.0]
    clock.waits.clear()
    fake.refusals.append((429, {"Retry-After": "86400"}, {}))  # a day: capped at max_wait_s
    space.embed_texts(["a cat"])
    assert clock.waits == [60.0]


def test_429_past_the_attempts_fails_clearly_and_a_video_by_name(fake):
    clock = Clock()
    space = connect(fake, clock, attempts=3)
    fake.refusals.extend([(429, {"Retry-After": "1"}, {"message": "Rate limit exceeded"})] * 3)
    with pytest.raises(MMError) as caught:
        space.embed_texts(["a cat"])
    assert str(caught.value) == ("Twelve Labs kept answering 429 Too Many Requests after 3 tries: Rate limit exceeded: "
                                 "the key's rate limit is used up; try again later")
    assert clock.waits == [1.0, 1.0]
    fake.refusals.extend([(429, {}, {})] * 3)
    with pytest.raises(MediaError) as caught:
        space.embed_video(VIDEO, "holiday.mp4", 10)
    assert caught.value.name == "holiday.mp4" and str(caught.value).startswith("holiday.mp4: Twelve Labs kept answering 429")
    assert not fake.gets()  # no task was made


def test_413_names_the_file_its_size_and_the_limit(fake):
    space = connect(fake)
    fake.refusals.append((413, {}, {"code": "file_too_large", "message": "The file exceeds the maximum size."}))
    with pytest.raises(MediaError) as caught:
        space.embed_video(VIDEO, "big.mov", 10)
    size = f"{len(VIDEO) / 2**20:.1f} MB"
    assert caught.value.name == "big.mov"
    assert str(caught.value) == (f"big.mov: Twelve Labs refused it as it is {size}, too large (HTTP 413; it takes at most "
                                 "36.0 MB sent this way): The file exceeds the maximum size.")
    assert INLINE_LIMIT_BYTES == 36 * 2**20 and UPLOAD_LIMIT_BYTES == 200 * 2**20


def test_a_video_over_the_inline_limit_is_uploaded_as_an_asset_that_is_deleted_after(fake):
    inline = connect(fake).embed_video(VIDEO, "clip.mp4", 10)
    space = connect(fake, inline_limit_bytes=1000)
    uploaded = space.embed_video(VIDEO, "clip.mp4", 10)
    assert uploaded.spans == inline.spans
    np.testing.assert_allclose(uploaded.vectors, inline.vectors, atol=1e-6)  # the same bytes reached the model
    (upload,) = fake.posts("/v1.3/assets")
    assert upload["body"] == {"method": "direct", "filename": "clip.mp4", "enable_hls": "false",
                              "enable_thumbnail": "false", "file": VIDEO}
    assert upload["headers"]["x-api-key"] == API_KEY
    task = fake.posts("/v1.3/embed-v2/tasks")[-1]["body"]["video"]
    assert task["media_source"] == {"asset_id": "asset2"}
    assert [(r["method"], r["path"]) for r in fake.requests if "/assets/" in r["path"]] == [
        ("GET", "/v1.3/assets/asset2"), ("GET", "/v1.3/assets/asset2"), ("DELETE", "/v1.3/assets/asset2")]
    assert fake.assets == {}  # nothing of the video stays at the service


def test_an_upload_the_service_fails_names_the_file_and_is_deleted(fake):
    space = connect(fake, inline_limit_bytes=1000)
    fake.asset_outcome = "failed"
    with pytest.raises(MediaError) as caught:
        space.embed_video(VIDEO, "broken.mp4", 10)
    assert str(caught.value) == "broken.mp4: Twelve Labs could not take it: The file is not a playable video"
    assert fake.assets == {} and not fake.posts("/v1.3/embed-v2/tasks")


def test_a_video_over_the_upload_limit_fails_by_name_before_anything_is_sent(fake):
    space = connect(fake, inline_limit_bytes=1000, upload_limit_bytes=2000)
    sent = len(fake.requests)
    with pytest.raises(MediaError) as caught:
        space.embed_video(VIDEO, "long.mp4", 10)
    assert str(caught.value) == (f"long.mp4: is {len(VIDEO) / 2**20:.1f} MB, more than the 0.0 MB Twelve Labs takes "
                                 "uploaded from this machine")
    assert len(fake.requests) == sent


def test_a_failed_task_names_the_file_and_the_services_reason(fake):
    space = connect(fake)
    fake.task_outcome, fake.failure_reason = "failed", "Video duration must be at least 4 seconds"
    with pytest.raises(MediaError) as caught:
        space.embed_video(VIDEO, "short.mp4", 10)
    assert caught.value.name == "short.mp4"
    assert str(caught.value) == "short.mp4: Twelve Labs could not embed it: Video duration must be at least 4 seconds"


def test_a_task_that_never_finishes_fails_by_name_at_the_deadline(fake):
    clock = Clock()
    space = connect(fake, clock, task_timeout_s=0.3, poll_s=0.05)
    fake.task_outcome = "processing"
    with pytest.raises(MediaError) as caught:
        space.embed_video(VIDEO, "slow.mp4", 10)
    assert str(caught.value) == ("slow.mp4: Twelve Labs did not finish embedding it within 0.3 s (task task1 is still "
                                 "processing); try again later or raise MMCORE_TWELVELABS_TASK_TIMEOUT_S")
    assert len(fake.gets()) == len(clock.waits) + 1 >= 2 and set(clock.waits) == {0.05}  # polled until the deadline


def test_a_service_that_hangs_times_out_with_a_clear_error(fake):
    space = connect(fake, timeout_s=1.0)  # margins wide enough for a loaded machine
    fake.delay_s = 2.5
    with pytest.raises(MMError) as caught:
        space.embed_texts(["a cat"])
    assert str(caught.value) == (f"Twelve Labs at {fake.url} did not answer within 1 s "
                                 "(raise MMCORE_TWELVELABS_TIMEOUT_S for slow uploads)")
    assert len(fake.posts("/v1.3/embed-v2")) == 2  # the probe and one try: a POST is not repeated blindly
    with pytest.raises(MediaError) as caught:
        space.embed_video(VIDEO, "clip.mp4", 10)
    assert caught.value.name == "clip.mp4" and "did not answer within 1 s" in str(caught.value)


def test_a_poll_that_times_out_is_tried_again(fake):
    clock = Clock()
    space = connect(fake, clock, timeout_s=1.0)
    fake.polls_before_ready = 0
    fake.refusals.append((503, {"Retry-After": "2"}, {"message": "busy"}))  # answers the task's creation
    # The creation is refused once (503 is retried like 429), then created; then the first poll is slow.
    original = fake.poll
    slow = {"left": 1}

    def poll(task_id):
        if slow["left"]:
            slow["left"] -= 1
            time.sleep(2.5)
        return original(task_id)

    fake.poll = poll
    result = space.embed_video(VIDEO, "clip.mp4", 10)
    assert result.spans == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]
    assert clock.waits == [2.0, 1.0]  # Retry-After for the 503, then the back-off after the timed-out poll
    assert len(fake.gets()) == 2


def test_the_key_never_appears_in_errors_even_when_the_service_echoes_it(fake):
    space = connect(fake)
    fake.refusals.append((401, {}, {"code": "api_key_invalid", "message": f"The API key {API_KEY} was revoked."}))
    with pytest.raises(MMError) as caught:
        space.embed_texts(["a cat"])
    assert str(caught.value) == ("Twelve Labs refused the API key (HTTP 401): The API key [API key] was revoked.: "
                                 "check MMCORE_TWELVELABS_API_KEY")
    assert API_KEY not in all_text(caught.value)
    fake.refusals.append((400, {}, {"code": "bad", "message": f"request with key {API_KEY} is malformed"}))
    with pytest.raises(MediaError) as caught:
        space.embed_video(VIDEO, "clip.mp4", 10)
    assert str(caught.value) == "clip.mp4: Twelve Labs answered HTTP 400: request with key [API key] is malformed"
    assert API_KEY not in all_text(caught.value)
    assert API_KEY not in repr(space.config)


def test_a_wrong_key_or_unreachable_service_makes_the_space_unavailable_without_the_key(fake):
    with pytest.raises(ModelUnavailable) as caught:
        TwelveLabsSpace.load(TwelveLabsConfig(api_key="tlk_not_the_key", url=fake.url), sleep=Clock())
    assert str(caught.value).startswith("The Twelve Labs model marengo3.0 can't be used: Twelve Labs refused the API key (HTTP 401)")
    assert "tlk_not_the_key" not in all_text(caught.value)  # the fake echoes the key it was sent
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1.3"
    with pytest.raises(ModelUnavailable) as caught:
        TwelveLabsSpace.load(TwelveLabsConfig(api_key=API_KEY, url=closed), sleep=Clock())
    assert f"could not reach Twelve Labs at {closed} (ConnectError" in str(caught.value)
    assert API_KEY not in all_text(caught.value)


def test_configuration_is_off_without_a_key_and_read_from_the_environment():
    assert TwelveLabsConfig.from_env({}) is None
    assert TwelveLabsConfig.from_env({"MMCORE_TWELVELABS_API_KEY": "  "}) is None
    config = TwelveLabsConfig.from_env({
        "MMCORE_TWELVELABS_API_KEY": API_KEY, "MMCORE_TWELVELABS_URL": "http://localhost:9/v1.3",
        "MMCORE_TWELVELABS_MODEL": "marengo3.5", "MMCORE_TWELVELABS_VIDEO_OPTIONS": "Visual, transcription",
        "MMCORE_TWELVELABS_TIMEOUT_S": "30", "MMCORE_TWELVELABS_TASK_TIMEOUT_S": "600",
    })
    assert (config.url, config.model, config.video_options, config.timeout_s, config.task_timeout_s) == (
        "http://localhost:9/v1.3", "marengo3.5", ("visual", "transcription"), 30.0, 600.0)
    default = TwelveLabsConfig.from_env({"MMCORE_TWELVELABS_API_KEY": API_KEY})
    assert (default.url, default.model, default.video_options) == ("https://api.twelvelabs.io/v1.3", "marengo3.0", ("visual", "audio"))
    with pytest.raises(MMError, match="would send the API key unencrypted"):
        TwelveLabsConfig.from_env({"MMCORE_TWELVELABS_API_KEY": API_KEY, "MMCORE_TWELVELABS_URL": "http://api.example.com/v1.3"})
    with pytest.raises(MMError, match="MMCORE_TWELVELABS_VIDEO_OPTIONS must name some of visual, audio, transcription"):
        TwelveLabsConfig.from_env({"MMCORE_TWELVELABS_API_KEY": API_KEY, "MMCORE_TWELVELABS_VIDEO_OPTIONS": "smell"})
    with pytest.raises(MMError, match="MMCORE_TWELVELABS_TIMEOUT_S='soon' is not a number"):
        TwelveLabsConfig.from_env({"MMCORE_TWELVELABS_API_KEY": API_KEY, "MMCORE_TWELVELABS_TIMEOUT_S": "soon"})


def test_the_default_configuration_has_no_hosted_space_and_the_key_turns_it_on(monkeypatch):
    for variable in [v for v in __import__("os").environ if v.startswith("MMCORE_TWELVELABS_")]:
        monkeypatch.delenv(variable)
    default = Settings.from_env({})
    assert [s.name for s in enabled(default) if s.sends_to is not None] == [] and hosted_notices(default) == []
    assert default.model_for("twelvelabs") is None and Settings().model_for("twelvelabs") is None
    assert Settings.from_env({"MMCORE_TWELVELABS_MODEL": "marengo3.5"}).model_for("twelvelabs") is None  # no key
    spec = require("twelvelabs")
    assert (spec.switch, spec.variable, spec.default_model) == ("MMCORE_TWELVELABS_API_KEY", "MMCORE_TWELVELABS_MODEL", "marengo3.0")
    assert spec.modalities == {"video"} and spec.queries == {"text", "image"}
    on = Settings.from_env({"MMCORE_TWELVELABS_API_KEY": API_KEY})
    assert on.model_for("twelvelabs") == "marengo3.0" and spaces_for("video", on) == ["clip", "twelvelabs"]
    assert spaces_for("image", on) == ["clip"]  # images and text stay with the local models
    assert Settings.from_env({"MMCORE_TWELVELABS_API_KEY": API_KEY, "MMCORE_TWELVELABS_MODEL": "marengo3.5"}).model_for("twelvelabs") == "marengo3.5"
    assert hosted_notices(on) == ["Media in the twelvelabs space is sent to Twelve Labs (api.twelvelabs.io), and so are "
                                  "the queries searched in it."]
    with pytest.raises(ModelUnavailable, match="The Twelve Labs space is off: set MMCORE_TWELVELABS_API_KEY to use it"):
        get_space("twelvelabs", Settings(models={"twelvelabs": "marengo3.0"}))


def test_segments_are_matched_by_time_not_by_count():
    spans = [(0.0, 10.0), (10.0, 20.0), (20.0, 24.0)]  # the service left out 24-25.2
    vectors = normalize(np.eye(3, 4, dtype=np.float32) + 0.1)
    np.testing.assert_allclose(match_segment(vectors, spans, {"start_s": 10.0, "end_s": 20.0}, "v.mp4"), vectors[1])
    both = match_segment(vectors, spans, {"start_s": 5.0, "end_s": 20.0}, "v.mp4")  # 5 s of the first, 10 of the second
    np.testing.assert_allclose(both, normalize((5 * vectors[0] + 10 * vectors[1])[None])[0], atol=1e-6)
    np.testing.assert_allclose(match_segment(vectors, spans, {"start_s": 24.0, "end_s": 25.2}, "v.mp4"), vectors[2])
    with pytest.raises(MediaError) as caught:
        match_segment(vectors, spans, {"start_s": 24.0 + MAX_GAP_S + 1, "end_s": 30.0}, "v.mp4")
    assert str(caught.value) == "v.mp4: the model returned no vectors for seconds 27-30 of it"


@pytest.fixture
def hosted(fake, tmp_path, clip_dir, monkeypatch):
    """CLIP and Twelve Labs (the fake) configured, as the environment configures them."""
    monkeypatch.setenv("MMCORE_TWELVELABS_API_KEY", API_KEY)
    monkeypatch.setenv("MMCORE_TWELVELABS_URL", fake.url)
    fake.polls_before_ready = 0  # the configured poll is every 5 s
    settings = Settings(data_dir=tmp_path / "data", models={"clip": str(clip_dir), "twelvelabs": "marengo3.0"}, batch_size=2)
    return Workspace(settings)


def video(colours) -> bytes:
    return mav.make_video(seconds=25, fps=10, size=(64, 48), colours=colours)  # the fake's videos last 25 s


def test_a_video_goes_to_the_service_once_and_its_segments_into_both_spaces(fake, hosted, monkeypatch, capsys):
    ws = hosted
    data = video([(200, 10, 10), (10, 200, 10), (10, 10, 200)])
    picture = mf.encode(mf.picture((40, 30), (200, 10, 10)), "PNG")
    report = ingest(ws, [SourceFile("sea.mp4", data), SourceFile("red.png", picture)])
    assert report.ok, [(r.name, r.reason) for r in report.results]
    assert len(fake.posts("/v1.3/embed-v2/tasks")) == 1  # batches of 2 segments: the file still went once
    assert fake.images == []  # the picture stayed here
    assert ws.store.spaces("default") == ["clip", "twelvelabs"]
    stored = ws.store.open("default", "twelvelabs")
    assert stored.space == SpaceInfo("twelvelabs", "marengo3.0", "", DIM, "hosted")
    items = stored.all(with_vectors=True)
    assert sorted(items.ids) == sorted(ws.store.open("default", "clip").ids({"modality": "video"}))
    digest = hashlib.sha256(data).hexdigest()
    for item_id, meta, vector in zip(items.ids, items.metadatas, items.vectors):
        start = meta["start_s"]
        both = unit(vector_of("video", digest, "visual", start)) + unit(vector_of("video", digest, "audio", start))
        np.testing.assert_allclose(vector, unit(both), atol=1e-5)  # the service's segment at the same time
    monkeypatch.setenv("MMCORE_DATA_DIR", str(ws.settings.data_dir))
    monkeypatch.setenv("MMCORE_CLIP_MODEL", ws.settings.model_for("clip"))
    assert cli.main(["info", "--json"]) == 0
    out = capsys.readouterr()
    listed = {row["space"]: row for row in json.loads(out.out)}
    assert (listed["twelvelabs"]["model"], listed["twelvelabs"]["backend"], listed["twelvelabs"]["items"]) == ("marengo3.0", "hosted", 3)
    assert listed["clip"]["items"] == 4
    assert "note: Media in the twelvelabs space is sent to Twelve Labs (127.0.0.1)" in out.err


def test_text_and_image_queries_find_the_segments_through_the_service(fake, hosted):
    ws = hosted
    assert ingest(ws, [SourceFile("sea.mp4", video([(200, 10, 10), (10, 200, 10), (10, 10, 200)]))]).ok
    stored = ws.store.open("default", "twelvelabs").all(with_vectors=True)
    by_text = search(ws, Query(text="waves on a beach"), space="twelvelabs", k=5)
    query = unit(vector_of("text", "waves on a beach"))
    cosines = dict(zip(stored.ids, stored.vectors @ query))
    assert [h.id for h in by_text] == sorted(cosines, key=lambda i: -cosines[i])
    assert {h.space for h in by_text} == {"twelvelabs"} and {h.modality for h in by_text} == {"video"}
    assert fake.posts("/v1.3/embed-v2")[-1]["body"]["text"] == {"input_text": "waves on a beach"}
    buffer = io.BytesIO()
    mf.picture((200, 150), (10, 10, 200)).save(buffer, "PNG")
    by_image = search(ws, Query(image=buffer.getvalue(), image_name="blue.png"), space="twelvelabs", k=5)
    assert len(by_image) == 3 and fake.posts("/v1.3/embed-v2")[-1]["body"]["input_type"] == "image"
    fused = search_each_modality(ws, Query(text="waves on a beach"), k=5)["video"]
    assert all(h.fused > 1 / 61 for h in fused) and {h.found_in for h in fused} == {("clip", "twelvelabs")}


def test_a_file_the_service_refuses_fails_by_name_and_nothing_of_it_is_stored(fake, hosted):
    from dataclasses import replace

    ws = Workspace(replace(hosted.settings, batch_size=4))  # big.mp4's 3 segments and fine.mp4's first: one batch
    ws.space("twelvelabs")  # loaded (its probe answered) before the refusal is scripted
    fake.refusals.append((413, {}, {"code": "file_too_large", "message": "The file exceeds the maximum size."}))
    bad, good = video([(200, 10, 10)]), video([(10, 10, 200), (240, 220, 20)])
    report = ingest(ws, [SourceFile("big.mp4", bad), SourceFile("fine.mp4", good),
                         SourceFile("red.png", mf.encode(mf.picture((40, 30), (200, 10, 10)), "PNG"))])
    by_name = {r.name: r for r in report.results}
    assert by_name["big.mp4"].status == "failed"
    assert by_name["big.mp4"].reason.startswith("Twelve Labs refused it as it is ") and "HTTP 413" in by_name["big.mp4"].reason
    assert (by_name["fine.mp4"].status, by_name["fine.mp4"].items) == ("added", 3)  # in the same batch as big.mp4
    assert by_name["red.png"].status == "added"
    assert len(fake.posts("/v1.3/embed-v2/tasks")) == 2  # each video sent once, the refused one not again
    bad_hash = hashlib.sha256(bad).hexdigest()
    for space in ("clip", "twelvelabs"):  # nothing of it in either space: a file is whole in all its spaces or none
        assert ws.store.open("default", space).ids({"source_hash": bad_hash}) == []
    assert len(ws.store.open("default", "twelvelabs").ids()) == 3
    media = ws.settings.data_dir / "media"
    assert list(media.rglob(f"{hashlib.sha256(good).hexdigest()}*"))
    assert not list(media.rglob(f"{bad_hash}*"))  # nor its original or thumbnails


def test_a_service_that_is_down_fails_the_videos_by_name_and_keeps_the_rest(tmp_path, clip_dir, monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1.3"
    monkeypatch.setenv("MMCORE_TWELVELABS_API_KEY", API_KEY)
    monkeypatch.setenv("MMCORE_TWELVELABS_URL", closed)
    ws = Workspace(Settings(data_dir=tmp_path / "data", models={"clip": str(clip_dir), "twelvelabs": "marengo3.0"}))
    report = ingest(ws, [SourceFile("sea.mp4", video([(200, 10, 10)])),
                         SourceFile("red.png", mf.encode(mf.picture((40, 30), (200, 10, 10)), "PNG"))])
    by_name = {r.name: r for r in report.results}
    assert by_name["sea.mp4"].status == "failed" and "needs the Twelve Labs model" in by_name["sea.mp4"].reason
    assert f"could not reach Twelve Labs at {closed}" in by_name["sea.mp4"].reason
    assert by_name["red.png"].status == "added" and ws.store.spaces("default") == ["clip"]
