"""`evaluate`: retrieval between pairs and the fit of the tags, on planted vectors whose figures are worked out by
hand below, and on real MiniLM sentence vectors."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from minilm import minilm
from PIL import Image

from mmcore.cli import main
from mmcore.config import Settings
from mmcore.evaluate import evaluate, evaluate_items, tag_fit
from mmcore.vectors import import_vectors
from mmcore.workspace import Workspace

# Topics with six sentences each: tags an analyst might give, with real words MiniLM reads.
TOPICS = {
    "animals": ["a dog runs across the park", "two cats sleep on the sofa", "a horse grazes in a green field",
                "the puppy chews a stick", "a parrot sits on a branch", "cows stand by the fence of the farm"],
    "food": ["a bowl of pasta with tomato sauce", "fresh bread from the bakery", "a plate of sushi and rice",
             "pancakes with maple syrup for breakfast", "a slice of pepperoni pizza", "a salad with olives and cheese"],
    "sport": ["the striker scores a goal in the final", "a tennis player serves the ball", "runners finish the marathon",
              "the basketball team wins the game", "a cyclist climbs the mountain stage", "swimmers race in the pool"],
    "weather": ["heavy rain floods the streets", "snow covers the roofs of the village", "a thunderstorm with lightning at night",
                "a sunny and hot summer afternoon", "strong wind bends the trees", "thick fog over the harbour in the morning"],
}
# A sentence and a paraphrase of it: each pair is one scene.
PARAPHRASES = [
    ("a man rides a bicycle down the hill", "a cyclist goes downhill on his bike"),
    ("a child eats an ice cream cone", "a little kid licks an ice cream"),
    ("an old church with a tall tower", "a historic chapel and its steeple"),
    ("a red car parked on the street", "a red automobile stands by the kerb"),
    ("a woman reads a book in the library", "a lady is reading among the library shelves"),
    ("a boat sails on a calm lake", "a sailing boat on still water"),
    ("a chef cuts vegetables in the kitchen", "a cook chops carrots and onions"),
    ("a plane takes off from the airport", "an airliner leaves the runway"),
    ("a girl plays the piano on stage", "a young pianist performs a concert"),
    ("fireworks explode over the city at night", "colourful fireworks light up the night sky above town"),
]


@pytest.fixture
def ws(tmp_path):
    return Workspace(Settings(data_dir=tmp_path / "data"))


def write_import(folder, vectors: np.ndarray, rows: list[dict]):
    """A vectors file and its metadata CSV (columns: the union of the rows' keys)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "v.npy", vectors)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with open(folder / "meta.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    return folder / "v.npy", folder / "meta.csv"


def unit(*weights: float, d: int = 8) -> np.ndarray:
    """(w1, w2, ...) on the axes e1, e2, ... (d of them), scaled to length 1."""
    v = np.zeros(d)
    v[: len(weights)] = weights
    return v / np.linalg.norm(v)


def planted(tmp_path):
    """Eight images on the axes e1..e8 and eight captions; caption i belongs to image i.

    Caption to image (rank of its own image among the 8):
      c1 = e1                          -> I1 scores 1                                   rank 1
      c2 = .6 e2 + .8 e3               -> I3 .8 beats I2 .6                             rank 2
      c3 ~ .7 e1 + .3 e3 + .6 e4       -> I1 .72, I4 .62 beat I3 .31                    rank 3
      c4 ~ e1+e2+e3 + .5 e4 + e5+e6+e7+e8 -> the 7 others .37 beat I4 .19               rank 8
      c5..c8 = e5..e8                  -> rank 1 each
      ranks 1,2,3,8,1,1,1,1: R@1 5/8, R@5 7/8, R@10 8/8, mean rank 18/8 = 2.25
    Image to caption (rank of its own caption among the 8):
      I1: c1 1 first                                                                    rank 1
      I2: c2 .6 beats c4 .37                                                            rank 1
      I3: c2 .8 and c4 .37 beat c3 .31                                                  rank 3
      I4: c3 .62 beats c4 .19                                                           rank 2
      I5..I8: their own caption 1                                                       rank 1 each
      ranks 1,1,3,2,1,1,1,1: R@1 6/8, R@5 8/8, R@10 8/8, mean rank 11/8 = 1.375
    """
    images = np.eye(8)
    captions = np.stack([unit(1), unit(0, .6, .8), unit(.7, 0, .3, .6), unit(1, 1, 1, .5, 1, 1, 1, 1),
                         *np.eye(8)[4:]])
    folder = tmp_path / "in"
    folder.mkdir()
    rows = []
    for i in range(8):
        Image.new("RGB", (16, 16), (30 * i, 255 - 30 * i, 7 * i)).save(folder / f"i{i + 1}.png")
        rows.append({"id": f"I{i + 1}", "image": f"i{i + 1}.png"})
    rows += [{"id": f"c{i + 1}", "text": f"caption {i + 1}", "pair_of": f"I{i + 1}"} for i in range(8)]
    return write_import(folder, np.concatenate([images, captions]), rows)


def test_planted_pairs_give_the_figures_worked_out_by_hand(ws, tmp_path):
    vectors, meta = planted(tmp_path)
    import_vectors(ws, vectors, meta, collection="planted")
    report = evaluate(ws, "planted", "custom")
    assert (report.items, report.pairs) == (16, 8)
    there, back = report.retrieval
    assert (there.direction, there.queries, there.targets) == ("text-to-image", 8, 8)
    assert there.recall == {1: 5 / 8, 5: 7 / 8, 10: 1.0} and there.mean_rank == pytest.approx(2.25)
    assert (back.direction, back.queries, back.targets) == ("image-to-text", 8, 8)
    assert back.recall == {1: 6 / 8, 5: 1.0, 10: 1.0} and back.mean_rank == pytest.approx(1.375)
    assert there.sentence() == "captions find their image in the top 5 (of 8 images) for 88% of 8 captions; on average it ranks 2.2"
    assert report.tags is None and any("tag figures need" in n for n in report.notes)


def test_cli_prints_the_figures_and_json(ws, tmp_path, monkeypatch, capsys):
    vectors, meta = planted(tmp_path)
    import_vectors(ws, vectors, meta, collection="planted")
    ws.close()
    monkeypatch.setenv("MMCORE_DATA_DIR", str(ws.settings.data_dir))
    assert main(["evaluate", "--collection", "planted"]) == 0
    out = capsys.readouterr().out
    assert "text-to-image: R@1 62.5%, R@5 87.5%, R@10 100.0%, mean rank 2.2 (8 queries, 8 targets)" in out
    assert "image-to-text: R@1 75.0%, R@5 100.0%, R@10 100.0%, mean rank 1.4" in out
    assert main(["evaluate", "--collection", "planted", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["retrieval"][0]["recall"] == {"1": 0.625, "5": 0.875, "10": 1.0}
    assert data["retrieval"][1]["sentence"].startswith("images find their caption in the top 5 (of 8 captions) for 100%")
    assert main(["evaluate", "--collection", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_planted_tags_hand_worked(monkeypatch):
    """Two tags, three items each, in two tight groups: each item's 2 nearest are its own group (precision 1;
    by chance 2 of the 5 others share its tag, .4); a probe separates the groups (3 folds: the rarest tag has 3)."""
    x = np.stack([unit(1, .1 * i, d=4) for i in range(3)] + [unit(0, .1 * i, 1, d=4) for i in range(3)])
    fit = tag_fit(x.astype(np.float32), [["a"]] * 3 + [["b"]] * 3 + [[]] + [["rare"]], k=2)
    assert (fit.items, fit.tags, fit.left_out, fit.k) == (6, {"a": 3, "b": 3}, {"rare": 1}, 2)
    assert fit.knn_precision == fit.knn_best == 1.0 and fit.knn_chance == pytest.approx(0.4)
    assert fit.probe_accuracy == 1.0 and fit.probe_chance == 0.5 and fit.folds == 3
    monkeypatch.setattr("mmcore.evaluate.PROBE_MAX", 4)  # a bigger collection: the probe on 2 items a tag
    sampled = tag_fit(x.astype(np.float32), [["a"]] * 3 + [["b"]] * 3, k=2)
    assert (sampled.probe_items, sampled.folds, sampled.probe_accuracy, sampled.probe_chance) == (4, 2, 1.0, 0.5)
    assert "for 100% of 4 tagged items (a sample of the 6) (2-fold" in sampled.sentences()[1]
    # swap one item of each group: its 2 nearest now carry the other tag, and the other items lose one of 2
    swapped = tag_fit(x.astype(np.float32), [["a"], ["a"], ["b"], ["b"], ["b"], ["a"]], k=2)
    assert swapped.knn_precision == pytest.approx((0.5 + 0.5 + 0 + 0.5 + 0.5 + 0) / 6)


def test_minilm_pairs_and_tags(ws, tmp_path):
    """Real sentence vectors: paraphrases find each other, topics are told apart far above chance; the figures
    match a direct count on the same vectors; shuffled tags fall to chance; mmscope's own tags are ignored."""
    sentences = [s for group in TOPICS.values() for s in group]
    tags = [[topic] for topic, group in TOPICS.items() for _ in group]
    firsts, seconds = [a for a, _ in PARAPHRASES], [b for _, b in PARAPHRASES]
    vectors = minilm(sentences + firsts + seconds)
    n = len(sentences)
    rows = [{"id": f"s{i}", "text": s, "tags": ",".join(t + ["taxon:everything", "duplicate"])}
            for i, (s, t) in enumerate(zip(sentences, tags))]
    rows += [{"id": f"p{i}", "text": s} for i, s in enumerate(firsts)]
    rows += [{"id": f"q{i}", "text": s, "pair_of": f"p{i}"} for i, s in enumerate(seconds)]
    import_vectors(ws, *write_import(tmp_path / "in", vectors, rows), collection="minilm")
    report = evaluate(ws, "minilm", "custom")

    # a direct count: each paraphrase's rank among the ten first sentences, and back
    p, q = vectors[n : n + 10], vectors[n + 10 :]
    similarity = q @ p.T
    expected = [1 + int((np.delete(similarity[i], i) >= similarity[i, i]).sum()) for i in range(10)]
    there, back = report.retrieval
    assert (there.direction, there.queries, there.targets) == ("item-to-linked", 10, 10)
    assert there.mean_rank == pytest.approx(np.mean(expected)) and there.recall[1] == np.mean(np.array(expected) == 1)
    assert there.recall[1] >= 0.9  # distinct scenes: MiniLM finds nearly every paraphrase first
    assert back.direction == "linked-to-item" and back.recall[5] == 1.0

    t = report.tags
    assert (t.items, t.tags) == (24, {"animals": 6, "food": 6, "sport": 6, "weather": 6})
    assert t.knn_chance == pytest.approx(5 / 23) and t.probe_chance == 0.25 and t.k == 10
    assert t.knn_best == 0.5  # 5 others of its topic: at most 5 of 10 neighbours can share it
    assert t.knn_precision >= 0.8 * t.knn_best and t.probe_accuracy >= 0.8
    assert t.zero_shot_accuracy is None  # imported vectors: no text model of their own
    named = evaluate_items("minilm", "custom", [f"s{i}" for i in range(n)], vectors[:n],
                           [{"modality": "text", "tags": tag} for tag in tags], embed_texts=minilm)
    assert named.tags.zero_shot_accuracy >= 0.8  # "animals", "food", "sport", "weather" name their sentences
    assert "with no examples, the tag names alone" in named.tags.sentences()[-1]
    shuffled = tag_fit(vectors[:n], [tags[i] for i in np.random.default_rng(0).permutation(n)])
    assert shuffled.probe_accuracy <= 0.5 and shuffled.knn_precision <= shuffled.knn_chance + 0.1
