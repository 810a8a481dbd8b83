"""The `imagebind` space (optional: on when MMCORE_IMAGEBIND_WEIGHTS names a weights file): Meta's ImageBind, which
binds pictures, video, sound and text in one space (and depth, thermal and IMU readings, not used here), through the
model code of the PyPI package `imagebind-unofficial` where a user has installed it. Never vendored: ImageBind's
code and weights are licensed CC BY-NC-SA 4.0 (non-commercial, share-alike), which the README and the app's sidebar
say whenever the space is on.

- **Weights** come from a file the user provides (`imagebind_huge.pth` as Meta publishes it, or a safetensors
  conversion of it), read with `torch.load(weights_only=True)` or safetensors: never a pickle's code. The package's
  own loader downloads into the working directory; it is not used. A `imagebind.json` beside the weights may give
  ImageBindModel's keyword arguments for another size than imagebind_huge's (the tests' tiny model).
- **Only its model code is imported.** The package's `__init__` imports its data loaders, which need torchaudio,
  pytorchvideo and decord (none installs beside this project's torch); the model needs timm, einops, ftfy, regex
  and iopath. The inputs are made here instead, with the settings of the package's `data.py`: pictures resized to
  224 on the short side (bicubic), centre-cropped, CLIP-normalised; sounds resampled to 16 kHz (they are read at
  48 kHz, the rate of CLAP and PE-AV, so one reading serves every space of sound) as three 2-second clips spread
  over the window, each a 128-bin Kaldi filterbank of 204 frames normalised by AudioSet's mean and spread
  (transformers' ASTFeatureExtractor computes the same filterbank without torchaudio); video as clips of two
  consecutive frames, centre crop only (the package also averages left and right crops); text by its BPE tokenizer.
  ImageBind averages a sound's or a video's clip vectors; a picture is a clip of one frame repeated.
- Depth and thermal images are left out: each needs its own reader and conventions (depth in metres as disparity,
  one-channel thermal) that no file here says, and a picture of a depth map is not a depth reading.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import threading
import types
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ModelUnavailable
from . import SpaceInfo
from .embed import Towers
from .hf import embed_in_batches
from .registry import SpaceSpec, register

NAME = "imagebind"
ENV_VAR = "MMCORE_IMAGEBIND_WEIGHTS"
LICENCE = ("ImageBind's code and weights are licensed CC BY-NC-SA 4.0: non-commercial use only, and what you make "
           "from them is shared under the same licence.")
INSTALL = ("pip install --no-deps imagebind-unofficial && pip install einops ftfy regex iopath "
           "torch==2.14.1 torchvision==0.29.1 timm==1.0.28")
HOW_TO_PROVIDE = (f"Download imagebind_huge.pth (Meta's ImageBind release) on a machine with internet access, copy it "
                  f"here and set {ENV_VAR} to its path (a .pth or a .safetensors conversion of it).")
CONFIG_FILE = "imagebind.json"
HUGE = {"vision_embed_dim": 1280, "vision_num_blocks": 32, "vision_num_heads": 16, "text_embed_dim": 1024,
        "text_num_blocks": 24, "text_num_heads": 16, "out_embed_dim": 1024, "audio_drop_path": 0.1, "imu_drop_path": 0.7}
NEEDS = ("timm", "torchvision", "einops", "ftfy", "regex", "iopath")

RATE = 48_000  # what the space is given: CLAP's and PE-AV's rate (mmcore.ingest reads a sound once for all spaces)
MODEL_RATE = 16_000  # what ImageBind hears
CLIP_S, CLIPS = 2, 3  # a sound: three 2-second clips spread over it (the package's ConstantClipsPerVideoSampler)
MEL_BINS, MEL_FRAMES = 128, 204
MEL_MEAN, MEL_STD = -4.268, 9.138
SIZE = 224
MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
FRAMES_PER_CLIP = 2


class ImageBindSpace(Towers):
    """The `imagebind` space: pictures, video segments (lists of frames), sounds (mono float32 at `sampling_rate`)
    and text queries, all in ImageBind's one space."""

    sampling_rate = RATE

    def __init__(self, model, tokenizer, info: SpaceInfo, device: str, batch_size: int):
        from transformers import ASTFeatureExtractor

        self.model, self.tokenizer, self.info, self.device, self.batch_size = model, tokenizer, info, device, batch_size
        # AST normalises by (x - mean) / (2 * std): ImageBind's spread is twice AST's, so the same figures. 128 bins
        # over a 512-point FFT leave the lowest filters empty, in Kaldi's filterbank as here.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
            self.filterbank = ASTFeatureExtractor(num_mel_bins=MEL_BINS, max_length=MEL_FRAMES, sampling_rate=MODEL_RATE,
                                                  mean=MEL_MEAN, std=MEL_STD / 2, do_normalize=True)
        self._tokenizer_lock = threading.Lock()

    @classmethod
    def load(cls, weights: str, device: str | None = None, batch_size: int = 32) -> "ImageBindSpace":
        """Load ImageBind from a weights file (.pth read with weights_only=True, or .safetensors).

        Raises:
            ModelUnavailable: no such file; imagebind-unofficial or what its model code needs is not installed; the
                file is not a state dict of ImageBindModel at this size.
        """
        import torch

        path = Path(weights).expanduser()
        if not path.is_file():
            raise ModelUnavailable(f"The ImageBind weights file {weights!r} does not exist. " + HOW_TO_PROVIDE)
        code = model_code()
        kwargs = architecture(path, code)
        state = read_weights(path)
        net = code.ImageBindModel(**kwargs)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise ModelUnavailable(f"{path} does not hold ImageBind weights of the size it is built at "
                                   f"({'its ' + CONFIG_FILE if (path.parent / CONFIG_FILE).is_file() else 'imagebind_huge'}): "
                                   f"{first}") from e
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        info = SpaceInfo(NAME, str(path.resolve()), "local", int(kwargs.get("out_embed_dim", 768)))
        return cls(net.eval().to(device), bpe_tokenizer(), info, device, batch_size)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        def prepare(batch):
            with self._tokenizer_lock:  # a tokenizer's BPE cache is a plain dict
                tokens = self.tokenizer(list(batch))
            return {"text": tokens.reshape(len(batch), -1)}

        return self._embed(texts, self.batch_size, prepare)

    def embed_images(self, images: Sequence) -> np.ndarray:
        return self._embed(images, self.batch_size, lambda batch: {"vision": _pixels(batch)})

    def embed_videos(self, segments: Sequence[Sequence]) -> np.ndarray:
        """One vector per segment: the mean of its clips' (two consecutive frames each; an odd last frame alone)."""
        return self._embed(segments, 1, lambda batch: {"vision": _clips(batch[0])})  # a segment's clips share a batch

    def embed_audio(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        return self._embed(waves, self.batch_size, lambda batch: {"audio": self._sound_clips(batch)})

    def _sound_clips(self, batch: Sequence[np.ndarray]):
        """(sounds, CLIPS, 1, MEL_BINS, MEL_FRAMES): each sound's clips, spread evenly from its start to its end."""
        import torch

        from scipy.signal import resample_poly

        length = CLIP_S * MODEL_RATE
        sounds = []
        for wave in batch:
            wave = resample_poly(np.asarray(wave, dtype=np.float32).reshape(-1), MODEL_RATE, RATE).astype(np.float32)
            starts = np.linspace(0, max(len(wave) - length, 0), CLIPS).round().astype(int)
            clips = [wave[s:s + length] for s in starts]
            bank = self.filterbank(clips, sampling_rate=MODEL_RATE, return_tensors="pt")["input_values"]  # (clips, frames, bins)
            sounds.append(bank.transpose(1, 2)[:, None])
        return torch.stack(sounds)

    def _embed(self, items: Sequence, batch_size: int, prepare) -> np.ndarray:
        """Unit rows of ImageBind's output for `prepare(batch)`, a {modality: input} of one modality."""
        def forward(**inputs):
            return self.model(inputs)[next(iter(inputs))]

        return embed_in_batches(items, batch_size, prepare, forward, self.device, self.info.dim)


def _clips(frames: Sequence):
    """(1, clips, 3, FRAMES_PER_CLIP, 224, 224): a segment as ImageBind takes a video, an odd last frame repeated."""
    import torch

    pixels = _pixels(list(frames))
    clips = [pixels[j:j + FRAMES_PER_CLIP] for j in range(0, len(pixels), FRAMES_PER_CLIP)]
    clips = [c if len(c) == FRAMES_PER_CLIP else c.repeat(FRAMES_PER_CLIP, 1, 1, 1)[:FRAMES_PER_CLIP] for c in clips]
    return torch.stack([c.permute(1, 0, 2, 3) for c in clips])[None]


def _pixels(images: Sequence):
    """(n, 3, 224, 224) float32: pictures as the package's vision transform makes them."""
    import torch
    from PIL import Image

    out = []
    for image in images:
        image = image.convert("RGB")
        scale = SIZE / min(image.size)
        image = image.resize((max(SIZE, round(image.width * scale)), max(SIZE, round(image.height * scale))),
                             Image.Resampling.BICUBIC)
        left, top = (image.width - SIZE) // 2, (image.height - SIZE) // 2
        array = np.asarray(image.crop((left, top, left + SIZE, top + SIZE)), dtype=np.float32) / 255.0
        out.append((array - np.array(MEAN, np.float32)) / np.array(STD, np.float32))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def installed() -> bool:
    """Whether imagebind-unofficial and what its model code imports are installed."""
    return importlib.util.find_spec("imagebind") is not None and all(importlib.util.find_spec(n) for n in NEEDS)


def model_code():
    """imagebind-unofficial's model module, imported without the package's `__init__` (its data loaders need
    torchaudio, pytorchvideo and decord; the model does not).

    Raises:
        ModelUnavailable: the package, or what its model code imports, is not installed.
    """
    spec = importlib.util.find_spec("imagebind")
    missing = [name for name in NEEDS if importlib.util.find_spec(name) is None]
    if spec is None or missing:
        what = ["imagebind-unofficial"] * (spec is None) + missing
        raise ModelUnavailable(f"The ImageBind space needs {', '.join(what)}, not installed. Install them with "
                               f"`{INSTALL}` (a CUDA build of torch of about 5.5 GB from PyPI), or unset {ENV_VAR}. "
                               + LICENCE)
    if "imagebind" not in sys.modules:
        package = types.ModuleType("imagebind")
        package.__path__ = list(spec.submodule_search_locations)
        package.__spec__ = spec
        sys.modules["imagebind"] = package
    return code_module("imagebind.models.imagebind_model")


def bpe_tokenizer():
    """ImageBind's text tokenizer (CLIP's BPE, 77 tokens), from the vocabulary the package ships."""
    bpe = Path(importlib.util.find_spec("imagebind").submodule_search_locations[0]) / "bpe" / "bpe_simple_vocab_16e6.txt.gz"
    return code_module("imagebind.models.multimodal_preprocessors").SimpleTokenizer(bpe_path=str(bpe))


def code_module(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ModelUnavailable(f"ImageBind's model code could not be imported ({e}). Install what it needs with "
                               f"`{INSTALL}`.") from e


def architecture(path: Path, code) -> dict:
    """ImageBindModel's keyword arguments: imagebind_huge's, or those of the `imagebind.json` beside the weights
    (numbers and lists only: data, not code).

    Raises:
        ModelUnavailable: the file is not a JSON object of ImageBindModel's arguments.
    """
    import inspect

    config = path.parent / CONFIG_FILE
    if not config.is_file():
        return dict(HUGE)
    try:
        kwargs = json.loads(config.read_text())
    except (OSError, ValueError) as e:
        raise ModelUnavailable(f"{config} is not readable JSON: {e}") from e
    known = set(inspect.signature(code.ImageBindModel).parameters)
    if not isinstance(kwargs, dict) or set(kwargs) - known or not all(
            isinstance(v, (int, float, list)) and not isinstance(v, bool) for v in kwargs.values()):
        raise ModelUnavailable(f"{config} must be a JSON object of ImageBindModel's arguments ({', '.join(sorted(known))}) "
                               "with numbers or lists as values.")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def read_weights(path: Path) -> dict:
    """A state dict from safetensors, or from a torch file with weights_only=True (tensors, no code).

    Raises:
        ModelUnavailable: neither reads as a state dict of tensors.
    """
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated file, a pickle with code (refused by weights_only), not a torch file
        raise ModelUnavailable(f"{path} can't be read as ImageBind weights: {str(e).splitlines()[0][:300]}") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelUnavailable(f"{path} is not a state dict of tensors (as imagebind_huge.pth is).")
    return state


register(SpaceSpec(
    name=NAME, title="ImageBind", variable=ENV_VAR, default_model=None,
    load=lambda weights, s: ImageBindSpace.load(weights, device=s.device, batch_size=s.batch_size),
    # Text items stay in the spaces made for documents; its text tower embeds queries.
    modalities=frozenset({"audio", "video", "image"}), queries=frozenset({"text", "image", "audio"}),
    notice=LICENCE,
))
