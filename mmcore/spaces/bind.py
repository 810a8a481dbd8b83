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

Frames are prepared by PIL (PeAvProcessor): transformers' PE-AV processor resizes them with torchvision, which
the CPU build of torch 2.13 can't import from PyPI; the steps and settings are the checkpoint's own.

Pictures are one-frame videos through the video head. PE-AV's frame encoder is PE-Core (an image model), and its
video encoder takes any number of frames, one included; how close a trained model puts a still to the video it was
taken from can't be measured on this machine without the weights (bench/bind.py measures it on random weights).

The frame encoder of the released checkpoints is a timm model (`vit_pe_core_large_patch14_336`), so they need the
`timm` package and a `torchvision` built for the installed torch: an optional install (TIMM_INSTALL), not in
requirements.txt, whose torch 2.14.1 from PyPI is a CUDA build of about 5.5 GB. A checkpoint whose config.json
records another transformers image model as its frame encoder (the tests' tiny ViT) loads without them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import ModelUnavailable
from . import SpaceInfo, normalize
from .embed import ModelTowers, embed_query
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
TIMM_INSTALL = "pip install torch==2.14.1 torchvision==0.29.1 timm==1.0.28"
MAX_TEXT_TOKENS = 512  # a query, not a document: ModernBERT's 8,192 positions are far past any caption PE-AV saw


class BindSpace(ModelTowers):
    """The `bind` space: audio windows (mono float32 at `sampling_rate`), video segments (lists of RGB frames),
    images (one-frame videos) and text queries, one text head per target modality.

    `batch_size` counts frames for video, as the clip space's counts images, so one forward pass holds about as many
    pictures in both; sounds and texts are `batch_size` at a time.
    """

    def __init__(self, model, processor, info: SpaceInfo, device: str, batch_size: int):
        super().__init__(model, processor, info, device, batch_size)
        self.context_tokens = min(MAX_TEXT_TOKENS, int(model.config.text_config.max_position_embeddings))
        self.max_text_tokens = self.context_tokens - 2  # room for [CLS] and [SEP]

    @classmethod
    def load(cls, model: str = DEFAULT_MODEL, device: str | None = None, batch_size: int = 32) -> "BindSpace":
        """Load a checkpoint by hub id (cache first, then the hub) or local directory.

        Raises:
            ModelUnavailable: the checkpoint is neither cached nor reachable, has no safetensors weights, or isn't a
                PE-AV model; its frame encoder is a timm model and timm or torchvision is missing.
        """
        # transformers 5.23's PeVideoModel.__init__ prints an "[ERROR]" about its own docstring on every build.
        with contextlib.redirect_stdout(io.StringIO()):
            net, processor, source, device = load_pretrained(
                model, "PE-AV", HOW_TO_PROVIDE, DEFAULT_MODEL, device, configure=lambda raw: pe_av_config(raw, model),
                load_processor=PeAvProcessor.from_pretrained,
            )
        info = SpaceInfo(NAME, source, revision(net), int(net.config.text_config.hidden_size))
        return cls(net, processor, info, device, batch_size)

    @property
    def sampling_rate(self) -> int:
        """The rate, in Hz, of the waves `embed_audio` takes."""
        return int(self.processor.feature_extractor.sampling_rate)

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
        """{"pixel_values_videos": (segments, frames, 3, H, W), zeros after a shorter segment's last frame, and
        "padding_mask_videos" where lengths differ}: what PeVideoVideoProcessor gives."""
        import torch

        videos = [self.processor.frames(images=list(frames), return_tensors="pt")["pixel_values"] for frames in batch]
        out = {"pixel_values_videos": torch.nn.utils.rnn.pad_sequence(videos, batch_first=True, padding_value=0.0)}
        lengths = torch.tensor([len(v) for v in videos])
        if lengths.unique().numel() > 1:
            out["padding_mask_videos"] = torch.arange(int(lengths.max()))[None] < lengths[:, None]
        return out


@dataclass(frozen=True)
class PeAvProcessor:
    """A PE-AV checkpoint's input steps: its tokenizer, its feature extractor (sound) and its video processor's
    frame steps (resize, crop, rescale, normalise, with its settings) run by a PIL image processor."""

    tokenizer: Any
    feature_extractor: Any
    frames: Any

    FRAME_STEPS = ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
                   "do_normalize", "image_mean", "image_std", "do_convert_rgb")

    @classmethod
    def of(cls, tokenizer, feature_extractor, video_processor) -> "PeAvProcessor":
        """From the parts of a PeAudioVideoProcessor (a PeVideoVideoProcessor's settings, not its torchvision)."""
        from transformers.image_processing_backends import PilBackend

        steps = {k: getattr(video_processor, k, None) for k in cls.FRAME_STEPS}
        for k in ("size", "crop_size"):  # SizeDicts: the image processor takes plain dicts
            if steps[k] is not None:
                steps[k] = {name: value for name, value in dict(steps[k]).items() if value is not None}
        frames = PilBackend(**{k: v for k, v in steps.items() if v is not None})
        return cls(tokenizer, feature_extractor, frames)

    @classmethod
    def from_pretrained(cls, source: str, local_files_only: bool) -> "PeAvProcessor":
        """The parts of the processor saved in `source` (a folder or hub id), read as AutoProcessor reads them."""
        from transformers import AutoTokenizer, PeAudioFeatureExtractor
        from transformers.models.pe_video.video_processing_pe_video import PeVideoVideoProcessor

        only = local_files_only
        return cls.of(AutoTokenizer.from_pretrained(source, trust_remote_code=False, local_files_only=only),
                      PeAudioFeatureExtractor.from_pretrained(source, trust_remote_code=False, local_files_only=only),
                      PeVideoVideoProcessor.from_pretrained(source, trust_remote_code=False, local_files_only=only))


def pe_av_config(raw: dict, model: str):
    """The PeAudioVideoConfig of a checkpoint's config.json (`raw`), its frame encoder of the kind the file records.

    transformers 5.23's PeVideoEncoderConfig turns every `vision_config` dict into a TimmWrapperConfig (the class its
    sub-config spec names), whatever `model_type` the dict records: a PE-AV saved with another image backbone would
    reload as a timm model of the default architecture. The frame encoder's config is rebuilt here by the class its
    `model_type` names, as AutoModelForImageClassification.from_config (what PeVideoEncoderEmbedder calls) expects.

    Raises:
        ModelUnavailable: not a PE-AV config; a timm frame encoder without timm and torchvision installed.
    """
    from transformers import PeAudioVideoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if raw.get("model_type") != PeAudioVideoConfig.model_type:
        raise ModelUnavailable(f"{model!r} is a {raw.get('model_type') or 'model of unknown type'} checkpoint, not a PE-AV "
                               "model (PeAudioVideoModel). " + HOW_TO_PROVIDE.format(model=DEFAULT_MODEL))
    vision = ((raw.get("audio_video_config") or {}).get("video_config") or {}).get("vision_config") or {}
    kind = vision.get("model_type", "timm_wrapper")  # transformers' default: a timm PE-Core
    if kind == "timm_wrapper":
        missing = [name for name in ("timm", "torchvision") if importlib.util.find_spec(name) is None]
        if missing:
            architecture = vision.get("architecture", "vit_pe_core_large_patch14_336")
            raise ModelUnavailable(
                f"The PE-AV model {model!r} encodes frames with a timm model ({architecture}), and "
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed. Install them with "
                f"`{TIMM_INSTALL}` (timm needs a torchvision built for the installed torch; torch 2.14.1 from PyPI is a "
                f"CUDA build of about 5.5 GB; timm 1.0.31 breaks transformers 5.23's weight tying), or unset {ENV_VAR}."
            )
    elif kind not in CONFIG_MAPPING:
        raise ModelUnavailable(f"The PE-AV model {model!r} encodes frames with a {kind!r} model, which transformers "
                               "does not know.")
    config = PeAudioVideoConfig.from_dict(raw)
    if kind != "timm_wrapper":
        config.audio_video_config.video_config.vision_config = CONFIG_MAPPING[kind].from_dict(vision)
    return config


register(SpaceSpec(
    name=NAME, title="PE-AV", variable=ENV_VAR, default_model=None,
    load=lambda model, s: BindSpace.load(model, device=s.device, batch_size=s.batch_size),
    # Text items stay in the spaces made for documents; its text heads embed queries, one per target modality.
    modalities=frozenset({"audio", "video", "image"}), queries=frozenset({"text", "image", "audio"}),
    text_heads=True,
))
