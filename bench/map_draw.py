"""Map page draw time: the real Streamlit app and headless Chromium, at 50,000 points (issue 6: at most 5 MB sent
and drawn within 3 s).

Builds (or reuses) a data dir holding bench/analysis.py's synthetic collection with its analysis already cached,
starts `streamlit run app.py` on it, and opens the Map page in headless Debian Chromium (Playwright), each time in
a new tab, i.e. a new Streamlit session, as a person opening the page would. For each load it measures, on the
browser's clock from the start of navigation:

- figure: when the largest websocket message (the chart's figure) arrived; the time before it is the server's
  (session start, the cached analysis, the items table, the figure) plus the transfer;
- drawn: when plotly's WebGL scatter holds every point, its canvas is in place and the chart is visible
  (checked every animation frame), then one more frame for the paint;
- the bytes received over the websocket (everything the app sent: the figure and the rest of the page) and
  over HTTP (Streamlit's own scripts and styles, which a browser caches after its first visit).

The first load after the server starts is reported apart (it imports the analysis modules, names the clusters
and builds the items table, which later sessions share); then the median of `--loads` (3) first visits (each in
a new browser context: nothing cached) and of as many returning visits (new tabs of one context: Streamlit's
scripts come from the browser's cache). Also prints the server's peak RSS and saves a screenshot of
the chart (default /tmp/map50k.png).

Usage: python bench/map_draw.py [--data-dir DIR] [--loads 3] [--screenshot PNG] [N]   (default N 50000; the
data dir defaults to /tmp/mmscope-map-bench-N and is reused when it already holds the collection and its map)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))

from browser import CHROMIUM_ARGS, chromium_path, streamlit_process  # noqa: E402

COLLECTION, SPACE = "bench", "vecs"
TIMEOUT_MS = 120_000

# Runs before any page script: every websocket message's arrival (performance.now()) and size.
INSTRUMENT = """
window.__mm = {ws: []};
const NativeSocket = window.WebSocket;
window.WebSocket = class extends NativeSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener('message', (e) => {
      const size = e.data.byteLength ?? e.data.size ?? e.data.length ?? 0;
      window.__mm.ws.push([performance.now(), size]);
    });
  }
};
"""

# True (as the time) once the map's chart holds `n` points, its WebGL canvas is in place and it is visible (Streamlit
# draws a chart hidden first, then again once it knows the chart's width); polled every frame.
DRAWN = """(n) => {
  const gd = document.querySelector('.st-key-map-chart .js-plotly-plot');
  if (!gd || !gd._fullData || !gd._fullLayout || getComputedStyle(gd).visibility === 'hidden') return false;
  // the points' trace (the legend's entries are traces of one empty point each)
  const points = gd._fullData.reduce((sum, t) => sum + (t.name === 'items' && t.x ? t.x.length : 0), 0);
  if (points !== n || !gd.querySelector('canvas.gl-canvas-focus, canvas.gl-canvas-context')) return false;
  return performance.now();
}"""

NEXT_FRAME = "() => new Promise(resolve => requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now()))))"

HTTP_BYTES = """() => performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation'))
  .reduce((sum, e) => sum + e.transferSize, 0)"""  # transferSize is 0 for what came from the browser's cache


def build(data_dir: Path, n: int) -> None:
    """The collection of `n` items and its cached analysis (in this process: run it in a child, so the parent
    never holds the embedded store the server opens)."""
    import resource

    from analysis import collection_of  # bench/analysis.py

    from mmcore.analysis.maps import analyze
    from mmcore.config import Settings
    from mmcore.errors import NotFound
    from mmcore.workspace import Workspace

    ws = Workspace(Settings(data_dir=data_dir, collection=COLLECTION))
    try:
        count = ws.store.open(COLLECTION, SPACE).count()
    except NotFound:
        count = 0
    if count != n:
        if count:
            raise SystemExit(f"{data_dir} holds {count:,} items, not {n:,}: name another --data-dir")
        started = time.perf_counter()
        collection_of(ws, n)
        print(f"wrote {n:,} items in {time.perf_counter() - started:.1f}s", flush=True)
    started = time.perf_counter()
    analysis = analyze(ws, COLLECTION, SPACE)  # the Map page's default parameters: the page finds it cached
    print(f"analysis {'from cache' if analysis.from_cache else 'computed'} in {time.perf_counter() - started:.1f}s: "
          f"{len(analysis.cluster_ids)} clusters, {analysis.method}; peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB", flush=True)


def server_env(data_dir: Path) -> dict[str, str]:
    """The app's settings for the bench: its data dir and collection, no others from this shell (they leave it)."""
    for key in [k for k in os.environ if k.startswith("MMCORE_")]:
        del os.environ[key]
    return {"MMCORE_DATA_DIR": str(data_dir), "MMCORE_COLLECTION": COLLECTION, "HF_HUB_OFFLINE": "1"}


def peak_rss_gb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in GB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def new_context(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script(INSTRUMENT)
    return context


def load(browser, url: str, n: int, screenshot: Path | None = None, context=None) -> dict:
    """Open the Map page in a new tab (a new Streamlit session) and time it until the chart is drawn: in a new
    browser context (nothing cached: a first visit), or in `context` (its HTTP and compiled-code caches)."""
    own = context is None
    context = new_context(browser) if own else context
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    frames: list[int] = []  # Playwright's own count of what came over the websocket, to check the page's
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(len(payload))))
    try:
        page.goto(f"{url}/map")
        ready = page.wait_for_function(DRAWN, arg=n, polling="raf", timeout=TIMEOUT_MS).json_value()
        painted = page.evaluate(NEXT_FRAME)
        messages = page.evaluate("() => window.__mm.ws")
        http = page.evaluate(HTTP_BYTES)
        if screenshot is not None:
            page.locator(".st-key-map-chart").screenshot(path=str(screenshot))
    finally:
        (context if own else page).close()
    before = [(t, size) for t, size in messages if t <= ready]
    figure_at, figure_bytes = max(before, key=lambda m: m[1])
    return {"figure": figure_at / 1000, "drawn": painted / 1000, "render": (painted - figure_at) / 1000,
            "figure_mb": figure_bytes / 1e6, "ws_mb": sum(s for _, s in before) / 1e6, "messages": len(before),
            "ws_mb_playwright": sum(frames) / 1e6, "http_mb": http / 1e6}


def show(label: str, r: dict) -> None:
    print(f"{label}: drawn {r['drawn']:.2f}s after navigation (figure arrived at {r['figure']:.2f}s, drawn "
          f"{r['render']:.2f}s later); websocket {r['ws_mb']:.2f} MB in {r['messages']} messages (figure "
          f"{r['figure_mb']:.2f} MB; Playwright counted {r['ws_mb_playwright']:.2f} MB), HTTP {r['http_mb']:.2f} MB",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=50_000)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--screenshot", type=Path, default=Path("/tmp/map50k.png"))
    parser.add_argument("--build", action="store_true", help=argparse.SUPPRESS)  # the child that builds
    args = parser.parse_args()
    data_dir = args.data_dir or Path(f"/tmp/mmscope-map-bench-{args.n}")
    if args.build:
        build(data_dir, args.n)
        return

    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; data dir {data_dir}", flush=True)
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--build", "--data-dir", str(data_dir), str(args.n)], check=True)
    print(f"data dir ready in {time.perf_counter() - started:.1f}s; load {os.getloadavg()[0]:.1f}", flush=True)

    from playwright.sync_api import sync_playwright

    log_path = data_dir.parent / f"{data_dir.name}-streamlit.log"
    with streamlit_process(server_env(data_dir), log_path) as (process, url):
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            try:
                show("first load (new server)", load(browser, url, args.n))
                runs = []
                for i in range(args.loads):
                    runs.append(load(browser, url, args.n, args.screenshot if i == args.loads - 1 else None))
                    show(f"first visit {i + 1}", runs[-1])
                returning = []
                context = new_context(browser)
                load(browser, url, args.n, context=context)  # fills the browser's caches
                for i in range(args.loads):
                    returning.append(load(browser, url, args.n, context=context))
                    show(f"returning visit {i + 1}", returning[-1])
                context.close()
            finally:
                browser.close()
        print(f"\nn={args.n:,}, median of {args.loads} loads each; server peak RSS {peak_rss_gb(process.pid):.2f} GB; "
              f"load {os.getloadavg()[0]:.1f}; screenshot {args.screenshot}")
        for label, group in (("first visit (new browser context)", runs), ("returning visit (browser caches warm)", returning)):
            median = {k: statistics.median(r[k] for r in group) for k in group[0]}
            print(f"{label}: drawn in {median['drawn']:.2f}s (figure at {median['figure']:.2f}s + {median['render']:.2f}s "
                  f"to draw); websocket {median['ws_mb']:.2f} MB (figure {median['figure_mb']:.2f} MB), HTTP "
                  f"{median['http_mb']:.2f} MB")


if __name__ == "__main__":
    main()
