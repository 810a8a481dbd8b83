"""A demo collection that needs no download: scikit-learn's handwritten digits (1,797 8x8 images)."""

from __future__ import annotations

import hashlib
import io
import time

import numpy as np

from .spaces import SpaceInfo, normalize
from .workspace import Workspace

DEMO_COLLECTION = "digits-demo"
DEMO_SPACE = SpaceInfo("pixels", "sklearn-digits-pixels", "1", 64)
THUMBNAIL_PIXELS = 64


def load_digits_demo(ws: Workspace, collection: str = DEMO_COLLECTION) -> int:
    """Load the digits as a collection of the `pixels` space (vectors = the 64 grey levels, normalised),
    with a thumbnail and a `label` for each. Returns how many items were added (0 when already loaded).

    Raises:
        StoreError: the store can't be reached.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    target = ws.store.collection(collection, DEMO_SPACE)
    digits = load_digits()
    if target.count() >= len(digits.target):
        return 0
    ids, metadatas = [], []
    now = int(time.time())
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        grey = (255 - pixels * (255 / 16)).clip(0, 255).astype(np.uint8)  # ink dark on white
        image = Image.fromarray(grey, "L").resize((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS), Image.NEAREST)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
        source_hash = hashlib.sha256(data + index.to_bytes(4, "big")).hexdigest()
        original = ws.files.save_original(source_hash, ".png", data)
        thumbnail = ws.files.save_thumbnail(source_hash, image.convert("RGB"))
        ids.append(f"{source_hash[:32]}:image")
        metadatas.append({
            "source": f"digits/{index:04d}.png", "source_hash": source_hash, "modality": "image",
            "mime": "image/png", "bytes": len(data), "added_at": now, "label": int(label),
            "original": original.relative_to(ws.files.root).as_posix(),
            "thumbnail": thumbnail.relative_to(ws.files.root).as_posix(),
        })
    vectors = normalize(digits.data.astype(np.float32))
    target.add(ids, vectors, metadatas, [None] * len(ids))
    return len(ids)
