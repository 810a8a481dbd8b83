"""Near-duplicates on random vectors with planted duplicates at known similarities, through a real Chroma store."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmcore.analysis.duplicates import (
    BLOCK_ROWS, SLACK, DuplicateSet, Thresholds, dismiss, find_duplicates, keep_one, review_queue, similar_pairs,
)
from mmcore.config import Settings
from mmcore.errors import MMError
from mmcore.spaces import SpaceInfo, normalize
from mmcore.store import Items
from mmcore.workspace import Workspace

DIM = 256  # random unit vectors in 256-d: pairwise cosine ~ N(0, 0.0625), so none reaches 0.4 by chance
SPACE = SpaceInfo("vecs", "synthetic", "", DIM)


def near(rng, v, similarity):
    """A unit vector with exactly this cosine similarity to the unit vector v."""
    noise = rng.standard_normal(len(v))
    noise -= noise @ v * v
    return similarity * v + math.sqrt(1 - similarity**2) * noise / np.linalg.norm(noise)


# (id, modality, twin of, similarity to it, added_at); base items r000.. alternate image / text, added at 100+i
PLANTED = [
    ("a-copy1", "image", "r000", 0.99, 500),
    ("a-copy2", "image", "r000", 0.985, 50),  # added before r000: the suggested keeper of its set
    ("b-caption", "text", "r002", 0.5, 501),  # text-image at 0.5: over the 0.40 image-text threshold
    ("c-copy", "text", "r003", 0.97, 103),  # same added_at as r003: the tie goes to the smaller id
    ("d-crop", "image", "r004", 0.90, 502),  # image-image at 0.90: under 0.95
    ("e-caption", "text", "r006", 0.35, 503),  # text-image at 0.35: under 0.40
]
A, C, B = ["a-copy2", "r000", "a-copy1"], ["c-copy", "r003"], ["r002", "b-caption"]
D, E = ["r004", "d-crop"], ["r006", "e-caption"]
EXPECTED = [A, C, B]


def workspace(path) -> Workspace:
    return Workspace(Settings(data_dir=path))


@pytest.fixture
def planted(tmp_path):
    rng = np.random.default_rng(3)
    base = normalize(rng.standard_normal((300, DIM)))
    ids = [f"r{i:03d}" for i in range(300)]
    modalities = ["image" if i % 2 == 0 else "text" for i in range(300)]
    added = [100 + i for i in range(300)]
    vectors = list(base)
    for id_, modality, twin, similarity, when in PLANTED:
        ids.append(id_)
        modalities.append(modality)
        added.append(when)
        vectors.append(near(rng, base[int(twin[1:])], similarity))
    ws = workspace(tmp_path / "data")
    collection = ws.store.collection("dups", SPACE)
    metas = [{"modality": m, "added_at": t, "source": f"{i}.src"} for i, m, t in zip(ids, modalities, added)]
    collection.add(ids, np.array(vectors), metas, [None] * len(ids))
    return ws, collection


def members(sets: list[DuplicateSet]) -> list[list[str]]:
    return [list(s.ids) for s in sets]


def test_exactly_the_planted_sets_are_found_best_first(planted):
    _, collection = planted
    sets = find_duplicates(collection.all(), Thresholds())
    assert members(sets) == EXPECTED
    a, c, b = sets
    assert a.max_score == pytest.approx(0.99, abs=1e-4) and a.modalities == ("image",)
    assert c.max_score == pytest.approx(0.97, abs=1e-4) and c.modalities == ("text",)
    assert b.max_score == pytest.approx(0.5, abs=1e-4) and b.modalities == ("image", "text")
    assert b.pairs == (("r002", "b-caption", pytest.approx(0.5, abs=1e-4)),)
    assert {(x, y) for x, y, _ in a.pairs} >= {("r000", "a-copy1"), ("a-copy2", "r000")}
    assert [s for _, _, s in a.pairs] == sorted((s for _, _, s in a.pairs), reverse=True)
    assert a.best_score("a-copy1") == pytest.approx(0.99, abs=1e-4)


def test_thresholds_apply_per_unordered_modality_pair(planted):
    _, collection = planted
    items = collection.all()
    loose = find_duplicates(items, Thresholds(image_image=0.85, image_text=0.33))
    assert members(loose) == [A, C, D, B, E]
    strict = find_duplicates(items, Thresholds(image_text=0.6, text_text=0.98))
    assert members(strict) == [A]
    assert D in members(find_duplicates(items, Thresholds(image_image=0.9)))  # at the threshold counts
    t = Thresholds(image_text=0.3, default=0.8)
    assert t.for_pair("text", "image") == t.for_pair("image", "text") == 0.3
    assert t.for_pair("audio", "image") == t.for_pair("", "") == 0.8


@pytest.mark.parametrize("bad", [1.5, 0.05, float("nan"), "0.9", True])
def test_out_of_range_thresholds_are_refused(bad):
    with pytest.raises(MMError, match="image-text duplicate threshold must be a cosine similarity between 0.1 and 1.0"):
        Thresholds(image_text=bad)


def test_k_out_of_range_is_refused(planted):
    _, collection = planted
    with pytest.raises(MMError, match="between 1 and 100, got 0"):
        find_duplicates(collection.all(), Thresholds(), k=0)


def test_blocks_find_the_same_pairs_as_brute_force():
    rng = np.random.default_rng(5)
    n = BLOCK_ROWS + 500  # two row blocks
    vectors = normalize(rng.standard_normal((n, 6)))  # low dimension: plenty of chance pairs to compare
    vectors[n - 1] = near(rng, vectors[7], 0.999)  # a pair across the block boundary
    modalities = ["image" if i % 3 else "text" for i in range(n)]
    thresholds = Thresholds(image_image=0.9, text_text=0.92, image_text=0.85)
    i, j, s = similar_pairs(vectors, modalities, thresholds, k=100)
    found = {(min(a, b), max(a, b)): score for a, b, score in zip(i.tolist(), j.tolist(), s.tolist())}
    limit = np.array([[thresholds.for_pair(a, b) for b in ("image", "text")] for a in ("image", "text")])
    kind = np.array([0 if m == "image" else 1 for m in modalities])
    sims = vectors @ vectors.T
    truth = np.argwhere(np.triu(sims >= (limit[kind][:, kind] - SLACK).astype(np.float32), 1))
    assert len(found) == len(i) == len(truth) > 100
    assert set(found) == {(int(a), int(b)) for a, b in truth}
    assert (7, n - 1) in found
    assert all(abs(found[(a, b)] - sims[a, b]) < 1e-5 for a, b in list(found)[:50])


def test_a_clump_of_copies_is_one_set_even_with_small_k():
    rng = np.random.default_rng(6)
    original = normalize(rng.standard_normal((1, DIM)))[0]
    vectors = np.stack([near(rng, original, 0.995) for _ in range(30)] + list(normalize(rng.standard_normal((20, DIM)))))
    ids = [f"x{i:02d}" for i in range(50)]
    items = Items(ids, vectors.astype(np.float32), [{"modality": "image"} for _ in ids], [None] * 50)
    sets = find_duplicates(items, Thresholds(), k=2)
    assert members(sets) == [ids[:30]]  # no added_at anywhere: ordered by id
    assert len(sets[0].pairs) <= 2 * 30


def test_exact_copies_meet_a_threshold_of_one():
    rng = np.random.default_rng(8)
    vectors = normalize(rng.standard_normal((40, DIM))).astype(np.float32)
    vectors[1::2] = vectors[0::2]
    ids = [f"y{i:02d}" for i in range(40)]
    items = Items(ids, vectors, [{"modality": "text"} for _ in ids], [None] * 40)
    assert members(find_duplicates(items, Thresholds(text_text=1.0))) == [ids[i : i + 2] for i in range(0, 40, 2)]


def test_too_few_items_give_no_sets(tmp_path):
    collection = workspace(tmp_path).store.collection("empty", SPACE)
    assert find_duplicates(collection.all(), Thresholds()) == []
    collection.add(["only"], normalize(np.ones((1, DIM))), [{"modality": "image"}], [None])
    assert find_duplicates(collection.all(), Thresholds()) == []


def test_keep_one_tags_the_others_and_the_set_leaves_the_queue(planted):
    ws, collection = planted
    version = collection.version
    first = review_queue(ws, collection)[0]
    done = keep_one(collection, first, "a-copy2", "tag")
    assert (done.action, done.kept, done.others) == ("tag", "a-copy2", ("r000", "a-copy1"))
    items = {item["id"]: item["metadata"] for item in collection.get(list(first.ids))}
    for other in ("r000", "a-copy1"):
        assert set(items[other]["tags"]) == {"duplicate", "duplicate-of:a-copy2"}
    assert not items["a-copy2"].get("tags")
    assert collection.version == version and collection.count() == 306
    assert members(review_queue(ws, collection)) == EXPECTED[1:]


def test_keep_one_deletes_the_others_and_changes_the_version(planted):
    ws, collection = planted
    version = collection.version
    queue = review_queue(ws, collection)
    done = keep_one(collection, queue[0], "r000", "delete")
    assert done.others == ("a-copy2", "a-copy1")
    assert collection.version != version
    assert collection.count() == 306 - 2
    assert not {"a-copy1", "a-copy2"} & set(collection.all(with_vectors=False).ids)
    # the queue carried over from before the delete is the one a fresh computation finds
    assert members(review_queue(ws, collection)) == members(find_duplicates(collection.all())) == EXPECTED[1:]


def test_keep_one_refuses_a_stranger_or_an_unknown_action(planted):
    ws, collection = planted
    first = review_queue(ws, collection)[0]
    with pytest.raises(MMError, match="'r999' is not in this duplicate set"):
        keep_one(collection, first, "r999", "tag")
    with pytest.raises(MMError, match="use 'tag' or 'delete'"):
        keep_one(collection, first, "r000", "archive")
    assert collection.count() == 306
    assert members(review_queue(ws, collection)) == EXPECTED


def test_dismissed_sets_do_not_come_back(planted, tmp_path):
    ws, collection = planted
    queue = review_queue(ws, collection)
    done = dismiss(ws, collection, queue[2])
    assert done.action == "dismiss" and set(done.others) == {"r002", "b-caption"}
    again = workspace(tmp_path / "data")  # another process reading the same data dir
    assert members(review_queue(again, again.store.open("dups", "vecs"))) == EXPECTED[:2]
    assert members(review_queue(ws, collection, Thresholds(image_text=0.38))) == EXPECTED[:2]  # nor at other thresholds
    # a new item close to a dismissed member is still reviewed, without bringing back the dismissed pair
    r002 = collection.get(["r002"], with_vectors=True)[0]["vector"]
    collection.add(["f-new"], near(np.random.default_rng(9), r002, 0.9)[None, :], [{"modality": "text", "added_at": 900}], [None])
    last = review_queue(ws, collection)[-1]
    assert list(last.ids) == ["r002", "f-new"] and [p[:2] for p in last.pairs] == [("r002", "f-new")]


def test_items_tagged_duplicate_are_left_out(planted):
    ws, collection = planted
    collection.update_tags(["b-caption"], add=["duplicate"])
    assert members(review_queue(ws, collection)) == EXPECTED[:2]
    collection.update_tags(["b-caption"], remove=["duplicate"])
    assert members(review_queue(ws, collection)) == EXPECTED


def test_an_unreadable_reviews_file_is_reported_not_ignored(planted):
    ws, collection = planted
    path = ws.settings.data_dir / "reviews" / "dups.vecs.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(MMError, match="dups.vecs.json can't be read .* fix or delete that file"):
        review_queue(ws, collection)
    with pytest.raises(MMError, match="can't be read"):
        dismiss(ws, collection, find_duplicates(collection.all())[0])
    assert path.read_text() == "{not json"


def test_pages_and_video_segments_are_judged_as_images():
    t = Thresholds(image_image=0.9, text_text=0.8, image_text=0.3, default=0.97)
    assert t.for_pair("page", "image") == t.for_pair("video", "video") == 0.9
    assert t.for_pair("text", "page") == 0.3
    assert t.for_pair("audio", "audio") == t.for_pair("audio", "text") == 0.97
