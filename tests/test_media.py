"""Readers: every image format decodes to RGB, bad or unsafe files fail with a reason, text is windowed."""

from __future__ import annotations


import numpy as np
import pytest

import media_factory as mf
from mmcore.errors import MediaError
from mmcore.media import ReadOptions, read_media
from mmcore.media.image import DRAFT_SIDE, THUMBNAIL_SIZE
from mmcore.media.text import BLOCK_CHARS

MIMES = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp", ".gif": "image/gif", ".bmp": "image/bmp", ".tiff": "image/tiff"}


@pytest.fixture
def space(ws):
    return ws.space()


@pytest.fixture
def options(space):
    return ReadOptions(token_spans=space.token_spans, max_tokens=space.max_text_tokens)


def reason_of(name: str, data: bytes, options: ReadOptions) -> str:
    with pytest.raises(MediaError) as caught:
        read_media(name, data, options)
    assert caught.value.name == name
    assert str(caught.value).startswith(f"{name}: ")
    return caught.value.reason


# --- images ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", list(mf.IMAGE_FORMATS))
def test_every_image_format_decodes_to_rgb_of_its_size(ext, media, options):
    decoded = read_media(f"img{ext}", media[f"img{ext}"].read_bytes(), options)
    size, colour, pattern = mf.IMAGE_SPECS[ext]

    assert decoded.mime == MIMES[ext]
    [chunk] = decoded.chunks
    assert chunk.modality == "image" and chunk.locator == {}
    assert chunk.payload.mode == "RGB" and chunk.payload.size == size
    assert chunk.meta == {"width": size[0], "height": size[1]}
    # The pixels are the picture's (lossy formats allowed a little noise), not e.g. channels swapped.
    expected = np.asarray(mf.picture(size, colour, pattern), dtype=np.float32)
    assert np.abs(np.asarray(chunk.payload, dtype=np.float32) - expected).mean() < 12
    assert decoded.thumbnail.mode == "RGB" and max(decoded.thumbnail.size) <= THUMBNAIL_SIZE


def test_large_image_gets_a_small_thumbnail(options):
    data = mf.encode(mf.picture((1000, 500), (0, 100, 0), "stripes"), "PNG")
    decoded = read_media("wide.png", data, options)
    assert decoded.chunks[0].payload.size == (1000, 500)
    assert decoded.thumbnail.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE // 2)


def test_exif_orientation_is_applied(options):
    decoded = read_media("portrait.jpg", mf.rotated_jpeg(40, 20), options)
    assert decoded.chunks[0].payload.size == (20, 40)
    assert decoded.chunks[0].meta == {"width": 20, "height": 40}


def test_a_big_jpeg_is_decoded_at_a_reduced_scale_that_still_covers_the_model_and_thumbnail(options):
    picture = mf.picture((3000, 2000), (200, 30, 30), "stripes")
    decoded = read_media("big.jpg", mf.encode(picture, "JPEG"), options)
    image = decoded.chunks[0].payload
    assert image.size == (750, 500)  # 1/4 scale: the smallest whose sides are both at least DRAFT_SIDE
    assert min(image.size) >= DRAFT_SIDE
    assert decoded.chunks[0].meta == {"width": 3000, "height": 2000}  # the file's own size, not the decoded one
    seen, expected = (np.asarray(im.resize((60, 40)), dtype=np.float32) for im in (image, picture))
    assert np.abs(seen - expected).mean() < 12  # the same picture, whatever the downscaling method
    assert max(decoded.thumbnail.size) == THUMBNAIL_SIZE


def test_a_big_turned_jpeg_reports_its_size_as_shown(options):
    decoded = read_media("portrait.jpg", mf.rotated_jpeg(2000, 1200), options)
    assert decoded.chunks[0].meta == {"width": 1200, "height": 2000}
    assert decoded.chunks[0].payload.size == (600, 1000)


def test_png_transparency_is_flattened_onto_white(options):
    image = read_media("alpha.png", mf.transparent_png((20, 10)), options).chunks[0].payload
    assert image.mode == "RGB"
    assert image.getpixel((2, 5)) == (255, 255, 255)
    assert image.getpixel((17, 5)) == (255, 0, 0)


def test_gif_transparency_is_flattened_onto_white(options):
    image = read_media("alpha.gif", mf.transparent_gif((20, 10)), options).chunks[0].payload
    assert image.mode == "RGB"
    assert image.getpixel((2, 5)) == (255, 255, 255)
    assert image.getpixel((17, 5)) == (0, 0, 255)


def test_truncated_jpeg_is_refused(options):
    reason = reason_of("cut.jpg", mf.truncated_jpeg(), options)
    assert "truncated" in reason or "corrupt" in reason


def test_png_claiming_huge_dimensions_is_refused_without_decoding(options):
    bomb = mf.png_bomb(50_000, 50_000)
    assert len(bomb) < 200
    reason = reason_of("bomb.png", bomb, options)  # 50,000 x 50,000 RGB would be 7.5 GB: refused from the header
    assert "decompression bomb" in reason


def test_png_between_pillow_warning_and_error_limits_is_refused(space):
    # 12,000 x 12,000 is over Pillow's warning limit (~89 MP) but under its hard error limit (~179 MP).
    options = ReadOptions(token_spans=space.token_spans, max_tokens=10, max_image_pixels=10**9)
    assert "decompression bomb" in reason_of("big.png", mf.png_bomb(12_000, 12_000), options)


def test_image_over_the_configured_pixel_limit_is_refused(media, space):
    options = ReadOptions(token_spans=space.token_spans, max_tokens=10, max_image_pixels=1000)
    reason = reason_of("img.jpg", media["img.jpg"].read_bytes(), options)  # 64 x 48 = 3072 pixels
    assert "64 x 48" in reason and "decompression bomb" in reason and "MMCORE_MAX_IMAGE_PIXELS" in reason


def test_executable_named_png_is_not_an_image(options):
    assert "not a readable image" in reason_of("x.png", mf.elf_bytes(), options)


def test_text_named_jpg_is_not_an_image(options):
    assert "not a readable image" in reason_of("notes.jpg", b"just some words, not a picture\n" * 10, options)


def test_empty_file_is_refused(options):
    assert "empty" in reason_of("nothing.png", b"", options)
    assert "empty" in reason_of("nothing.txt", b"", options)


@pytest.mark.parametrize("name", ["setup.exe", "README", "archive.tar.gz"])
def test_unsupported_extensions_are_refused(name, options):
    reason = reason_of(name, b"MZ\x90\x00" + b"\x00" * 64, options)
    assert "unsupported" in reason
    assert ".png" in reason and ".txt" in reason  # says what is supported


def test_svg_is_unsupported(options):
    assert "unsupported" in reason_of("logo.svg", mf.SVG, options)


def test_file_over_the_size_limit_is_refused(media, space):
    options = ReadOptions(token_spans=space.token_spans, max_tokens=10, max_file_bytes=100)
    assert "limit" in reason_of("img.png", media["img.png"].read_bytes(), options)


# --- text -----------------------------------------------------------------------------------------------


def assert_windows_cover(text: str, chunks, token_spans, max_tokens: int) -> None:
    """Chunks are in order, index `text` exactly, fit max_tokens, overlap, and together cover every token."""
    assert chunks
    covered = np.zeros(len(text), dtype=bool)
    for chunk in chunks:
        start, end = chunk.locator["char_start"], chunk.locator["char_end"]
        assert chunk.modality == "text"
        assert chunk.payload == text[start:end]
        assert 0 < len(token_spans(chunk.payload)) <= max_tokens
        covered[start:end] = True
    for before, after in zip(chunks, chunks[1:]):
        assert before.locator["char_start"] < after.locator["char_start"]
        assert after.locator["char_start"] < before.locator["char_end"], "consecutive windows must overlap"
    uncovered = [i for i, ch in enumerate(text) if not covered[i] and not ch.isspace()]
    assert uncovered == []


@pytest.mark.parametrize("max_tokens,overlap", [(None, 8), (16, 4), (10, 1)])
def test_text_windows_fit_overlap_and_cover_the_text(max_tokens, overlap, space):
    text = mf.LONG_TEXT * 3
    max_tokens = max_tokens or space.max_text_tokens
    options = ReadOptions(token_spans=space.token_spans, max_tokens=max_tokens, overlap_tokens=overlap)
    decoded = read_media("long.txt", text.encode(), options)

    assert decoded.mime == "text/plain" and decoded.thumbnail is None
    assert len(decoded.chunks) > 3
    assert_windows_cover(text, decoded.chunks, space.token_spans, max_tokens)
    assert decoded.chunks[0].locator["char_start"] == 0
    assert decoded.chunks[-1].locator["char_end"] == len(text.rstrip())
    # Exactly `overlap` tokens are shared between neighbours.
    first, second = decoded.chunks[0], decoded.chunks[1]
    shared = first.payload[second.locator["char_start"] - first.locator["char_start"]:]
    assert len(space.token_spans(shared)) == overlap


def test_text_longer_than_one_tokenizer_block_is_covered(space):
    words = ["harbour", "tide", "mackerel", "lighthouse", "ledger", "storm", "shell", "pier"]
    text = " ".join(f"{words[i % len(words)]}{i}" for i in range(2 * BLOCK_CHARS // 8))
    assert len(text) > 2 * BLOCK_CHARS
    options = ReadOptions(token_spans=space.token_spans, max_tokens=space.max_text_tokens)
    chunks = read_media("huge.md", text.encode(), options).chunks
    assert_windows_cover(text, chunks, space.token_spans, space.max_text_tokens)
    assert chunks[-1].locator["char_end"] == len(text)


def test_short_text_is_one_window(options):
    decoded = read_media("note.md", b"  Hello there  \n", options)
    assert decoded.mime == "text/markdown"
    [chunk] = decoded.chunks
    assert chunk.payload == "Hello there"
    assert chunk.locator == {"char_start": 2, "char_end": 13}


def test_invalid_utf8_is_replaced_not_refused(options):
    decoded = read_media("latin1.txt", "café au lait".encode("latin-1"), options)
    assert decoded.chunks[0].payload == "caf\ufffd au lait"


def test_utf8_bom_is_dropped(options):
    decoded = read_media("bom.txt", "\ufeffhello".encode("utf-8"), options)
    assert decoded.chunks[0].payload == "hello"
    assert decoded.chunks[0].locator == {"char_start": 0, "char_end": 5}


def test_nul_bytes_in_text_file_are_refused_as_binary(options):
    assert "binary" in reason_of("data.txt", b"hello\x00\x01\x02world", options)


@pytest.mark.parametrize("data", [b"   \n\t\r\n  ", "\u00a0\u2003\n".encode()])
def test_whitespace_only_text_is_refused(data, options):
    assert "no text" in reason_of("blank.txt", data, options)
    assert "no text" in reason_of("blank.csv", data, options)


def test_csv_rows_become_one_item_each(space):
    options = ReadOptions(token_spans=space.token_spans, max_tokens=space.max_text_tokens, csv_rows=True)
    decoded = read_media("fruit.csv", mf.CSV_TEXT.encode(), options)
    chunks = list(decoded.chunks)  # made as they are consumed: a big CSV's rows never all sit in memory as chunks

    assert decoded.mime == "text/csv" and decoded.known_count == 3
    assert [c.locator["row"] for c in chunks] == [1, 2, 3]
    assert [c.payload for c in chunks] == [
        "name: apple; colour: red; size: small",
        "name: banana; colour: yellow; size: medium",
        "name: watermelon; colour: green; size: large",
    ]
    assert chunks[1].meta == {"csv_name": "banana", "csv_colour": "yellow", "csv_size": "medium"}
    assert chunks[2].locator == {"row": 3, "char_start": 0, "char_end": len(chunks[2].payload)}
    assert all(c.pair is None for c in chunks), "no column of image file names: not pairs"


def test_csv_with_semicolons_and_blank_cells(space):
    options = ReadOptions(token_spans=space.token_spans, max_tokens=space.max_text_tokens, csv_rows=True)
    chunks = list(read_media("semi.csv", b"city;country\nOslo;Norway\n;Peru\n", options).chunks)
    assert [c.payload for c in chunks] == ["city: Oslo; country: Norway", "country: Peru"]
    assert chunks[1].meta == {"csv_country": "Peru"}


def test_csv_rows_needs_a_data_row(space):
    options = ReadOptions(token_spans=space.token_spans, max_tokens=10, csv_rows=True)
    assert "data row" in reason_of("header.csv", b"name,colour\n", options)


def test_csv_without_rows_is_windowed_text(space):
    options = ReadOptions(token_spans=space.token_spans, max_tokens=16, overlap_tokens=4)
    decoded = read_media("fruit.csv", mf.CSV_TEXT.encode(), options)
    assert decoded.mime == "text/csv" and decoded.stored_ext == ".csv"
    assert len(decoded.chunks) > 1
    assert all("row" not in c.locator for c in decoded.chunks)
    assert_windows_cover(mf.CSV_TEXT, decoded.chunks, space.token_spans, 16)
