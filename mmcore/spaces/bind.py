"""The `bind` space (optional: on when MMCORE_BIND_MODEL is set): Meta's Perception Encoder audio-video models
(PE-AV, `facebook/pe-av-large` and its siblings) through transformers' PeAudioVideoModel. Sounds, video segments and
pictures in one space, so a sound finds the scenes that look like it and a picture the sounds that go with it.

Which vectors may be compared is read from PeAudioVideoModel.forward, whose loss sums six sigmoid contrastive losses:
- `audio_video_loss`: `audio_model.audio_head` (a sound) against `video_model.video_head` (frames). Sound and sight
  are compared through these two heads only: they are what this space stores for audio windows and for video
  segments (and pictures), so every sound-to-sight score here is one the model was trained to give.
- `audio_text_loss`: the audio head against `audio_model.text_audio_head`; `video_text_loss`: the video head against
  `video_model.text_video_head`. A text therefore has one vector per target: `embed_query("text", ..., target=m)`
  uses the text head trained against modality m's head, and search ranks each modality's list in its own head,
  then merges the lists by rank (mmcore.search).
- Not stored: the joint audio+video encoder's `audio_video_head` (trained against `text_audio_video_head` only,
  never against a sound or a picture alone) and the "audio plus text" / "video plus text" heads (a pair as query).

Pictures are one-frame videos through the video head. PE-AV's frame encoder is PE-Core (an image model), and its
video encoder takes any number of frames, one included; how close a trained model puts a still to the video it was
taken from can't be measured on this machine without the weights (bench/bind.py measures it on random weights).

The video tower of the released checkpoints is a timm model (`vit_pe_core_large_patch14_336`), so the space needs
the `timm` package and a `torchvision` that matches the installed torch (requirements.txt pins both).
"""

from __future__ import annotations

import importlib.util
import threading
from typing import Sequence

import numpy as np

from ..errors import ModelUnavailable
from . import SpaceInfo, normalize
from .embed import Towers, embed_query
from .hf import embed_in_batches, load_pretrained, revision
from .registry import SpaceSpec, register

NAME = "bind"
ENV_VAR = "MMCORE_BIND_MODEL"
DEFAULT_MODEL = "facebook/pe-av-large"
HOW_TO_PROVIDE = (
    "To use it offline, download it on a machine with internet access "
    "(`hf download {model} --local-dir ./models/pe-av`), copy that folder here and set "
    f"{ENV_VAR}=./models/pe-av; or set {ENV_VAR} to the hub id or local folder of another "
    "PE-AV checkpoint (PeAudioVideoModel) that has model.safetensors."
)
MAX_TEXT_TOKENS = 512  # a query, not a document: ModernBERT's 8,192 positions are far past any caption PE-AV saw


class BindSpace(Towers):
    """The `bind` space: audio windows (mono float32 at `sampling_rate`), video segments (lists of RGB frames),
    images (one-frame videos) and text queries, one text head per target modality.

    `batch_size` counts frames for video, as the clip space's counts images, so one forward pass holds about as many
    pictures in both; sounds and texts are `batch_size` at a time.
    """

    def __init__(self, model, processor, info: SpaceInfo, device: str, batch_size: int):
        self.model = model
        self.processor = processor
        self.info = info
        self.device = device
        self.batch_size = batch_size
        self.context_tokens = min(MAX_TEXT_TOKENS, int(model.config.text_config.max_position_embeddings))
        self.max_text_tokens = self.context_tokens - 2  # room for [CLS] and [SEP]
        # A fast tokenizer keeps its padding/truncation settings between calls (see ClipSpace).
        self._tokenizer_lock = threading.Lock()

    @classmethod
    def load(cls, model: str = DEFAULT_MODEL, device: str | None = None, batch_size: int = 32) -> "BindSpace":
        """Load a checkpoint by hub id (cache first, then the hub) or local directory.

        Raises:
            ModelUnavailable: timm or torchvision is missing; the checkpoint is neither cached nor reachable, has no
                safetensors weights, or isn't a PE-AV model.
        """
        missing = [name for name in ("timm", "torchvision") if importlib.util.find_spec(name) is None]
        if missing:
            raise ModelUnavailable(
                f"The PE-AV space needs the {' and '.join(missing)} package(s) (its video tower is a timm model): "
                "install them with `pip install -r requirements.txt`, or unset " + ENV_VAR + "."
            )
        net, processor, source, device = load_pretrained(model, "PE-AV", HOW_TO_PROVIDE, DEFAULT_MODEL, device)
        if type(net).__name__ != "PeAudioVideoModel":
            raise ModelUnavailable(
                f"{model!r} is a {type(net).__name__}, not a PE-AV model (PeAudioVideoModel). " + HOW_TO_PROVIDE.format(model=DEFAULT_MODEL)
            )
        for part in ("feature_extractor", "video_processor", "tokenizer"):
            if getattr(processor, part, None) is None:
                raise ModelUnavailable(f"{model!r} has a {type(processor).__name__} without a {part}, not a PE-AV processor.")
        info = SpaceInfo(NAME, source, revision(net), int(net.config.text_config.hidden_size))
        return cls(net, processor, info, device, batch_size)

    @property
    def sampling_rate(self) -> int:
        """The rate, in Hz, of the waves `embed_audio` takes."""
        return int(self.processor.feature_extractor.sampling_rate)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        with self._tokenizer_lock:
            encoded = self.processor.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(span) for span in encoded["offset_mapping"]]

    def embed_query(self, kind: str, payloads: Sequence, target: str | None = None):
        """One vector for a query; a text's comes from the text head trained against `target`'s modality (the
        video head's for pictures and video, the default)."""
        if kind == "text":
            return normalize(self.embed_texts(list(payloads), target=target).mean(axis=0, keepdims=True))[0]
        return embed_query(self, kind, payloads)

    def embed_texts(self, texts: Sequence[str], target: str | None = None) -> np.ndarray:
        """Text vectors in the head trained against `target` ("audio", or a picture modality: the default)."""
        if target == "audio":
            head = self.model.audio_model.text_audio_head  # trained against the audio head (audio_text_loss)
        else:
            head = self.model.video_model.text_video_head  # trained against the video head (video_text_loss)

        def forward(input_ids, attention_mask):
            # As PeAudioVideoModel.forward: the first token of the text model's last hidden state, through the head.
            out = self.model.text_model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
            return head(out.hidden_states[-1][:, 0])

        return embed_in_batches(texts, self.batch_size, self._text_inputs, forward, self.device, self.info.dim, self.model.dtype)

    def embed_audio(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """One vector per wave (mono float32 at `sampling_rate`), from the audio head."""
        return embed_in_batches(waves, self.batch_size, self._audio_inputs, self.model.audio_model.get_audio_embeds,
                                self.device, self.info.dim, self.model.dtype)

    def embed_videos(self, segments: Sequence[Sequence]) -> np.ndarray:
        """One vector per segment (a list of PIL frames, all of them used), from the video head."""
        def forward(pixel_values_videos, padding_mask_videos=None):
            video = self.model.video_model
            out = video.video_encoder(pixel_values_videos=pixel_values_videos, padding_mask_videos=padding_mask_videos)
            return video.video_head(out.pooler_output)

        longest = max((len(s) for s in segments), default=1)
        per_batch = max(1, self.batch_size // max(1, longest))
        return embed_in_batches(segments, per_batch, self._video_inputs, forward, self.device, self.info.dim, self.model.dtype)

    def embed_images(self, images: Sequence) -> np.ndarray:
        """One vector per picture, as a video of that one frame."""
        return self.embed_videos([[image] for image in images])

    def _text_inputs(self, batch: Sequence[str]):
        with self._tokenizer_lock:
            encoded = self.processor.tokenizer(
                list(batch), return_tensors="pt", padding=True, truncation=True, max_length=self.context_tokens
            )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def _audio_inputs(self, batch: Sequence[np.ndarray]):
        extractor = self.processor.feature_extractor
        waves = [np.asarray(w, dtype=np.float32).reshape(-1) for w in batch]
        features = extractor(waves, sampling_rate=extractor.sampling_rate, padding=True, return_tensors="pt")
        return {"input_values": features["input_values"], "padding_mask": features["padding_mask"]}

    def _video_inputs(self, batch: Sequence[Sequence]):
        """{"pixel_values_videos": (segments, frames, 3, H, W), and "padding_mask_videos" where lengths differ}."""
        out = self.processor.video_processor(videos=[list(frames) for frames in batch], return_tensors="pt")
        return {k: out[k] for k in ("pixel_values_videos", "padding_mask_videos") if k in out}


register(SpaceSpec(
    name=NAME, title="PE-AV", variable=ENV_VAR, default_model=None,
    load=lambda model, s: BindSpace.load(model, device=s.device, batch_size=s.batch_size),
    # Text items stay in the spaces made for documents; its text heads embed queries, one per target modality.
    modalities=frozenset({"audio", "video", "image"}), queries=frozenset({"text", "image", "audio"}),
    text_heads=True,
))
