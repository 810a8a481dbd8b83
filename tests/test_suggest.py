"""Tag suggestions on real vectors: the digits demo (a few digits tagged by hand, the rest suggested) and MiniLM
sentences (zero-shot tags scored by name); accepting, rejecting and the durable record of rejections."""

from __future__ import annotations

import numpy as np
import pytest
from minilm import minilm
from test_evaluate import TOPICS

from mmcore.config import Settings
from mmcore.demo import DEMO_COLLECTION, load_digits_demo
from mmcore.errors import MMError
from mmcore.suggest import Reviews, accept, reject, suggest_tags, suggestions, want
from mmcore.workspace import Workspace

PER_DIGIT = 5


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The digits demo with PER_DIGIT digits of each kind tagged with their digit ("0".."9"); (workspace, {id: digit})."""
    ws = Workspace(Settings(data_dir=tmp_path_factory.mktemp("suggest") / "data"))
    load_digits_demo(ws)
    target = ws.store.open(DEMO_COLLECTION, "pixels")
    items = target.all(with_vectors=False)
    truth = {id_: str(m["label"]) for id_, m in zip(items.ids, items.metadatas)}
    rng = np.random.default_rng(0)
    for digit in map(str, range(10)):
        mine = sorted(i for i, d in truth.items() if d == digit)
        target.update_tags(list(rng.choice(mine, PER_DIGIT, replace=False)), add=[digit])
    return ws, truth


def test_digits_suggestions_from_five_examples_a_digit(digits):
    ws, truth = digits
    report = suggestions(ws, DEMO_COLLECTION, "pixels")
    tagged = {i for i, m in zip(*_ids_and_tags(ws)) if m}
    assert len(tagged) == 10 * PER_DIGIT
    assert report.items and not {s.id for s in report.items} & tagged  # only untagged items get suggestions
    assert [m.tag for m in report.models] == [str(d) for d in range(10)]
    assert all(m.source == "probe" and m.positives == PER_DIGIT and m.negatives == 9 * PER_DIGIT and m.background == 0
               for m in report.models)
    assert np.mean([m.accuracy for m in report.models]) >= 0.8  # cross-validated on 5 + 45 items a tag
    assert report.probe_accuracy is not None and report.probe_accuracy >= 0.7
    right = np.array([truth[s.id] == s.tag for s in report.items])
    sure = np.array([s.confidence >= 0.9 for s in report.items])
    assert len(report.items) >= 1000 and right.mean() >= 0.8  # 50 examples tag most of 1,747 digits, mostly right
    assert sure.sum() >= 500 and right[sure].mean() >= 0.93  # and the confident ones are nearly all right
    assert [s.confidence for s in report.items] == sorted((s.confidence for s in report.items), reverse=True)


def test_accept_and_reject_are_kept(digits):
    ws, truth = digits
    before = suggestions(ws, DEMO_COLLECTION, "pixels")
    wrong = next(s for s in before.items if truth[s.id] != s.tag)
    right = [s for s in before.items if truth[s.id] == s.tag][:3]
    reject(ws, DEMO_COLLECTION, "pixels", [wrong])
    assert accept(ws, DEMO_COLLECTION, "pixels", right) == 3
    ids, tags = _ids_and_tags(ws)
    assert all(tags[ids.index(s.id)] == [s.tag] for s in right)  # ordinary tags now
    assert Reviews(ws.settings.data_dir, DEMO_COLLECTION, "pixels").rejected == {wrong.tag: {wrong.id}}  # on disk

    after = suggestions(ws, DEMO_COLLECTION, "pixels")
    assert (wrong.id, wrong.tag) not in {(s.id, s.tag) for s in after.items}  # never suggested again
    assert not {s.id for s in right} & {s.id for s in after.items}
    model = {m.tag: m for m in after.models}
    assert model[wrong.tag].negatives == 9 * PER_DIGIT + 1 + sum(s.tag != wrong.tag for s in right)  # the rejection is a negative
    for s in right:
        assert model[s.tag].positives == PER_DIGIT + sum(r.tag == s.tag for r in right)


def test_one_tag_learns_against_untagged_items():
    """With one tag only there are no other tags to learn it from: untagged items stand in as negatives."""
    rng = np.random.default_rng(1)
    centre = np.eye(16)[0]
    x = np.concatenate([centre + rng.normal(scale=0.15, size=(20, 16)), rng.normal(size=(60, 16))])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    tags = [["boat"]] * 4 + [[]] * 76
    report = suggest_tags(x, tags, [f"i{i}" for i in range(80)])
    (model,) = report.models
    assert (model.positives, model.background, model.negatives) == (4, 20, 20)
    suggested = {int(s.id[1:]) for s in report.items if s.confidence >= 0.5}
    assert len(suggested & set(range(4, 20))) >= 14 and len(suggested - set(range(20))) <= 3


def test_zero_shot_names_with_minilm():
    """No examples yet: the tag names, scored with the text model against a vocabulary, find their sentences."""
    sentences = [s for group in TOPICS.values() for s in group]
    topic = [t for t, group in TOPICS.items() for _ in group]
    report = suggest_tags(minilm(sentences), [[] for _ in sentences], [f"s{i}" for i in range(len(sentences))],
                          wanted=["sport", "food"], embed_texts=minilm, vocabulary=["animal", "weather", "music", "city"],
                          modalities=["text"] * len(sentences))
    assert [(m.tag, m.source) for m in report.models] == [("sport", "zero-shot"), ("food", "zero-shot")]
    found = {int(s.id[1:]): s.tag for s in report.items}
    assert sum(found.get(i) == "sport" for i, t in enumerate(topic) if t == "sport") >= 5
    assert sum(found.get(i) == "food" for i, t in enumerate(topic) if t == "food") >= 5
    assert sum(i in found for i, t in enumerate(topic) if t in ("animals", "weather")) <= 2


def test_reviews_file_errors_and_wanted(tmp_path):
    ws = Workspace(Settings(data_dir=tmp_path / "data"))
    want(ws, "c", "clip", "  red kite ")
    assert Reviews(ws.settings.data_dir, "c", "clip").wanted == ["red kite"]
    with pytest.raises(MMError, match="name"):
        want(ws, "c", "clip", "  ")
    path = Reviews(ws.settings.data_dir, "c", "clip").path
    path.write_text("[1, 2]")
    with pytest.raises(MMError, match="c.clip.json is unreadable"):
        Reviews(ws.settings.data_dir, "c", "clip")
    path.write_text("{not json")
    with pytest.raises(MMError, match="unreadable"):
        Reviews(ws.settings.data_dir, "c", "clip")


def _ids_and_tags(ws):
    items = ws.store.open(DEMO_COLLECTION, "pixels").all(with_vectors=False)
    return items.ids, [list(m.get("tags") or []) for m in items.metadatas]


def test_zero_shot_through_a_clip_space(settings, media):
    """A tag wanted by name in a CLIP space is scored with the space's own text tower (a tiny random CLIP: the
    figures mean nothing, the path is the real one): every picture gets a probability for it, and any suggestion
    names it as zero-shot."""
    from mmcore.ingest import SourceFile, ingest

    ws = Workspace(settings)
    names = ("img.jpg", "img.png", "img.webp", "long.txt")
    ingest(ws, [SourceFile(n, path=media[n]) for n in names], collection="zs")
    want(ws, "zs", "clip", "red square")
    report = suggestions(ws, "zs", "clip")
    assert [(m.tag, m.source) for m in report.models] == [("red square", "zero-shot")]
    assert all(s.tag == "red square" and s.source == "zero-shot" for s in report.items)
    # the same probabilities computed here from the stored vectors and the space's text tower
    from mmcore.analysis.naming import vocabulary
    from mmcore.suggest import zero_shot

    items = ws.store.open("zs", "clip").all()
    picture = np.array([m["modality"] == "image" for m in items.metadatas])
    p = zero_shot(items.vectors, ["red square"], ws.space("clip").embed_texts, vocabulary(), picture)[:, 0]
    assert p.shape == (len(items),) and ((p > 0) & (p < 1)).all()
    assert {s.id: round(s.confidence, 6) for s in report.items} == {
        i: round(float(v), 6) for i, v in zip(items.ids, p) if v >= 0.5}
