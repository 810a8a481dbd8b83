"""Images: JPEG, PNG, WebP, GIF (first frame), BMP, TIFF. EXIF orientation applied, converted to RGB."""

from __future__ import annotations

import io
import warnings

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from ..errors import MediaError
from .base import Chunk, Decoded, ReadOptions

EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
# Formats Pillow may try when opening. MPO (multi-picture JPEG) is not among them: Pillow has no opener
# registered under that name (asking for it raises KeyError); the JPEG opener returns MPO images itself.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
STORED_EXT = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}
THUMBNAIL_SIZE = 320
# Big JPEGs are decoded straight to a reduced scale (several times faster) but never below this many pixels
# a side: twice the 224 of most CLIP inputs, above the 384 of the largest common ones, and above thumbnails.
DRAFT_SIDE = 448


def read_image(name: str, data: bytes, options: ReadOptions) -> Decoded:
    """Decode one image file into a single chunk (an RGB PIL image) and a thumbnail."""
    with warnings.catch_warnings():
        # Pillow only warns between its limit and twice it; a bomb is a bomb either way.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=FORMATS)
            fmt = im.format
            width, height = im.size
            if width * height > options.max_image_pixels:
                raise MediaError(
                    name,
                    f"the image claims {width} x {height} pixels, over the limit of {options.max_image_pixels:,}"
                    " (a decompression bomb?); raise MMCORE_MAX_IMAGE_PIXELS to accept it",
                )
            im.seek(0)
            if im.getexif().get(ExifTags.Base.Orientation, 1) in (5, 6, 7, 8):  # turned a quarter when shown
                width, height = height, width
            if fmt == "JPEG":  # decode at the smallest 1/2, 1/4 or 1/8 scale that still covers DRAFT_SIDE
                im.draft("RGB", (DRAFT_SIDE, DRAFT_SIDE))
            im = ImageOps.exif_transpose(im)
            rgb = _to_rgb(im)
        except MediaError:
            raise
        except UnidentifiedImageError:
            raise MediaError(name, "not a readable image (the content is not JPEG, PNG, WebP, GIF, BMP or TIFF)") from None
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
            raise MediaError(name, f"refused as a decompression bomb: {e}") from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise MediaError(name, f"the image is corrupt or truncated ({e})") from None
    thumb = rgb.copy()
    thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    return Decoded(
        mime=Image.MIME.get(fmt, "image/" + fmt.lower()),
        stored_ext=STORED_EXT[fmt],
        chunks=[Chunk("image", rgb, meta={"width": width, "height": height})],
        thumbnail=thumb,
    )


def _to_rgb(im: Image.Image) -> Image.Image:
    """Fully decode and flatten onto white, so transparent pixels don't turn black."""
    im.load()
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")
