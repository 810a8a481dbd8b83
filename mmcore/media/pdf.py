"""PDF documents: each page rendered as an RGB image (embedded like a picture) plus its extracted text, split
into the same token windows as text files. Rendered with pdfium (pypdfium2)."""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING

from PIL import Image

from ..errors import MediaError
from .base import Chunk, Decoded, ReadOptions
from .image import THUMBNAIL_SIZE
from .text import text_windows

if TYPE_CHECKING:
    import pypdfium2 as pdfium

RENDER_SIZE = 768  # longest side of a rendered page in pixels, whatever size the page declares (CLIP sees 224)
# pdfium is not thread-safe, not even across different documents, and Streamlit runs sessions in threads.
_PDFIUM_LOCK = threading.Lock()


def read_pdf(name: str, data: bytes, options: ReadOptions) -> Decoded:
    """Decode a PDF into one `page` chunk (the rendered page) and its text windows per page, pages from 1."""
    rendered = _render_pages(name, data, options.max_pdf_pages)
    total = len(rendered)
    text_chars = sum(len(text) for _, text in rendered)
    if text_chars > options.max_text_bytes:
        limit = options.max_text_bytes / 2**20
        raise MediaError(name, f"the PDF holds {text_chars:,} characters of text, over the {limit:.0f} MB limit for text"
                         " (raise MMCORE_MAX_TEXT_MB to accept it)")
    chunks = []
    for number, (image, text) in enumerate(rendered, start=1):
        thumb = image.copy()
        thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        meta = {"width": image.width, "height": image.height, "pages": total}
        chunks.append(Chunk("page", image, locator={"page": number}, meta=meta, thumbnail=thumb))
        for start, end in text_windows(text, options.token_spans, options.max_tokens, options.overlap_tokens):
            locator = {"page": number, "char_start": start, "char_end": end}
            # A text hit shows the page it comes from (the same thumbnail object, no extra memory).
            chunks.append(Chunk("text", text[start:end], locator=locator, meta={"pages": total}, thumbnail=thumb))
    return Decoded(mime="application/pdf", stored_ext=".pdf", chunks=chunks, thumbnail=chunks[0].thumbnail)


def render_page(data: bytes, number: int, name: str) -> Image.Image:
    """Page `number` (from 1) of a stored PDF's bytes, rendered as at ingest (RENDER_SIZE on its long side), for
    display; `name` names the file in errors.

    Raises:
        MediaError: the PDF has no such page or can't be rendered.
    """
    import pypdfium2 as pdfium  # here, not above: a process that reads no PDF doesn't pay for it

    with _PDFIUM_LOCK:
        try:
            with pdfium.PdfDocument(data) as pdf:
                if not 1 <= number <= len(pdf):
                    raise MediaError(name, f"the PDF has no page {number}")
                return _render_page(pdf, number - 1)[0]
        except pdfium.PdfiumError as e:
            raise MediaError(name, f"the stored PDF can't be rendered ({e})") from None


def _render_pages(name: str, data: bytes, max_pages: int) -> list[tuple[Image.Image, str]]:
    """(RGB render, text) per page; every pdfium call, closing included, happens under the lock."""
    import pypdfium2 as pdfium
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
                    pages.append(_render_page(pdf, index))
                except (pdfium.PdfiumError, ValueError, MemoryError) as e:
                    detail = str(e) or type(e).__name__
                    raise MediaError(name, f"page {index + 1} could not be rendered ({detail})") from None
            return pages


def _render_page(pdf: pdfium.PdfDocument, index: int) -> tuple[Image.Image, str]:
    page = pdf[index]
    try:
        width, height = page.get_size()
        if not (math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0):
            raise ValueError(f"the page declares an invalid size, {width} x {height}")
        # Scale from the declared size, so a page claiming a giant MediaBox still gives a small bitmap; the
        # margin keeps pdfium's ceil() of the scaled size at RENDER_SIZE.
        scale = (RENDER_SIZE - 0.01) / max(width, height)
        bitmap = page.render(scale=scale, rev_byteorder=True)
        try:
            image = bitmap.to_pil().convert("RGB")  # convert copies: the bitmap's buffer is freed on close
        finally:
            bitmap.close()
        textpage = page.get_textpage()
        try:
            text = textpage.get_text_range().replace("\r\n", "\n")
        finally:
            textpage.close()
    finally:
        page.close()
    return image, text
