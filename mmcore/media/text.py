"""Text: .txt / .md decoded as UTF-8 (bad bytes replaced) and split into overlapping token windows;
.csv either the same way or, when asked, one item per row."""

from __future__ import annotations

import csv
import io

from ..errors import MediaError
from .base import Chunk, Decoded, ReadOptions, TokenSpans

# Tokenize in blocks of about this many characters, so a huge file never becomes one huge token list.
BLOCK_CHARS = 20_000
MAX_CSV_COLUMNS_AS_METADATA = 20


def read_text(name: str, data: bytes, options: ReadOptions) -> Decoded:
    text = decode(name, data)
    chunks = [
        Chunk("text", text[start:end], locator={"char_start": start, "char_end": end})
        for start, end in text_windows(text, options.token_spans, options.max_tokens, options.overlap_tokens)
    ]
    if not chunks:
        raise MediaError(name, "the file contains no text")
    mime = "text/markdown" if name.lower().endswith((".md", ".markdown")) else "text/plain"
    return Decoded(mime=mime, stored_ext=".md" if mime == "text/markdown" else ".txt", chunks=chunks)


def read_csv(name: str, data: bytes, options: ReadOptions) -> Decoded:
    if not options.csv_rows:
        decoded = read_text(name, data, options)
        return Decoded(mime="text/csv", stored_ext=".csv", chunks=decoded.chunks)
    text = decode(name, data)
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    csv.field_size_limit(max(len(text), 131072))
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as e:
        raise MediaError(name, f"not valid CSV ({e})") from None
    if len(rows) < 2:
        raise MediaError(name, "a CSV read one row per item needs a header row and at least one data row")
    header = [h.strip() or f"column{i + 1}" for i, h in enumerate(rows[0])]
    chunks = []
    for row_number, row in enumerate(rows[1:], start=1):
        fields = [(h, v.strip()) for h, v in zip(header, row) if v.strip()]
        if not fields:
            continue
        row_text = "; ".join(f"{h}: {v}" for h, v in fields)
        meta = {f"csv_{h}": v[:500] for h, v in fields[:MAX_CSV_COLUMNS_AS_METADATA]}
        for start, end in text_windows(row_text, options.token_spans, options.max_tokens, options.overlap_tokens):
            locator = {"row": row_number, "char_start": start, "char_end": end}
            chunks.append(Chunk("text", row_text[start:end], locator=locator, meta=meta))
    if not chunks:
        raise MediaError(name, "the CSV has no non-empty data rows")
    return Decoded(mime="text/csv", stored_ext=".csv", chunks=chunks)


def decode(name: str, data: bytes) -> str:
    """UTF-8 with replacement; refuses binary data that merely carries a text extension."""
    if b"\x00" in data[:8192]:
        raise MediaError(name, "looks like binary data, not text (it contains NUL bytes)")
    return data.decode("utf-8-sig", errors="replace")


def text_windows(text: str, token_spans: TokenSpans, max_tokens: int, overlap: int) -> list[tuple[int, int]]:
    """Character ranges of windows of at most `max_tokens` tokens, consecutive windows sharing `overlap`."""
    spans = []
    for offset, block in _blocks(text):
        spans.extend((offset + s, offset + e) for s, e in token_spans(block) if e > s)
    if not spans:
        return []
    stride = max(1, max_tokens - overlap)
    windows = []
    for first in range(0, len(spans), stride):
        last = min(first + max_tokens, len(spans))
        windows.append((spans[first][0], spans[last - 1][1]))
        if last == len(spans):
            break
    return windows


def _blocks(text: str):
    """(offset, block) pieces of at most about BLOCK_CHARS, cut at whitespace where there is some."""
    start = 0
    while start < len(text):
        end = min(start + BLOCK_CHARS, len(text))
        if end < len(text):
            cut = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
            if cut > start:
                end = cut + 1
        yield start, text[start:end]
        start = end
