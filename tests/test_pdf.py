"""PDF reader: one rendered page chunk plus text windows per page, bounded renders, clear errors."""

from __future__ import annotations

import re
import threading

import numpy as np
import pypdfium2 as pdfium
import pytest
from pypdfium2.internal import bases

from media_pdf import make_pdf
from mmcore.errors import MediaError
from mmcore.media import SUPPORTED_EXTENSIONS, ReadOptions, modalities_of, read_media
from mmcore.media import pdf as pdf_reader
from mmcore.media.image import THUMBNAIL_SIZE
from mmcore.media.pdf import RENDER_SIZE, read_pdf

WORDS = ("harbour tide lighthouse mackerel storm ledger shell pier anchor gull " * 40).split()


def whitespace_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"\S+", text)]


@pytest.fixture
def options():
    return ReadOptions(token_spans=whitespace_spans, max_tokens=50, overlap_tokens=8)


def reason_of(name: str, data: bytes, options: ReadOptions) -> str:
    with pytest.raises(MediaError) as caught:
        read_media(name, data, options)
    assert caught.value.name == name
    return caught.value.reason


def test_each_page_is_an_image_chunk_and_its_text_a_text_chunk(options):
    data = make_pdf(["The first page.", "Second page about tides and boats.", ""], colours=[(220, 30, 30), (30, 60, 220), None])
    decoded = read_media("doc.pdf", data, options)

    assert decoded.mime == "application/pdf" and decoded.stored_ext == ".pdf"
    pages = [c for c in decoded.chunks if c.modality == "page"]
    texts = [c for c in decoded.chunks if c.modality == "text"]
    assert [c.locator for c in pages] == [{"page": 1}, {"page": 2}, {"page": 3}]
    for chunk in pages:
        assert chunk.modality in modalities_of("doc.pdf")
        assert chunk.payload.mode == "RGB"
        # A US Letter page (612 x 792 pt) renders with its long side at RENDER_SIZE, aspect kept.
        width, height = chunk.payload.size
        assert height == RENDER_SIZE and abs(width - RENDER_SIZE * 612 / 792) <= 1
        assert chunk.meta == {"width": width, "height": height, "pages": 3}
    # The empty third page gives no text chunk; each other page's text lands on its own page.
    assert [(c.locator["page"], c.payload) for c in texts] == [(1, "The first page."), (2, "Second page about tides and boats.")]
    assert texts[1].locator == {"page": 2, "char_start": 0, "char_end": len("Second page about tides and boats.")}
    assert texts[1].meta == {"pages": 3}
    ids = [c.locator_key for c in decoded.chunks]
    assert len(set(ids)) == len(ids) and "page.p2" in ids and "text.p2.c0-34" in ids


def test_rendered_pages_show_their_content(options):
    data = make_pdf(["red", "blue"], colours=[(220, 30, 30), (30, 60, 220)])
    page1, page2 = [c.payload for c in read_pdf("doc.pdf", data, options).chunks if c.modality == "page"]
    # The coloured block fills the lower half; the upper half is white paper.
    lower = lambda im: np.asarray(im)[im.height * 3 // 4].mean(axis=0)  # noqa: E731
    assert np.abs(lower(page1) - (220, 30, 30)).max() < 3
    assert np.abs(lower(page2) - (30, 60, 220)).max() < 3
    assert np.asarray(page1)[10].min() == 255


def test_thumbnails(options):
    decoded = read_pdf("doc.pdf", make_pdf(["one", "two"], colours=[(0, 150, 0), None]), options)
    page1, text1, page2, text2 = decoded.chunks
    for page, text in ((page1, text1), (page2, text2)):
        assert page.thumbnail.mode == "RGB" and max(page.thumbnail.size) == THUMBNAIL_SIZE
        assert text.thumbnail is page.thumbnail  # a text hit shows the page it is on
    assert decoded.thumbnail is page1.thumbnail
    assert page1.thumbnail.getpixel((5, THUMBNAIL_SIZE - 5)) != page2.thumbnail.getpixel((5, THUMBNAIL_SIZE - 5))


def test_long_page_text_is_windowed_like_text_files(options):
    long_text = " ".join(WORDS)
    decoded = read_pdf("long.pdf", make_pdf(["short first page", long_text]), options)
    windows = [c for c in decoded.chunks if c.modality == "text" and c.locator["page"] == 2]

    stride = options.max_tokens - options.overlap_tokens
    assert len(windows) == -(-(len(WORDS) - options.overlap_tokens) // stride)
    for i, chunk in enumerate(windows):
        assert chunk.payload.split() == WORDS[i * stride : i * stride + options.max_tokens]
        assert chunk.locator["char_end"] - chunk.locator["char_start"] == len(chunk.payload)
    assert windows[-1].payload.split()[-1] == WORDS[-1]


@pytest.mark.parametrize("size", [(14400, 14400), (14400, 200), (1e9, 1e9)])
def test_giant_declared_page_renders_small(size, options):
    decoded = read_pdf("huge.pdf", make_pdf(["tiny text on a huge page"], size=size), options)
    page = decoded.chunks[0]
    assert max(page.payload.size) == RENDER_SIZE
    assert abs(page.payload.height - RENDER_SIZE * size[1] / size[0]) <= 1
    assert decoded.chunks[1].payload == "tiny text on a huge page"


def test_upper_case_extension_is_supported(options):
    assert ".pdf" in SUPPORTED_EXTENSIONS
    assert len(read_media("SCAN.PDF", make_pdf(["x"]), options).chunks) == 2


def test_random_bytes_named_pdf(options):
    reason = reason_of("noise.pdf", np.random.default_rng(0).bytes(5000), options)
    assert "not a readable PDF" in reason


def test_truncated_pdf(options):
    data = make_pdf(["a page", "another page"])
    assert "not a readable PDF" in reason_of("cut.pdf", data[: len(data) // 2], options)


def test_broken_page_reference(options):
    data = make_pdf(["a page"]).replace(b"/Kids [4 0 R]", b"/Kids [9 0 R]")
    assert reason_of("broken.pdf", data, options).startswith("page 1 could not be rendered")


def test_encrypted_pdf_is_refused(options):
    data = make_pdf(["secret minutes"], password="hunter2")
    reason = reason_of("secret.pdf", data, options)
    assert "password-protected" in reason and "does not open encrypted PDFs" in reason


def test_encrypted_helper_makes_a_real_encrypted_pdf():
    # Not merely malformed: the right password opens it and the text decrypts.
    data = make_pdf(["secret minutes"], password="hunter2")
    for password in ("hunter2", "owner-hunter2"):
        with pdfium.PdfDocument(data, password=password) as doc:
            page = doc[0]
            textpage = page.get_textpage()
            assert textpage.get_text_range() == "secret minutes"
            textpage.close()
            page.close()


def test_pdf_without_pages(options):
    # pdfium sets no error code for this case: an earlier failure's code must not leak into the message.
    assert "password-protected" in reason_of("secret.pdf", make_pdf(["x"], password="pw"), options)
    assert reason_of("empty.pdf", make_pdf([]), options) == "the PDF has no pages"


def test_page_limit_is_checked_before_rendering(options, monkeypatch):
    rendered = []
    monkeypatch.setattr(pdf_reader, "_render_page", lambda *a: rendered.append(a))
    options = ReadOptions(token_spans=whitespace_spans, max_tokens=50, max_pdf_pages=2)
    reason = reason_of("long.pdf", make_pdf(["one", "two", "three"]), options)
    assert "3 pages" in reason and "limit of 2" in reason and "MMCORE_MAX_PDF_PAGES" in reason
    assert rendered == []


def test_pdfium_objects_are_closed(options):
    def open_objects() -> int:
        return sum(len(refs) for refs in bases.ObjectTracker.values())

    before = open_objects()
    read_pdf("doc.pdf", make_pdf(["one", "two", "three"]), options)
    with pytest.raises(MediaError):
        read_pdf("secret.pdf", make_pdf(["x"], password="pw"), options)
    assert open_objects() == before


def test_concurrent_reads_from_threads(options):
    data = [make_pdf([f"document {i} page {p}" for p in range(1, 4)], colours=[(40 * i, 100, 200)] * 3) for i in range(4)]
    results: dict[int, list] = {}

    def read(i: int) -> None:
        decoded = read_pdf(f"doc{i}.pdf", data[i], options)
        results[i] = [(c.locator_key, c.payload if c.modality == "text" else c.payload.size) for c in decoded.chunks]

    threads = [threading.Thread(target=read, args=(i,)) for i in range(4) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        assert [text for key, text in results[i] if key.startswith("text")] == [f"document {i} page {p}" for p in range(1, 4)]


def test_the_item_view_renders_a_stored_pdf_page_as_at_ingest(tmp_path):
    from mmcore.media.pdf import RENDER_SIZE, render_page

    data = make_pdf(["first", "second"], colours=[None, (200, 30, 30)])
    page = render_page(data, 2, "stored.pdf")
    assert max(page.size) == RENDER_SIZE
    assert page.getpixel((page.width // 2, page.height * 3 // 4))[0] > 150  # the second page's red block
    with pytest.raises(MediaError, match="stored.pdf.*no page 3"):
        render_page(data, 3, "stored.pdf")
    with pytest.raises(MediaError, match="can't be rendered"):
        render_page(b"%PDF-1.4 torn", 1, "torn.pdf")


def test_pages_a_space_sees_larger_are_rendered_at_its_size_one_at_a_time(options):
    from dataclasses import replace

    data = make_pdf([" ".join(WORDS[:120]), "Second page.", ""], colours=[(220, 30, 30), None, (30, 60, 220)])
    eager = read_pdf("doc.pdf", data, options)  # no space wants more than RENDER_SIZE: rendered up front, as always
    assert isinstance(eager.chunks, list) and max(eager.chunks[0].payload.size) == RENDER_SIZE
    lazy = read_pdf("doc.pdf", data, replace(options, page_size=2048))
    assert not isinstance(lazy.chunks, list), "large renders are made as the pages are consumed"
    chunks = list(lazy.chunks)
    assert lazy.count == len(chunks) == len(eager.chunks)
    assert [c.locator_key for c in chunks] == [c.locator_key for c in eager.chunks]
    assert [c.payload for c in chunks if c.modality == "text"] == [c.payload for c in eager.chunks if c.modality == "text"]
    for big, small in zip([c for c in chunks if c.modality == "page"], [c for c in eager.chunks if c.modality == "page"]):
        assert max(big.payload.size) == 2048 and abs(big.payload.width - 2048 * 612 / 792) <= 1
        assert big.meta == {"width": big.payload.width, "height": big.payload.height, "pages": 3}
        assert max(big.thumbnail.size) == THUMBNAIL_SIZE and big.thumbnail.size == small.thumbnail.size
    assert lazy.thumbnail.size == eager.thumbnail.size
    # The text limit is still checked before anything is rendered.
    with pytest.raises(MediaError, match="over the 0 MB limit"):
        read_pdf("doc.pdf", data, replace(options, page_size=2048, max_text_bytes=100))
