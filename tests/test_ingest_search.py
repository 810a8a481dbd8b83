"""Ingest and search end to end: a real Chroma store on a temp dir and the real (tiny) CLIP model."""

from __future__ import annotations

import hashlib
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image

import media_factory as mf
from mmcore.config import Settings
from mmcore.errors import MMError, NotFound, SpaceMismatch, StoreError
from mmcore.ingest import SourceFile, collect_files, ingest
from mmcore.search import Filters, Query, search, search_each_modality, search_image, search_like, search_text
from mmcore.store import validate_name
from mmcore.workspace import Workspace

IMAGES = [f"img{ext}" for ext in mf.IMAGE_FORMATS]
TEXTS = ["long.txt", "table.csv"]
ID_PATTERN = re.compile(r"^[0-9a-f]{32}:(image|text(\.r\d+)?\.c\d+-\d+)$")


def sources(media, names):
    return [SourceFile(name, path=media[name]) for name in names]


def all_items(ws, collection=None):
    """Every item in the collection: {id: metadata}."""
    raw = ws.collection(collection).raw.get(include=["metadatas"])
    return dict(zip(raw["ids"], raw["metadatas"]))


def today():
    return datetime.now(timezone.utc).date()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, clip_dir, media):
    """One workspace holding the standard media: images tagged beach+a, texts tagged notes. Read-only for tests."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("loaded") / "data", models={"clip": str(clip_dir)}, batch_size=4)
    ws = Workspace(settings)
    started = int(time.time())
    progress = []
    images = ingest(ws, sources(media, IMAGES), tags=["beach", " a ", "  "], on_progress=progress.append)
    texts = ingest(ws, sources(media, TEXTS), tags=["notes"])
    return {"ws": ws, "images": images, "texts": texts, "started": started, "progress": progress}


# --- ingest ---------------------------------------------------------------------------------------------


def test_ingest_reports_every_file(loaded):
    images, texts = loaded["images"], loaded["texts"]
    assert [(r.name, r.status, r.items) for r in images.results] == [(name, "added", 1) for name in IMAGES]
    assert images.ok and texts.ok
    by_name = {r.name: r for r in texts.results}
    assert by_name["long.txt"].status == "added" and by_name["long.txt"].items > 4  # several windows
    assert by_name["table.csv"].status == "added" and by_name["table.csv"].items >= 1
    assert images.items_added + texts.items_added == loaded["ws"].collection().count()
    # each file's outcome was reported once, in order, counting up to the total; items were counted as embedded
    progress = loaded["progress"]
    assert [(p.files_done, p.files_total, p.finished.name) for p in progress if p.finished] == [
        (i, len(IMAGES), name) for i, name in enumerate(IMAGES, 1)
    ]
    assert progress[0].stage == "loading models" and progress[-1].stage == "done"
    items = [p.items_done for p in progress]
    assert items == sorted(items) and items[-1] == len(IMAGES) == progress[-1].items_total


def test_items_carry_full_metadata(loaded, media):
    ws = loaded["ws"]
    items = all_items(ws)
    now = int(time.time())
    for id_, meta in items.items():
        data = media[meta["source"]].read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        assert meta["source_hash"] == digest
        assert meta["bytes"] == len(data)
        assert loaded["started"] <= meta["added_at"] <= now
        assert (ws.files.root / meta["original"]).read_bytes() == data
        if meta["modality"] == "image":
            assert meta["mime"].startswith("image/")
            assert meta["tags"] == ["a", "beach"]  # stripped, blank dropped, sorted
            size = mf.IMAGE_SPECS[Path(meta["source"]).suffix][0]
            assert (meta["width"], meta["height"]) == size
            with Image.open(ws.files.root / meta["thumbnail"]) as thumb:
                assert thumb.format == "WEBP" and thumb.size == size
        else:
            assert meta["modality"] == "text"
            assert meta["mime"] in ("text/plain", "text/csv")
            assert meta["tags"] == ["notes"]
            assert "thumbnail" not in meta
            assert 0 <= meta["char_start"] < meta["char_end"]


def test_text_items_store_their_window_as_document(loaded, media):
    ws = loaded["ws"]
    text = media["long.txt"].read_text()
    raw = ws.collection().raw.get(where={"source": "long.txt"}, include=["metadatas", "documents"])
    assert len(raw["ids"]) > 4
    for meta, document in zip(raw["metadatas"], raw["documents"]):
        assert document == text[meta["char_start"]:meta["char_end"]]
    starts = sorted(m["char_start"] for m in raw["metadatas"])
    assert starts[0] == 0


def test_ids_are_hash_and_locator(loaded):
    for id_, meta in all_items(loaded["ws"]).items():
        assert ID_PATTERN.match(id_), id_
        assert id_.split(":")[0] == meta["source_hash"][:32]
        if meta["modality"] == "text":
            assert id_.endswith(f"c{meta['char_start']}-{meta['char_end']}")


def test_stored_files_are_named_by_hash_never_by_upload_name(loaded, media):
    root = loaded["ws"].files.root
    assert root == loaded["ws"].settings.data_dir / "media"
    stored = [p for p in root.rglob("*") if p.is_file()]
    hashes = {hashlib.sha256(media[n].read_bytes()).hexdigest() for n in IMAGES + TEXTS}
    assert {p.stem for p in stored if p.parent.parent.name == "originals"} == hashes
    assert {p.stem for p in stored if p.parent.parent.name == "thumbs"} == {
        hashlib.sha256(media[n].read_bytes()).hexdigest() for n in IMAGES
    }
    for path in stored:
        assert re.fullmatch(r"[0-9a-f]{64}\.(jpg|png|webp|gif|bmp|tif|txt|csv)", path.name), path
        assert path.parent.name == path.name[:2]
        assert not path.name.startswith((".tmp", "img", "long", "table"))


def test_reingest_adds_nothing(loaded, media):
    ws = loaded["ws"]
    before = set(all_items(ws))
    report = ingest(ws, sources(media, IMAGES + TEXTS))
    assert {r.status for r in report.results} == {"skipped"}
    assert all(r.reason == "already in the collection" for r in report.results)
    assert report.items_added == 0 and report.ok
    assert set(all_items(ws)) == before


def test_same_bytes_under_another_name_are_skipped(loaded, media):
    ws = loaded["ws"]
    count = ws.collection().count()
    report = ingest(ws, [SourceFile("holiday/renamed.jpeg", data=media["img.jpg"].read_bytes())])
    assert [(r.status, r.reason) for r in report.results] == [("skipped", "already in the collection")]
    assert ws.collection().count() == count


def test_duplicates_within_one_ingest_are_added_once(ws):
    data = mf.encode(mf.picture((30, 30), (1, 2, 3), "circle"), "PNG")
    report = ingest(ws, [SourceFile("one.png", data=data), SourceFile("two.png", data=data)])
    # results come in the order files finish (a skip at once, an add after its batch is embedded)
    assert {r.name: r.status for r in report.results} == {"one.png": "added", "two.png": "skipped"}
    assert ws.collection().count() == 1


def test_csv_rows_are_ingested_as_items(ws, media):
    report = ingest(ws, sources(media, ["table.csv"]), csv_rows=True)
    assert report.results[0].items == 3
    items = all_items(ws)
    assert sorted(m["row"] for m in items.values()) == [1, 2, 3]
    assert {m["csv_colour"] for m in items.values()} == {"red", "yellow", "green"}
    hits = search_text(ws, "banana", filters=Filters(equals={"csv_colour": "yellow"}))
    assert [h.locator["row"] for h in hits] == [2]


def test_mixed_ingest_fails_bad_files_with_reasons_and_adds_good_ones(ws, media):
    report = ingest(ws, [
        SourceFile("good.png", data=media["img.png"].read_bytes()),
        SourceFile("empty.png", data=b""),
        SourceFile("cut.jpg", data=mf.truncated_jpeg()),
        SourceFile("fake.png", data=mf.elf_bytes()),
        SourceFile("tool.exe", data=b"MZ\x90\x00"),
        SourceFile("gone.txt", path=media["long.txt"].parent / "does-not-exist.txt"),
        SourceFile("good.txt", data=b"a short note about the harbour"),
    ])
    results = {r.name: r for r in report.results}
    assert sorted(results) == sorted(["good.png", "empty.png", "cut.jpg", "fake.png", "tool.exe", "gone.txt", "good.txt"])
    assert (results["good.png"].status, results["good.txt"].status) == ("added", "added")
    for name, expected in [("empty.png", "empty"), ("cut.jpg", "truncated"), ("fake.png", "not a readable image"),
                           ("tool.exe", "unsupported"), ("gone.txt", "could not be read")]:
        assert results[name].status == "failed" and results[name].items == 0
        assert expected in results[name].reason, (name, results[name].reason)
    assert not report.ok
    assert report.items_added == 2 == ws.collection().count()
    assert {m["source"] for m in all_items(ws).values()} == {"good.png", "good.txt"}
    originals = [p for p in (ws.files.root / "originals").rglob("*") if p.is_file()]
    assert len(originals) == 2


def test_bad_only_ingest_changes_nothing(ws, media):
    ingest(ws, sources(media, ["img.gif"]))
    before = set(all_items(ws))
    stored_before = sorted(p for p in ws.files.root.rglob("*") if p.is_file())
    report = ingest(ws, [SourceFile("cut.jpg", data=mf.truncated_jpeg()), SourceFile("bomb.png", data=mf.png_bomb()),
                         SourceFile("blank.txt", data=b"   \n")])
    assert [r.status for r in report.results] == ["failed"] * 3
    assert "decompression bomb" in report.results[1].reason
    assert set(all_items(ws)) == before
    assert sorted(p for p in ws.files.root.rglob("*") if p.is_file()) == stored_before


def test_collect_files_walks_folders(tmp_path, media):
    root = tmp_path / "album"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "b.png").write_bytes(media["img.png"].read_bytes())
    (root / "sub" / "deeper" / "a.txt").write_text("hello")
    (root / "sub" / "report.docx").write_bytes(b"PK\x03\x04")
    (root / ".hidden.jpg").write_bytes(media["img.jpg"].read_bytes())
    (root / ".git" / "notes.txt").write_text("hidden folder")
    explicit = tmp_path / "tool.exe"
    explicit.write_bytes(b"MZ")

    files, early = collect_files([root, explicit, tmp_path / "missing"])
    assert [(f.name, f.path) for f in files] == [
        ("album/b.png", root / "b.png"),
        ("album/sub/deeper/a.txt", root / "sub" / "deeper" / "a.txt"),
        ("tool.exe", explicit),  # named explicitly: tried (and will fail as unsupported)
    ]
    assert [(r.name, r.status) for r in early] == [("album/sub/report.docx", "skipped"), (str(tmp_path / "missing"), "failed")]
    assert "unsupported" in early[0].reason
    assert "no such file" in early[1].reason


# --- search ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", IMAGES)
def test_search_by_an_images_own_bytes_finds_it_first(loaded, media, name):
    hits = search_image(loaded["ws"], name, media[name].read_bytes(), k=5)
    assert hits[0].source == name and hits[0].modality == "image"
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert all(h.score < hits[0].score for h in hits[1:])
    assert Path(hits[0].thumbnail).is_file() and Path(hits[0].original).is_file()
    assert hits[0].locator == {} and hits[0].document is None


def test_search_by_a_windows_own_text_finds_it_first(loaded):
    ws = loaded["ws"]
    raw = ws.collection().raw.get(where={"source": "long.txt"}, include=["documents", "metadatas"])
    for id_, document, meta in list(zip(raw["ids"], raw["documents"], raw["metadatas"]))[:3]:
        hits = search_text(ws, document, k=3)
        assert hits[0].id == id_
        assert hits[0].score == pytest.approx(1.0, abs=1e-3)
        assert hits[0].document == document
        assert hits[0].locator == {"char_start": meta["char_start"], "char_end": meta["char_end"]}
        assert hits[0].thumbnail is None


def test_search_like_leaves_the_item_out(loaded):
    ws = loaded["ws"]
    items = all_items(ws)
    image_id = next(i for i, m in items.items() if m["source"] == "img.webp")
    hits = search_like(ws, image_id, k=100)
    assert image_id not in [h.id for h in hits]
    assert len(hits) == len(items) - 1
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert len(search_like(ws, image_id, k=3)) == 3


def test_search_like_unknown_id_is_not_found(loaded):
    with pytest.raises(NotFound):
        search_like(loaded["ws"], "0" * 32 + ":image")


def test_empty_text_query_is_refused(loaded):
    with pytest.raises(MMError, match="search"):
        search_text(loaded["ws"], "   ")


def test_search_in_missing_collection_is_not_found(loaded):
    with pytest.raises(NotFound, match="nothing-here"):
        search_text(loaded["ws"], "harbour", collection="nothing-here")


def test_search_each_modality_gives_top_k_of_each(loaded, media):
    ws = loaded["ws"]
    both = search_each_modality(ws, Query(text="harbour"), k=3)
    assert sorted(both) == ["image", "text"]
    assert len(both["image"]) == 3 and {h.modality for h in both["image"]} == {"image"}
    assert len(both["text"]) == 3 and {h.modality for h in both["text"]} == {"text"}
    # the same as searching each modality on its own
    alone = search_text(ws, "harbour", k=3, filters=Filters(modalities=("image",)))
    assert [h.id for h in both["image"]] == [h.id for h in alone]

    only_images = search_each_modality(ws, Query(image=media["img.tiff"].read_bytes(), image_name="q.tiff"), k=2,
                                       filters=Filters(modalities=("image",)))
    assert list(only_images) == ["image"] and only_images["image"][0].source == "img.tiff"

    own_id = only_images["image"][0].id
    like = search_each_modality(ws, Query(like=own_id), k=100)
    assert own_id not in [h.id for hits in like.values() for h in hits]
    assert len(like["image"]) == len(IMAGES) - 1


def test_search_with_a_query_object(loaded, media):
    hits = search(loaded["ws"], Query(image=media["img.bmp"].read_bytes(), image_name="q.bmp"), k=1)
    assert hits[0].source == "img.bmp"
    with pytest.raises(MMError):
        search(loaded["ws"], Query())


def test_hit_says_where_it_lives(loaded, ws, media):
    image = search_image(loaded["ws"], "img.png", media["img.png"].read_bytes(), k=1)[0]
    assert image.where == ""
    window = search_text(loaded["ws"], "tide", k=1, filters=Filters(sources=("long.txt",)))[0]
    assert window.where == f"chars {window.locator['char_start']:,}–{window.locator['char_end']:,}"
    ingest(ws, sources(media, ["table.csv"]), csv_rows=True)
    row = search_text(ws, "banana", k=1, filters=Filters(equals={"row": 2}))[0]
    assert row.where == f"row 2 · chars 0–{row.locator['char_end']}"
    assert row.to_json()["locator"] == row.locator


def sources_of(hits):
    return sorted({h.source for h in hits})


def test_filter_by_modality_and_source(loaded):
    ws = loaded["ws"]
    images = search_text(ws, "harbour", k=100, filters=Filters(modalities=("image",)))
    assert sources_of(images) == sorted(IMAGES) and {h.modality for h in images} == {"image"}
    texts = search_text(ws, "harbour", k=100, filters=Filters(modalities=("text",)))
    assert sources_of(texts) == sorted(TEXTS) and {h.modality for h in texts} == {"text"}
    picked = search_text(ws, "harbour", k=100, filters=Filters(sources=("img.png", "table.csv")))
    assert sources_of(picked) == ["img.png", "table.csv"]


def test_filter_by_tags(loaded):
    ws = loaded["ws"]
    assert sources_of(search_text(ws, "sea", k=100, filters=Filters(tags=("beach",)))) == sorted(IMAGES)
    assert sources_of(search_text(ws, "sea", k=100, filters=Filters(tags=("beach", "a")))) == sorted(IMAGES)
    assert sources_of(search_text(ws, "sea", k=100, filters=Filters(tags=("notes",)))) == sorted(TEXTS)
    assert search_text(ws, "sea", k=100, filters=Filters(tags=("beach", "notes"))) == []  # all tags must match
    assert search_text(ws, "sea", k=100, filters=Filters(tags=("unknown",))) == []


def test_filter_by_added_dates(loaded):
    ws = loaded["ws"]
    total = ws.collection().count()
    day = timedelta(days=1)
    assert len(search_text(ws, "sea", k=100, filters=Filters(added_from=today(), added_to=today()))) == total
    assert len(search_text(ws, "sea", k=100, filters=Filters(added_from=today() - 3 * day))) == total
    assert search_text(ws, "sea", k=100, filters=Filters(added_from=today() + day)) == []
    assert search_text(ws, "sea", k=100, filters=Filters(added_to=today() - day)) == []


def test_filter_by_metadata_value(loaded):
    hits = search_text(loaded["ws"], "sea", k=100, filters=Filters(equals={"width": 64}))
    assert [h.source for h in hits] == ["img.jpg"]


def test_filters_parse():
    filters = Filters.parse(["modality=image", "tag=a", "tags=beach", "added_from=2020-01-01", "added_to=2030-12-31",
                             "width=64", "ratio=0.5", "flag=true", "source=x=y.png", "name=hello"])
    assert filters.modalities == ("image",)
    assert filters.tags == ("a", "beach")
    assert filters.sources == ("x=y.png",)
    assert str(filters.added_from) == "2020-01-01" and str(filters.added_to) == "2030-12-31"
    assert filters.equals == {"width": 64, "ratio": 0.5, "flag": True, "name": "hello"}
    assert type(filters.equals["width"]) is int
    assert Filters.parse([]).to_where() is None
    assert Filters.parse(["modality=text"]).to_where() == {"modality": {"$in": ["text"]}}


@pytest.mark.parametrize("bad", ["modality", "=image", "added_from=yesterday", "added_to=2024-13-01"])
def test_malformed_filters_are_refused(bad):
    with pytest.raises(MMError):
        Filters.parse([bad])


def test_parsed_filters_select_in_search(loaded):
    filters = Filters.parse(["modality=image", "tag=a", "added_from=2020-01-01", "width=64"])
    assert [h.source for h in search_text(loaded["ws"], "red", k=100, filters=filters)] == ["img.jpg"]
    filters = Filters.parse(["modality=image", "tag=notes"])
    assert search_text(loaded["ws"], "red", k=100, filters=filters) == []


# --- models, persistence, collections --------------------------------------------------------------------


def test_collection_refuses_another_model(ws, media, other_clip_dir, clip_dir):
    ingest(ws, sources(media, ["img.bmp", "long.txt"]))
    item_id = next(iter(all_items(ws)))
    other = Workspace(Settings(data_dir=ws.settings.data_dir, models={"clip": str(other_clip_dir)}, batch_size=4))
    assert other.space().info.dim == 24

    with pytest.raises(SpaceMismatch) as caught:
        other.collection()
    message = str(caught.value)
    assert str(Path(clip_dir).resolve()) in message and str(Path(other_clip_dir).resolve()) in message
    assert "16" in message and "24" in message
    with pytest.raises(SpaceMismatch):
        search_text(other, "harbour")
    with pytest.raises(SpaceMismatch):
        search_image(other, "img.bmp", media["img.bmp"].read_bytes())
    refused = ingest(other, sources(media, ["img.png"]))  # per kind of file: every file of that space fails, named
    assert [(r.name, r.status) for r in refused.results] == [("img.png", "failed")]
    assert refused.results[0].reason == message
    # "more like this" needs no model, so it still works; nothing was added by the refused ingest
    assert len(search_like(other, item_id, k=100)) == ws.collection().count() - 1 == len(all_items(ws)) - 1
    # another collection name is free to use the other model
    assert ingest(other, sources(media, ["img.png"]), collection="other-model").items_added == 1


def test_new_workspace_on_the_same_data_dir_sees_everything(loaded, media, clip_dir):
    old = loaded["ws"]
    fresh = Workspace(Settings(data_dir=old.settings.data_dir, models={"clip": str(clip_dir)}, batch_size=4))
    assert fresh.store is not old.store
    assert set(all_items(fresh)) == set(all_items(old))
    hits = search_image(fresh, "img.gif", media["img.gif"].read_bytes(), k=1)
    assert hits[0].source == "img.gif" and Path(hits[0].thumbnail).is_file()


def test_store_lists_collections_with_their_model(ws, media, clip_dir):
    assert ws.store.list() == []
    ingest(ws, sources(media, ["img.jpg", "img.png"]))
    ingest(ws, sources(media, ["long.txt"]), collection="notes_2024")
    listed = {c.name: c for c in ws.store.list()}
    assert sorted(listed) == ["default", "notes_2024"]
    assert listed["default"].count == 2
    assert listed["notes_2024"].count == ws.collection("notes_2024").count() > 1
    for info in listed.values():
        assert info.space.space == "clip"
        assert info.space.model_id == str(Path(clip_dir).resolve())
        assert info.space.dim == 16
    # collections are separate
    assert {m["source"] for m in all_items(ws, "notes_2024").values()} == {"long.txt"}


@pytest.mark.parametrize("name", ["has space", "../etc", "-leading", "a" * 64, "dots.in.name", "ünïcode", "a/b"])
def test_invalid_collection_names_are_refused(ws, name):
    with pytest.raises(StoreError, match="Invalid collection name"):
        validate_name(name)
    with pytest.raises(StoreError):
        ws.collection(name)
    with pytest.raises(StoreError):
        ingest(ws, [SourceFile("a.txt", data=b"hello")], collection=name)
    assert ws.store.list() == []


def test_empty_collection_name_is_invalid_but_means_default_in_workspace(ws):
    with pytest.raises(StoreError):
        validate_name("")
    assert ws.collection("").name == ws.settings.collection == "default"


def test_valid_collection_names_are_accepted():
    for name in ["a", "default", "Photos_2024-06", "9lives", "x" * 63]:
        assert validate_name(name) == name


def test_deleted_collection_is_gone(ws, media):
    ingest(ws, sources(media, ["img.png"]), collection="scratch")
    ingest(ws, sources(media, ["img.png"]))
    ws.store.delete("scratch")
    assert [c.name for c in ws.store.list()] == ["default"]
    with pytest.raises(NotFound):
        search_text(ws, "anything", collection="scratch")
    with pytest.raises(NotFound):
        ws.store.delete("scratch")
