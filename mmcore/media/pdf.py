"""PDF documents: each page rendered as an RGB image (embedded like a picture) plus its extracted text, split
into the same token windows as text files. Rendered with pdfium (pypdfium2).

Pages are rendered at RENDER_SIZE on their long side, or larger when a space that takes pages sees them larger
(`ReadOptions.page_size`: the doc space's ColModernVBert scales a page to 2,048 px before tiling it; a page
rendered smaller would reach it as upscaled blur). Renders that large are made as the pages are embedded, one
at a time, so a long PDF's pages never all sit in memory (a 2,048 px A4 page is 9 MB)."""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Iterator

from PIL import Image

from ..errors import MediaError
from .base import Chunk, Decoded, ReadOptions
from .image import THUMBNAIL_SIZE
from .text import text_windows

if TYPE_CHECKING:
    import pypdfium2 as pdfium

RENDER_SIZE = 768  # longest side of a rendered page in pixels, whatever size the page declares (CLIP sees 224)
# A PDF's pages rendered larger than this are rendered one at a time as they are embedded (see above).
EAGER_MAX_SIZE = RENDER_SIZE
# pdfium is not thread-safe, not even across different documents, and Streamlit runs sessions in threads.
_PDFIUM_LOCK = threading.Lock()


def read_pdf(name: str, data: bytes, options: ReadOptions) -> Decoded:
    """Decode a PDF into one `page` chunk (the rendered page) and its text windows per page, pages from 1."""
    size = max(RENDER_SIZE, options.page_size)
    if size > EAGER_MAX_SIZE:
        return _read_lazily(name, data, options, size)
    rendered = _render_pages(name, data, options.max_pdf_pages, size)
    _check_text(name, [text for _, text in rendered], options)
    chunks = []
    for number, (image, text) in enumerate(rendered, start=1):
        chunks += _page_chunks(number, len(rendered), image, text, options)
    return Decoded(mime="application/pdf", stored_ext=".pdf", chunks=chunks, thumbnail=chunks[0].thumbnail)


def _read_lazily(name: str, data: bytes, options: ReadOptions, size: int) -> Decoded:
    """As `read_pdf`, with each page rendered when its chunks are consumed: its text is read (and checked) first."""
    texts = _page_texts(name, data, options.max_pdf_pages)
    _check_text(name, texts, options)
    windows = [list(text_windows(text, options.token_spans, options.max_tokens, options.overlap_tokens)) for text in texts]
    first = _page_chunks(1, len(texts), render_page(data, 1, name, size), texts[0], options)

    def chunks() -> Iterator[Chunk]:
        yield from first
        for number in range(2, len(texts) + 1):
            yield from _page_chunks(number, len(texts), render_page(data, number, name, size), texts[number - 1], options)

    count = len(texts) + sum(len(w) for w in windows)
    return Decoded(mime="application/pdf", stored_ext=".pdf", chunks=chunks(), thumbnail=first[0].thumbnail, count=count)


def _check_text(name: str, texts: list[str], options: ReadOptions) -> None:
    text_chars = sum(len(text) for text in texts)
    if text_chars > options.max_text_bytes:
        limit = options.max_text_bytes / 2**20
        raise MediaError(name, f"the PDF holds {text_chars:,} characters of text, over the {limit:.0f} MB limit for text"
                         " (raise MMCORE_MAX_TEXT_MB to accept it)")


def _page_chunks(number: int, total: int, image: Image.Image, text: str, options: ReadOptions) -> list[Chunk]:
    """Page `number`'s chunk and its text windows' (each showing the page's thumbnail: the same object)."""
    thumb = image.copy()
    thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    meta = {"width": image.width, "height": image.height, "pages": total}
    chunks = [Chunk("page", image, locator={"page": number}, meta=meta, thumbnail=thumb)]
    for start, end in text_windows(text, options.token_spans, options.max_tokens, options.overlap_tokens):
        locator = {"page": number, "char_start": start, "char_end": end}
        chunks.append(Chunk("text", text[start:end], locator=locator, meta={"pages": total}, thumbnail=thumb))
    return chunks


def render_page(data: bytes, number: int, name: str, size: int = RENDER_SIZE) -> Image.Image:
    """Page `number` (from 1) of a stored PDF's bytes, rendered with `size` pixels on its long side (as at ingest:
    RENDER_SIZE, or a space's `page_size`); `name` names the file in errors.

    Raises:
        MediaError: the PDF has no such page or can't be rendered.
    """
    import pypdfium2 as pdfium

    with _PDFIUM_LOCK:
        try:
            with pdfium.PdfDocument(data) as pdf:
                if not 1 <= number <= len(pdf):
                    raise MediaError(name, f"the PDF has no page {number}")
                return _render_page(pdf, number - 1, size)[0]
        except pdfium.PdfiumError as e:
            raise MediaError(name, f"the PDF can't be rendered ({e})") from None
        except (ValueError, MemoryError) as e:
            raise MediaError(name, f"page {number} could not be rendered ({str(e) or type(e).__name__})") from None


def _render_pages(name: str, data: bytes, max_pages: int, size: int) -> list[tuple[Image.Image, str]]:
    """(RGB render, text) per page; every pdfium call, closing included, happens under the lock."""
    return _each_page(name, data, max_pages, lambda pdf, index: _render_page(pdf, index, size))


def _page_texts(name: str, data: bytes, max_pages: int) -> list[str]:
    """The text of each page, nothing rendered."""
    return _each_page(name, data, max_pages, _page_text)


def _each_page(name: str, data: bytes, max_pages: int, read) -> list:
    """`read(pdf, index)` of every page of the PDF `data`, checked: readable, unencrypted, 1 to `max_pages` pages."""
    import pypdfium2 as pdfium  # here, not above: a process that reads no PDF doesn't pay for it
    import pypdfium2.internal as pdfium_i
    from pypdfium2 import raw as pdfium_c

    with _PDFIUM_LOCK:
        # Loaded through the raw API: pypdfium2's own loader reports a stale error code for a PDF without
        # pages (pdfium sets none then), which could read as a password error.
        raw = pdfium_c.FPDF_LoadMemDocument64(data, len(data), None)
        if not raw:
            error = pdfium_c.FPDF_GetLastError()
            if error in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
                reason = "the PDF is password-protected (encrypted); mmscope does not open encrypted PDFs"
                raise MediaError(name, reason)
            reason = pdfium_i.ErrorToStr.get(error)
            raise MediaError(name, f"not a readable PDF: damaged, truncated or not a PDF at all (pdfium: {reason})")
        pdf = pdfium.PdfDocument(raw)  # closes `raw` on exit; `data` outlives it (pdfium reads it in place)
        with pdf:
            total = len(pdf)
            if total == 0:
                raise MediaError(name, "the PDF has no pages")
            if total > max_pages:
                reason = f"the PDF has {total} pages, over the limit of {max_pages}"
                raise MediaError(name, reason + " (raise MMCORE_MAX_PDF_PAGES to accept it)")
            pages = []
            for index in range(total):
                try:
                    pages.append(read(pdf, index))
                except (pdfium.PdfiumError, ValueError, MemoryError) as e:
                    detail = str(e) or type(e).__name__
                    raise MediaError(name, f"page {index + 1} could not be rendered ({detail})") from None
            return pages


def _render_page(pdf: pdfium.PdfDocument, index: int, size: int = RENDER_SIZE) -> tuple[Image.Image, str]:
    page = pdf[index]
    try:
        width, height = page.get_size()
        if not (math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0):
            raise ValueError(f"the page declares an invalid size, {width} x {height}")
        # Scale from the declared size, so a page claiming a giant MediaBox still gives a small bitmap; the
        # margin keeps pdfium's ceil() of the scaled size at `size`.
        scale = (size - 0.01) / max(width, height)
        bitmap = page.render(scale=scale, rev_byteorder=True)
        try:
            image = bitmap.to_pil().convert("RGB")  # convert copies: the bitmap's buffer is freed on close
        finally:
            bitmap.close()
        return image, _text_of(page)
    finally:
        page.close()


def _page_text(pdf: pdfium.PdfDocument, index: int) -> str:
    page = pdf[index]
    try:
        return _text_of(page)
    finally:
        page.close()


def _text_of(page) -> str:
    textpage = page.get_textpage()
    try:
        return textpage.get_text_range().replace("\r\n", "\n")
    finally:
        textpage.close()
