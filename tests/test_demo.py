"""The offline demo: scikit-learn's digits as a collection that needs no model."""

from collections import Counter
from pathlib import Path

import pytest

from mmcore.demo import DEMO_COLLECTION, load_digits_demo
from mmcore.errors import MMError
from mmcore.search import search_like, search_text


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from mmcore.config import Settings
    from mmcore.workspace import Workspace

    ws = Workspace(Settings(data_dir=tmp_path_factory.mktemp("demo-data")))
    assert load_digits_demo(ws) == 1797
    return ws


def test_demo_has_every_digit_with_thumbnails(demo):
    items = demo.store.open(DEMO_COLLECTION, "pixels").all(with_vectors=True)
    assert len(items) == 1797
    assert Counter(m["label"] for m in items.metadatas).keys() == set(range(10))
    assert all((demo.files.root / m["thumbnail"]).exists() for m in items.metadatas[:50])
    assert abs(float((items.vectors**2).sum(axis=1).mean()) - 1.0) < 1e-5


def test_loading_twice_adds_nothing(demo):
    assert load_digits_demo(demo) == 0
    assert demo.store.open(DEMO_COLLECTION, "pixels").count() == 1797


def test_neighbours_share_the_label(demo):
    items = demo.store.open(DEMO_COLLECTION, "pixels").all(with_vectors=False)
    agree = total = 0
    for i in range(0, 1797, 90):
        label = items.metadatas[i]["label"]
        hits = search_like(demo, items.ids[i], DEMO_COLLECTION, k=5, space="pixels")
        assert items.ids[i] not in {h.id for h in hits}
        agree += sum(h.metadata["label"] == label for h in hits)
        total += len(hits)
    assert agree / total >= 0.8


def test_text_search_is_refused_clearly(demo):
    with pytest.raises(MMError, match="more like this"):
        search_text(demo, "a seven", DEMO_COLLECTION)
