"""evaluate, tag suggestions and the adapter on real labelled vectors (those of bench/clustering.py, cached under
~/.cache/mmscope/bench-clustering), each through a real store in a temporary data dir:

- captions: the 1,500 flickr8k-300 captions (MiniLM); each photo's first caption is its "picture", its other four
  are paired with it (pair_of): how often do four people's words find the fifth's?
- photos: the 300 flickr8k photos (EfficientNet-Lite0), tagged dog / other from their captions.
- bbc-articles: 2,225 BBC News articles (MiniLM), tagged with their topic; for suggestions, 5 a topic tagged.
- digits: scikit-learn's digits (64 pixels), tagged with their digit.

Prints figures; asserts nothing. Usage: python bench/fit.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def store(ws, name: str, vectors: np.ndarray, metas: list[dict]) -> None:
    from mmcore.spaces import SpaceInfo

    target = ws.store.collection(name, SpaceInfo("bench", name, "1", vectors.shape[1]))
    ids = [f"i{i:05d}" for i in range(len(vectors))]
    for start in range(0, len(ids), 4000):
        target.add(ids[start : start + 4000], vectors[start : start + 4000], metas[start : start + 4000],
                   [None] * len(ids[start : start + 4000]))


def main() -> None:
    from clustering import load_set

    from mmcore.adapter import adapt
    from mmcore.config import Settings
    from mmcore.evaluate import evaluate
    from mmcore.suggest import suggestions
    from mmcore.workspace import Workspace

    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Settings(data_dir=Path(tmp) / "data"))
        vectors, photo = load_set("captions")
        first: dict[str, int] = {}
        metas = []
        for i, name in enumerate(photo):
            if name in first:
                metas.append({"modality": "text", "pair_of": f"i{first[name]:05d}"})
            else:
                first[name] = i
                metas.append({"modality": "image"})  # the photo's first caption stands in for the photo
        store(ws, "captions", vectors, metas)
        for name, tagged in (("photos", None), ("bbc-articles", None), ("digits", None)):
            vectors_, labels = load_set(name)
            store(ws, name, vectors_, [{"modality": "vector", "tags": [str(v)]} for v in labels])
        for name in ("captions", "photos", "bbc-articles", "digits"):
            started = time.perf_counter()
            print("\n".join(evaluate(ws, name, "bench").lines()), f"({time.perf_counter() - started:.1f} s)\n")
        print("adapter from the captions' pairs:", *adapt(ws, "captions", "bench", write=False).lines(), sep="\n  ")
        for name in ("photos", "bbc-articles", "digits"):
            print(f"adapter from the tags of {name}:", *adapt(ws, name, "bench", write=False).lines(), sep="\n  ")

        vectors_, labels = load_set("bbc-articles")
        rng = np.random.default_rng(0)
        tagged = {int(i) for topic in sorted(set(labels)) for i in rng.choice(np.flatnonzero(labels == topic), 5, replace=False)}
        store(ws, "bbc-few", vectors_, [{"modality": "vector", **({"tags": [str(v)]} if i in tagged else {})}
                                        for i, v in enumerate(labels)])
        started = time.perf_counter()
        report = suggestions(ws, "bbc-few", "bench")
        truth = {f"i{i:05d}": str(v) for i, v in enumerate(labels)}
        right = np.array([truth[s.id] == s.tag for s in report.items])
        sure = np.array([s.confidence >= 0.9 for s in report.items])
        print(f"\nsuggestions, bbc-articles with 5 articles a topic tagged ({time.perf_counter() - started:.1f} s): "
              f"{len(report.items):,} of {len(labels) - len(tagged):,} untagged get one, {right.mean():.1%} right; "
              f"{int(sure.sum()):,} at 0.9 or more, {right[sure].mean() if sure.any() else float('nan'):.1%} right; "
              f"probe {report.probe_accuracy:.0%}; by tag: {dict(Counter(s.tag for s in report.items))}")


if __name__ == "__main__":
    main()
