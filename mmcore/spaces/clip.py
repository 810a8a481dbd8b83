"""CLIP-family models (CLIP, SigLIP, ...) through transformers' AutoModel + AutoProcessor."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ModelUnavailable
from . import SpaceInfo, normalize

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

    @classmethod
    def load(cls, model: str, device: str | None = None, batch_size: int = 32) -> "ClipSpace":
        """Load a checkpoint by hub id (cache first, then the hub) or local directory.

        Raises:
            ModelUnavailable: it is neither cached nor reachable, has no safetensors weights, or isn't CLIP-like.
        """
        local_dir = Path(model).expanduser()
        is_dir = local_dir.is_dir()
        looks_like_path = model.startswith((".", "/", "~")) or model.count("/") > 1  # hub ids are "org/name"
        if looks_like_path and not is_dir:
            raise ModelUnavailable(f"The CLIP model folder {model!r} does not exist. " + HOW_TO_PROVIDE.format(model=model))
        import torch
        from transformers import AutoModel, AutoProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        source = str(local_dir.resolve()) if is_dir else model
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        last_error: Exception | None = None
        attempts = (True,) if is_dir else (True, False) if _hub_reachable() else (True,)
        for local_only in attempts:
            try:
                net = AutoModel.from_pretrained(source, use_safetensors=True, local_files_only=local_only)
                processor = AutoProcessor.from_pretrained(source, local_files_only=local_only)
                break
            except (OSError, ValueError) as e:
                last_error = e
        else:
            raise ModelUnavailable(_explain(model, is_dir, last_error)) from last_error
        if not hasattr(net, "get_text_features") or not hasattr(net, "get_image_features"):
            raise ModelUnavailable(f"{model!r} is a {type(net).__name__}, not a CLIP-family model with text and image towers.")
        net.eval().to(device)
        dim = int(getattr(net.config, "projection_dim", 0) or 0) or _probe_dim(net, processor, device)
        revision = getattr(net.config, "_commit_hash", None) or "local"
        return cls(net, processor, SpaceInfo("clip", source, revision, dim), device, batch_size)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
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
        import torch

        out = []
        for i in range(0, len(items), self.batch_size):
            inputs = prepare(items[i : i + self.batch_size]).to(self.device)
            with torch.inference_mode():
                features = forward(**inputs)
            features = getattr(features, "pooler_output", features)  # transformers 5 returns an output object
            out.append(features.float().cpu().numpy())
        if not out:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        return normalize(np.concatenate(out))


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers at all; without this check an offline machine waits ~25 s of retries."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=timeout).close()
        return True
    except OSError:
        return False


def _probe_dim(net, processor, device) -> int:
    import torch

    with torch.inference_mode():
        features = net.get_text_features(**processor(text=["a"], return_tensors="pt").to(device))
    return int(getattr(features, "pooler_output", features).shape[-1])


def _explain(model: str, is_dir: bool, error: Exception | None) -> str:
    text = str(error or "")
    if "safetensors" in text:
        return (
            f"The CLIP model {model!r} has no model.safetensors; mmscope only loads safetensors weights, never "
            "pickled .bin files. Convert it or choose a checkpoint that ships safetensors."
        )
    if "trust_remote_code" in text or "custom code" in text:
        return f"The CLIP model {model!r} needs custom code from its repository, which mmscope never runs."
    if is_dir:
        first_line = text.strip().splitlines()[0] if text.strip() else "unknown error"
        return f"The folder {model!r} could not be loaded as a CLIP checkpoint ({first_line}). " + HOW_TO_PROVIDE.format(model=model)
    return (
        f"The CLIP model {model!r} is not in the local Hugging Face cache and the Hugging Face hub could not be "
        "reached. " + HOW_TO_PROVIDE.format(model=model)
    )
