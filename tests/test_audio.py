"""Audio: the reader (containers, windows, resampling, downmix, limits, errors) and the clap space."""

from __future__ import annotations

import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import media_audio as ma
from mmcore.config import Settings
from mmcore.errors import MediaError, ModelUnavailable
from mmcore.media import SUPPORTED_EXTENSIONS, ReadOptions, modalities_of, read_media
from mmcore.spaces.registry import require, spaces_for
from mmcore.media.audio import EXTENSIONS, THUMBNAIL_SIZE, sniff_container
from mmcore.spaces import get_space, is_loaded

RATE = 16_000  # the tiny checkpoint's rate; the reader's own default (48 kHz) is covered separately


def options(**overrides) -> ReadOptions:
    return ReadOptions(token_spans=lambda text: [], max_tokens=10, **{"audio_rate": RATE, **overrides})


def read(name: str, data: bytes, **overrides):
    return read_media(name, data, options(**overrides))


def reason_of(name: str, data: bytes, **overrides) -> str:
    with pytest.raises(MediaError) as caught:
        read(name, data, **overrides)
    assert caught.value.name == name
    return caught.value.reason


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


def spans(decoded) -> list[tuple[float, float]]:
    return [(c.locator["start_s"], c.locator["end_s"]) for c in decoded.chunks]


# --- reading --------------------------------------------------------------------------------------------


def test_every_audio_extension_is_read_and_goes_to_the_clap_space():
    for ext in (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus"):
        assert ext in EXTENSIONS and ext in SUPPORTED_EXTENSIONS
        assert modalities_of(f"sound{ext}") == ("audio",)
    assert spaces_for("audio", Settings()) == ["clap"]


def test_wav_is_split_into_windows_with_locators():
    decoded = read("tones.wav", ma.make_wav(25, rate=RATE, freqs=[300, 600, 1200, 2400, 4800]))

    assert (decoded.mime, decoded.stored_ext) == ("audio/wav", ".wav")
    assert spans(decoded) == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]
    for chunk in decoded.chunks:
        assert chunk.modality == "audio"
        assert chunk.payload.dtype == np.float32 and chunk.payload.ndim == 1
        assert len(chunk.payload) == round((chunk.locator["end_s"] - chunk.locator["start_s"]) * RATE)
        assert chunk.meta == {"sample_rate": RATE, "channels": 1, "duration_s": 25.0}
        assert chunk.thumbnail.size == THUMBNAIL_SIZE
    assert [c.locator_key for c in decoded.chunks] == ["audio.t0-10", "audio.t10-20", "audio.t20-25"]
    # The samples are the file's, in order: 5 s per tone, so the second window holds 600 Hz then 1200 Hz.
    second = decoded.chunks[1].payload
    assert dominant_hz(second[: 4 * RATE], RATE) == pytest.approx(1200, abs=2)
    assert dominant_hz(second[6 * RATE :], RATE) == pytest.approx(2400, abs=2)
    assert decoded.thumbnail.size == THUMBNAIL_SIZE and decoded.thumbnail.mode == "RGB"


def test_window_length_follows_the_options():
    decoded = read("tone.wav", ma.make_wav(9, rate=RATE), audio_segment_s=3)
    assert spans(decoded) == [(0.0, 3.0), (3.0, 6.0), (6.0, 9.0)]


def test_short_file_is_one_short_window():
    decoded = read("blip.wav", ma.make_wav(0.4, rate=RATE))
    assert spans(decoded) == [(0.0, 0.4)]
    assert len(decoded.chunks[0].payload) == 0.4 * RATE


def test_tail_under_a_second_joins_the_window_before_and_a_longer_one_stands_alone():
    assert spans(read("a.wav", ma.make_wav(20.5, rate=RATE))) == [(0.0, 10.0), (10.0, 20.5)]
    assert spans(read("b.wav", ma.make_wav(21.0, rate=RATE))) == [(0.0, 10.0), (10.0, 20.0), (20.0, 21.0)]
    assert spans(read("c.wav", ma.make_wav(20.0, rate=RATE))) == [(0.0, 10.0), (10.0, 20.0)]


@pytest.mark.parametrize("source_rate, target_rate", [(8_000, 16_000), (44_100, 48_000), (48_000, 16_000)])
def test_audio_is_resampled_to_the_target_rate(source_rate, target_rate):
    decoded = read("tone.wav", ma.make_wav(2, rate=source_rate, freqs=440), audio_rate=target_rate)
    [chunk] = decoded.chunks
    assert len(chunk.payload) == pytest.approx(2 * target_rate, abs=target_rate // 100)
    assert chunk.meta["sample_rate"] == source_rate and chunk.meta["duration_s"] == pytest.approx(2, abs=0.01)
    assert dominant_hz(chunk.payload, target_rate) == pytest.approx(440, abs=2)
    assert np.abs(chunk.payload).max() == pytest.approx(0.5, abs=0.03)  # the level is kept


def test_stereo_is_averaged_to_mono():
    tone = ma.signal(2, RATE, 440)
    decoded = read("stereo.wav", ma.wav_bytes(np.stack([tone, np.zeros_like(tone)], axis=1), RATE))
    [chunk] = decoded.chunks
    assert chunk.meta["channels"] == 2
    assert np.abs(chunk.payload).max() == pytest.approx(0.25, abs=0.01)
    # Opposite channels cancel out; the same sound in both keeps its level.
    cancelled = read("phase.wav", ma.wav_bytes(np.stack([tone, -tone], axis=1), RATE)).chunks[0].payload
    assert np.abs(cancelled).max() < 1e-3
    same = read("centre.wav", ma.make_wav(2, rate=RATE, channels=2)).chunks[0].payload
    assert np.abs(same).max() == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize(
    "ext, mime", [(".flac", "audio/flac"), (".mp3", "audio/mpeg"), (".ogg", "audio/ogg"), (".m4a", "audio/mp4")]
)
def test_compressed_formats_decode(ext, mime):
    rate = 48_000
    try:
        data = ma.encode(ma.signal(12, rate, [440, 1500]), rate, ext)
    except Exception as e:  # an ffmpeg build without this encoder
        pytest.skip(f"cannot encode {ext} here: {e}")
    decoded = read(f"clip{ext}", data)
    assert (decoded.mime, decoded.stored_ext) == (mime, ext)
    assert decoded.chunks[0].meta["sample_rate"] == rate
    assert decoded.chunks[-1].locator["end_s"] == pytest.approx(12, abs=0.05)  # codec padding trimmed, or nearly
    assert [c.locator["start_s"] for c in decoded.chunks] == [0.0, 10.0]
    first = decoded.chunks[0].payload
    assert dominant_hz(first[: 5 * RATE], RATE) == pytest.approx(440, abs=3)
    assert dominant_hz(first[7 * RATE :], RATE) == pytest.approx(1500, abs=3)


def test_the_content_decides_the_format_not_the_name():
    flac = ma.encode(ma.signal(1, RATE), RATE, ".flac")
    decoded = read("mislabelled.wav", flac)
    assert (decoded.mime, decoded.stored_ext) == ("audio/flac", ".flac")
    assert sniff_container(b"ID3\x00\x00\x00\x00\x00\x00\x04" + b"\x00" * 4 + b"fLaC") == "flac"
    assert sniff_container(b"\xff\xfb\x90\x00" + b"\x00" * 100) == "mp3"
    assert sniff_container(b"\xff\xf1\x50\x80" + b"\x00" * 100) is None  # ADTS AAC: no layer bits
    assert sniff_container(b"#EXTM3U\n#EXT-X-TARGETDURATION:1\nfile:///etc/passwd\n") is None


def test_thumbnail_draws_the_envelope():
    loud_then_silent = ma.wav_bytes(np.concatenate([ma.signal(2, RATE, 440, amplitude=0.8), np.zeros(2 * RATE)]), RATE)
    picture = np.asarray(read("half.wav", loud_then_silent).thumbnail.convert("L"))
    drawn = picture < 200
    width = picture.shape[1]
    assert drawn[:, : width // 2 - 2].sum(axis=0).min() > 0.9 * picture.shape[0]  # the tone fills the height
    assert drawn[:, width // 2 + 2 :].sum(axis=0).max() <= 2  # silence is a line


# --- refusing -------------------------------------------------------------------------------------------


def test_random_bytes_are_not_audio():
    assert "not a readable audio file" in reason_of("noise.wav", np.random.default_rng(0).bytes(5000))
    assert "not a readable audio file" in reason_of("noise.mp3", b"<html>not an mp3</html>" * 50)


def test_wav_cut_inside_its_header_is_corrupt():
    assert "corrupt or truncated" in reason_of("cut.wav", ma.make_wav(1, rate=RATE)[:30])


def test_wav_cut_inside_its_samples_keeps_what_is_there():
    data = ma.make_wav(4, rate=RATE)
    decoded = read("cut.wav", data[: 44 + 2 * RATE * 2])  # 44-byte header, then 2 s of 16-bit samples
    assert spans(decoded) == [(0.0, 2.0)]


def test_wav_without_samples_is_refused():
    assert "no samples" in reason_of("empty.wav", ma.make_wav(0, rate=RATE))


def test_wav_header_claiming_4_gb_is_refused():
    data = bytearray(ma.make_wav(2, rate=RATE))
    assert data[36:40] == b"data"
    data[4:8] = data[40:44] = struct.pack("<I", 0xFFFF_FFF0)
    reason = reason_of("liar.wav", bytes(data))  # refused from the header, before any sample is read
    assert "header claims 4,096 MB" in reason and "512 MB file limit" in reason and "corrupt" in reason


def test_wav_header_claiming_more_than_it_holds_but_under_the_file_limit_reads_only_the_real_samples():
    data = bytearray(ma.make_wav(2, rate=RATE))
    data[4:8] = data[40:44] = struct.pack("<I", 100 * 2**20)
    assert spans(read("liar.wav", bytes(data), max_file_bytes=512 * 2**20)) == [(0.0, 2.0)]


def test_audio_over_the_length_limit_is_refused_by_its_header():
    reason = reason_of("long.wav", ma.make_wav(5, rate=RATE), max_media_seconds=2)
    assert "lasts 5.0 s" in reason and "2.0 s limit" in reason and "MMCORE_MAX_MEDIA_MINUTES" in reason


def test_decoding_stops_at_the_length_limit_when_the_header_says_nothing():
    flac = bytearray(ma.encode(np.zeros(20 * RATE, dtype=np.float32), RATE, ".flac"))
    assert flac[:4] == b"fLaC" and len(flac) < 50_000  # 20 s of silence packs small: a little bomb
    flac[21] &= 0xF0  # STREAMINFO's 36-bit total sample count, zeroed: "unknown length"
    flac[22:26] = bytes(4)
    assert "runs past the 5.0 s limit" in reason_of("bomb.flac", bytes(flac), max_media_seconds=5)
    assert spans(read("bomb.flac", bytes(flac)))[-1] == (10.0, 20.0)  # without the limit, all of it


def test_video_without_sound_has_no_audio_track():
    assert "no audio track" in reason_of("silent-film.m4a", ma.video_only_mp4())


def test_empty_file_is_refused():
    assert "empty" in reason_of("nothing.wav", b"")


# --- the clap space -------------------------------------------------------------------------------------


@pytest.fixture
def clap_settings(tmp_path, clap_dir, clip_dir):
    return Settings(data_dir=tmp_path / "data", models={"clip": str(clip_dir), "clap": str(clap_dir)}, batch_size=4)


@pytest.fixture
def clap(clap_settings):
    return get_space("clap", clap_settings)


def tones(*freqs: float, seconds: float = 4.0) -> list[np.ndarray]:
    return [ma.signal(seconds, RATE, f) for f in freqs]


def assert_unit_rows(vectors: np.ndarray, n: int, dim: int = 16) -> None:
    assert vectors.dtype == np.float32 and vectors.shape == (n, dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_clap_space_loads_from_a_local_folder(clap, clap_settings, clap_dir):
    assert clap.info.space == "clap"
    assert clap.info.model_id == str(Path(clap_dir).resolve())
    assert clap.info.dim == 16 and clap.info.revision == "local"
    assert require("clap").modalities == {"audio"} and require("clap").queries == {"text", "audio"}
    assert clap.sampling_rate == RATE
    assert clap.max_text_tokens == 62  # 64 positions less <s> and </s>
    assert is_loaded("clap", clap_settings)
    assert get_space("clap", clap_settings) is clap
    # The clip space is separate: its own model, loaded on its own.
    assert get_space("clip", clap_settings) is not clap
    assert get_space("clip", clap_settings).info.space == "clip"


def test_clap_vectors_are_unit_float32_rows_of_one_dimension(clap):
    assert_unit_rows(clap.embed_audio(tones(220, 440, 880, 1760, 3520)), 5)
    assert_unit_rows(clap.embed_texts(["a dog barks", "rain on a tin roof", "x"]), 3)
    assert clap.embed_audio([]).shape == (0, 16) and clap.embed_texts([]).shape == (0, 16)


def test_same_sound_same_vector_and_different_tones_differ(clap):
    waves = tones(440, 3000) + [ma.signal(4, RATE, 440, noise=0.3)]
    first, again = clap.embed_audio(waves), clap.embed_audio(waves)
    np.testing.assert_allclose(first, again, atol=1e-6)
    similarity = first @ first.T
    assert similarity[0, 1] < 0.99 and similarity[0, 2] < 0.99 and similarity[1, 2] < 0.99


def test_audio_batches_equal_one_at_a_time(clap):
    waves = tones(200, 400, 800, 1600, 3200, 6400, seconds=2.5)
    assert clap.batch_size == 4 and len(waves) > clap.batch_size
    single = np.concatenate([clap.embed_audio([w]) for w in waves])
    np.testing.assert_allclose(clap.embed_audio(waves), single, atol=1e-5)


def test_waves_longer_than_the_model_hears_embed_deterministically(clap):
    long_wave = ma.signal(15, RATE, [300, 3000, 600], noise=0.05)
    first = clap.embed_audio([long_wave])
    assert_unit_rows(first, 1)
    np.testing.assert_array_equal(first, clap.embed_audio([long_wave]))
    np.testing.assert_allclose(first[0], clap.embed_audio([tones(500)[0], long_wave])[1], atol=1e-5)


def test_read_windows_embed_in_the_clap_space(clap):
    decoded = read_media("tones.wav", ma.make_wav(25, rate=44_100, freqs=[300, 3000]), options(audio_rate=clap.sampling_rate))
    vectors = clap.embed_audio([chunk.payload for chunk in decoded.chunks])
    assert_unit_rows(vectors, 3)
    again = clap.embed_audio([decoded.chunks[0].payload])
    np.testing.assert_allclose(again[0], vectors[0], atol=1e-5)


def test_over_long_text_is_truncated_not_refused(clap):
    assert_unit_rows(clap.embed_texts(["the sound of rain " * 100]), 1)
    assert clap.token_spans("a dog")[0] == (0, 1)


def test_missing_clap_folder_says_how_to_provide_one(tmp_path):
    missing = tmp_path / "no-such-clap"
    with pytest.raises(ModelUnavailable) as caught:
        get_space("clap", Settings(data_dir=tmp_path, models={"clap": str(missing)}))
    message = str(caught.value)
    assert "MMCORE_CLAP_MODEL" in message and str(missing) in message
    assert "hf download laion/clap-htsat-unfused" in message


def test_uncached_clap_hub_id_is_unavailable(tmp_path):
    with pytest.raises(ModelUnavailable) as caught:
        get_space("clap", Settings(data_dir=tmp_path, models={"clap": "nobody/not-a-clap"}))
    assert "nobody/not-a-clap" in str(caught.value) and "MMCORE_CLAP_MODEL" in str(caught.value)


class _CreatesMarker:
    """Unpickling this runs `Path(marker).touch()`: what a malicious pytorch_model.bin could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_clap_weights_are_refused_and_never_unpickled(tmp_path, clap_dir):
    model_dir = tmp_path / "pickled-clap"
    shutil.copytree(clap_dir, model_dir)
    (model_dir / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    (model_dir / "pytorch_model.bin").write_bytes(pickle.dumps(_CreatesMarker(marker)))
    with pytest.raises(ModelUnavailable, match="safetensors"):
        get_space("clap", Settings(data_dir=tmp_path, models={"clap": str(model_dir)}))
    assert not marker.exists(), "the pickled weights were unpickled"


def test_a_clip_checkpoint_is_not_a_clap_model(tmp_path, clip_dir):
    with pytest.raises(ModelUnavailable, match="not a CLAP model"):
        get_space("clap", Settings(data_dir=tmp_path, models={"clap": str(clip_dir)}))
