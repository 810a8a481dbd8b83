"""The `xclip` space (optional: on when MMCORE_XCLIP_MODEL is set): X-CLIP video models (microsoft/xclip-*) through
transformers' AutoModel + AutoProcessor. It embeds video segments, and is searched by text.

X-CLIP looks at a segment as a whole: a fixed number of frames (8 for the base checkpoints) through CLIP's image
tower, then a small transformer across them (its "multi-frame integration"), where the clip space averages frame
vectors. Its full forward also rewrites the text embedding for each video (the "prompt generator"); a stored
vector can't depend on the query, so this space compares video features with the unconditioned text features
(bench/xclip.py measures how far that moves rankings).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import ModelUnavailable
from ..media.video import sample_frames
from . import SpaceInfo
from .embed import ModelTowers
from .hf import embed_in_batches, load_pretrained, revision
from .registry import SpaceSpec, register

NAME = "xclip"
ENV_VAR = "MMCORE_XCLIP_MODEL"
DEFAULT_MODEL = "microsoft/xclip-base-patch32"
HOW_TO_PROVIDE = (
    "To use it offline, download it on a machine with internet access "
    "(`hf download {model} --local-dir ./models/xclip`), copy that folder here and set "
    f"{ENV_VAR}=./models/xclip; or set {ENV_VAR} to the hub id or local folder of another "
    "X-CLIP checkpoint that has model.safetensors."
)


class XClipSpace(ModelTowers):
    """The `xclip` space: video segments (each a list of RGB frames, as `read_video` cuts them) and text.

    `embed_videos` (which `Towers.embed` uses for segments instead of a frame mean) samples `num_frames` frames evenly from each segment. `batch_size` counts frames, as
    the clip space's counts images, so one forward pass holds about as many pictures in both.
    """

    def __init__(self, model, processor, info: SpaceInfo, device: str, batch_size: int):
        super().__init__(model, processor, info, device, batch_size)
        self.num_frames = int(model.config.vision_config.num_frames)  # the integration transformer's positions
        self.context_tokens = int(getattr(model.config.text_config, "max_position_embeddings", 77))
        self.max_text_tokens = self.context_tokens - 2  # room for BOS and EOS

    @classmethod
    def load(cls, model: str = DEFAULT_MODEL, device: str | None = None, batch_size: int = 32) -> "XClipSpace":
        """Load a checkpoint by hub id (cache first, then the hub) or local directory.

        Raises:
            ModelUnavailable: it is neither cached nor reachable, has no safetensors weights, or isn't an X-CLIP model.
        """
        net, processor, source, device = load_pretrained(model, "X-CLIP", HOW_TO_PROVIDE, DEFAULT_MODEL, device)
        if not hasattr(net, "get_text_features") or not hasattr(net, "get_video_features"):
            raise ModelUnavailable(
                f"{model!r} is a {type(net).__name__}, not an X-CLIP model with text and video towers. " + HOW_TO_PROVIDE.format(model=DEFAULT_MODEL)
            )
        if not hasattr(processor, "image_processor") or not hasattr(processor, "tokenizer"):
            raise ModelUnavailable(f"{model!r} has a {type(processor).__name__}, not an X-CLIP processor for frames and text.")
        info = SpaceInfo(NAME, source, revision(net), int(net.config.projection_dim))
        return cls(net, processor, info, device, batch_size)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """The text tower's vectors, not conditioned on any video (what a stored collection can be searched by)."""
        return embed_in_batches(texts, self.batch_size, self.text_inputs, self.model.get_text_features, self.device, self.info.dim, self.model.dtype)

    def embed_videos(self, segments: Sequence[Sequence]) -> np.ndarray:
        """One vector per segment, from `num_frames` of its frames (PIL images) sampled evenly in time.

        Raises:
            ValueError: a segment has no frames.
        """
        per_batch = max(1, self.batch_size // self.num_frames)
        return embed_in_batches(segments, per_batch, self.video_inputs, self.model.get_video_features, self.device, self.info.dim, self.model.dtype)

    def text_inputs(self, batch: Sequence[str]):
        with self._tokenizer_lock:
            return self.processor.tokenizer(
                list(batch), return_tensors="pt", padding=True, truncation=True, max_length=self.context_tokens
            )

    def video_inputs(self, batch: Sequence[Sequence]):
        """{"pixel_values": (segments, num_frames, 3, H, W)} for a batch of segments."""
        videos = [sample_frames(frames, self.num_frames) for frames in batch]
        pixels = self.processor(videos=videos, return_tensors="pt")["pixel_values"]
        if pixels.dim() == 4:  # an image processor (not a video one) returns the frames of all segments in one row
            pixels = pixels.reshape(len(videos), self.num_frames, *pixels.shape[1:])
        return {"pixel_values": pixels}


register(SpaceSpec(
    name=NAME, title="X-CLIP", variable=ENV_VAR, default_model=None,
    load=lambda model, s: XClipSpace.load(model, device=s.device, batch_size=s.batch_size),
    # Video only: its text tower is for queries (a text item is CLIP's, or SigLIP's, to embed).
    modalities=frozenset({"video"}), queries=frozenset({"text"}),
))
