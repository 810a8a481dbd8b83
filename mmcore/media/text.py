"""Text: .txt / .md decoded as UTF-8 (bad bytes replaced) and split into overlapping token windows;
.csv either the same way or, when asked, one item per row. Text is data: it is stored and shown as plain
text, never rendered, whatever markup (HTML, SVG) it holds.

A CSV read by rows whose columns are an image file name and a caption (found, or named by `pair_column`) is
read as image-caption pairs: each row's item is its caption alone, and names its image (`Chunk.pair`).
"""

from __future__ import annotations

import csv
import io
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..errors import MediaError
from .base import Chunk, Decoded, ReadOptions, TokenSpans
from .image import EXTENSIONS as IMAGE_EXTENSIONS

# Tokenize in blocks of about this many characters, so a huge file never becomes one huge token list, and
# many short CSV rows cost one tokenizer call rather than one each.
BLOCK_CHARS = 20_000
MAX_CSV_COLUMNS_AS_METADATA = 20
# More than this share of characters undecodable or control characters: binary data, not text.
MAX_UNREADABLE_SHARE = 0.2
_CONTROL_BYTES = bytes(b for b in range(32) if chr(b) not in "\t\n\r\f\v") + b"\x7f"
# Pairs: a column is one of image file names when this share of its non-empty cells end in an image extension.
IMAGE_COLUMN_SHARE = 0.9
CAPTION_NAMES = ("caption", "captions", "text", "description", "sentence", "alt", "alt_text", "title", "label")
PAIR_SAMPLE_ROWS = 1000  # rows looked at to find the pair columns


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
    del text
    if len(rows) < 2:
        raise MediaError(name, "a CSV read one row per item needs a header row and at least one data row")
    header = [h.strip() or f"column{i + 1}" for i, h in enumerate(rows[0])]
    pair = pair_columns(name, header, rows[1:], options.pair_column)
    items = []  # (row number, text embedded, metadata, image named), rows with nothing in them left out
    for row_number, row in enumerate(rows[1:], start=1):
        fields = [(h, v.strip()) for h, v in zip(header, row) if v.strip()]
        if pair is None:
            row_text, image = "; ".join(f"{h}: {v}" for h, v in fields), None
        else:
            cells = dict(fields)
            row_text, image = cells.get(header[pair[1]], ""), cells.get(header[pair[0]]) or None
            fields = [(h, v) for h, v in fields if h != header[pair[1]]]  # the caption is the item's document
        if row_text:  # its metadata is made as its chunks are: a dict per row would hold 1 KB a row until then
            items.append((row_number, row_text, tuple(fields[:MAX_CSV_COLUMNS_AS_METADATA]), image))
    del rows
    windows = many_text_windows([t for _, t, _, _ in items], options.token_spans, options.max_tokens, options.overlap_tokens)
    count = sum(len(w) for w in windows)
    if not count:
        raise MediaError(name, "the CSV has no non-empty data rows")

    def chunks() -> Iterator[Chunk]:  # built as they are embedded: a big CSV's chunks never all sit in memory
        for (row_number, row_text, fields, image), row_windows in zip(items, windows):
            meta = {f"csv_{h}": v[:500] for h, v in fields}
            for start, end in row_windows:
                locator = {"row": row_number, "char_start": start, "char_end": end}
                yield Chunk("text", row_text[start:end], locator=locator, meta=meta, pair=image)

    pairs = frozenset(image for _, _, _, image in items if image)
    return Decoded(mime="text/csv", stored_ext=".csv", chunks=chunks(), count=count, pairs=pairs)


def pair_columns(name: str, header: list[str], rows: Sequence[list[str]], wanted: str) -> tuple[int, int] | None:
    """(image column, caption column) of an image-caption CSV, or None when it isn't one (or `wanted` is "none").

    Found ("auto"): a column where nine in ten non-empty cells end in an image extension, preferring one named like
    "image", and beside it the column named like a caption ("caption", "text", ...), else the one of longest
    cells that is not numbers. `wanted` names the image column instead.
    Raises:
        MediaError: the column `wanted` is not in the header, or no column beside it holds text.
    """
    if wanted == "none":
        return None
    sample = rows[:PAIR_SAMPLE_ROWS]

    def cells(i: int) -> list[str]:
        return [r[i].strip() for r in sample if i < len(r) and r[i].strip()]

    if wanted != "auto":
        matching = [i for i, h in enumerate(header) if h.lower() == wanted.strip().lower()]
        if not matching:
            raise MediaError(name, f"has no column {wanted!r} to pair images by (its columns: {', '.join(header)})")
        image = matching[0]
    else:
        images = [i for i in range(len(header)) if _share(cells(i), _names_image) >= IMAGE_COLUMN_SHARE]
        if not images:
            return None
        image = min(images, key=lambda i: ("image" not in header[i].lower() and "file" not in header[i].lower(), i))
    texts = [i for i in range(len(header)) if i != image and cells(i) and _share(cells(i), _is_number) < 0.5
             and _share(cells(i), _names_image) < IMAGE_COLUMN_SHARE]
    if not texts:
        if wanted != "auto":
            raise MediaError(name, f"has no column of captions beside its image column {header[image]!r}")
        return None
    named = sorted((i for i in texts if header[i].lower() in CAPTION_NAMES), key=lambda i: CAPTION_NAMES.index(header[i].lower()))
    caption = named[0] if named else max(texts, key=lambda i: (sum(map(len, cells(i))) / len(cells(i)), -i))
    return image, caption


def _names_image(cell: str) -> bool:
    return len(cell) < 1024 and "\n" not in cell and cell.lower().endswith(IMAGE_EXTENSIONS)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def _share(cells: list[str], test) -> float:
    return sum(1 for c in cells if test(c)) / len(cells) if cells else 0.0


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
    spans = ((offset + s, offset + e) for offset, block in _blocks(text) for s, e in token_spans(block))
    return _windows(spans, max_tokens, overlap)


def many_text_windows(texts: Sequence[str], token_spans: TokenSpans, max_tokens: int, overlap: int) -> list[list[tuple[int, int]]]:
    """`text_windows` of each text, tokenizing many short texts (CSV rows) together: they are joined by newlines
    into blocks of about BLOCK_CHARS, one tokenizer call each, and each token goes back to the text it lies in
    (a token from a newline on belongs to the text after it)."""
    windows: list[list[tuple[int, int]]] = []
    start = 0
    while start < len(texts):
        end, size = start + 1, len(texts[start]) + 1
        while end < len(texts) and size + len(texts[end]) < BLOCK_CHARS:
            size += len(texts[end]) + 1
            end += 1
        block = texts[start:end]
        lengths = np.fromiter(map(len, block), dtype=np.int64, count=len(block))
        bounds = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
        spans = np.asarray(token_spans("\n".join(block)), dtype=np.int64).reshape(-1, 2)
        owner = np.searchsorted(bounds, spans[:, 0] + 1, side="right") - 1
        lo = np.maximum(spans[:, 0], bounds[owner]) - bounds[owner]
        hi = np.minimum(spans[:, 1], bounds[owner] + lengths[owner]) - bounds[owner]
        kept = hi > lo
        owner, lo, hi = owner[kept], lo[kept].tolist(), hi[kept].tolist()
        firsts = np.searchsorted(owner, np.arange(len(block) + 1)).tolist()
        for a, b in zip(firsts, firsts[1:]):
            if b - a <= max_tokens:  # most rows: one window, no need to walk its tokens
                windows.append([(lo[a], hi[b - 1])] if b > a else [])
            else:
                windows.append(_windows(zip(lo[a:b], hi[a:b]), max_tokens, overlap))
        start = end
    return windows


def _windows(spans: Iterable[tuple[int, int]], max_tokens: int, overlap: int) -> list[tuple[int, int]]:
    stride = max(1, max_tokens - overlap)
    windows: list[tuple[int, int]] = []
    held: list[tuple[int, int]] = []  # the tokens of the next window, from its first
    covered = True  # every token seen is inside a window already
    for s, e in spans:
        if e <= s:
            continue
        held.append((s, e))
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
