"""The `clip` space: CLIP-family models (CLIP; SigLIP checkpoints too) through transformers' AutoModel + AutoProcessor."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ModelUnavailable
from . import SpaceInfo
from .backends import OPENVINO_BF16, TORCH, openvino_towers
from .backends import prepare as prepare_backend
from .embed import ModelTowers
from .hf import embed_in_batches, load_pretrained, revision
from .registry import SpaceSpec, register

DEFAULT_CLIP_MODEL = "openai/clip-vit-base-patch32"

HOW_TO_PROVIDE = (
    "To use it offline, download it on a machine with internet access "
    "(`hf download {model} --local-dir ./models/clip`), copy that folder here and set "
    "MMCORE_CLIP_MODEL=./models/clip; or set MMCORE_CLIP_MODEL to the hub id or local folder of another "
    "CLIP or SigLIP checkpoint that has model.safetensors."
)


class ClipSpace(ModelTowers):
    """The `clip` space: images and text into one shared vector space. Subclasses (SigLIP) name their own family."""

    NAME, FAMILY, DEFAULT, HOW_TO_PROVIDE = "clip", "CLIP", DEFAULT_CLIP_MODEL, HOW_TO_PROVIDE

    def __init__(self, model, processor, info: SpaceInfo, device: str, batch_size: int):
        super().__init__(model, processor, info, device, batch_size)
        # On an accelerator, pictures are prepared in the decoder threads (mmcore.spaces.embed.prepare_decoded) so the
        # model's thread only feeds it; on the CPU that would only move the same work onto the cores the model uses.
        self.prepares_ahead = not str(device).startswith("cpu")
        text_config = model.config.text_config
        self.context_tokens = int(getattr(text_config, "max_position_embeddings", 77))
        self.pad_to_max = model.config.model_type.startswith("siglip")  # SigLIP was trained on max-length padding
        self.max_text_tokens = self.context_tokens - (1 if self.pad_to_max else 2)  # room for EOS (and BOS)
        # What runs each tower: the torch model's own methods, or their OpenVINO conversions (`use_openvino`).
        self.image_forward = model.get_image_features
        self.text_forward = model.get_text_features

    @classmethod
    def load(cls, model: str, device: str | None = None, batch_size: int = 32, backend: str = TORCH) -> "ClipSpace":
        """Load a checkpoint by hub id (cache first, then the hub) or local directory, run by `backend`.

        Raises:
            MMError: `backend` is not a known backend.
            ModelUnavailable: it is neither cached nor reachable, has no safetensors weights, or isn't CLIP-like;
                BackendUnavailable (a ModelUnavailable): the backend can't run on this machine.
        """
        device = prepare_backend(backend, device)
        net, processor, source, device = load_pretrained(model, cls.FAMILY, cls.HOW_TO_PROVIDE, cls.DEFAULT, device)
        cls.check(model, net)
        dim = int(getattr(net.config, "projection_dim", 0) or 0) or _probe_dim(net, processor, device)
        space = cls(net, processor, SpaceInfo(cls.NAME, source, revision(net), dim, backend), device, batch_size)
        if backend == OPENVINO_BF16:
            space.use_openvino()
        return space

    @classmethod
    def check(cls, model: str, net) -> None:
        """Raises ModelUnavailable unless `net` has the towers this family needs."""
        if not hasattr(net, "get_text_features") or not hasattr(net, "get_image_features"):
            raise ModelUnavailable(f"{model!r} is a {type(net).__name__}, not a CLIP-family model with text and image towers.")

    def use_openvino(self) -> None:
        """Run both towers with OpenVINO in bfloat16 (converted on first use of this checkpoint, then cached)."""
        import torch
        from PIL import Image

        size = int(getattr(self.model.config.vision_config, "image_size", 224))
        towers = {}
        for name, method, example in (
            ("image", "get_image_features", self._image_inputs([Image.new("RGB", (size, size))])),
            ("text", "get_text_features", self._text_inputs(["a photo"])),
        ):
            tensors = {k: v for k, v in example.items() if isinstance(v, torch.Tensor)}
            towers[name] = (method, tensors, {k: v.dim() for k, v in tensors.items()})
        converted = openvino_towers(self.model, towers, self.info.model_id, self.info.revision, threads=torch.get_num_threads())
        self.image_forward, self.text_forward = converted["image"], converted["text"]

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts, self._text_inputs, self.text_forward)

    def embed_images(self, images: Sequence) -> np.ndarray:
        return self._embed(images, self._image_inputs, self.image_forward)

    def prepare_image(self, image) -> dict:
        """The model inputs of one image (its pixel tensors, batch of 1), made in the caller's thread."""
        return dict(self._image_inputs([image]))

    def embed_prepared_images(self, prepared: Sequence[dict]) -> np.ndarray:
        """Vectors of images whose inputs `prepare_image` made: the same as `embed_images` of those images."""
        import torch

        def stack(batch: Sequence[dict]) -> dict:
            return {key: torch.cat([inputs[key] for inputs in batch]) for key in batch[0]}

        return self._embed(prepared, stack, self.image_forward)

    def _text_inputs(self, batch: Sequence[str]):
        padding = "max_length" if self.pad_to_max else True
        with self._tokenizer_lock:
            return self.processor(text=list(batch), return_tensors="pt", padding=padding, truncation=True, max_length=self.context_tokens)

    def _image_inputs(self, batch: Sequence):
        return self.processor(images=list(batch), return_tensors="pt")

    def _embed(self, items: Sequence, prepare, forward) -> np.ndarray:
        return embed_in_batches(items, self.batch_size, prepare, forward, self.device, self.info.dim, self.model.dtype)


def _probe_dim(net, processor, device) -> int:
    import torch

    with torch.inference_mode():
        features = net.get_text_features(**processor(text=["a"], return_tensors="pt").to(device))
    return int(getattr(features, "pooler_output", features).shape[-1])


register(SpaceSpec(
    name="clip", title="CLIP", variable="MMCORE_CLIP_MODEL", default_model=DEFAULT_CLIP_MODEL,
    load=lambda model, s: ClipSpace.load(model, device=s.device, batch_size=s.batch_size, backend=s.backend),
    modalities=frozenset({"image", "text", "page", "video"}), queries=frozenset({"text", "image"}),
    names_clusters=True, backends=True,
))
