"""The `siglip` space (optional: on when MMCORE_SIGLIP_MODEL is set): SigLIP and SigLIP 2 checkpoints.

Fixed-resolution checkpoints (`SiglipModel`, `Siglip2Model` at 224/256/384 px) and NaFlex ones (`Siglip2Model`
with `pixel_attention_mask` and `spatial_shapes`: each image keeps its aspect ratio, cut into at most the
processor's `max_num_patches`) both go through the processor and `get_image_features`; texts are padded to the
model's full length, as it was trained. SigLIP was trained with a sigmoid per image-text pair, so it has a
probability of its own: sigmoid(cosine * exp(logit_scale) + logit_bias), shown beside the cosine.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelUnavailable
from .backends import TORCH
from .clip import ClipSpace
from .registry import Calibration, SpaceSpec, register

EXAMPLE_MODEL = "google/siglip2-base-patch16-naflex"
HOW_TO_PROVIDE = (
    "To use it offline, download it on a machine with internet access "
    "(`hf download {model} --local-dir ./models/siglip`), copy that folder here and set "
    "MMCORE_SIGLIP_MODEL=./models/siglip; or set MMCORE_SIGLIP_MODEL to the hub id or local folder of another "
    "SigLIP or SigLIP 2 checkpoint that has model.safetensors."
)


class SiglipSpace(ClipSpace):
    """SigLIP's image and text towers, with the model's logit scale and bias for `probability`."""

    NAME, FAMILY, DEFAULT, HOW_TO_PROVIDE = "siglip", "SigLIP", EXAMPLE_MODEL, HOW_TO_PROVIDE

    def __init__(self, model, processor, info, device: str, batch_size: int):
        super().__init__(model, processor, info, device, batch_size)
        self.logit_scale = float(model.logit_scale.detach().float().exp().item())
        self.logit_bias = float(model.logit_bias.detach().float().item())

    @classmethod
    def load(cls, model: str, device: str | None = None, batch_size: int = 32, backend: str = TORCH) -> "SiglipSpace":
        # Eager torch whatever MMCORE_BACKEND says: NaFlex inputs vary in shape per image, which the OpenVINO
        # conversion of the towers (traced on one fixed-size example) does not cover.
        return super().load(model, device, batch_size, TORCH)

    @classmethod
    def check(cls, model: str, net) -> None:
        super().check(model, net)
        if not net.config.model_type.startswith("siglip") or not hasattr(net, "logit_bias"):
            raise ModelUnavailable(f"{model!r} is a {type(net).__name__}, not a SigLIP or SigLIP 2 model.")

    def probability(self, cosines) -> np.ndarray:
        """The model's probability that a text and an image match, from their cosine similarity."""
        logits = np.asarray(cosines, dtype=np.float64) * self.logit_scale + self.logit_bias
        return 1.0 / (1.0 + np.exp(-logits))


register(SpaceSpec(
    name="siglip", title="SigLIP", variable="MMCORE_SIGLIP_MODEL", default_model=None,
    load=lambda model, s: SiglipSpace.load(model, device=s.device, batch_size=s.batch_size),
    modalities=frozenset({"image", "text", "page", "video"}), queries=frozenset({"text", "image"}),
    names_clusters=True,
    # A caption and its picture score a cosine of about 0.1-0.2 in SigLIP (its sigmoid crosses 0.5 near
    # -logit_bias / exp(logit_scale)), where CLIP's score 0.3-0.4; copies of an image are near 1 in both.
    calibration=Calibration(duplicate=0.95, image_text=0.10, probability=lambda space, cos: space.probability(cos)),
))
