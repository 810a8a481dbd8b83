"""The doc space with tiny random-weight checkpoints of all three ColPali-family retrievers (ColModernVBert, ColPali,
ColQwen2): loading through the Auto classes, page and query token matrices with padding dropped, pooled vectors,
patch grids that put each patch where it lies on the page, the space as a registered one, and loading errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from checkpoints import tiny_clip, tiny_colmodernvbert, tiny_colpali, tiny_colqwen2
from mmcore.config import Settings
from mmcore.errors import ModelUnavailable
from mmcore.late_interaction import maxsim, page_map
from mmcore.media import Chunk
from mmcore.spaces import get_space, normalize
from mmcore.spaces.doc import DocSpace
from mmcore.spaces.registry import enabled, require, spaces_for

BUILDERS = {"colmodernvbert": tiny_colmodernvbert, "colpali": tiny_colpali, "colqwen2": tiny_colqwen2}


def page(size, colour=(240, 240, 240), block=None):
    """A plain page, with a dark block at `block` = (left, top, right, bottom) as fractions of the page."""
    image = Image.new("RGB", size, colour)
    if block:
        w, h = size
        ImageDraw.Draw(image).rectangle([block[0] * w, block[1] * h, block[2] * w - 1, block[3] * h - 1], fill=(20, 20, 90))
    return image


PAGES = [page((100, 140), block=(0, 0, 0.5, 0.5)), page((160, 60)), page((30, 40), colour=(250, 200, 10))]


@pytest.fixture(scope="module", params=list(BUILDERS))
def space(request, tmp_path_factory):
    folder = BUILDERS[request.param](tmp_path_factory.mktemp("models") / request.param, embedding_dim=16, seed=0)
    return DocSpace.load(str(folder), device="cpu", batch_size=32)


def test_each_family_loads_through_the_auto_classes(space):
    assert space.family in ("colmodernvbert", "colpali", "colqwen2")
    assert type(space.model).__name__.endswith("ForRetrieval")
    assert space.info.space == "doc" and space.info.dim == 16 and space.info.revision == "local"
    assert Path(space.info.model_id).is_absolute()


def test_page_tokens_are_unit_float16_rows_with_the_padding_dropped(space):
    together = space.embed_page_tokens(PAGES)
    alone = [space.embed_page_tokens([p])[0] for p in PAGES]
    for tokens, single, image in zip(together, alone, PAGES):
        assert tokens.dtype == np.float16 and tokens.shape[1] == 16
        # As many rows as the processor gives the page alone: none of the batch's padding is kept.
        assert len(tokens) == len(single) == int(space._page_inputs([image])["attention_mask"].sum())
        np.testing.assert_allclose(np.linalg.norm(tokens.astype(np.float32), axis=1), 1.0, atol=2e-3)
        np.testing.assert_allclose(tokens.astype(np.float32), single.astype(np.float32), atol=2e-2)
    if space.family != "colpali":  # ColPali squares every page to one size; the others follow its shape
        assert len({len(t) for t in together}) > 1


def test_query_tokens_come_from_the_query_path_with_the_padding_dropped(space):
    texts = ["x", "a much longer question about the quarterly revenue table"]
    together = space.embed_query_tokens(texts)
    for tokens, text in zip(together, texts):
        expected = int(space._query_inputs([text])["attention_mask"].sum())
        assert tokens.dtype == np.float16 and tokens.shape == (expected, 16)
        np.testing.assert_allclose(np.linalg.norm(tokens.astype(np.float32), axis=1), 1.0, atol=2e-3)
    assert len(together[1]) > len(together[0]) > 10  # ten augmentation tokens follow every query


def test_pooled_vectors_are_the_renormalised_means_of_the_tokens(space):
    pooled, tokens = space.embed_pages(PAGES)
    assert pooled.dtype == np.float32 and pooled.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-5)
    means = normalize(np.stack([t.astype(np.float32).mean(axis=0) for t in tokens]))
    np.testing.assert_allclose(pooled, means, atol=2e-3)
    np.testing.assert_allclose(space.embed_images(PAGES), pooled, atol=1e-5)
    texts = ["revenue table", "a map of europe"]
    query_means = normalize(np.stack([t.astype(np.float32).mean(axis=0) for t in space.embed_query_tokens(texts)]))
    np.testing.assert_allclose(space.embed_texts(texts), query_means, atol=2e-3)
    # The Space interface: page chunks and text queries.
    chunks = [Chunk("page", p, locator={"page": i + 1}) for i, p in enumerate(PAGES)]
    np.testing.assert_allclose(space.embed(chunks), pooled, atol=1e-5)
    np.testing.assert_allclose(space.embed_query("text", ["revenue table"]), space.embed_texts(["revenue table"])[0], atol=1e-5)
    assert space.embed_images([]).shape == (0, 16) and space.embed_page_tokens([]) == []


def test_the_patch_grid_covers_exactly_the_image_tokens(space):
    for image in PAGES:
        grid = space.patch_grid(image)
        inputs = space._page_inputs([image])
        ids = inputs["input_ids"][0][inputs["attention_mask"][0].bool()].numpy()
        rows = np.concatenate([tile.rows.ravel() for tile in grid])
        assert sorted(rows) == list(np.flatnonzero(ids == space.processor.image_token_id))
        assert rows.max() < len(space.embed_page_tokens([image])[0])
        for tile in grid:
            top, left, bottom, right = tile.box
            assert 0 <= top < bottom <= 1 and 0 <= left < right <= 1
    wide, tall = space.patch_grid(page((160, 60))), space.patch_grid(page((60, 160)))
    if space.family == "colmodernvbert":  # scaled to 128 px long, cut into 64 px tiles, then the whole page
        assert [t.box for t in wide] == [(0, 0, 1, 0.5), (0, 0.5, 1, 1), (0, 0, 1, 1)]
        assert [t.box for t in tall] == [(0, 0, 0.5, 1), (0.5, 0, 1, 1), (0, 0, 1, 1)]
        assert all(t.rows.shape == (4, 4) for t in wide)
    elif space.family == "colqwen2":  # one tile, a token per 28 px, the page's aspect ratio kept
        assert len(wide) == 1 and wide[0].rows.shape[1] > wide[0].rows.shape[0]
        assert tall[0].rows.shape == wide[0].rows.shape[::-1]
    else:  # ColPali: the page squared to 32 px, patches of 8
        assert [t.rows.shape for t in wide] == [(4, 4)] and [t.rows.shape for t in tall] == [(4, 4)]


@pytest.mark.parametrize("corner", [(0, 0, 0.5, 0.25), (0.5, 0.75, 1, 1), (0.75, 0, 1, 0.5)])
def test_the_patch_grid_puts_a_change_where_it_is_on_the_page(space, corner):
    """Two pages alike but for a dark block in one eighth: the token rows that change most are painted there."""
    size = (120, 120)
    plain, marked = space.embed_page_tokens([page(size), page(size, block=corner)])
    change = 1.0 - (plain.astype(np.float32) * marked.astype(np.float32)).sum(axis=1)
    painted = page_map(change, space.patch_grid(page(size)))
    h, w = painted.shape
    inside = np.zeros_like(painted, dtype=bool)
    inside[int(corner[1] * h):int(corner[3] * h), int(corner[0] * w):int(corner[2] * w)] = True
    assert painted[inside].min() > painted[~inside].max()


def test_maxsim_of_real_query_and_page_tokens_ranks_a_page_by_its_own_patches(space):
    pages = [page((100, 140), (200, 30, 30)), page((160, 60), (30, 160, 30), block=(0.2, 0.2, 0.6, 0.9)),
             page((30, 40), (250, 200, 10))]
    tokens = space.embed_page_tokens(pages)
    # A query made of some of a page's patch vectors scores that page highest: each of them finds itself there.
    for i, (own, image) in enumerate(zip(tokens, pages)):
        patches = np.concatenate([tile.rows.ravel() for tile in space.patch_grid(image)])[::3]
        scores = maxsim(own[patches].astype(np.float32), tokens)
        assert int(np.argmax(scores)) == i and scores[i] == pytest.approx(len(patches), abs=0.05)
    query = space.embed_query_tokens(["quarterly revenue"])[0]
    scores = maxsim(query.astype(np.float32), tokens)
    assert scores.shape == (3,) and np.isfinite(scores).all()


def test_doc_is_registered_pages_only_and_off_unless_its_variable_is_set(tmp_path):
    spec = require("doc")
    assert spec.default_model is None and spec.variable == "MMCORE_DOC_MODEL"
    assert spec.modalities == {"page"} and spec.queries == {"text"}
    off = Settings(data_dir=tmp_path)
    assert "doc" not in [s.name for s in enabled(off)]
    with pytest.raises(ModelUnavailable, match="MMCORE_DOC_MODEL"):
        get_space("doc", off)


def test_with_its_variable_set_pages_go_to_it_and_it_loads(tmp_path):
    folder = tiny_colmodernvbert(tmp_path / "cmvb")
    settings = Settings(data_dir=tmp_path, models={"clip": "unused", "doc": str(folder)})
    assert "doc" in spaces_for("page", settings) and "doc" not in spaces_for("image", settings)
    assert isinstance(get_space("doc", settings), DocSpace)


def test_a_missing_folder_names_the_variable(tmp_path):
    with pytest.raises(ModelUnavailable) as caught:
        DocSpace.load(str(tmp_path / "nowhere"), device="cpu")
    message = str(caught.value)
    assert "does not exist" in message and "MMCORE_DOC_MODEL" in message
    assert "hf download ModernVBERT/colmodernvbert-merged" in message


def test_an_uncached_hub_id_says_how_to_provide_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(ModelUnavailable) as caught:
        DocSpace.load("vidore/colqwen2-v1.0-hf", device="cpu")
    message = str(caught.value)
    assert "not in the local Hugging Face cache" in message and "hf download vidore/colqwen2-v1.0-hf" in message


def test_a_folder_without_safetensors_is_refused(tmp_path):
    folder = tiny_colpali(tmp_path / "colpali")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelUnavailable) as caught:
        DocSpace.load(str(folder), device="cpu")
    assert "has no model.safetensors" in str(caught.value) and "never pickled" in str(caught.value)


def test_a_clip_checkpoint_is_not_taken_for_a_retriever(tmp_path):
    with pytest.raises(ModelUnavailable) as caught:
        DocSpace.load(str(tiny_clip(tmp_path / "clip")), device="cpu")
    assert "ColPali-family" in str(caught.value)


def test_an_ingested_pdf_puts_its_pages_in_the_doc_space_and_a_text_query_finds_them(tmp_path, clip_dir):
    """End to end with the space on: ingest stores each page's pooled vector in `<collection>.doc` beside CLIP's,
    under the same ids, and a text search ranks the doc space's pages with its own query tower."""
    from media_pdf import make_pdf

    from mmcore.ingest import SourceFile, ingest
    from mmcore.search import search_each_modality, Query
    from mmcore.workspace import Workspace

    folder = tiny_colmodernvbert(tmp_path / "cmvb")
    ws = Workspace(Settings(data_dir=tmp_path / "data", models={"clip": str(clip_dir), "doc": str(folder)}, batch_size=4))
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(make_pdf(["Quarterly tide tables", "Harbour fees and berths", "Appendix: mackerel prices"]))
    report = ingest(ws, [SourceFile(pdf.name, path=pdf)], collection="docs")
    assert [(r.status, r.reason) for r in report.results] == [("added", None)]
    doc, clip = ws.store.open("docs", "doc"), ws.store.open("docs", "clip")
    pages = clip.ids({"modality": "page"})
    assert doc.count() == 3 and sorted(doc.ids()) == sorted(pages), "every page, under the id it has in clip"
    vectors = doc.all(with_vectors=True).vectors
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    hits = search_each_modality(ws, Query(text="tide tables"), "docs", 5)
    assert {h.id for h in hits["page"]} == set(pages)
    assert any("doc" in (h.found_in or [h.space]) for h in hits["page"]), "the doc space answered for pages"


def test_each_family_says_the_page_size_its_processor_scales_pages_to(space):
    size = space.processor.image_processor.size
    if space.family == "colqwen2":  # a pixel budget: size's longest_edge holds max_pixels
        expected = int((size["longest_edge"] * 297 / 210) ** 0.5)
    else:
        expected = size["height"] if space.family == "colpali" else size["longest_edge"]
    assert space.page_size == expected and 0 < space.page_size < 1000


def test_pages_reach_the_doc_space_at_the_size_its_processor_scales_them_to(tmp_path, clip_dir):
    """A processor that scales pages past the usual 768 px render (ColModernVBert: 2,048; here 896) gets them
    rendered at its size: the tokens stored are those of the page at that size, not of a smaller render upscaled."""
    from media_pdf import make_pdf

    from mmcore.ingest import SourceFile, ingest
    from mmcore.media.pdf import RENDER_SIZE, render_page
    from mmcore.multivector import folder_of, held_versions, load
    from mmcore.workspace import Workspace

    folder = tiny_colmodernvbert(tmp_path / "cmvb", longest_edge=896)
    ws = Workspace(Settings(data_dir=tmp_path / "data", models={"clip": str(clip_dir), "doc": str(folder)}, batch_size=4))
    data = make_pdf(["Quarterly tide tables " * 20, "Harbour fees"], colours=[(200, 30, 30), (30, 30, 200)])
    report = ingest(ws, [SourceFile("report.pdf", data=data)], collection="docs")
    assert [(r.status, r.reason) for r in report.results] == [("added", None)]
    doc = ws.store.open("docs", "doc")
    space = ws.space("doc")
    assert space.page_size == 896
    sidecar = load(folder_of(ws.store.sidecar_root, doc), doc.space.dim, held_versions(doc))
    for item in doc.get(doc.ids()):
        meta = item["metadata"]
        assert max(meta["width"], meta["height"]) == 896
        stored = sidecar.matrix(item["id"]).astype(np.float32)
        sharp = space.embed_page_tokens([render_page(data, meta["page"], "report.pdf", 896)])[0].astype(np.float32)
        blurred = space.embed_page_tokens([render_page(data, meta["page"], "report.pdf", RENDER_SIZE)])[0].astype(np.float32)
        np.testing.assert_allclose(stored, sharp, atol=2e-2)
        assert stored.shape == blurred.shape and np.abs(stored - blurred).max() > 0.05, "not the 768 px render upscaled"
    # CLIP takes the same pages (it scales them to 224 px itself), and their thumbnails are as before.
    clip = ws.store.open("docs", "clip")
    assert sorted(clip.ids({"modality": "page"})) == sorted(doc.ids())


def test_openvino_bf16_runs_colmodernvbert_in_parity_and_the_other_families_on_torch(tmp_path, monkeypatch):
    from mmcore.spaces.backends import OPENVINO_BF16, PARITY_MIN_COSINE

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # converted models: not in the user's cache
    folder = tiny_colmodernvbert(tmp_path / "cmvb", embedding_dim=16, seed=0)
    eager = DocSpace.load(str(folder), device="cpu")
    fast = DocSpace.load(str(folder), device="cpu", backend=OPENVINO_BF16)
    assert fast.info.backend == OPENVINO_BF16 and fast.towers is not None
    # Pages of other shapes than the one it was converted on (A4), so other tile counts (2 x 2, 1 x 2 and the page).
    pages = PAGES + [page((600, 300), block=(0.5, 0.5, 1, 1))]
    assert len({len(t) for t in eager.embed_page_tokens(pages)}) >= 2
    for want, got in [(eager.embed_page_tokens(pages), fast.embed_page_tokens(pages)),
                      (eager.embed_query_tokens(["tide tables", "a much longer query about harbour fees in 1912"]),
                       fast.embed_query_tokens(["tide tables", "a much longer query about harbour fees in 1912"]))]:
        for a, b in zip(want, got):
            a, b = a.astype(np.float32), b.astype(np.float32)
            assert a.shape == b.shape
            cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
            assert cosine.min() >= PARITY_MIN_COSINE
    np.testing.assert_allclose(fast.embed_images(PAGES[:1]), eager.embed_images(PAGES[:1]), atol=0.02)
    colpali = DocSpace.load(str(tiny_colpali(tmp_path / "colpali", embedding_dim=16, seed=0)), backend=OPENVINO_BF16)
    assert colpali.info.backend == "torch" and colpali.towers is None, "what ran it is what its collection records"
