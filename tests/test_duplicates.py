"""Near-duplicates on synthetic vectors with planted duplicates, through a real Chroma store."""

import numpy as np
import pytest

from mmcore.analysis.duplicates import Reviews, Thresholds, find_duplicates, keep_one, review_queue
from mmcore.errors import MMError
from mmcore.spaces import SpaceInfo, normalize

DIM = 64


def near(rng, v, similarity):
    """A unit vector with the given cosine similarity to unit vector v."""
    noise = rng.standard_normal(DIM)
    noise -= noise @ v * v
    noise /= np.linalg.norm(noise)
    return similarity * v + np.sqrt(1 - similarity**2) * noise


@pytest.fixture
def planted(ws):
    rng = np.random.default_rng(3)
    base = normalize(rng.standard_normal((200, DIM)))  # random 64-d vectors: pairwise cosine ~N(0, 0.125)
    vectors, modalities, ids = list(base), ["image"] * 200, [f"r{i:03d}" for i in range(200)]
    plants = [("r000", "image", 0.99), ("r001", "image", 0.97), ("r002", "text", 0.5), ("r003", "image", 0.9)]
    for source, modality, similarity in plants:
        vectors.append(near(rng, base[int(source[1:])], similarity))
        modalities.append(modality)
        ids.append(f"dup-of-{source}")
    vectors.append(near(rng, base[0], 0.985))  # a third member of r000's set
    modalities.append("image")
    ids.append("dup2-of-r000")
    collection = ws.store.collection("dups", SpaceInfo("vecs", "synthetic", "", DIM))
    metas = [{"modality": m, "added_at": 100 + i} for i, m in enumerate(modalities)]
    collection.add(ids, np.array(vectors), metas, [None] * len(ids))
    return ws, collection


def test_exactly_the_planted_sets_are_found(planted):
    _, collection = planted
    sets = find_duplicates(collection.all(), Thresholds())
    found = sorted(sorted(s.ids) for s in sets)
    assert found == [
        sorted(["r000", "dup-of-r000", "dup2-of-r000"]),
        ["dup-of-r001", "r001"],
        ["dup-of-r002", "r002"],  # text-image at 0.5 passes the 0.40 image-text threshold
    ]  # r003's image twin at 0.90 stays under the 0.95 image-image threshold
    assert sets[0].max_score == pytest.approx(0.99, abs=1e-4)
    assert all(s.ids[0].startswith("r") for s in sets)  # the earliest added is the suggested keeper


def test_thresholds_are_per_modality_pair(planted):
    _, collection = planted
    strict = find_duplicates(collection.all(), Thresholds(image_text=0.6, image_image=0.85))
    ids = {i for s in strict for i in s.ids}
    assert "dup-of-r003" in ids and "dup-of-r002" not in ids
    with pytest.raises(MMError, match="image_image"):
        Thresholds(image_image=1.5)


def test_keep_one_tags_or_deletes_the_rest(planted):
    ws, collection = planted
    reviews = Reviews(ws.settings.data_dir, "dups", "vecs")
    first, second = review_queue(collection, reviews)[:2]
    assert keep_one(collection, first, "r000", "tag") == ["dup-of-r000", "dup2-of-r000"]
    tags = collection.get(["dup-of-r000"])[0]["metadata"]["tags"]
    assert "duplicate" in tags and "duplicate-of:r000" in tags
    version = collection.version
    keep_one(collection, second, "r001", "delete")
    assert collection.version != version
    assert collection.count() == 205 - 1
    left = review_queue(collection, reviews)
    assert [sorted(s.ids) for s in left] == [["dup-of-r002", "r002"]]
    with pytest.raises(MMError):
        keep_one(collection, left[0], "r999")


def test_dismissed_sets_do_not_come_back(planted):
    ws, collection = planted
    reviews = Reviews(ws.settings.data_dir, "dups", "vecs")
    queue = review_queue(collection, reviews)
    reviews.dismiss(queue[0])
    again = review_queue(collection, Reviews(ws.settings.data_dir, "dups", "vecs"))  # a fresh reader of the file
    assert queue[0].key not in {s.key for s in again} and len(again) == len(queue) - 1
