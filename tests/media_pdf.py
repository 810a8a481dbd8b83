"""Small real PDF files for the tests, written by hand: pages of Helvetica text, optionally a coloured block
per page, optionally encrypted (standard security handler, RC4 40-bit) with a user password."""

from __future__ import annotations

import hashlib
import textwrap
from typing import Optional, Sequence

Colour = tuple[int, int, int]

# The padding string of the PDF standard security handler (PDF 1.7, 7.6.3.3).
_PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")
_ID = hashlib.md5(b"mmscope test pdf").digest()
_PERMISSIONS = -4  # every permission granted; only the password matters here


def make_pdf(
    pages: Sequence[str],
    *,
    size: tuple[float, float] = (612, 792),
    colours: Optional[Sequence[Optional[Colour]]] = None,
    password: Optional[str] = None,
    font_size: float = 11,
    wrap: int = 90,
) -> bytes:
    """A valid PDF with one page per entry of `pages`, each showing its text in Helvetica.

    Args:
        pages: the text of each page (wrapped at `wrap` characters, one line per wrapped line; "" for none).
        size: every page's MediaBox width and height in points.
        colours: per page, an RGB colour (0-255) of a block filling the lower half of the page, or None.
        password: when given, the file is encrypted with this user password (and a different owner password).
    """
    width, height = size
    colours = list(colours) if colours is not None else [None] * len(pages)
    assert len(colours) == len(pages)
    n = len(pages)
    # Objects: 1 catalog, 2 page tree, 3 font, then per page i: 4 + 2i page, 5 + 2i content stream.
    page_ids = [4 + 2 * i for i in range(n)]
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % p for p in page_ids) + b"] /Count %d >>" % n,
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    }
    streams: dict[int, bytes] = {}
    for i, (text, colour) in enumerate(zip(pages, colours)):
        page_id, content_id = page_ids[i], page_ids[i] + 1
        objects[page_id] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %s %s] /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>"
            % (_num(width), _num(height), content_id)
        )
        streams[content_id] = _content(text, colour, width, height, font_size, wrap)

    key = None
    if password is not None:
        key, encrypt = _encryption(password.encode("latin-1"), b"owner-" + password.encode("latin-1"))
        encrypt_id = max(objects.keys() | streams.keys()) + 1
        objects[encrypt_id] = encrypt

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for obj_id in sorted(objects.keys() | streams.keys()):
        offsets[obj_id] = len(out)
        out += b"%d 0 obj\n" % obj_id
        if obj_id in streams:
            data = streams[obj_id] if key is None else _rc4(_object_key(key, obj_id), streams[obj_id])
            out += b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"
        else:
            out += objects[obj_id]
        out += b"\nendobj\n"
    size_ = max(offsets) + 1
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size_
    for obj_id in range(1, size_):
        out += b"%010d 00000 n \n" % offsets[obj_id]
    trailer = b"/Size %d /Root 1 0 R /ID [<%s> <%s>]" % (size_, _ID.hex().encode(), _ID.hex().encode())
    if key is not None:
        trailer += b" /Encrypt %d 0 R" % encrypt_id
    out += b"trailer\n<< " + trailer + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def _num(x: float) -> bytes:
    return (b"%d" % x) if float(x).is_integer() else (b"%.3f" % x)


def _content(text: str, colour: Optional[Colour], width: float, height: float, font_size: float, wrap: int) -> bytes:
    ops = []
    if colour is not None:
        r, g, b = (c / 255 for c in colour)
        ops.append(b"%.4f %.4f %.4f rg 0 0 %s %s re f" % (r, g, b, _num(width), _num(height / 2)))
    lines = textwrap.wrap(text, wrap) if text.strip() else []
    if lines:
        leading = font_size * 1.3
        ops.append(b"0 0 0 rg BT /F1 %s Tf %s TL 72 %s Td" % (_num(font_size), _num(leading), _num(height - 72)))
        for line in lines:
            escaped = line.encode("cp1252", errors="replace").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
            ops.append(b"(" + escaped + b") Tj T*")
        ops.append(b"ET")
    return b"\n".join(ops)


# --- RC4 40-bit encryption, revision 2 of the standard security handler (PDF 1.7, 7.6.3) ----------------


def _rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(byte ^ s[(s[i] + s[j]) % 256])
    return bytes(out)


def _padded(password: bytes) -> bytes:
    return (password + _PAD)[:32]


def _encryption(user: bytes, owner: bytes) -> tuple[bytes, bytes]:
    """The file key and the /Encrypt dictionary (algorithms 2, 3 and 4 of the specification)."""
    o_value = _rc4(hashlib.md5(_padded(owner)).digest()[:5], _padded(user))
    p_bytes = (_PERMISSIONS & 0xFFFFFFFF).to_bytes(4, "little")
    key = hashlib.md5(_padded(user) + o_value + p_bytes + _ID).digest()[:5]
    u_value = _rc4(key, _PAD)
    encrypt = b"<< /Filter /Standard /V 1 /R 2 /Length 40 /P %d /O <%s> /U <%s> >>" % (
        _PERMISSIONS, o_value.hex().encode(), u_value.hex().encode())
    return key, encrypt


def _object_key(key: bytes, obj_id: int, generation: int = 0) -> bytes:
    return hashlib.md5(key + obj_id.to_bytes(3, "little") + generation.to_bytes(2, "little")).digest()[:10]
