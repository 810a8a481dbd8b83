"""Small real media files for the tests, made with Pillow (images) or by hand (text, CSV, bad files)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageDraw

# Pillow format name per extension used in the test set.
IMAGE_FORMATS = {".jpg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".gif": "GIF", ".bmp": "BMP", ".tiff": "TIFF"}

# One visually distinct picture per format: (size, background colour, pattern).
IMAGE_SPECS = {
    ".jpg": ((64, 48), (220, 30, 30), "none"),
    ".png": ((48, 64), (30, 200, 40), "stripes"),
    ".webp": ((40, 40), (30, 60, 220), "checker"),
    ".gif": ((56, 32), (240, 220, 20), "circle"),
    ".bmp": ((33, 47), (20, 20, 20), "cross"),
    ".tiff": ((50, 30), (250, 250, 250), "diagonal"),
}

LONG_TEXT = (
    "Tide tables for the northern harbour list the high and low water marks for every day of the year. "
    "Fishermen read them before dawn, checking the wind, the swell and the moon's phase. "
    "In winter the storms roll in from the west and the boats stay moored for days at a time. "
    "The lighthouse keeper writes the weather in a ledger: pressure 1012 hPa, visibility 8 km, gusts 40 knots. "
    "Children collect shells along the sand bar when the water retreats far beyond the pier. "
    "By spring the mackerel return, and the market fills with crates of silver fish and crushed ice. "
)

CSV_TEXT = (
    "name,colour,size\n"
    "apple,red,small\n"
    "banana,yellow,medium\n"
    "watermelon,green,large\n"
)


def picture(size: tuple[int, int], colour: tuple[int, int, int], pattern: str = "none", mode: str = "RGB") -> Image.Image:
    """A solid-colour image with an optional black pattern on it, so each picture looks different."""
    im = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(im)
    w, h = size
    if pattern == "stripes":
        for x in range(0, w, 8):
            draw.rectangle([x, 0, x + 3, h], fill=(0, 0, 0))
    elif pattern == "checker":
        for x in range(0, w, 10):
            for y in range(0, h, 10):
                if (x // 10 + y // 10) % 2:
                    draw.rectangle([x, y, x + 9, y + 9], fill=(255, 255, 255))
    elif pattern == "circle":
        draw.ellipse([w // 4, h // 8, 3 * w // 4, 7 * h // 8], fill=(200, 0, 200))
    elif pattern == "cross":
        draw.line([0, 0, w, h], fill=(255, 128, 0), width=5)
        draw.line([0, h, w, 0], fill=(255, 128, 0), width=5)
    elif pattern == "diagonal":
        draw.polygon([(0, h), (w, 0), (w, h)], fill=(0, 120, 120))
    return im.convert(mode) if mode != "RGB" else im


def encode(im: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **params)
    return buf.getvalue()


def image_bytes(ext: str) -> bytes:
    size, colour, pattern = IMAGE_SPECS[ext]
    return encode(picture(size, colour, pattern), IMAGE_FORMATS[ext])


def rotated_jpeg(width: int = 40, height: int = 20) -> bytes:
    """A width x height JPEG whose EXIF says "rotate 90° clockwise to display" (Orientation=6)."""
    im = picture((width, height), (10, 120, 200), "cross")
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(im, "JPEG", exif=exif.tobytes())


def transparent_png(size: tuple[int, int] = (20, 10)) -> bytes:
    """An RGBA PNG: left half fully transparent (black under it), right half opaque red."""
    im = Image.new("RGBA", size, (0, 0, 0, 0))
    w, h = size
    ImageDraw.Draw(im).rectangle([w // 2, 0, w, h], fill=(255, 0, 0, 255))
    return encode(im, "PNG")


def truncated_jpeg() -> bytes:
    data = encode(picture((64, 64), (90, 10, 160), "checker"), "JPEG", quality=95)
    return data[: len(data) // 3]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A well-formed PNG header claiming width x height RGB pixels, with only a few bytes of image data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def elf_bytes() -> bytes:
    """The start of an x86-64 ELF executable."""
    return b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00\x01\x00\x00\x00" + bytes(range(256)) * 4


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10" fill="red"/></svg>'


def long_text_content(repeats: int = 3) -> str:
    """Several hundred tokens of prose, each sentence numbered so that no two text windows are alike."""
    sentences = [s.strip().rstrip(".") + "." for s in LONG_TEXT.split(". ") if s.strip()] * repeats
    return "\n".join(f"{i}. {sentence}" for i, sentence in enumerate(sentences, 1)) + "\n"


def write_media(root: Path) -> dict[str, Path]:
    """Write the standard test set under root/set/ and return its files by short key.

    Keys: "img.jpg", "img.png", ... for each image format, "long.txt", "table.csv".
    """
    folder = root / "set"
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for ext in IMAGE_FORMATS:
        path = folder / f"img{ext}"
        path.write_bytes(image_bytes(ext))
        files[path.name] = path
    long_text = folder / "long.txt"
    long_text.write_text(long_text_content(), encoding="utf-8")
    files["long.txt"] = long_text
    table = folder / "table.csv"
    table.write_text(CSV_TEXT, encoding="utf-8")
    files["table.csv"] = table
    return files


def transparent_gif(size: tuple[int, int] = (20, 10)) -> bytes:
    """A palette GIF whose left half uses the transparent index (black in the palette), right half blue."""
    im = Image.new("P", size, 0)
    im.putpalette([0, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    w, h = size
    ImageDraw.Draw(im).rectangle([w // 2, 0, w, h], fill=1)
    return encode(im, "GIF", transparency=0)
