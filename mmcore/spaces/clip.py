"""CLIP-family models (CLIP, SigLIP, ...) through transformers' AutoModel + AutoProcessor."""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from ..config import DEFAULT_CLIP_MODEL
from ..errors import ModelUnavailable
from . import SpaceInfo
from .hf import embed_in_batches, load_pretrained, revision

HOW_TO_PROVIDE = (
    "To use it offline, download it on a machine with internet access "
    "(`hf download {model} --local-dir ./models/clip`), copy that folder here and set "
    "MMCORE_CLIP_MODEL=./models/clip; or set MMCORE_CLIP_MODEL to the hub id or local folder of another "
    "CLIP or SigLIP checkpoint that has model.safetensors."
)


class ClipSpace:
    """The `clip` space: images and text into one shared vector space."""

    modalities = frozenset({"image", "text"})

    def __init__(self, model, processor, info: SpaceInfo, device: str, batch_size: int):
        self.model = model
        self.processor = processor
        self.info = info
        self.device = device
        self.batch_size = batch_size
        text_config = model.config.text_config
        self.context_tokens = int(getattr(text_config, "max_position_embeddings", 77))
        self.pad_to_max = model.config.model_type.startswith("siglip")  # SigLIP was trained on max-length padding
        self.max_text_tokens = self.context_tokens - (1 if self.pad_to_max else 2)  # room for EOS (and BOS)
        # A fast tokenizer keeps its padding/truncation settings between calls, so sessions (threads) sharing this
        # space would reset each other's mid-call; the model's forward pass itself is safe to share.
        self._processor_lock = threading.Lock()

    @classmethod
    def load(cls, model: str, device: str | None = None, batch_size: int = 32) -> "ClipSpace":
        """Load a checkpoint by hub id (cache first, then the hub) or local directory.

        Raises:
            ModelUnavailable: it is neither cached nor reachable, has no safetensors weights, or isn't CLIP-like.
        """
        net, processor, source, device = load_pretrained(model, "CLIP", HOW_TO_PROVIDE, DEFAULT_CLIP_MODEL, device)
        if not hasattr(net, "get_text_features") or not hasattr(net, "get_image_features"):
            raise ModelUnavailable(f"{model!r} is a {type(net).__name__}, not a CLIP-family model with text and image towers.")
        dim = int(getattr(net.config, "projection_dim", 0) or 0) or _probe_dim(net, processor, device)
        return cls(net, processor, SpaceInfo("clip", source, revision(net), dim), device, batch_size)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        with self._processor_lock:
            encoded = self.processor.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(span) for span in encoded["offset_mapping"]]

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        padding = "max_length" if self.pad_to_max else True
        return self._embed(
            texts,
            lambda batch: self.processor(
                text=list(batch), return_tensors="pt", padding=padding, truncation=True, max_length=self.context_tokens
            ),
            self.model.get_text_features,
        )

    def embed_images(self, images: Sequence) -> np.ndarray:
        return self._embed(images, lambda batch: self.processor(images=list(batch), return_tensors="pt"), self.model.get_image_features)

    def _embed(self, items: Sequence, prepare, forward) -> np.ndarray:
        def locked(batch):
            with self._processor_lock:
                return prepare(batch)

        return embed_in_batches(items, self.batch_size, locked, forward, self.device, self.info.dim)


def _probe_dim(net, processor, device) -> int:
    import torch

    with torch.inference_mode():
        features = net.get_text_features(**processor(text=["a"], return_tensors="pt").to(device))
    return int(getattr(features, "pooler_output", features).shape[-1])
