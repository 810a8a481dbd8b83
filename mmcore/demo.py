"""A demo collection that needs no download: scikit-learn's handwritten digits (1,797 8x8 images)."""

from __future__ import annotations

import hashlib
import io
import time

import numpy as np

from .spaces import SpaceInfo
from .vectors import ImportReport, check_existing, normalized, write_new
from .workspace import Workspace

DEMO_COLLECTION = "digits-demo"
DEMO_SPACE = SpaceInfo("pixels", "sklearn-digits-pixels-centred", "2", 64)
IMAGE_PIXELS = 64  # each 8x8 digit is stored upscaled 8 times, so it reads as a picture


def load_digits_demo(ws: Workspace, collection: str = DEMO_COLLECTION) -> ImportReport:
    """Load the digits as a collection of the `pixels` space: vectors = the 64 grey levels (centred, L2-normalised),
    metadata `label` (the digit) and `source` "digits/<index>.png", an original PNG and a thumbnail for each.
    Idempotent: digits already in the collection are skipped.

    Raises:
        SpaceMismatch: the collection's `pixels` space holds other vectors. StoreError: the store can't be reached.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    started = time.perf_counter()
    digits = load_digits()
    check_existing(ws, collection, DEMO_SPACE)
    pngs = [_png(Image, pixels) for pixels in digits.images]
    hashes = [hashlib.sha256(data).hexdigest() for data in pngs]
    report = ImportReport(collection, DEMO_SPACE, "scikit-learn digits", rows=len(pngs))
    added_at = int(time.time())

    def build(i: int) -> tuple[dict, None]:
        image = Image.open(io.BytesIO(pngs[i]))
        original = ws.files.save_original(hashes[i], ".png", pngs[i])
        thumbnail = ws.files.save_thumbnail(hashes[i], image.convert("RGB"))
        return {
            "source": f"digits/{i}.png", "source_hash": hashes[i], "modality": "image", "mime": "image/png",
            "bytes": len(pngs[i]), "added_at": added_at, "label": int(digits.target[i]),
            "width": IMAGE_PIXELS, "height": IMAGE_PIXELS,
            "original": original.relative_to(ws.files.root).as_posix(),
            "thumbnail": thumbnail.relative_to(ws.files.root).as_posix(),
        }, None

    ids = [f"{h[:32]}:image" for h in hashes]  # as ingest would name these files: no two digits are alike
    # Centred before normalising: raw grey levels are all positive, so any two digits would score a cosine
    # near 1 and the near-duplicate thresholds would chain hundreds of them into one set.
    centred = digits.data - digits.data.mean(axis=0)
    write_new(ws, collection, DEMO_SPACE, ids, normalized(centred, "digits"), build, report)
    report.seconds = time.perf_counter() - started
    return report


def _png(Image, pixels: np.ndarray) -> bytes:
    grey = (255 - pixels * (255 / 16)).clip(0, 255).astype(np.uint8)  # ink dark on white
    image = Image.fromarray(grey, "L").resize((IMAGE_PIXELS, IMAGE_PIXELS), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
