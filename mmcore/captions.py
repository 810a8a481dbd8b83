"""Captions written by an image-to-text model (MMCORE_CAPTION_MODEL: Florence-2, BLIP or GIT), off unless set.

Each picture (an image, a document page, a video segment's keyframe) gets one caption, stored as a text item of
its own paired with its picture (`pair_of`, as an image-caption CSV's captions are) in every space of the
collection that has a text tower (CLIP, SigLIP): it is found by text search, shown with its picture, and names
image clusters beside the vocabulary's labels. Its id is the picture's id + ":caption", so captioning again adds
nothing, and it shares the picture's source (deleting the source deletes it).
"""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .config import Settings
from .errors import MMError, ModelUnavailable
from .models import LoadedOnce
from .spaces.hf import load_pretrained, revision

SUGGESTED_MODEL = "florence-community/Florence-2-base"
HOW_TO_PROVIDE = (
    "To use it offline, download it on a machine with internet access "
    "(`hf download {model} --local-dir ./models/captions`), copy that folder here and set "
    "MMCORE_CAPTION_MODEL=./models/captions; or set MMCORE_CAPTION_MODEL to another Florence-2, BLIP or GIT "
    "checkpoint with model.safetensors, or unset it to ingest without captions."
)
FLORENCE_TASK = "<CAPTION>"  # Florence-2 is told what to do; BLIP and GIT only caption
MAX_NEW_TOKENS = 40
MAX_SIDE = 768  # pictures are shrunk to this before the processor (Florence-2 reads 768 x 768, BLIP 384)
PICTURES = ("image", "page", "video")
SUFFIX = ":caption"
KNOWN = ("florence2", "blip", "git")

_models: LoadedOnce["Captioner"] = LoadedOnce()


class Captioner:
    """A loaded image-to-text model that writes one short caption per picture."""

    def __init__(self, model, processor, source: str, device: str):
        self.model, self.processor, self.source, self.device = model, processor, source, device
        self.revision = revision(model)
        self.florence = model.config.model_type == "florence2"

    @classmethod
    def load(cls, model: str, device: str | None = None) -> "Captioner":
        """Load a checkpoint by hub id (cache first, then the hub) or local folder: safetensors only, no remote code.

        Raises:
            ModelUnavailable: it is neither cached nor reachable, has no safetensors weights, or is not a
                Florence-2, BLIP or GIT captioning model.
        """
        net, processor, source, device = load_pretrained(model, "captioning", HOW_TO_PROVIDE, SUGGESTED_MODEL, device,
                                                         auto_class="AutoModelForImageTextToText")
        if net.config.model_type not in KNOWN:
            raise ModelUnavailable(f"MMCORE_CAPTION_MODEL={model!r} is a {type(net).__name__}; mmscope captions with "
                                   "Florence-2, BLIP or GIT.")
        return cls(net, processor, source, device)

    def caption(self, images: Sequence) -> list[str]:
        """One caption per PIL image: plain text on one line (possibly empty)."""
        import torch

        images = [_shrunk(image) for image in images]
        text = {"text": [FLORENCE_TASK] * len(images)} if self.florence else {}
        inputs = self.processor(images=images, return_tensors="pt", **text)
        inputs = {k: v.to(self.device, self.model.dtype) if v.is_floating_point() else v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, num_beams=1, do_sample=False)
        if not self.model.config.is_encoder_decoder and "input_ids" in inputs:  # GIT echoes its prompt
            out = out[:, inputs["input_ids"].shape[1]:]
        return [re.sub(r"\s+", " ", t.replace("\ufffd", "")).strip() for t in self.processor.batch_decode(out, skip_special_tokens=True)]


def _shrunk(image):
    image = image.convert("RGB")
    if max(image.size) > MAX_SIDE:
        image = image.copy()
        image.thumbnail((MAX_SIDE, MAX_SIDE))
    return image


def get_captioner(settings: Settings) -> Captioner:
    """The captioning model the settings name, loaded on first use and shared after.

    Raises:
        MMError: none is configured (MMCORE_CAPTION_MODEL is unset). ModelUnavailable: see `Captioner.load`.
    """
    if not settings.caption_model:
        raise MMError("captions are off: set MMCORE_CAPTION_MODEL to a Florence-2, BLIP or GIT model to write them")
    return _models.get((settings.caption_model, settings.device), lambda: Captioner.load(settings.caption_model, settings.device))


def is_loaded(settings: Settings) -> bool:
    return _models.is_loaded((settings.caption_model, settings.device))


def load_failure(settings: Settings) -> str | None:
    """Why the configured captioning model last failed to load, or None."""
    return _models.failure((settings.caption_model, settings.device))


@dataclass
class CaptionReport:
    pictures: int = 0  # pictures that needed a caption
    captioned: int = 0  # captions written (per picture, whatever the number of spaces)
    spaces: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # pictures that could not be read
    by_source: dict[str, int] = field(default_factory=dict)  # source hash -> captions written
    seconds: float = 0.0


def text_spaces(ws, collection: str) -> list[str]:
    """The collection's spaces whose model has a text tower (its family names clusters) and that hold pictures."""
    from .spaces.registry import spec_of

    return [s for s in ws.store.spaces(collection) if (spec := spec_of(s)) is not None and spec.names_clusters]


def caption_collection(ws, collection: str, ids: Sequence[str] | None = None, sources: set[str] | None = None,
                       on_progress: Callable[[int, int], None] | None = None) -> CaptionReport:
    """Caption the collection's pictures that have no caption yet (those of `ids`, or of the `sources` hashes, when
    given) and store each caption in every space with a text tower (see the module docstring).

    Raises:
        MMError: captions are off, or the collection has no space with a text tower. ModelUnavailable: the
            captioning model or a space's model can't be loaded. StoreError.
    """
    from PIL import Image

    from .files import read_image, read_stored, stored_path
    from .vectors import ImportReport, write_new

    started = time.perf_counter()
    spaces = text_spaces(ws, collection)
    if not spaces:
        raise MMError(f"Collection {collection!r} has no space with a text model (CLIP, SigLIP) to store captions in.")
    report = CaptionReport(spaces=spaces)
    pictures: dict[str, dict] = {}
    for space in spaces:
        target = ws.store.open(collection, space)
        where = {"modality": {"$in": list(PICTURES)}}
        found = target.get(list(ids), skip_missing=True) if ids is not None else [
            {"id": i, "metadata": m} for i, m in zip(*_ids_and_metas(target, where))]
        for item in found:
            meta = item["metadata"]
            if meta.get("modality") in PICTURES and (sources is None or meta.get("source_hash") in sources):
                pictures.setdefault(item["id"], meta)
    have = set(ws.store.open(collection, spaces[0]).existing([i + SUFFIX for i in pictures]))
    todo = [(i, m) for i, m in sorted(pictures.items()) if i + SUFFIX not in have]
    report.pictures = len(todo)
    if not todo:
        return report
    captioner = get_captioner(ws.settings)
    settings, root = ws.settings, ws.files.root
    captions: dict[str, str] = {}
    batch = max(1, settings.batch_size)
    if on_progress:
        on_progress(0, len(todo))
    for start in range(0, len(todo), batch):
        images, names = [], []
        for item_id, meta in todo[start : start + batch]:
            data = None
            if meta.get("modality") == "image":
                data = read_image(root, stored_path(root, meta.get("original")), settings.max_file_bytes, 1 << 16,
                                  settings.max_image_pixels)
            data = data or read_stored(root, stored_path(root, meta.get("thumbnail")), settings.max_file_bytes)
            try:
                images.append(Image.open(io.BytesIO(data or b"")).convert("RGB"))
                names.append(item_id)
            except Exception:  # noqa: BLE001 - Pillow raises many types for a bad file; the picture is skipped
                report.problems.append(f"{meta.get('source', item_id)}: its picture could not be read; not captioned")
        for item_id, text in zip(names, captioner.caption(images) if images else []):
            if text:
                captions[item_id] = text
        if on_progress:
            on_progress(min(start + batch, len(todo)), len(todo))
    ordered = sorted(captions)
    added_at = int(time.time())

    def build(i: int) -> tuple[dict, str]:
        picture = pictures[ordered[i]]
        meta = {"source": picture.get("source", ""), "source_hash": picture.get("source_hash", ""), "modality": "text",
                "mime": "text/plain", "bytes": len(captions[ordered[i]].encode()), "added_at": added_at,
                "pair_of": ordered[i], "pair_source": picture.get("source", ""), "caption_model": captioner.source}
        return meta, captions[ordered[i]]

    if ordered:
        for space in spaces:
            model = ws.space(space)
            info = ws.store.open(collection, space).space
            if info is None or info.model_id != model.info.model_id:
                raise MMError(f"Collection {collection!r} ({space}) was made with {info.model_id if info else 'another model'}, "
                              f"not the configured {model.info.model_id}: captions embedded with it could not be compared.")
            vectors = model.embed_texts([captions[i] for i in ordered])
            write_new(ws, collection, info, [i + SUFFIX for i in ordered], vectors, build,
                      ImportReport(collection, info, "captions"), media=False)
    report.captioned = len(ordered)
    for i in ordered:
        key = str(pictures[i].get("source_hash", ""))
        report.by_source[key] = report.by_source.get(key, 0) + 1
    report.seconds = time.perf_counter() - started
    return report


def caption_added(ws, collection: str, report, on_progress: Callable[[int, int], None] | None = None) -> None:
    """At ingest (MMCORE_CAPTION_MODEL set): caption the pictures of the files `report` (an IngestReport) added, and
    say so in each file's notes; `on_progress(done, total)` hears as pictures are captioned. A caption that can't be
    written is a note too, never a failed file (the file is stored, and `python -m mmcore caption` can caption it
    later)."""
    added = {r.source_hash: r for r in report.by_status("added") if r.source_hash}
    if not added or not text_spaces(ws, collection):
        return
    try:
        done = caption_collection(ws, collection, sources=set(added), on_progress=on_progress)
    except MMError as e:
        for r in added.values():
            r.notes.append(f"not captioned: {e}")
        return
    report.seconds["caption"] = done.seconds
    for source_hash, n in done.by_source.items():
        if source_hash in added:
            added[source_hash].notes.append(f"{n:,} caption(s) written")
    by_name = {r.name: r for r in added.values()}
    for problem in done.problems:  # "<source>: ..."
        owner = next((r for name, r in by_name.items() if problem.startswith(name + ":")), None)
        if owner is not None:
            owner.notes.append(problem)


def captions_of(collection, ids: Sequence[str], written_only: bool = False) -> dict[str, str]:
    """A caption for each of these pictures that has one, by picture id: a written one (by a captioning model)
    first, else one an image-caption CSV paired with it (unless `written_only`). None while a staged import is
    still going into the search index (mmcore.pending): a lookup by metadata would wait for it, and the map and its
    names must not."""
    found: dict[str, tuple[bool, str]] = {}
    if collection.staged_count():
        return {}
    ids = list(ids)
    for start in range(0, len(ids), collection.max_batch):
        for item in sorted(collection.find({"pair_of": {"$in": ids[start : start + collection.max_batch]}}), key=lambda i: i["id"]):
            meta, text = item["metadata"], item["document"]
            written = bool(meta.get("caption_model"))
            picture = str(meta.get("pair_of"))
            if text and (written or not written_only) and (picture not in found or written and not found[picture][0]):
                found[picture] = (written, text)
    return {picture: text for picture, (_, text) in found.items()}


def _ids_and_metas(target, where: dict) -> tuple[list[str], list[dict]]:
    items = target.all(with_vectors=False, where=where)
    return items.ids, items.metadatas
