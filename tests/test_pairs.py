"""Image-caption CSVs: each caption row becomes a text item of the caption alone, linked to its image's item
(`pair_of`), whether the image comes in the same ingest (beside the CSV, or by file name) or is in the
collection already; search gives a caption's image and an image's captions with the hits."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

import media_factory as mf
from mmcore.config import Settings
from mmcore.errors import MediaError
from mmcore.ingest import SourceFile, collect_files, ingest
from mmcore.media import ReadOptions, read_media
from mmcore.media.text import many_text_windows, text_windows
from mmcore.search import Query, search, with_pairs
from mmcore.spaces import get_space
from mmcore.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
CAPTIONS = (
    "image,caption\n"
    "a.jpg,A red kite over the beach .\n"
    "a.jpg,Someone flies a red kite .\n"
    "images/b.png,Two green boats in the harbour\n"
    "missing.jpg,A photo that nobody sent\n"
    "b.png,\n"
)


@pytest.fixture(scope="module")
def space(clip_dir):
    return get_space("clip", Settings(models={"clip": str(clip_dir)}))


def rows_options(space, **kw) -> ReadOptions:
    return ReadOptions(token_spans=space.token_spans, max_tokens=space.max_text_tokens, csv_rows=True, **kw)


# --- reading ----------------------------------------------------------------------------------------------


def test_an_image_caption_csv_is_read_as_captions_naming_their_images(space):
    decoded = read_media("captions.csv", CAPTIONS.encode(), rows_options(space))
    chunks = list(decoded.chunks)
    assert decoded.known_count == len(chunks) == 4, "the row without a caption is left out"
    assert [c.payload for c in chunks] == ["A red kite over the beach .", "Someone flies a red kite .",
                                           "Two green boats in the harbour", "A photo that nobody sent"]
    assert [c.pair for c in chunks] == ["a.jpg", "a.jpg", "images/b.png", "missing.jpg"]
    assert chunks[2].meta == {"csv_image": "images/b.png"}, "the caption is the document, not metadata too"
    assert chunks[0].locator == {"row": 1, "char_start": 0, "char_end": len(chunks[0].payload)}


def test_the_pair_columns_are_found_by_their_content_and_can_be_named_or_turned_off(space):
    table = ("id,photo,score,description,alt\n"
             "1,x/one.JPG,0.5,a cat asleep on a warm windowsill,cat\n"
             "2,two.webp,0.7,three dogs running along the shore,dogs\n")
    found = list(read_media("t.csv", table.encode(), rows_options(space)).chunks)
    assert [(c.pair, c.payload) for c in found] == [("x/one.JPG", "a cat asleep on a warm windowsill"),
                                                    ("two.webp", "three dogs running along the shore")]
    named = list(read_media("t.csv", table.encode(), rows_options(space, pair_column="Photo")).chunks)
    assert [c.pair for c in named] == ["x/one.JPG", "two.webp"]
    plain = list(read_media("t.csv", table.encode(), rows_options(space, pair_column="none")).chunks)
    assert plain[0].pair is None and plain[0].payload.startswith("id: 1; photo: x/one.JPG; score: 0.5")
    with pytest.raises(MediaError) as caught:
        read_media("t.csv", table.encode(), rows_options(space, pair_column="picture"))
    assert "picture" in caught.value.reason and "id, photo, score, description, alt" in caught.value.reason
    # a CSV without a column of image file names is read as before, row by row
    assert all(c.pair is None for c in read_media("f.csv", mf.CSV_TEXT.encode(), rows_options(space)).chunks)


def test_many_rows_tokenized_together_give_the_windows_each_gives_alone(space):
    rng = random.Random(3)
    words = ["tide", "harbour", "café", "ÉTÉ", "🙂", "storm-front", "x", "3.14", "a\nb", "  "]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 60))).strip() or "z" for _ in range(400)]
    texts[5] = "word " * 90  # over the window: several windows
    together = many_text_windows(texts, space.token_spans, space.max_text_tokens, 8)
    assert together == [text_windows(t, space.token_spans, space.max_text_tokens, 8) for t in texts]
    assert len(together[5]) > 1


# --- ingest -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """set/captions.csv beside set/images/{a.jpg, b.png}, and set/other/a.jpg (another picture, same name)."""
    root = tmp_path_factory.mktemp("pairs") / "set"
    (root / "images").mkdir(parents=True)
    (root / "other").mkdir()
    (root / "captions.csv").write_text(CAPTIONS)
    (root / "images" / "a.jpg").write_bytes(mf.encode(mf.picture((40, 30), (220, 30, 30), "cross"), "JPEG"))
    (root / "images" / "b.png").write_bytes(mf.encode(mf.picture((30, 40), (20, 160, 60), "stripes"), "PNG"))
    (root / "other" / "a.jpg").write_bytes(mf.encode(mf.picture((30, 30), (10, 10, 200), "circle"), "JPEG"))
    return root


def items_of(ws: Workspace) -> dict[str, tuple[dict, str | None]]:
    items = ws.collection().all(with_vectors=False)
    return {i: (m, d) for i, m, d in zip(items.ids, items.metadatas, items.documents)}


def image_id(ws: Workspace, source: str) -> str:
    return next(i for i, (m, _) in items_of(ws).items() if m["source"] == source)


def test_captions_are_linked_to_their_images_beside_the_csv_and_the_rest_stored_with_a_note(ws, folder):
    files, _ = collect_files([folder])
    report = ingest(ws, files, csv_rows=True)
    assert report.ok
    csv = next(r for r in report.results if r.name == "set/captions.csv")
    assert [r.name for r in report.results][0] == "set/captions.csv", "reported in the order given"
    assert csv.items == 4 and any("3 caption(s) linked" in n for n in csv.notes)
    assert any("1 caption(s) name an image found neither" in n and "missing.jpg" in n for n in csv.notes)

    captions = {d: m for m, d in items_of(ws).values() if m["modality"] == "text"}
    a, b = image_id(ws, "set/images/a.jpg"), image_id(ws, "set/images/b.png")
    assert captions["A red kite over the beach ."]["pair_of"] == a, "by file name, in the CSV's folder tree"
    assert captions["Someone flies a red kite ."]["pair_source"] == "set/images/a.jpg", \
        "not set/other/a.jpg: images/ holds the CSV's other image"
    assert captions["Two green boats in the harbour"]["pair_of"] == b, "by its path relative to the CSV"
    assert "pair_of" not in captions["A photo that nobody sent"]
    assert a.endswith(":image") and a != image_id(ws, "set/other/a.jpg")


def test_an_upload_with_the_csv_first_still_links_its_captions(ws, folder):
    names = ["captions.csv", "a.jpg", "b.png"]
    paths = [folder / "captions.csv", folder / "images" / "a.jpg", folder / "images" / "b.png"]
    report = ingest(ws, [SourceFile(n, data=p.read_bytes()) for n, p in zip(names, paths)], csv_rows=True)
    assert [(r.name, r.status) for r in report.results] == [(n, "added") for n in names]
    captions = {d: m for m, d in items_of(ws).values() if m["modality"] == "text"}
    assert captions["Two green boats in the harbour"]["pair_source"] == "b.png"  # "images/b.png": by its file name
    assert captions["A red kite over the beach ."]["pair_of"] == image_id(ws, "a.jpg")


def test_captions_find_images_already_in_the_collection_and_search_shows_pairs(ws, folder):
    ingest(ws, [SourceFile("a.jpg", path=folder / "images" / "a.jpg"), SourceFile("b.png", path=folder / "images" / "b.png")])
    report = ingest(ws, [SourceFile("captions.csv", path=folder / "captions.csv")], csv_rows=True)
    assert any("3 caption(s) linked" in n for n in report.results[0].notes)
    a = image_id(ws, "a.jpg")

    text_hits = with_pairs(ws, search(ws, Query(text="Someone flies a red kite ."), k=20))
    kite = next(h for h in text_hits if h.document == "Someone flies a red kite .")
    [image] = kite.pairs
    assert (image.id, image.source, image.modality) == (a, "a.jpg", "image") and Path(image.thumbnail).is_file()

    image_hits = with_pairs(ws, search(ws, Query(image=(folder / "images" / "a.jpg").read_bytes()), k=20))
    first = next(h for h in image_hits if h.id == a)
    assert sorted(p.document for p in first.pairs) == ["A red kite over the beach .", "Someone flies a red kite ."]
    assert all(h.pairs == () for h in image_hits if h.modality == "text" and "pair_of" not in h.metadata)


def test_the_cli_pairs_by_default_and_not_with_pair_column_none(tmp_path, clip_dir, folder):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MMCORE_")}
    env.update(MMCORE_DATA_DIR=str(tmp_path / "data"), MMCORE_CLIP_MODEL=str(clip_dir), HF_HUB_OFFLINE="1",
               PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false")
    done = subprocess.run([sys.executable, "-m", "mmcore", "ingest", str(folder), "--csv-rows"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "note: set/captions.csv: 3 caption(s) linked to their image" in done.stdout
    found = subprocess.run([sys.executable, "-m", "mmcore", "search", "--text", "Two green boats in the harbour",
                            "-k", "1", "--where", "modality=text"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=300)
    assert "image: set/images/b.png" in found.stdout, found.stdout + found.stderr

    env["MMCORE_DATA_DIR"] = str(tmp_path / "other")
    plain = subprocess.run([sys.executable, "-m", "mmcore", "ingest", str(folder / "captions.csv"), "--pair-column",
                            "none", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr
    docs = Workspace(Settings(data_dir=tmp_path / "other", models={"clip": str(clip_dir)})).collection().all(with_vectors=False).documents
    assert "image: a.jpg; caption: A red kite over the beach ." in docs, "--pair-column none: rows as before"
