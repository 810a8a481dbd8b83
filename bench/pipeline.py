"""From a .npy of vectors to an explored map, as a user gets there: `import-vectors`, `analyze` cold (map,
clusters, outliers, names), `analyze --json` again (cached) twice, then `info`, `search --like` and `export`. Each is a real
`python -m mmcore` process in a fresh data dir, timed from outside, with its peak RSS; the cold `analyze` also
with its own stage times (read from the result it cached) and the moments its stages were ready (its stderr
lines, timestamped as they come: "ready: map" is the first picture a page could draw).

--old PATH runs the same for another checkout of mmscope (its `mmcore` package, e.g. `git worktree add /tmp/old
main`), alternating with this one round by round on the same vectors, so a machine's changing load hits both
alike; medians are printed at the end with the load average seen. Synthetic vectors as bench/analysis.py's
(512-d, 40 clusters of varied spread, 1% scattered), written once per size under ~/.cache/mmscope/bench-vectors
(bench/peers.py times Embedding Atlas and FiftyOne on the same files).

Prints figures; asserts nothing.
Usage: python bench/pipeline.py [--old PATH] [--rounds R] [--keep DIR] N [N ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VECTORS = Path.home() / ".cache" / "mmscope" / "bench-vectors"
DIM = 512


def vectors_file(n: int) -> Path:
    """The synthetic vectors of size `n` as a .npy (made once): the same for every tool that reads them."""
    path = VECTORS / f"synthetic-{n}x{DIM}.npy"
    if not path.exists():
        rng = np.random.default_rng(0)
        centers = rng.standard_normal((40, DIM))
        centers /= np.linalg.norm(centers, axis=1, keepdims=True)
        labels = rng.integers(0, 40, n)
        spread = rng.uniform(0.02, 0.06, 40)[labels][:, None]
        vectors = centers[labels] + spread * rng.standard_normal((n, DIM))
        scattered = rng.random(n) < 0.01
        vectors[scattered] = rng.standard_normal((int(scattered.sum()), DIM))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        VECTORS.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors.astype(np.float32))
        tmp.rename(path)
    return path


def run(tree: Path, data_dir: Path, *args: str, numba: Path) -> dict:
    """One `python -m mmcore ARGS` of checkout `tree`: seconds, peak RSS, and its stderr lines with their times."""
    # As a user runs it: bytecode cached (a sandbox may set PYTHONDONTWRITEBYTECODE; compiling costs every run 0.1 s)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMCORE_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(MMCORE_DATA_DIR=str(data_dir), PYTHONPATH=str(tree), NUMBA_CACHE_DIR=str(numba), HF_HUB_OFFLINE="1",
               PYTHONUNBUFFERED="1")
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "mmcore", *args], cwd=tree, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.perf_counter() - started, line.rstrip())
                                                          for line in process.stderr))
    reader.start()
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    reader.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(args)} failed ({process.returncode}): {lines[-5:]}")
    return {"seconds": seconds, "rss_gb": usage.ru_maxrss / 1e6, "lines": lines, "out": out}


def stage_seconds(tree: Path, data_dir: Path) -> dict:
    """The stage times the cold analysis recorded in its cached result (whatever this checkout's format)."""
    code = ("import json; from mmcore.workspace import Workspace; from mmcore.analysis.maps import analyze; "
            "a = analyze(Workspace(), 'bench', 'vecs', may_fit=False) if 'may_fit' in analyze.__code__.co_varnames "
            "else analyze(Workspace(), 'bench', 'vecs'); print(json.dumps(a.seconds))")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MMCORE_")}, "MMCORE_DATA_DIR": str(data_dir),
           "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {}


def index_built(pending: Path, started: float, give_up: float = 600) -> float | None:
    """Seconds from `started` until no staged import is left outside the search index (the background builder
    of import-vectors is done, mmcore.pending); None when nothing was staged (a checkout that doesn't stage)."""
    seen = False
    while time.perf_counter() - started < give_up:
        time.sleep(0.1)
        staged = [p for p in pending.iterdir() if not p.name.startswith(".")] if pending.is_dir() else []
        seen = seen or bool(staged)
        if seen and not staged:
            return time.perf_counter() - started
    return None


def when(lines: list[tuple[float, str]], text: str) -> float | None:
    return next((t for t, line in lines if text in line), None)


def one_round(tree: Path, n: int, keep: Path | None) -> dict:
    vectors = vectors_file(n)
    with tempfile.TemporaryDirectory(dir=keep) as tmp:
        data = Path(tmp) / "data"
        numba = Path.home() / ".cache" / "mmscope" / "numba"  # compiled kernels, as a user's second run has them
        load = os.getloadavg()[0]
        started, indexed = time.perf_counter(), []
        watch = threading.Thread(target=lambda: indexed.append(index_built(data / "pending", started)), daemon=True)
        watch.start()
        imported = run(tree, data, "import-vectors", str(vectors), "--collection", "bench", "--space", "vecs", numba=numba)
        cold = run(tree, data, "analyze", "--collection", "bench", "--space", "vecs", "--json", numba=numba)
        watch.join()  # the cached runs below are timed once the search index is built, as a user meets them later
        stages = stage_seconds(tree, data)
        cached = run(tree, data, "analyze", "--collection", "bench", "--space", "vecs", "--json", numba=numba)
        again = run(tree, data, "analyze", "--collection", "bench", "--space", "vecs", "--json", numba=numba)
        info = run(tree, data, "info", numba=numba)
        like = run(tree, data, "search", "--like", json.loads(cached["out"])[0]["id"], "--collection", "bench", numba=numba)
        exported = run(tree, data, "export", "--collection", "bench", "--space", "vecs", "--out", str(Path(tmp) / "bench.csv"),
                       numba=numba)
        clusters = len({r["cluster"] for r in json.loads(cached["out"]) if r["cluster"] >= 0})
    naming = when(cold["lines"], "Naming the clusters")
    return {
        "tree": tree.name, "n": n, "load": (load + os.getloadavg()[0]) / 2, "import": imported["seconds"],
        "import_rss": imported["rss_gb"], "analyze": cold["seconds"], "analyze_rss": cold["rss_gb"],
        "first_picture": when(cold["lines"], "ready: map"), "names": cold["seconds"] - naming if naming else None,
        "stages": stages, "indexed": indexed[0] if indexed else None, "cached": cached["seconds"],
        "again": again["seconds"], "info": info["seconds"], "like": like["seconds"], "export": exported["seconds"],
        "clusters": clusters,
    }


def show(r: dict) -> str:
    first = f"first picture at {r['first_picture']:.1f}s, " if r["first_picture"] else ""
    names = f"names {r['names']:.1f}s, " if r["names"] is not None else ""
    indexed = f"search index complete at {r['indexed']:.1f}s; " if r.get("indexed") else ""
    stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items())
    return (f"{r['tree']:>12} n={r['n']:>7,}: import {r['import']:6.1f}s + analyze {r['analyze']:6.1f}s = "
            f"{r['import'] + r['analyze']:6.1f}s ({first}{names}stages: {stages}); {indexed}cached analyze --json {r['cached']:.2f}s, "
            f"again {r['again']:.2f}s, "
            f"info {r['info']:.2f}s, search --like {r['like']:.2f}s, export (CSV with map and clusters) {r['export']:.2f}s; peak RSS import {r['import_rss']:.2f} GB, "
            f"analyze {r['analyze_rss']:.2f} GB; {r['clusters']} clusters; load {r['load']:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="+", type=int)
    parser.add_argument("--old", type=Path, help="another checkout to time in alternating rounds")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="where the temporary data dirs go (default: the system's temp dir)")
    args = parser.parse_args()
    trees = [ROOT] + ([args.old.resolve()] if args.old else [])
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; trees: {', '.join(str(t) for t in trees)}", flush=True)
    for n in args.sizes:
        results: dict[str, list[dict]] = {t.name: [] for t in trees}
        for _ in range(args.rounds):
            for tree in (trees if _ % 2 == 0 else trees[::-1]):
                r = one_round(tree, n, args.keep)
                results[tree.name].append(r)
                print(show(r), flush=True)
        if args.rounds > 1:
            for name, rs in results.items():
                med = lambda key: statistics.median(r[key] for r in rs)  # noqa: E731
                print(f"median of {len(rs)} ({name}, n={n:,}): import {med('import'):.1f}s, analyze {med('analyze'):.1f}s, "
                      f"total {statistics.median(r['import'] + r['analyze'] for r in rs):.1f}s, cached {med('cached'):.2f}s, "
                      f"info {med('info'):.2f}s, search --like {med('like'):.2f}s, load {med('load'):.1f}", flush=True)


if __name__ == "__main__":
    main()
