"""Text: .txt / .md decoded as UTF-8 (bad bytes replaced) and split into overlapping token windows;
.csv either the same way or, when asked, one item per row. Text is data: it is stored and shown as plain
text, never rendered, whatever markup (HTML, SVG) it holds."""

from __future__ import annotations

import csv
import io

from ..errors import MediaError
from .base import Chunk, Decoded, ReadOptions, TokenSpans

# Tokenize in blocks of about this many characters, so a huge file never becomes one huge token list.
BLOCK_CHARS = 20_000
MAX_CSV_COLUMNS_AS_METADATA = 20
# More than this share of characters undecodable or control characters: binary data, not text.
MAX_UNREADABLE_SHARE = 0.2
_CONTROL_BYTES = bytes(b for b in range(32) if chr(b) not in "\t\n\r\f\v") + b"\x7f"


def read_text(name: str, data: bytes, options: ReadOptions) -> Decoded:
    text = decode(name, data, options.max_text_bytes)
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
    text = decode(name, data, options.max_text_bytes)
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


def decode(name: str, data: bytes, max_bytes: int) -> str:
    """UTF-8 with replacement; refuses text over `max_bytes` and binary data that merely carries a text extension."""
    if len(data) > max_bytes:
        raise MediaError(
            name,
            f"the text is {len(data) / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB limit for text"
            " (raise MMCORE_MAX_TEXT_MB to accept it)",
        )
    if b"\x00" in data[:8192]:
        raise MediaError(name, "looks like binary data, not text (it contains NUL bytes)")
    text = data.decode("utf-8-sig", errors="replace")
    unreadable = text.count("\ufffd") + len(data) - len(data.translate(None, _CONTROL_BYTES))
    if unreadable > MAX_UNREADABLE_SHARE * len(text):
        share = min(1.0, unreadable / len(text))
        raise MediaError(name, f"looks like binary data, not UTF-8 text ({share:.0%} of it is not readable text)")
    return text


def text_windows(text: str, token_spans: TokenSpans, max_tokens: int, overlap: int) -> list[tuple[int, int]]:
    """Character ranges of windows of at most `max_tokens` tokens, consecutive windows sharing `overlap`.

    Streams over the tokens, holding one window's worth at a time: a huge text never becomes a huge token list.
    """
    stride = max(1, max_tokens - overlap)
    windows: list[tuple[int, int]] = []
    held: list[tuple[int, int]] = []  # the tokens of the next window, from its first
    covered = True  # every token seen is inside a window already
    for offset, block in _blocks(text):
        for s, e in token_spans(block):
            if e <= s:
                continue
            held.append((offset + s, offset + e))
            covered = False
            if len(held) == max_tokens:
                windows.append((held[0][0], held[-1][1]))
                del held[:stride]
                covered = True
    if not covered:
        windows.append((held[0][0], held[-1][1]))
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
