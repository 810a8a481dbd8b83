"""Token matrices beside Chroma (mmcore.multivector) and MaxSim search (mmcore.maxsim), end to end with the tiny
ColModernVBert and CLIP checkpoints: real PDFs ingested into a real Chroma store, a real ingest killed (SIGKILL)
between a segment's write and its upsert, deletes and compaction, `check`, backup and restore, and the exact and
candidate rankings."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import mmcore.maxsim as ms
from checkpoints import tiny_colmodernvbert
from media_pdf import make_pdf
from mmcore import multivector as mv
from mmcore.backup import backup, restore
from mmcore.config import Settings
from mmcore.health import check_store
from mmcore.ingest import SourceFile, ingest
from mmcore.late_interaction import maxsim
from mmcore.media.pdf import render_page
from mmcore.search import Filters, Query, prepare_text_search, search, search_each_modality
from mmcore.spaces import normalize
from mmcore.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
COLLECTION = "docs"
REPORTS = {"tides.pdf": ["Quarterly tide tables", "Harbour fees and berths", "Appendix: mackerel prices"],
           "slides.pdf": ["Roadmap 2027", "Budget by quarter"]}
# Each page has a block of its own colour: at the tiny model's 128 px a page's text is a few grey patches.
COLOURS = {"tides.pdf": [(200, 30, 30), (150, 60, 200), (30, 30, 200)], "slides.pdf": [(30, 160, 30), (240, 200, 10)]}


@pytest.fixture(scope="module")
def doc_dir(tmp_path_factory):
    return tiny_colmodernvbert(tmp_path_factory.mktemp("models") / "cmvb", embedding_dim=16, seed=0)


@pytest.fixture(scope="module")
def pdfs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pdfs")
    for name, pages in REPORTS.items():
        (folder / name).write_bytes(make_pdf(pages, colours=COLOURS[name]))
    return {name: folder / name for name in REPORTS}


def settings_for(data_dir: Path, clip_dir, doc_dir) -> Settings:
    return Settings(data_dir=data_dir, models={"clip": str(clip_dir), "doc": str(doc_dir)}, batch_size=4)


@pytest.fixture
def docs(tmp_path, clip_dir, doc_dir, pdfs) -> Workspace:
    """Both PDFs ingested (5 pages) into a fresh data dir."""
    ws = Workspace(settings_for(tmp_path / "data", clip_dir, doc_dir))
    report = ingest(ws, [SourceFile(name, path=path) for name, path in pdfs.items()], collection=COLLECTION)
    assert [r.status for r in report.results] == ["added", "added"]
    return ws


def sidecar(ws: Workspace) -> mv.Sidecar:
    target = ws.store.open(COLLECTION, "doc")
    return mv.load(mv.folder_of(ws.store.sidecar_root, target), target.space.dim, mv.held_versions(target))


def page_ids(ws: Workspace) -> list[str]:
    return sorted(ws.store.open(COLLECTION, "doc").ids())


def test_a_segment_reads_back_what_was_written_and_a_foreign_one_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    matrices = [normalize(rng.standard_normal((n, 8))).astype(np.float16) for n in (5, 1, 12)]
    path = mv.write_segment(tmp_path / "c.doc", "abc.journal", ["a", "b", "c"], ["v1", "v1", "v2"], matrices)
    assert path.name.startswith("abc-") and mv.segment_paths(tmp_path / "c.doc") == [path]
    segment = mv.read_segment(path, 8)
    assert segment.ids.tolist() == ["a", "b", "c"] and segment.versions.tolist() == ["v1", "v1", "v2"]
    for row, matrix in enumerate(matrices):
        np.testing.assert_array_equal(segment.matrix(row), matrix)
    loaded = mv.load(tmp_path / "c.doc", 8, {"a": "v1", "c": "v9"})  # c was written again since; b is gone
    assert list(loaded.where) == ["a"] and loaded.matrix("c") is None and loaded.rows == 3
    with pytest.raises(Exception, match="float16"):
        mv.read_segment(path, 16)  # another dimension
    np.save(path / "tokens.npy", np.zeros((18, 8), np.float32))  # more bytes than the index says it holds
    with pytest.raises(Exception, match="over the 288 bytes"):
        mv.read_segment(path, 8)
    np.save(path / "tokens.npy", np.zeros((10, 8), np.float16))  # fewer rows than the index says
    with pytest.raises(Exception, match=r"not float16 \(18, 8\)"):
        mv.read_segment(path, 8)
    (path / "index.npz").write_bytes(b"PK\x03\x04 not a zip")
    assert mv.load(tmp_path / "c.doc", 8, {"a": "v1"}).unreadable.keys() == {path}


def test_ingest_stores_each_page_s_matrix_from_the_pass_that_made_its_pooled_vector(docs):
    doc = docs.store.open(COLLECTION, "doc")
    found = sidecar(docs)
    assert sorted(found.where) == page_ids(docs) and len(found) == 5 and not found.unreadable
    space = docs.space("doc")
    items = {item["id"]: item for item in doc.get(page_ids(docs), with_vectors=True)}
    for id_, item in items.items():
        matrix = found.matrix(id_)
        assert matrix.dtype == np.float16 and matrix.shape[1] == 16
        # Chroma's vector is the renormalised mean of the very matrix stored beside it.
        np.testing.assert_allclose(item["vector"], normalize(matrix.astype(np.float32).mean(0, keepdims=True))[0], atol=2e-3)
        # ... and the matrix is the page's, as the model sees the stored page again.
        meta = item["metadata"]
        image = render_page((docs.files.root / meta["original"]).read_bytes(), meta["page"], meta["source"])
        again = space.embed_page_tokens([image])[0]
        assert again.shape == matrix.shape
        np.testing.assert_allclose(again.astype(np.float32), matrix.astype(np.float32), atol=2e-2)
    # One version per write: a page's matrix is believed under the token its upsert set.
    writes = {id_: w for page in doc.pages(["writes"]) for id_, w in zip(page.ids, page.writes)}
    assert all(w.endswith(":page") for w in writes.values()) and len({w for w in writes.values()}) == 2  # a group per file


KILLED = """
import os, signal, sys
from mmcore import cli, ingest

real = ingest.write_segment

def write_then_die(*args, **kwargs):
    path = real(*args, **kwargs)
    print(f"segment {path}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # the segment is on disk, the group's upserts not begun

ingest.write_segment = write_then_die
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_kill_between_the_segment_and_the_upsert_leaves_nothing_believed_and_the_next_ingest_completes(
        tmp_path, clip_dir, doc_dir, pdfs):
    settings = settings_for(tmp_path / "data", clip_dir, doc_dir)
    wrapper = tmp_path / "killed.py"
    wrapper.write_text(KILLED)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMCORE_")}
    env.update(MMCORE_DATA_DIR=str(settings.data_dir), MMCORE_CLIP_MODEL=str(clip_dir), MMCORE_DOC_MODEL=str(doc_dir),
               MMCORE_BATCH_SIZE="4", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(wrapper), "ingest", str(pdfs["tides.pdf"]), "--collection", COLLECTION],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert "segment " in done.stderr
    orphan = Path(done.stderr.split("segment ", 1)[1].split("\n", 1)[0])
    assert orphan.is_dir() and len(mv.read_segment(orphan, 16).ids) == 3, "the segment was written whole"

    ws = Workspace(settings)  # opening the store rolls the cut-short group back
    doc = ws.store.open(COLLECTION, "doc")  # created by the killed writer before its segment
    assert doc.count() == 0 and ws.store.open(COLLECTION, "clip").count() == 0
    assert len(sidecar(ws)) == 0, "no matrix of the orphan segment is believed"
    assert search_each_modality(ws, Query(text="tide tables"), COLLECTION, 5) == {}

    report = ingest(ws, [SourceFile("tides.pdf", path=pdfs["tides.pdf"])], collection=COLLECTION)
    assert [r.status for r in report.results] == ["added"]
    found = sidecar(ws)
    assert sorted(found.where) == page_ids(ws) and len(found) == 3
    hits = search(ws, Query(text="tide tables"), COLLECTION, 5, space="doc")
    assert sorted(h.id for h in hits) == page_ids(ws)
    # Half the rows stored were the orphan's, past the share: the ingest compacted them away at its end.
    assert not orphan.exists() and [p.name.split("-")[0] for p in mv.segment_paths(orphan.parent)] == ["compacted"]
    assert mv.compact(doc, ws.store.sidecar_root) == 0 and sorted(sidecar(ws).where) == page_ids(ws)
    assert check_store(settings).ok


def test_deletes_drop_matrices_and_compact_past_a_share_and_deleting_the_space_removes_the_sidecar(docs):
    doc = docs.store.open(COLLECTION, "doc")
    before = {id_: np.array(sidecar(docs).matrix(id_)) for id_ in page_ids(docs)}
    folder = mv.folder_of(docs.store.sidecar_root, doc)
    segments = mv.segment_paths(folder)
    assert len(segments) == 2  # one per file's group

    first = page_ids(docs)[0]
    doc.delete([first])  # 1 row of 5 not believed: under the share, the segments stay as they are
    assert mv.segment_paths(folder) == segments and first not in sidecar(docs).where
    doc.update_tags(page_ids(docs)[:2], add=["keep"])  # a tag is no write of the item: its matrix stays believed
    assert sorted(sidecar(docs).where) == page_ids(docs)

    doc.delete(page_ids(docs)[:2])  # 3 of 5 rows not believed: compacted into one segment of the 2 left
    left = mv.segment_paths(folder)
    assert len(left) == 1 and left[0].name.startswith("compacted-") and left[0] not in segments
    found = sidecar(docs)
    assert sorted(found.where) == page_ids(docs) and found.rows == 2
    for id_ in page_ids(docs):
        np.testing.assert_array_equal(found.matrix(id_), before[id_])

    docs.store.delete(COLLECTION, "doc")
    assert not folder.exists()


def test_check_finds_pages_without_a_believed_matrix_and_unreadable_segments(docs):
    settings = docs.settings
    assert check_store(settings).ok
    docs.close()
    folder = mv.folder_of(docs.store.sidecar_root, docs.store.open(COLLECTION, "doc"))
    tides, slides = mv.segment_paths(folder)
    shutil.rmtree(tides)
    (slides / "index.npz").write_bytes(b"not an archive")
    report = check_store(settings)
    kinds = [(p.where, p.kind) for p in report.problems]
    assert kinds.count((f"{COLLECTION}/doc", "missing token matrix")) == 5
    assert kinds.count((f"{COLLECTION}/doc", "token matrices")) == 1
    assert all(p.where == f"{COLLECTION}/doc" for p in report.problems)


def test_backup_and_restore_keep_the_matrices_and_the_maxsim_ranking(docs, tmp_path, clip_dir, doc_dir):
    query = Query(text="harbour fees")
    hits = [(h.id, h.score) for h in search(docs, query, COLLECTION, 5, space="doc")]
    assert len(hits) == 5
    docs.close()
    archive = backup(docs.settings, tmp_path / "b.tar.gz").path
    restored_dir = tmp_path / "restored"
    restore(archive, restored_dir)
    again = Workspace(settings_for(restored_dir, clip_dir, doc_dir))
    assert len(sidecar(again)) == 5
    assert [(h.id, h.score) for h in search(again, query, COLLECTION, 5, space="doc")] == hits
    assert check_store(again.settings).ok


def test_a_text_search_ranks_the_doc_space_by_maxsim_over_every_page(docs):
    space = docs.space("doc")
    found = sidecar(docs)
    ids = page_ids(docs)
    query = ms.query_tokens(space, "quarterly tide tables")
    expected = maxsim(query, [found.matrix(i) for i in ids]) / len(query)
    hits = search(docs, Query(text="quarterly tide tables"), COLLECTION, 5, space="doc")
    assert [h.id for h in hits] == [ids[i] for i in sorted(range(len(ids)), key=lambda i: (-expected[i], ids[i]))]
    np.testing.assert_allclose([h.score for h in hits], np.sort(expected)[::-1], atol=1e-5)
    assert all(h.modality == "page" and h.space == "doc" and h.thumbnail for h in hits)
    # "All media" and per kind: the doc space's MaxSim list is fused with clip's by rank, as any space's.
    pages = search_each_modality(docs, Query(text="quarterly tide tables"), COLLECTION, 5)["page"]
    assert {h.id for h in pages} == set(ids) and any("doc" in h.found_in for h in pages)
    # A filter applies: only the slides' pages.
    slides = search(docs, Query(text="budget"), COLLECTION, 5, Filters(sources=("slides.pdf",)), space="doc")
    assert {h.source for h in slides} == {"slides.pdf"} and len(slides) == 2


def test_a_query_built_from_a_page_finds_that_page_first_exactly_and_through_candidates(docs, monkeypatch):
    target = docs.store.open(COLLECTION, "doc")
    found = sidecar(docs)
    ids = page_ids(docs)
    for id_ in ids:
        # The page's own token vectors least like any other page's: what single it out (its colour block, its text).
        own = found.matrix(id_).astype(np.float32)
        others = np.concatenate([found.matrix(o) for o in ids if o != id_]).astype(np.float32)
        query = own[np.argsort((own @ others.T).max(axis=1))[:8]]
        exact = ms.rank(docs, target, query, 5)
        assert exact[0].id == id_ and exact[0].score == pytest.approx(1.0, abs=1e-2)
        assert [m.metadata["page"] for m in exact[:1]] == [int(id_.rsplit("p", 1)[1])]
        monkeypatch.setattr(ms, "EXACT_PAGES", 0)  # candidates by the pages' summaries, re-ranked by MaxSim
        through = ms.rank(docs, target, query, 5)
        assert [(m.id, round(m.score, 5)) for m in through] == [(m.id, round(m.score, 5)) for m in exact]
        monkeypatch.setattr(ms, "CANDIDATES", 2)  # fewer candidates: those scored exactly as before
        few = ms.rank(docs, target, query, 5)
        assert len(few) == 2 and all(m.score == pytest.approx(next(e.score for e in exact if e.id == m.id), abs=1e-5) for m in few)
        monkeypatch.undo()


def test_candidates_are_scored_from_the_packed_rows_or_past_their_budget_from_the_segments(docs, monkeypatch):
    target = docs.store.open(COLLECTION, "doc")
    query = ms.query_tokens(docs.space("doc"), "harbour fees")
    monkeypatch.setattr(ms, "EXACT_PAGES", 0)  # candidates re-ranked
    packed = ms.rank(docs, target, query, 5)
    assert ms._load(docs, target).packed is not None and ms._load(docs, target).summaries is not None
    # A filter and an exclusion hold on the summaries' candidates too, even when fewer candidates are wanted.
    monkeypatch.setattr(ms, "CANDIDATES", 2)
    slides = ms.rank(docs, target, query, 5, where={"source": "slides.pdf"})
    assert len(slides) == 2 and all(m.metadata["source"] == "slides.pdf" for m in slides)
    rest = ms.rank(docs, target, query, 5, exclude=[packed[0].id])
    assert len(rest) == 2 and packed[0].id not in {m.id for m in rest}
    monkeypatch.setattr(ms, "CANDIDATES", 1000)
    monkeypatch.setattr(ms, "PACKED_MAX_ROWS", 0)
    ms._sidecars.clear()
    read = ms.rank(docs, target, query, 5)  # candidates from the pooled vectors, rows from the segments
    assert ms._load(docs, target).packed is None, "past the budget nothing is packed"
    assert len(read) == 5 and [(m.id, round(m.score, 4)) for m in read] == [(m.id, round(m.score, 4)) for m in packed]


def packed_by_id(loaded) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each page's packed rows and summary vectors (as float32), by id."""
    packed, summaries = loaded.packed_rows(), loaded.page_summaries()
    return {id_: (packed.tokens[packed.offsets[i]:packed.offsets[i + 1]].float().numpy(), summaries.vectors[i].float().numpy())
            for i, id_ in enumerate(loaded.ids)}


def test_after_a_change_the_unchanged_pages_packed_rows_are_reused_and_rank_as_if_packed_afresh(docs, tmp_path, monkeypatch):
    monkeypatch.setattr(ms, "EXACT_PAGES", 0)  # candidates by the summaries, which are reused too
    monkeypatch.setattr(ms, "CANDIDATES", 3)
    query = ms.query_tokens(docs.space("doc"), "harbour fees and berths")
    ms.rank(docs, docs.store.open(COLLECTION, "doc"), query, 5)
    (tmp_path / "notes.pdf").write_bytes(make_pdf(["Mooring notes", "Pilot boats"], colours=[(90, 90, 90), (10, 200, 200)]))
    changes = [lambda: ingest(docs, [SourceFile("notes.pdf", path=tmp_path / "notes.pdf")], collection=COLLECTION),
               lambda: docs.store.open(COLLECTION, "doc").delete([page_ids(docs)[0]])]
    for change, kept, pages in zip(changes, (5, 6), (7, 6)):  # 2 pages added, then 1 deleted: each reuses the last load
        before = packed_by_id(ms._load(docs, docs.store.open(COLLECTION, "doc")))
        change()
        target = docs.store.open(COLLECTION, "doc")
        reused = ms.rank(docs, target, query, 5)
        loaded = ms._load(docs, target)
        assert (loaded.kept, len(loaded.ids)) == (kept, pages)
        assert [k[2] for k in ms._sidecars if k[1] == target.uid] == [target.version], "the last load is let go"
        rows = packed_by_id(loaded)
        for id_ in loaded.ids[:kept]:  # copied
            np.testing.assert_array_equal(rows[id_][1], before[id_][1])
        with monkeypatch.context() as m:
            m.setattr(ms, "_sidecars", type(ms._sidecars)(ms.KEPT))
            afresh = ms.rank(docs, target, query, 5)
            packed_afresh = packed_by_id(ms._load(docs, target))
        assert [(h.id, round(h.score, 5)) for h in reused] == [(h.id, round(h.score, 5)) for h in afresh]
        assert rows.keys() == packed_afresh.keys()
        for id_, (tokens, _) in packed_afresh.items():
            np.testing.assert_array_equal(rows[id_][0], tokens)


def test_the_search_page_readies_the_rows_in_the_background_and_a_search_meanwhile_waits_for_them(docs, monkeypatch):
    monkeypatch.setattr(ms, "EXACT_PAGES", 0)
    target = docs.store.open(COLLECTION, "doc")
    ms._sidecars.clear()
    prepare_text_search(docs, COLLECTION)
    warming = [t for t in threading.enumerate() if t.name == "maxsim-warm"]
    assert len(warming) == 1
    assert ms.warm(docs, target) is None, "one at a time per collection"
    warming[0].join()
    loaded = ms._load(docs, target)
    assert loaded.packed is not None and loaded.summaries is not None
    ms._sidecars.clear()
    made = []
    searches = [threading.Thread(target=lambda: made.append(ms._load(docs, target).page_summaries())) for _ in range(3)]
    for t in searches:
        t.start()
    for t in searches:
        t.join()
    assert len(made) == 3 and made[0] is made[1] is made[2], "loaded and packed once, the other searches waited"


def test_the_match_map_of_a_hit_paints_the_page_s_patches(docs):
    hit = search(docs, Query(text="tide tables"), COLLECTION, 1, space="doc")[0]
    drawn = ms.match_map(docs, COLLECTION, "tide tables", hit.id, "doc")
    assert drawn.score == pytest.approx(hit.score, abs=1e-5)
    assert drawn.values.ndim == 2 and np.isfinite(drawn.values).all() and drawn.values.max() <= 1.01
    assert drawn.image.size[0] > 0 and len(drawn.grid) >= 2  # ColModernVBert: tiles and the whole page
    assert ms.item_tokens(docs, COLLECTION, hit.id, "doc").shape[1] == 16
    assert ms.item_tokens(docs, COLLECTION, "nope:page.p1", "doc") is None


def test_the_heat_map_is_red_where_the_query_matched_and_the_page_elsewhere():
    from PIL import Image

    from mmcore.maxsim import MatchMap, heat_map

    values = np.zeros((4, 4), dtype=np.float32)
    values[0, 3] = 0.9  # the top right patch matched best
    page = Image.new("RGB", (80, 80), (255, 255, 255))
    shown = np.asarray(heat_map(MatchMap(values, 0.5, (), page))).astype(int)
    top_right, bottom_left = shown[5, 75], shown[75, 5]
    assert top_right[0] > top_right[1] + 60, "tinted red where the query matched"
    assert tuple(bottom_left) == (255, 255, 255), "the page itself where it did not"
    big = heat_map(MatchMap(values, 0.5, (), Image.new("RGB", (1448, 2048), (255, 255, 255))))
    assert big.size == (724, 1024), "a page rendered for the doc space is shown at most 1,024 px high"


def test_a_pooled_segment_keeps_its_groups_and_an_older_one_without_them_reads_unpooled(tmp_path):
    rng = np.random.default_rng(1)
    pages = [normalize(rng.standard_normal((n, 8))).astype(np.float16) for n in (9, 4)]
    stored = [mv.pool_matrix(p, 2) for p in pages]
    assert [len(rows) for rows, _ in stored] == [5, 2] and all(g.dtype == np.int16 for _, g in stored)
    path = mv.write_segment(tmp_path / "c.doc", "w.journal", ["a", "b", "c"], ["v", "v", "v"],
                            [stored[0][0], stored[1][0], pages[0]], [stored[0][1], stored[1][1], None], [2, 2, 1])
    loaded = mv.load(tmp_path / "c.doc", 8, {"a": "v", "b": "v", "c": "v"})
    np.testing.assert_array_equal(loaded.groups("a"), stored[0][1])
    assert len(loaded.groups("b")) == 4 and loaded.groups("c") is None and loaded.pool() == 2
    # A pooled row is the renormalised mean of the rows its group holds.
    group = pages[0][stored[0][1] == 0].astype(np.float32)
    np.testing.assert_allclose(loaded.matrix("a")[0].astype(np.float32), normalize(group.mean(0, keepdims=True))[0], atol=2e-3)
    np.save(path / "groups.npy", np.full(13, 7, np.int16))  # a group naming a row page b doesn't have (it has 2)
    with pytest.raises(Exception, match="groups name token vectors"):
        mv.read_segment(path, 8)
    (path / "groups.npy").unlink()  # a segment written before pooling: no groups, nothing pooled
    index = dict(np.load(path / "index.npz"))
    np.savez(path / "index.npz", ids=index["ids"], versions=index["versions"], offsets=index["offsets"])
    old = mv.read_segment(path, 8)
    assert old.groups_of(0) is None and old.pools.tolist() == [1, 1, 1]


@pytest.fixture
def pooled_docs(tmp_path, clip_dir, doc_dir, pdfs) -> Workspace:
    """Both PDFs ingested with MMCORE_DOC_POOL=2."""
    ws = Workspace(replace(settings_for(tmp_path / "data", clip_dir, doc_dir), doc_pool=2))
    report = ingest(ws, [SourceFile(name, path=path) for name, path in pdfs.items()], collection=COLLECTION)
    assert [r.status for r in report.results] == ["added", "added"] and not any(r.notes for r in report.results)
    return ws


def test_pooled_pages_are_stored_smaller_and_still_found_and_painted(pooled_docs):
    ws, space = pooled_docs, pooled_docs.space("doc")
    doc = ws.store.open(COLLECTION, "doc")
    found = sidecar(ws)
    assert sorted(found.where) == page_ids(ws) and found.pool() == 2
    for item in doc.get(page_ids(ws), with_vectors=True):
        meta = item["metadata"]
        image = render_page((ws.files.root / meta["original"]).read_bytes(), meta["page"], meta["source"])
        pooled_vector, (whole,) = space.embed_pages([image])
        rows, groups = found.matrix(item["id"]), found.groups(item["id"])
        # Half the rows (Ward's cut into ceil(n / 2) clusters), and a group for each of the model's token rows.
        assert len(rows) == int(np.ceil(len(whole) / 2)) and len(groups) == len(whole)
        np.testing.assert_allclose(rows.astype(np.float32), mv.pool_matrix(whole, 2)[0].astype(np.float32), atol=2e-2)
        # Chroma's vector is still the mean of all the page's tokens, not of the pooled rows.
        np.testing.assert_allclose(item["vector"], pooled_vector[0], atol=2e-3)
    target = doc
    for id_ in page_ids(ws):
        own = found.matrix(id_).astype(np.float32)
        others = np.concatenate([found.matrix(o) for o in page_ids(ws) if o != id_]).astype(np.float32)
        query = own[np.argsort((own @ others.T).max(axis=1))[:8]]
        assert ms.rank(ws, target, query, 5)[0].id == id_
    hit = search(ws, Query(text="tide tables"), COLLECTION, 1, space="doc")[0]
    drawn = ms.match_map(ws, COLLECTION, "tide tables", hit.id, "doc")
    assert drawn.score == pytest.approx(hit.score, abs=1e-5)
    assert np.isfinite(drawn.values).all() and drawn.values.max() <= 1.01
    # Every patch painted with the best cosine of the stored row standing for it.
    query = ms.query_tokens(space, "tide tables")
    best = (found.matrix(hit.id).astype(np.float32) @ query.T).max(axis=1)
    assert set(np.unique(drawn.values)) <= set(best.astype(np.float32)) and len(np.unique(drawn.values)) > 1
    assert check_store(ws.settings).ok


def test_a_collection_keeps_its_pooling_factor_when_the_setting_changes(pooled_docs, pdfs, tmp_path, clip_dir, doc_dir):
    ws = Workspace(replace(pooled_docs.settings, doc_pool=1))
    pooled_docs.close()
    extra = tmp_path / "more.pdf"
    extra.write_bytes(make_pdf(["Lighthouse keepers' rota"], colours=[(10, 200, 200)]))
    report = ingest(ws, [SourceFile("more.pdf", path=extra)], collection=COLLECTION)
    assert report.results[0].status == "added"
    assert any("pooled by 2, as the collection's other pages" in n for n in report.results[0].notes)
    found = sidecar(ws)
    assert len(found) == 6 and {int(found.segments[s].pools[r]) for s, r in found.where.values()} == {2}
    # A collection without pages takes the setting: whole matrices there.
    report = ingest(ws, [SourceFile("more.pdf", path=extra)], collection="fresh")
    assert report.results[0].status == "added" and not report.results[0].notes
    fresh = ws.store.open("fresh", "doc")
    loaded = mv.load(mv.folder_of(ws.store.sidecar_root, fresh), fresh.space.dim, mv.held_versions(fresh))
    assert loaded.pool() == 1 and loaded.groups(fresh.ids()[0]) is None
    # Compaction keeps the groups and factors of what it keeps.
    doc = ws.store.open(COLLECTION, "doc")
    before = {id_: np.array(found.groups(id_)) for id_ in page_ids(ws)}
    doc.delete(page_ids(ws)[:3])
    after = sidecar(ws)
    assert [p.name.split("-")[0] for p in mv.segment_paths(mv.folder_of(ws.store.sidecar_root, doc))] == ["compacted"]
    for id_ in page_ids(ws):
        np.testing.assert_array_equal(after.groups(id_), before[id_])
    assert after.pool() == 2
