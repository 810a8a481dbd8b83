"""Speech: transcripts of audio and of videos' sound tracks as timed text items in the clip space.

The checkpoint is a random-weight Whisper: what it "hears" is arbitrary letters, so these tests check structure
(times, windows, spaces, ids, atomic files, errors) and that stored transcripts are searchable as text, not
whether the words are right; that needs real weights.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import media_audio as ma
from media_av import make_video
from mmcore import speech
from mmcore.config import Settings
from mmcore.errors import ModelUnavailable
from mmcore.ingest import SourceFile, ingest
from mmcore.media import ReadOptions
from mmcore.media.audio import decode_track
from mmcore.media.base import Chunk
from mmcore.search import Query, search
from mmcore.speech import Segment, get_transcriber, is_loaded, transcript_chunks
from mmcore.workspace import Workspace

RATE = 16_000
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def asr_settings(tmp_path, clip_dir, clap_dir, whisper_dir):
    return Settings(data_dir=tmp_path / "data", models={"clip": str(clip_dir), "clap": str(clap_dir)},
                    asr_model=str(whisper_dir), batch_size=4)


@pytest.fixture
def transcriber(asr_settings):
    return get_transcriber(asr_settings)


def transcripts(ws: Workspace) -> list[tuple[str, dict, str]]:
    items = ws.collection().all(with_vectors=False)
    found = [(i, m, d) for i, m, d in zip(items.ids, items.metadatas, items.documents) if m.get("transcript")]
    return sorted(found, key=lambda imd: (imd[1]["start_s"], imd[1].get("char_start", 0)))


# --- the transcriber -------------------------------------------------------------------------------------


def test_the_speech_model_loads_once_from_a_local_folder(transcriber, asr_settings, whisper_dir):
    assert transcriber.source == str(Path(whisper_dir).resolve()) and transcriber.revision == "local"
    assert transcriber.sampling_rate == RATE
    assert is_loaded(asr_settings) and get_transcriber(asr_settings) is transcriber
    assert not is_loaded(Settings(data_dir=asr_settings.data_dir))


@pytest.mark.parametrize("seconds, piece_s", [(12, 600), (75, 600), (75, 30)])
def test_segments_are_timed_in_order_inside_the_audio(transcriber, seconds, piece_s):
    segments = transcriber.transcribe(ma.signal(seconds, RATE, [300, 0, 900], noise=0.05), piece_s=piece_s)
    assert segments, "random weights still say something"
    for seg in segments:
        assert 0 <= seg.start_s <= seg.end_s <= seconds and seg.text and seg.text == seg.text.strip()
    assert [s.start_s for s in segments] == sorted(s.start_s for s in segments)
    if seconds > 30:
        assert segments[-1].end_s > 30, "long audio is transcribed past Whisper's first 30 s window"


def test_too_little_audio_gives_no_segments(transcriber):
    assert transcriber.transcribe(np.zeros(RATE // 4, dtype=np.float32)) == []


def test_long_audio_is_cut_into_pieces_where_it_is_quietest():
    x = ma.signal(100, RATE, 440)
    x[int(52.3 * RATE) : int(52.6 * RATE)] = 0  # the one quiet moment in the search zone (last 20 s of 60)
    cuts = speech._cut_points(x, RATE, piece_s=60)
    assert cuts[0] == 0 and cuts[-1] == len(x) and len(cuts) == 3
    assert 52.3 <= cuts[1] / RATE <= 52.6
    assert speech._cut_points(x[: 30 * RATE], RATE, piece_s=60) == [0, 30 * RATE]


# --- sound tracks ----------------------------------------------------------------------------------------


def test_sound_tracks_of_audio_and_video_decode_at_the_model_rate():
    wav = decode_track("a.wav", ma.make_wav(3, rate=44_100, channels=2), RATE, 600)
    assert wav.dtype == np.float32 and abs(len(wav) - 3 * RATE) < RATE // 50
    video = decode_track("v.mp4", make_video(seconds=3, fps=5, audio=True), RATE, 600)
    assert abs(len(video) / RATE - 3) < 0.2 and np.abs(video).max() > 0.1
    webm = decode_track("v.webm", make_video(seconds=2, fps=5, audio=True, container="webm"), RATE, 600)
    assert abs(len(webm) / RATE - 2) < 0.2
    assert decode_track("silent.mp4", make_video(seconds=2, fps=5), RATE, 600) is None


def test_a_sound_track_over_the_length_limit_is_refused():
    from mmcore.errors import MediaError

    with pytest.raises(MediaError, match="MMCORE_MAX_MEDIA_MINUTES"):
        decode_track("long.wav", ma.make_wav(5), RATE, max_seconds=2)


# --- from segments to text chunks -----------------------------------------------------------------------


class Scripted:
    """A stand-in transcriber that "hears" the given segments, to test how they are placed in windows."""

    sampling_rate = RATE

    def __init__(self, segments: list[Segment]):
        self.segments = segments

    def transcribe(self, samples: np.ndarray) -> list[Segment]:
        return self.segments


def windows(*bounds: tuple[float, float]) -> list[Chunk]:
    return [Chunk("audio", None, {"start_s": a, "end_s": b}, thumbnail=f"picture {a}") for a, b in bounds]


def char_options(max_tokens: int = 77) -> ReadOptions:
    return ReadOptions(token_spans=lambda text: [(i, i + 1) for i in range(len(text)) if text[i] != " "],
                       max_tokens=max_tokens, overlap_tokens=2, max_media_seconds=600)


def test_segments_join_the_window_that_holds_their_middle_and_silent_windows_get_nothing():
    said = Scripted([Segment(0.5, 4.0, "hello there"), Segment(4.0, 12.0, "general"), Segment(21.0, 24.0, "bye")])
    data = ma.make_wav(25)
    chunks = transcript_chunks(said, "talk.wav", data, windows((0, 10), (10, 20), (20, 25)), char_options())
    assert [(c.locator, c.payload, c.thumbnail) for c in chunks] == [
        ({"start_s": 0, "end_s": 10}, "hello there general", "picture 0"),  # 4-12 s is mostly before 10 s
        ({"start_s": 20, "end_s": 25}, "bye", "picture 20"),
    ], "10-20 s has no speech: no item"
    assert all(c.modality == "text" and c.meta == {"transcript": True} for c in chunks)
    assert [c.locator_key for c in chunks] == ["text.t0-10", "text.t20-25"]


def test_a_window_with_more_words_than_clip_reads_is_split_in_token_windows():
    text = " ".join(f"w{i}" for i in range(40))  # 80 one-character tokens
    chunks = transcript_chunks(Scripted([Segment(1, 9, text)]), "talk.wav", ma.make_wav(10), windows((0, 10)),
                               char_options(max_tokens=30))
    assert len(chunks) > 2
    keys = [c.locator_key for c in chunks]
    assert len(set(keys)) == len(keys) and keys[0].startswith("text.t0-10.c0-")
    for c in chunks:
        assert c.payload == text[c.locator["char_start"] : c.locator["char_end"]]
        assert (c.locator["start_s"], c.locator["end_s"]) == (0, 10)
    assert chunks[-1].locator["char_end"] == len(text)


def test_a_file_without_a_sound_track_has_no_transcript():
    said = Scripted([Segment(0, 1, "never heard")])
    assert transcript_chunks(said, "silent.mp4", make_video(seconds=2, fps=5), windows((0, 2)), char_options()) == []


# --- through ingest and search --------------------------------------------------------------------------


def test_speech_in_audio_becomes_timed_text_items_in_the_clip_space(asr_settings):
    ws = Workspace(asr_settings)
    report = ingest(ws, [SourceFile("talk.wav", data=ma.make_wav(25, freqs=[300, 0, 900], noise=0.05))])
    assert report.ok and report.seconds["transcribe"] > 0
    audio = ws.collection(space="clap").all(with_vectors=False).metadatas
    spans = {(m["start_s"], m["end_s"]): m for m in audio}
    assert sorted(spans) == [(0, 10), (10, 20), (20, 25)]
    found = transcripts(ws)
    assert found and report.items_added == len(audio) + len(found)
    for item_id, meta, document in found:
        assert meta["modality"] == "text" and meta["source"] == "talk.wav" and document
        assert (meta["start_s"], meta["end_s"]) in spans, "lined up with the file's audio windows"
        assert 0 <= meta["start_s"] < meta["end_s"] <= 25
        assert item_id.endswith(f":text.t{meta['start_s']:g}-{meta['end_s']:g}")
        assert meta["thumbnail"] == spans[(meta["start_s"], meta["end_s"])]["thumbnail"], "its window's waveform"
    item_id, meta, document = found[-1]
    hits = [h for h in search(ws, Query(text=document), k=10) if h.modality == "text"]
    assert hits[0].document == document and hits[0].metadata["transcript"] is True
    assert "start_s" in hits[0].locator and hits[0].where.startswith("0:")
    assert item_id in [h.id for h in hits if h.score == hits[0].score], "the stored transcript is the top text hit"


def test_speech_in_a_video_lines_up_with_its_segments_and_keyframes(asr_settings):
    ws = Workspace(asr_settings)
    report = ingest(ws, [SourceFile("talk.mp4", data=make_video(seconds=25, fps=5, audio=True))])
    assert report.ok
    items = ws.collection().all(with_vectors=False)
    segments = {(m["start_s"], m["end_s"]): m for m in items.metadatas if m["modality"] == "video"}
    assert sorted(segments) == [(0, 10), (10, 20), (20, 25)]
    found = transcripts(ws)
    assert found and report.items_added == len(segments) + len(found)
    for _, meta, _ in found:
        segment = segments[(meta["start_s"], meta["end_s"])]
        assert meta["thumbnail"] == segment["thumbnail"], "the segment's own keyframe"
        assert meta["mime"] == "video/mp4" and meta["transcript"] is True


def test_without_a_speech_model_nothing_is_transcribed(tmp_path, clip_dir, clap_dir, whisper_dir, monkeypatch):
    monkeypatch.setattr("mmcore.ingest.get_transcriber", lambda settings: pytest.fail("loaded a speech model"))
    ws = Workspace(Settings(data_dir=tmp_path / "data", models={"clip": str(clip_dir), "clap": str(clap_dir)}))
    report = ingest(ws, [SourceFile("talk.mp4", data=make_video(seconds=5, fps=5, audio=True)),
                         SourceFile("talk.wav", data=ma.make_wav(5))])
    assert report.ok and report.seconds["transcribe"] == 0
    assert {m["modality"] for m in ws.collection().all(with_vectors=False).metadatas} == {"video"}


def test_with_a_speech_model_other_files_do_not_load_it(tmp_path, clip_dir, monkeypatch, media):
    monkeypatch.setattr("mmcore.ingest.get_transcriber", lambda settings: pytest.fail("loaded a speech model"))
    ws = Workspace(Settings(data_dir=tmp_path / "data", models={"clip": str(clip_dir)}, asr_model=str(tmp_path / "nothing")))
    assert ingest(ws, [SourceFile("img.png", path=Path(media["img.png"]))]).ok


def test_a_missing_speech_model_folder_says_how_to_provide_one_and_stores_nothing(tmp_path, clip_dir):
    missing = tmp_path / "no-such-whisper"
    settings = Settings(data_dir=tmp_path / "data", models={"clip": str(clip_dir)}, asr_model=str(missing))
    ws = Workspace(settings)
    report = ingest(ws, [SourceFile("talk.mp4", data=make_video(seconds=2, fps=5, audio=True))])
    [(status, message)] = [(r.status, r.reason) for r in report.results]
    assert status == "failed" and "speech model" in message
    assert "MMCORE_ASR_MODEL" in message and str(missing) in message and "hf download openai/whisper-base" in message
    assert ws.store.list() == [] and not (tmp_path / "data" / "media").exists(), "not even an empty collection"


def test_a_clip_checkpoint_is_not_a_speech_model(tmp_path, clip_dir):
    with pytest.raises(ModelUnavailable, match="MMCORE_ASR_MODEL"):
        get_transcriber(Settings(data_dir=tmp_path, asr_model=str(clip_dir)))


def test_pickled_whisper_weights_are_refused(tmp_path, whisper_dir):
    model_dir = tmp_path / "pickled-whisper"
    shutil.copytree(whisper_dir, model_dir)
    (model_dir / "model.safetensors").unlink()
    (model_dir / "pytorch_model.bin").write_bytes(b"not to be unpickled")
    with pytest.raises(ModelUnavailable, match="safetensors"):
        get_transcriber(Settings(data_dir=tmp_path, asr_model=str(model_dir)))


def test_a_failed_transcription_fails_its_file_alone_and_stores_nothing_of_it(asr_settings, monkeypatch, media):
    class Broken(Scripted):
        def transcribe(self, samples):
            raise RuntimeError("out of memory")

    monkeypatch.setattr("mmcore.ingest.get_transcriber", lambda settings: Broken([]))
    ws = Workspace(asr_settings)
    report = ingest(ws, [SourceFile("talk.mp4", data=make_video(seconds=12, fps=5, audio=True)),
                         SourceFile("img.png", path=Path(media["img.png"]))])
    status = {r.name: (r.status, r.reason) for r in report.results}
    assert status["img.png"] == ("added", None)
    assert status["talk.mp4"][0] == "failed" and "speech recognition failed" in status["talk.mp4"][1]
    assert "out of memory" in status["talk.mp4"][1]
    assert {m["source"] for m in ws.collection().all(with_vectors=False).metadatas} == {"img.png"}


def test_the_cli_ingest_transcribes_too(tmp_path, clip_dir, clap_dir, whisper_dir):
    wav = tmp_path / "talk.wav"
    wav.write_bytes(ma.make_wav(12, freqs=[300, 900], noise=0.05))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMCORE_")}
    env.update(MMCORE_DATA_DIR=str(tmp_path / "data"), MMCORE_CLIP_MODEL=str(clip_dir), MMCORE_CLAP_MODEL=str(clap_dir),
               MMCORE_ASR_MODEL=str(whisper_dir), HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT),
               TOKENIZERS_PARALLELISM="false")
    done = subprocess.run([sys.executable, "-m", "mmcore", "ingest", str(wav), "--json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["seconds"]["transcribe"] > 0
    assert out["results"][0]["status"] == "added" and out["results"][0]["items"] > 2, "2 audio windows and speech"
