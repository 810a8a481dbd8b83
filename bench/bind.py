"""The bind space (PE-AV) on this CPU with full-size random weights: audio windows/s, video segments/s and
pictures/s, beside CLAP's windows/s and CLIP's images and segments/s; and where a still lands beside the video it was
taken from. Vectors are meaningless (random weights); speed is real.

    python bench/bind.py [--windows 4] [--segments 2]

PE-AV: transformers' PeAudioVideoConfig defaults are facebook/pe-av-large's (ModernBERT-large text, DAC + 6-layer
1792-wide audio and video encoders, a timm vit_pe_core_large_patch14_336 per frame); its feature extractor at 48 kHz
with a hop of 1,920 samples and frames at 336 x 336. CLAP: ClapConfig's defaults (laion/clap-htsat-unfused's HTSAT).
CLIP: ViT-B/32 (bench/fullsize.py). ImageBind (where imagebind-unofficial is installed): imagebind_huge's size through
the imagebind space. Models are built in memory, not saved (PE-AV is 6 GB of float32).
Needs the optional install of the bind space's timm frame encoder (mmcore.spaces.bind.TIMM_INSTALL).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from checkpoints import _byte_level_tokenizer  # noqa: E402
from fullsize import fullsize_clip  # noqa: E402
from mmcore.spaces import SpaceInfo  # noqa: E402
from mmcore.spaces.bind import BindSpace, PeAvProcessor  # noqa: E402
from mmcore.spaces.clap import ClapSpace  # noqa: E402
from mmcore.spaces.clip import ClipSpace  # noqa: E402

RATE = 48_000
WINDOW_S = 10
FRAMES = 10  # a 10 s segment at 1 frame a second (MMCORE_VIDEO_SEGMENT_S, the reader's default)


def rate(label: str, n: int, work) -> float:
    work()  # warm-up: first-call allocations
    start = time.perf_counter()
    work()
    per_s = n / (time.perf_counter() - start)
    print(f"{label:<48} {per_s:8.2f} /s", flush=True)
    return per_s


def pe_av() -> BindSpace:
    from transformers import PeAudioFeatureExtractor, PeAudioVideoConfig, PeAudioVideoModel
    from transformers.models.pe_video.video_processing_pe_video import PeVideoVideoProcessor

    torch.manual_seed(0)
    start = time.perf_counter()
    model = PeAudioVideoModel(PeAudioVideoConfig()).eval()
    print(f"PE-AV built in {time.perf_counter() - start:.0f} s: {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters")
    tokenizer = _byte_level_tokenizer([])
    tokenizer.pad_token = tokenizer.cls_token = tokenizer.sep_token = "<|endoftext|>"
    processor = PeAvProcessor.of(
        tokenizer, PeAudioFeatureExtractor(sampling_rate=RATE, hop_length=1920),
        PeVideoVideoProcessor(size={"height": 336, "width": 336}, do_resize=True, do_rescale=True, do_normalize=True,
                              image_mean=[0.5] * 3, image_std=[0.5] * 3))
    return BindSpace(model, processor, SpaceInfo("bind", "pe-av-large (random)", "local", 1024), "cpu", 32)


def clap() -> ClapSpace:
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for ch in sorted(ByteLevel.alphabet()):
        vocab.setdefault(ch, len(vocab))
    torch.manual_seed(0)
    model = ClapModel(ClapConfig()).eval()
    processor = ClapProcessor(feature_extractor=ClapFeatureExtractor(), tokenizer=RobertaTokenizer(vocab=vocab, merges=[]))
    return ClapSpace(model, processor, SpaceInfo("clap", "clap-htsat-unfused (random)", "local", 512), "cpu", 32)


def imagebind():
    """ImageBind at imagebind_huge's size, random weights, through the imagebind space (needs imagebind-unofficial)."""
    from mmcore.spaces import imagebind as ib

    code = ib.model_code()
    torch.manual_seed(0)
    start = time.perf_counter()
    model = code.ImageBindModel(**ib.HUGE).eval()
    print(f"ImageBind built in {time.perf_counter() - start:.0f} s: {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters")
    return ib.ImageBindSpace(model, ib.bpe_tokenizer(), SpaceInfo("imagebind", "imagebind_huge (random)", "local", 1024),
                             "cpu", 32)


def scene(seed: int, n: int = FRAMES) -> list[Image.Image]:
    """A moving picture: a random background with a bright square crossing it, 320 x 240."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        frame = background.copy()
        x = 20 + 25 * i
        frame[80:160, x:x + 60] = (255, 255, 255)
        out.append(Image.fromarray(frame))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=4, help="audio windows per timed batch")
    parser.add_argument("--segments", type=int, default=2, help="video segments per timed batch")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    waves = [np.random.default_rng(i).standard_normal(RATE * WINDOW_S).astype(np.float32) * 0.1 for i in range(args.windows)]
    segments = [scene(i) for i in range(args.segments)]
    stills = [s[FRAMES // 2] for s in segments]

    sound = clap()
    rate(f"CLAP audio windows ({WINDOW_S} s)", len(waves), lambda: sound.embed_audio(waves))
    sight = ClipSpace.load(str(fullsize_clip()), device="cpu", batch_size=32)
    rate("CLIP ViT-B/32 images", 32, lambda: sight.embed_images([f for s in segments for f in s][:32] * (32 // (FRAMES * len(segments)) + 1)))
    from mmcore.media import Chunk

    rate(f"CLIP video segments ({FRAMES} frames, mean)", len(segments), lambda: sight.embed([Chunk("video", s) for s in segments]))

    from mmcore.spaces import imagebind as ib

    if ib.installed():
        bound = imagebind()
        rate(f"ImageBind audio windows ({WINDOW_S} s: 3 clips of 2 s)", len(waves), lambda: bound.embed_audio(waves))
        rate(f"ImageBind video segments ({FRAMES} frames: {FRAMES // 2} clips)", len(segments), lambda: bound.embed_videos(segments))
        rate("ImageBind pictures", len(stills), lambda: bound.embed_images(stills))
        del bound
    else:
        print("ImageBind: not installed (mmcore.spaces.imagebind.INSTALL), skipped")

    bind = pe_av()
    rate(f"PE-AV audio windows ({WINDOW_S} s)", len(waves), lambda: bind.embed_audio(waves))
    rate(f"PE-AV video segments ({FRAMES} frames)", len(segments), lambda: bind.embed_videos(segments))
    rate("PE-AV pictures (one-frame videos)", len(stills), lambda: bind.embed_images(stills))
    rate("PE-AV text queries (per head)", 8, lambda: bind.embed_texts(["a dog barking in the rain"] * 8, target="audio"))

    # Where a still lands: cosine with its own segment against the other segments' (random weights: architecture only).
    many = [scene(i) for i in range(6)]
    videos = bind.embed_videos(many)
    pictures = bind.embed_images([s[FRAMES // 2] for s in many])
    cos = pictures @ videos.T
    own = np.diag(cos)
    others = cos[~np.eye(len(many), dtype=bool)].reshape(len(many), -1)
    ranks = [int((cos[i] > cos[i, i]).sum()) + 1 for i in range(len(many))]
    print(f"still vs its own segment: cosine {own.mean():.3f} (min {own.min():.3f}); vs the other segments "
          f"{others.mean():.3f} (max {others.max():.3f}); rank of its own segment among {len(many)}: {ranks}")


if __name__ == "__main__":
    main()
