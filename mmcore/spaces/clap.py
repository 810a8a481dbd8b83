"""CLAP models (laion/clap-htsat-*) through transformers' AutoModel + AutoProcessor: sounds and text in one space."""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from ..errors import ModelUnavailable
from . import SpaceInfo
from .embed import ModelTowers
from .hf import embed_in_batches, load_pretrained, revision
from .registry import SpaceSpec, register

DEFAULT_CLAP_MODEL = "laion/clap-htsat-unfused"

HOW_TO_PROVIDE = (
    "To use it offline, download it on a machine with internet access "
    "(`hf download {model} --local-dir ./models/clap`), copy that folder here and set "
    "MMCORE_CLAP_MODEL=./models/clap; or set MMCORE_CLAP_MODEL to the hub id or local folder of another "
    "CLAP checkpoint that has model.safetensors."
)
TRAINED_TEXT_TOKENS = 77  # LAION trained CLAP's text tower on 77-token captions, though RoBERTa has room for 512

_numpy_seed_lock = threading.Lock()


class ClapSpace(ModelTowers):
    """The `clap` space: sounds (mono float32 waves at `sampling_rate`) and text in one shared vector space."""

    def __init__(self, model, processor, info: SpaceInfo, device: str, batch_size: int):
        super().__init__(model, processor, info, device, batch_size)
        positions = int(model.config.text_config.max_position_embeddings) - 2  # RoBERTa's start after the padding index
        self.context_tokens = min(TRAINED_TEXT_TOKENS, positions)
        self.max_text_tokens = self.context_tokens - 2  # room for <s> and </s>
        # An unfused model takes one spectrogram; a checkpoint's extractor may still say "fusion" (four of them).
        self.truncation = "fusion" if model.config.audio_config.enable_fusion else "rand_trunc"

    @classmethod
    def load(cls, model: str, device: str | None = None, batch_size: int = 32) -> "ClapSpace":
        """Load a checkpoint by hub id (cache first, then the hub) or local directory.

        Raises:
            ModelUnavailable: it is neither cached nor reachable, has no safetensors weights, or isn't a CLAP model.
        """
        net, processor, source, device = load_pretrained(model, "CLAP", HOW_TO_PROVIDE, DEFAULT_CLAP_MODEL, device)
        if not hasattr(net, "get_text_features") or not hasattr(net, "get_audio_features"):
            raise ModelUnavailable(f"{model!r} is a {type(net).__name__}, not a CLAP model with text and audio towers.")
        if not hasattr(processor, "feature_extractor") or not hasattr(processor, "tokenizer"):
            raise ModelUnavailable(f"{model!r} has a {type(processor).__name__}, not a CLAP processor for audio and text.")
        return cls(net, processor, SpaceInfo("clap", source, revision(net), int(net.config.projection_dim)), device, batch_size)

    @property
    def sampling_rate(self) -> int:
        """The rate, in Hz, of the waves `embed_audio` takes."""
        return int(self.processor.feature_extractor.sampling_rate)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        def prepare(batch):
            with self._tokenizer_lock:
                encoded = self.processor.tokenizer(
                    list(batch), return_tensors="pt", padding=True, truncation=True, max_length=self.context_tokens
                )
            return _batch({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]})

        return embed_in_batches(texts, self.batch_size, prepare, self.model.get_text_features, self.device, self.info.dim, self.model.dtype)

    def embed_audio(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """One vector per wave: mono float32 samples at `sampling_rate` (the model hears its first 10 s or so)."""
        return embed_in_batches(waves, self.batch_size, self._audio_inputs, self.model.get_audio_features, self.device, self.info.dim, self.model.dtype)

    def _audio_inputs(self, batch: Sequence[np.ndarray]):
        import torch

        extractor = self.processor.feature_extractor
        mels, longer = [], []
        for wave in batch:
            wave = np.asarray(wave, dtype=np.float32).reshape(-1)
            # The extractor crops over-long waves at random offsets from numpy's global generator: seeding it
            # per wave makes a wave's vector the same every time, whatever else is in its batch.
            with _numpy_seed_lock:
                state = np.random.get_state()
                np.random.seed(0)
                try:
                    features = extractor(wave, sampling_rate=extractor.sampling_rate, truncation=self.truncation, return_tensors="np")
                finally:
                    np.random.set_state(state)
            mels.append(features["input_features"][0])
            # With no wave over the limit, "fusion" marks a random one as longer (a training trick); undo that.
            longer.append(bool(features["is_longer"][0][0]) and len(wave) > extractor.nb_max_samples)
        return _batch({"input_features": torch.from_numpy(np.stack(mels)).float(), "is_longer": torch.tensor(longer)[:, None]})


def _batch(tensors: dict):
    from transformers import BatchFeature

    return BatchFeature(tensors)


# Sound items only: text items stay in the spaces made for documents; CLAP's text tower embeds queries.
# Its sound vectors are named by no vocabulary of ours (the built-in one lists things seen, not heard).
register(SpaceSpec(
    name="clap", title="CLAP", variable="MMCORE_CLAP_MODEL", default_model=DEFAULT_CLAP_MODEL,
    load=lambda model, s: ClapSpace.load(model, device=s.device, batch_size=s.batch_size),
    modalities=frozenset({"audio"}), queries=frozenset({"text", "audio"}),
))
