"""The offline demo: scikit-learn's digits as a collection that needs no model."""

import hashlib
from collections import Counter

import pytest
from PIL import Image

from mmcore.config import Settings
from mmcore.demo import DEMO_COLLECTION, load_digits_demo
from mmcore.errors import MMError
from mmcore.search import search_like, search_text
from mmcore.workspace import Workspace


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    ws = Workspace(Settings(data_dir=tmp_path_factory.mktemp("demo-data")))
    report = load_digits_demo(ws)
    assert (report.rows, report.added, report.skipped, report.images) == (1797, 1797, 0, 1797)
    return ws


@pytest.fixture(scope="module")
def items(demo):
    return demo.store.open(DEMO_COLLECTION, "pixels").all(with_vectors=True)


def test_demo_has_every_digit_as_a_normalised_pixel_vector(items):
    assert len(items) == 1797 and items.vectors.shape == (1797, 64)
    labels = Counter(m["label"] for m in items.metadatas)
    assert set(labels) == set(range(10)) and min(labels.values()) > 150
    assert abs((items.vectors**2).sum(axis=1) - 1).max() < 1e-5
    assert {m["modality"] for m in items.metadatas} == {"image"}
    assert sorted(m["source"] for m in items.metadatas)[:2] == ["digits/0.png", "digits/1.png"]


def test_every_digit_has_its_png_and_thumbnail_named_by_content(demo, items):
    for meta in items.metadatas:
        original, thumbnail = demo.files.root / meta["original"], demo.files.root / meta["thumbnail"]
        assert thumbnail.is_file()
        assert original.stem == thumbnail.stem == meta["source_hash"] == hashlib.sha256(original.read_bytes()).hexdigest()
    picture = Image.open(demo.files.root / items.metadatas[0]["original"])
    assert picture.size == (64, 64) and picture.mode == "L"
    assert len(set(picture.getdata())) > 2  # grey levels, not a blank square


def test_loading_twice_adds_nothing(demo):
    version = demo.store.open(DEMO_COLLECTION, "pixels").version
    again = load_digits_demo(demo)
    assert (again.added, again.skipped) == (0, 1797)
    target = demo.store.open(DEMO_COLLECTION, "pixels")
    assert target.count() == 1797 and target.version == version


def test_neighbours_share_the_label(demo, items):
    agree = total = 0
    for i in range(0, 1797, 90):  # 20 queries
        label = items.metadatas[i]["label"]
        hits = search_like(demo, items.ids[i], DEMO_COLLECTION, k=5, space="pixels")
        assert len(hits) == 5 and items.ids[i] not in {h.id for h in hits}
        agree += sum(h.metadata["label"] == label for h in hits)
        total += len(hits)
    assert agree / total >= 0.8


def test_text_search_is_refused_clearly(demo):
    with pytest.raises(MMError, match=r"'digits-demo' holds vectors of space 'pixels'.*by item.*not by text or image"):
        search_text(demo, "a seven", DEMO_COLLECTION)
