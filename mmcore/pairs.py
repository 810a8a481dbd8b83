"""Image-caption pairs: which image item each caption of an image-caption CSV belongs to (`pair_of`).

The CSV names its images as its author wrote them: a path relative to the CSV ("images/a.jpg") or a bare file
name ("a.jpg") with the images in a folder beside it, or uploaded alongside it (no folders at all).
"""

from __future__ import annotations

import posixpath
from collections import Counter
from typing import TYPE_CHECKING, Callable, Iterable

from .media import extension
from .media.image import EXTENSIONS as IMAGE_EXTENSIONS

if TYPE_CHECKING:
    from .ingest import FileResult


class Pairing:
    """Finds the image items an image-caption CSV names: among this ingest's images, else among the collection's
    (matched by source name). A name is matched at its path relative to the CSV, else by file name: the only
    image of that name in the CSV's folder or below, else the only one at all, else (several) the one in the
    folder that holds most of the CSV's other images. A name still ambiguous finds nothing."""

    def __init__(self, image_target: Callable):
        self.target = image_target  # () -> the collection in the first space of images, or None
        self.ours: dict[str, list["FileResult"]] = {}  # file name (lower case) -> images of this ingest
        self.theirs: dict[str, list[tuple[str, str]]] | None = None  # file name -> (source, item id) in the collection

    def add(self, result: "FileResult") -> None:
        """An image of this ingest, once its bytes are hashed."""
        if extension(result.name) in IMAGE_EXTENSIONS:
            self.ours.setdefault(posixpath.basename(result.name).lower(), []).append(result)

    def link(self, csv_name: str, names: Iterable[str]) -> dict[str, tuple[str, str]]:
        """{name as the CSV gives it: (the image item's id, its source)} for the names found."""
        folder = posixpath.dirname(csv_name)
        found: dict[str, tuple[str, str]] = {}
        ambiguous: dict[str, list[tuple[str, str]]] = {}
        for name in names:
            named = name.strip().replace("\\", "/")
            key = posixpath.basename(named).lower()
            candidates = [(f"{r.source_hash[:32]}:image", r.name) for r in self.ours.get(key, []) if r.source_hash and not r.reason]
            candidates = list(dict(candidates or [(i, s) for s, i in self._theirs().get(key, [])]).items())
            exact = posixpath.normpath(posixpath.join(folder, named))
            near = [c for c in candidates if c[1] == exact] or [c for c in candidates if not folder or c[1].startswith(folder + "/")]
            if len(near) == 1 or len(candidates) == 1:
                found[name] = near[0] if len(near) == 1 else candidates[0]
            elif candidates:
                ambiguous[name] = near or candidates
        votes = Counter(posixpath.dirname(source) for _, source in found.values())
        for name, candidates in ambiguous.items():
            ranked = sorted(candidates, key=lambda c: -votes[posixpath.dirname(c[1])])
            if votes[posixpath.dirname(ranked[0][1])] > votes[posixpath.dirname(ranked[1][1])]:
                found[name] = ranked[0]
        return found

    def _theirs(self) -> dict[str, list[tuple[str, str]]]:
        if self.theirs is None:
            self.theirs = {}
            target = self.target()
            if target is not None:
                items = target.all(with_vectors=False, where={"modality": "image"})
                for item_id, meta in zip(items.ids, items.metadatas):
                    source = str(meta.get("source", ""))
                    self.theirs.setdefault(posixpath.basename(source).lower(), []).append((source, item_id))
        return self.theirs
