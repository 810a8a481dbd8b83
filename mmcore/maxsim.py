"""Search in a multi-vector space (the doc space) by late interaction, and where on a page a query matched.

A text query's token matrix is compared with each page's (mmcore.multivector) by MaxSim: exactly over every page
while the collection has at most EXACT_PAGES; above that, every page is first scored by MaxSim against a few vectors
that sum it up (mmcore.late_interaction.Summaries, kept with the collection's rows in memory) and the CANDIDATES best
are re-ranked by exact MaxSim. Past PACKED_MAX_ROWS (rows not kept in memory) the candidates are the pages whose
pooled vectors are nearest to the query's pooled vector (a Chroma query, or the vector cache under filters:
mmcore.nearest). A hit's score is its MaxSim divided by the query's token count: the mean over the query's tokens of each
one's best cosine on the page, so it reads like a cosine (1: every query token found itself on the page).

A page stored pooled (MMCORE_DOC_POOL, mmcore.multivector) is scored by its pooled rows; its heat map paints each
patch with the row its group became.

Pages without a believed token matrix (mmcore.multivector; `check` lists them) are left out of these lists; the
other spaces that hold pages still find them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from cachetools import LRUCache

from .errors import MMError, NotFound
from .files import read_stored, stored_path
from .late_interaction import PackedPages, Summaries, Tile, maxsim, regrouped, similarity_map
from .multivector import Sidecar, folder_of, held_versions, load
from .nearest import nearest
from .spaces import normalize
from .store import ItemCollection, Match
from .vector_cache import vector_cache_dir

# Every page is scored exactly while that answers within the latency goal (150 ms with the query's encoding): exact
# MaxSim costs 0.09-0.24 ms a page of ~900 tokens on two CPU cores (an EPYC, a Xeon: bench/RESULTS.md, doc section),
# re-ranking CANDIDATES pages 60-70 ms.
EXACT_PAGES = 500
# Candidates re-ranked above that, chosen by their pages' summaries (16 vectors a page). Of exact MaxSim's top 10, 300
# candidates keep 94% on 10,000 synthetic pages (the 300 nearest pooled vectors: 62%) and 97.5% on 2,225 BBC articles
# as MiniLM token vectors (pooled: 94%), and the page a query was made from as often as exact MaxSim finds it; more
# summary vectors do better on the real text, 8 on the synthetic set's near-ties (bench/RESULTS.md, doc section).
CANDIDATES = 300
SUMMARY_VECTORS = 16
POOLED_CANDIDATES = 1000  # past PACKED_MAX_ROWS, candidates are the nearest pooled vectors: recall needs many more
MAX_PAGE_SIZE = 4096  # the largest render of a page for its heat map, whatever its metadata says
# A collection's rows are kept packed in memory (bfloat16) up to this many (3 GB at 128-d: about 13,000 A4 pages),
# for the exact path and for re-ranking candidates: scoring 1,000 candidates out of the packed block is 4x faster
# than gathering and converting their rows from the memory-mapped segments on every query (bench/RESULTS.md). The
# first search packs them (about 6 s per 10,000 pages from a warm page cache, 17 s cold); after a change, only pages
# added or rewritten are read and summed up, the others copied from the last block (bench/doc.py, search section).
PACKED_MAX_ROWS = 12_000_000
KEPT = 2  # collections whose believed matrices (and packed rows) stay in memory
QUERIES_KEPT = 64  # query token matrices kept: a heat map per hit re-uses its search's

_lock = threading.Lock()
_sidecars: LRUCache[tuple, "_Loaded"] = LRUCache(KEPT)
_queries: LRUCache[tuple, np.ndarray] = LRUCache(QUERIES_KEPT)
_loading: dict[tuple, threading.Lock] = {}  # (sidecar root, collection uid) -> held while it is loaded
_warming: set[tuple] = set()  # (sidecar root, collection uid) being made ready by `warm`


def query_tokens(model, text: str) -> np.ndarray:
    """The token matrix (float32, n x dim) of a text query in a multi-vector space's model (its query path)."""
    key = (model.info, text)
    with _lock:
        if (found := _queries.get(key)) is not None:
            return found
    tokens = np.asarray(model.embed_query_tokens([text])[0], dtype=np.float32)
    with _lock:
        _queries[key] = tokens
    return tokens


def pooled(tokens: np.ndarray) -> np.ndarray:
    """The one vector of a token matrix, as the space stores and queries it: the mean of its rows, renormalised."""
    return normalize(np.asarray(tokens, dtype=np.float32).mean(axis=0, keepdims=True))[0]


@dataclass
class _Loaded:
    sidecar: Sidecar
    ids: list[str]  # the pages with a believed matrix: first those `previous` packed as they are, in its order
    position: dict[str, int]  # where each is in `ids`
    rows: int  # their token vectors, all together
    versions: dict[str, str]  # the write that stored each page's matrix: a page whose version is unchanged is unchanged
    previous: "_Loaded | None" = None  # the collection's last load, while its packed rows may still be reused
    kept: int = 0  # how many of `ids` are pages of `previous`, unchanged
    packed: PackedPages | None = None  # all of them, made on the first search (if at most PACKED_MAX_ROWS)
    summaries: Summaries | None = None  # of the packed pages, made on the first search that needs candidates
    packing: threading.RLock = field(default_factory=threading.RLock, repr=False)  # a second search waits for them

    def packed_rows(self) -> PackedPages | None:
        """Every believed page's rows in one block (page i of `ids` is page i), or None past PACKED_MAX_ROWS.

        After a change, the pages the last load had packed (and summed up) are copied from its block rather than
        read and summed up again: only the pages added or rewritten since are."""
        with self.packing:
            if self.packed is None and self.rows <= PACKED_MAX_ROWS:
                previous, fresh_ids = self.previous, self.ids[self.kept:]
                if previous is None:
                    self.packed = PackedPages([self.sidecar.matrix(id_) for id_ in self.ids])
                else:
                    positions = np.array([previous.position[id_] for id_ in self.ids[:self.kept]], dtype=np.int64)
                    fresh = PackedPages([self.sidecar.matrix(id_) for id_ in fresh_ids]) if fresh_ids else None
                    self.packed = PackedPages.joined(previous.packed, positions, fresh)
                    if previous.summaries is not None:
                        self.summaries = Summaries.joined(previous.summaries, positions,
                                                          None if fresh is None else Summaries(fresh, SUMMARY_VECTORS))
                self.previous = None
            return self.packed

    def page_summaries(self) -> Summaries | None:
        """The packed pages' summary vectors (page i of `ids` is page i), or None past PACKED_MAX_ROWS."""
        with self.packing:
            packed = self.packed_rows()  # after a change, it may copy the last load's summaries too
            if self.summaries is None and packed is not None:
                self.summaries = Summaries(packed, SUMMARY_VECTORS)
            return self.summaries

    def ready(self) -> None:
        """Pack what this collection's next text search will score from: its rows, and past EXACT_PAGES their summaries."""
        if len(self.ids) > EXACT_PAGES:
            self.page_summaries()
        else:
            self.packed_rows()


def warm(ws, target: ItemCollection) -> threading.Thread | None:
    """Make `target`'s rows ready for MaxSim in a background thread (the first search's packing: 12 s per 10,000
    pages), for a page that will likely be followed by a text search; a search that comes first waits for it rather
    than packing again. Returns the thread, or None when one is already at work on the collection."""
    key = (str(ws.store.sidecar_root), target.uid)
    with _lock:
        if key in _warming:
            return None
        _warming.add(key)

    def run() -> None:
        try:
            _load(ws, target).ready()
        except Exception:  # the search that follows meets the same error and says it
            pass
        finally:
            with _lock:
                _warming.discard(key)

    thread = threading.Thread(target=run, name="maxsim-warm", daemon=True)
    thread.start()
    return thread


def believed(ws, target: ItemCollection) -> Sidecar:
    """The collection's believed token matrices now (kept in memory per collection version)."""
    return _load(ws, target).sidecar


def _load(ws, target: ItemCollection) -> _Loaded:
    root = ws.store.sidecar_root
    if root is None or target.space is None:
        raise MMError(f"Collection {target.name!r} keeps no token matrices here.")
    folder = folder_of(root, target)
    listing = tuple(sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))) if folder.is_dir() else ()
    key = (str(root), target.uid, target.version, listing)
    with _lock:
        if (loaded := _sidecars.get(key)) is not None:
            return loaded
        loading = _loading.setdefault(key[:2], threading.Lock())
    with loading:  # one load of a collection at a time: a search and the Search page's `warm` share it
        with _lock:
            if (loaded := _sidecars.get(key)) is not None:
                return loaded
        held = held_versions(target)
        sidecar = load(folder, target.space.dim, held)
        versions = {id_: held[id_] for id_ in sidecar.where}
        with _lock:  # the collection's last load, if it packed its rows: no longer a current state, only rows to reuse
            stale = [k for k in _sidecars if k[:2] == key[:2]]
            previous = next((_sidecars[k] for k in reversed(stale) if _sidecars[k].packed is not None), None)
        kept = [id_ for id_ in previous.ids if versions.get(id_) == previous.versions.get(id_)] if previous else []
        ids = kept + sorted(set(versions) - set(kept))
        loaded = _Loaded(sidecar, ids, {id_: i for i, id_ in enumerate(ids)}, sum(len(sidecar.matrix(id_)) for id_ in ids),
                         versions, previous if kept else None, len(kept))
        with _lock:
            for k in stale:
                _sidecars.pop(k, None)
            _sidecars[key] = loaded
        return loaded


def rank(ws, target: ItemCollection, tokens: np.ndarray, k: int, where: dict | None = None, accept=None,
         exclude: Sequence[str] = ()) -> list[Match]:
    """The `k` pages of `target` (a multi-vector space's collection) that score highest by MaxSim against the query
    token matrix `tokens`, among those meeting `where` (which `accept` decides for one item's metadata), less
    `exclude`. Scores are MaxSim / the query's token count."""
    loaded = _load(ws, target)
    sidecar, query = loaded.sidecar, np.asarray(tokens, dtype=np.float32)
    summaries = loaded.page_summaries() if len(loaded.ids) > EXACT_PAGES else None
    if len(loaded.ids) <= EXACT_PAGES or summaries is not None:
        allowed = set(target.ids(where)) if where else None
        ids = [id_ for id_ in loaded.ids if id_ not in exclude and (allowed is None or id_ in allowed)]
        if len(ids) == len(loaded.ids):
            ids = loaded.ids  # every page, in the packed block's order: scored as the block is, nothing gathered
        if summaries is not None and len(ids) > CANDIDATES:
            ids = _best_summaries(loaded, summaries, query, ids)
    else:
        near = nearest(target, pooled(query), POOLED_CANDIDATES, where, accept, exclude,
                       vector_cache_dir(ws.settings.data_dir))
        ids = [m.id for m in near if m.id in sidecar.where]
    packed = loaded.packed_rows()
    if not ids:
        scores = np.zeros(0, np.float32)
    elif packed is not None and ids is loaded.ids:
        scores = maxsim(query, packed)
    elif packed is not None:
        scores = maxsim(query, packed, subset=[loaded.position[id_] for id_ in ids])
    else:
        scores = maxsim(query, [sidecar.matrix(id_) for id_ in ids])
    top = sorted(range(len(ids)), key=lambda i: (-scores[i], ids[i]))[:k]  # ties by id: the same order either way
    chosen = [ids[i] for i in top]
    items = target.get(chosen, skip_missing=True) if chosen else []
    by_id = {item["id"]: item for item in items}
    return [Match(ids[i], float(scores[i]) / len(query), by_id[ids[i]]["metadata"], by_id[ids[i]]["document"])
            for i in top if ids[i] in by_id]


def _best_summaries(loaded: _Loaded, summaries: Summaries, query: np.ndarray, ids: list[str]) -> list[str]:
    """The CANDIDATES of `ids` whose summaries score highest against the query, in the packed block's order."""
    scores = summaries.scores(query)
    positions = np.fromiter((loaded.position[id_] for id_ in ids), dtype=np.int64, count=len(ids))
    best = positions[np.argpartition(-scores[positions], CANDIDATES - 1)[:CANDIDATES]]
    return [loaded.ids[i] for i in np.sort(best)]


def item_tokens(ws, collection: str, item_id: str, space: str) -> np.ndarray | None:
    """A page's believed token matrix (float16, n x dim) in a multi-vector space, or None when it has none."""
    return believed(ws, ws.store.open(collection, space)).matrix(item_id)


def page_image(ws, collection: str, item_id: str, space: str):
    """The page an item of `space` is, rendered from its stored PDF as at ingest (what its tokens were made from).

    Raises:
        NotFound: no such item, or its original is not in the media folder. MediaError: the PDF can't be rendered.
    """
    from .media.pdf import RENDER_SIZE, render_page

    meta = ws.store.open(collection, space).get([item_id])[0]["metadata"]
    data = read_stored(ws.files.root, stored_path(ws.files.root, meta.get("original")), ws.settings.max_file_bytes)
    if data is None or "page" not in meta:
        raise NotFound(f"Item {item_id!r} has no stored page to show.")
    # At the size it was rendered at for its ingest (recorded with it; before, always RENDER_SIZE).
    size = min(max(int(meta.get("width") or 0), int(meta.get("height") or 0)) or RENDER_SIZE, MAX_PAGE_SIZE)
    return render_page(data, int(meta["page"]), str(meta.get("source", item_id)), size)


@dataclass(frozen=True)
class MatchMap:
    """Where on a page a query matched: `values[i, j]` is the best cosine any query token has with the patch at
    row i, column j of the page (at the finest tile's resolution; rows top to bottom), `score` the page's
    MaxSim / query tokens, `grid` the page's tiles (mmcore.late_interaction.Tile), `image` the page."""

    values: np.ndarray
    score: float
    grid: tuple[Tile, ...]
    image: object


def match_map(ws, collection: str, text: str, item_id: str, space: str) -> MatchMap:
    """The per-patch similarity of a text query with a page of a multi-vector space: what a heat map over the page
    draws (`values` stretched over `image`).

    Raises:
        NotFound: the item has no believed token matrix or no stored page. MediaError: the page can't be rendered.
    """
    model = ws.space(space)
    sidecar = believed(ws, ws.store.open(collection, space))
    page, groups = sidecar.matrix(item_id), sidecar.groups(item_id)
    if page is None:
        raise NotFound(f"Item {item_id!r} has no token matrix in space {space!r}: run `check`, and ingest its file again.")
    image = page_image(ws, collection, item_id, space)
    grid = model.patch_grid(image)
    if max((int(t.rows.max()) for t in grid if t.rows.size), default=-1) >= (len(page) if groups is None else len(groups)):
        raise NotFound(f"Item {item_id!r}'s token matrix was made from the page at another size than it renders now: "
                       "ingest its file again to see where a query matched.")
    if groups is not None:  # stored pooled: each patch is painted with the row its group became
        grid = regrouped(grid, groups)
    query = query_tokens(model, text)
    score = float(maxsim(query, [page])[0]) / len(query)
    return MatchMap(similarity_map(query, page, grid), score, grid, image)


def heat_map(match: MatchMap, opacity: float = 0.55, size: int = 1024):
    """The page with the query's matches laid over it: each patch tinted from transparent (its best cosine at the
    page's lowest) to opaque red (at its highest), so what made the page rank shows at a glance. At most `size`
    pixels on its long side: a page rendered for the doc space (2,048 px) is more than a result card shows."""
    from PIL import Image

    page = match.image.convert("RGB")
    page.thumbnail((size, size))
    values = np.asarray(match.values, dtype=np.float32)
    low, high = float(values.min()), float(values.max())
    weight = (values - low) / (high - low) if high > low else np.zeros_like(values)
    alpha = Image.fromarray(np.uint8(255 * opacity * weight)).resize(page.size, Image.Resampling.BILINEAR)
    red = Image.new("RGB", page.size, (220, 30, 30))
    return Image.composite(red, page, alpha)
