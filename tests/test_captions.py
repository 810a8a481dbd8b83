"""Captions (MMCORE_CAPTION_MODEL) through the real code: tiny random BLIP and Florence-2 checkpoints caption the
pictures of an ingest; the captions are text items paired with their pictures, found by text search, counted by
`evaluate`, written once; off by default."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from checkpoints import tiny_blip, tiny_florence2
from PIL import Image

from mmcore.captions import SUFFIX, Captioner, caption_collection, captions_of, get_captioner
from mmcore.cli import main
from mmcore.config import Settings
from mmcore.errors import MMError, ModelUnavailable
from mmcore.evaluate import evaluate
from mmcore.ingest import SourceFile, ingest
from mmcore.search import Query, search_each_modality, with_pairs
from mmcore.workspace import Workspace

IMAGES = ("img.jpg", "img.png", "img.webp")


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory):
    return tiny_blip(tmp_path_factory.mktemp("models") / "tiny-blip")


@pytest.fixture(scope="module")
def florence_dir(tmp_path_factory):
    return tiny_florence2(tmp_path_factory.mktemp("models") / "tiny-florence2")


def sources(media, names=IMAGES + ("long.txt",)):
    return [SourceFile(n, path=media[n]) for n in names]


def test_ingest_captions_each_picture(settings, media, blip_dir):
    ws = Workspace(replace(settings, caption_model=str(blip_dir)))
    heard = []
    report = ingest(ws, sources(media), collection="cap", on_progress=heard.append)
    assert report.ok and "caption" in report.seconds
    captioning = [p for p in heard if p.stage == "captioning"]  # the progress bar goes on while captions are written
    assert captioning[0].captioned == (0, 3) and captioning[-1].captioned == (3, 3) and captioning[-1].fraction == 1.0
    assert captioning[-1].summary().startswith("captioning pictures: 3 of 3") and heard[-1].stage == "done"
    clip = ws.store.open("cap", "clip")
    pictures = clip.all(with_vectors=False, where={"modality": "image"})
    assert len(pictures) == 3
    captions = clip.get([i + SUFFIX for i in pictures.ids])
    expected = Captioner.load(str(blip_dir)).caption(
        [Image.open(io.BytesIO((ws.files.root / m["original"]).read_bytes())) for m in pictures.metadatas])
    assert [c["document"] for c in captions] == expected and all(expected)  # the model's words for each picture
    for caption, image_id, meta in zip(captions, pictures.ids, pictures.metadatas):
        m = caption["metadata"]
        assert (m["modality"], m["pair_of"], m["pair_source"], m["source"]) == ("text", image_id, meta["source"], meta["source"])
        assert m["caption_model"] == str(blip_dir.resolve()) and m["source_hash"] == meta["source_hash"]
    for name in IMAGES:
        assert "1 caption(s) written" in next(r for r in report.results if r.name == name).notes

    assert captions_of(clip, pictures.ids) == dict(zip(pictures.ids, expected))  # what the Gallery's cards show
    # searchable: its own words find the caption first, shown with its picture
    hits = with_pairs(ws, search_each_modality(ws, Query(text=expected[0]), "cap", k=3)["text"], "cap")
    assert hits[0].document == expected[0] and hits[0].pairs[0].modality == "image"
    # and `evaluate` measures retrieval on these pairs
    assert evaluate(ws, "cap", "clip").pairs == 3

    again = caption_collection(ws, "cap")  # nothing left to caption
    assert (again.pictures, again.captioned) == (0, 0)


def test_florence2_on_demand_and_cli(settings, media, florence_dir, monkeypatch, capsys):
    ws = Workspace(settings)  # captions off at ingest
    ingest(ws, sources(media), collection="flo")
    clip = ws.store.open("flo", "clip")
    assert not written(clip)
    ws.close()
    monkeypatch.setenv("MMCORE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MMCORE_CLIP_MODEL", str(settings.model_for("clip")))
    assert main(["caption", "--collection", "flo"]) == 2
    assert "captions are off" in capsys.readouterr().err
    monkeypatch.setenv("MMCORE_CAPTION_MODEL", str(florence_dir))
    first = clip.all(with_vectors=False, where={"modality": "image"}).ids[0]
    assert main(["caption", "--collection", "flo", "--id", first]) == 0
    assert "1 caption(s) written for 1 picture(s) without one, into clip" in capsys.readouterr().out
    assert main(["caption", "--collection", "flo"]) == 0
    assert "2 caption(s) written for 2 picture(s)" in capsys.readouterr().out
    captions = written(clip)
    assert len(captions) == 3 and all(document and meta["modality"] == "text" for meta, document in captions)


def written(collection) -> list[tuple[dict, str]]:
    """(metadata, document) of every caption in the collection."""
    items = collection.all(with_vectors=False)
    return [(m, d) for m, d in zip(items.metadatas, items.documents) if "caption_model" in m]


def test_off_by_default_and_refused_models(clip_dir):
    settings = Settings.from_env({})
    assert settings.caption_model is None
    assert Settings.from_env({"MMCORE_CAPTION_MODEL": "some/model"}).caption_model == "some/model"
    with pytest.raises(MMError, match="captions are off"):
        get_captioner(settings)
    with pytest.raises(ModelUnavailable, match="could not be loaded as a captioning checkpoint"):
        Captioner.load(str(clip_dir))  # an image model, but not one that writes captions


def test_picture_clusters_are_named_by_their_written_captions(tmp_path):
    """Two blobs of pictures in a space without a text model: each cluster is named by its pictures' written
    captions' distinctive words (captions from a CSV, without caption_model, are not used for this)."""
    import numpy as np

    from mmcore.analysis.maps import analyze
    from mmcore.analysis.naming import cluster_names
    from mmcore.spaces import SpaceInfo

    ws = Workspace(Settings(data_dir=tmp_path / "data"))
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 16))
    points = np.concatenate([c + 0.05 * rng.standard_normal((n, 16)) for c, n in zip(centres, (40, 40, 80))]).astype(np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    words = ["a red tractor ploughs the field", "seagulls over the harbour boats"]
    ids = [f"p{i:03d}" for i in range(80)] + [f"p{i:03d}:caption" for i in range(80)]
    metas = [{"modality": "image", "source": f"p{i}.jpg"} for i in range(80)]
    metas += [{"modality": "text", "pair_of": f"p{i:03d}", "caption_model": "tiny"} for i in range(80)]
    documents = [None] * 80 + [f"{words[i // 40]} number {i}" for i in range(80)]
    collection = ws.store.collection("named", SpaceInfo("vecs", "synthetic", "", 16))
    collection.add(ids, points, metas, documents)  # the captions in a place of their own
    analysis = analyze(ws, "named", "vecs")
    names = cluster_names(ws, analysis)
    picture_names = {i: names.get(int(label)) for i, label in zip(analysis.ids, analysis.labels) if label >= 0 and ":" not in i}
    first = {n for i, n in picture_names.items() if int(i[1:]) < 40}
    second = {n for i, n in picture_names.items() if int(i[1:]) >= 40}
    assert first and all("tractor" in n or "ploughs" in n or "field" in n for n in first), first
    assert second and all("seagulls" in n or "harbour" in n or "boats" in n for n in second), second


def test_an_analysis_without_clusters_has_no_names(tmp_path):
    """A handful of items is all noise: naming them gives nothing (it used to fail reshaping an empty sample)."""
    import numpy as np

    from mmcore.analysis.maps import analyze
    from mmcore.analysis.naming import cluster_names
    from mmcore.spaces import SpaceInfo

    ws = Workspace(Settings(data_dir=tmp_path / "data"))
    points = np.eye(6, 16, dtype=np.float32)
    ws.store.collection("few", SpaceInfo("vecs", "synthetic", "", 16)).add(
        [f"p{i}" for i in range(6)], points, [{"modality": "image"}] * 6, [None] * 6)
    analysis = analyze(ws, "few", "vecs")
    assert not analysis.cluster_ids and cluster_names(ws, analysis) == {}
