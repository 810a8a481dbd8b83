"""X-CLIP: how far the stored (unconditioned) text vectors rank videos away from the full model, and X-CLIP
segments/s beside CLIP's frame mean on the same video. Prints figures; asserts nothing.

1. Rankings. X-CLIP's full forward rewrites each query's text embedding for each video (its prompt generator
   cross-attends from the text to that video's patch tokens); a stored collection can only compare the video
   vector with the query's unconditioned text vector. For Q queries and V segments this ranks the segments per
   query both ways (cosine of unconditioned text vs the full forward's logits_per_text) and prints the mean
   Spearman rho, top-1 agreement and top-5 overlap, plus how close the conditioned query vectors stay to the
   unconditioned one. Control: with the prompt generator switched off (alpha = 0) the two must agree exactly.
   Models: the tests' tiny random checkpoint and a random-weight checkpoint of the real B/32 architecture. Neither
   is trained, so the figures show the mechanism at its initial strength (alpha = 0.1), not what trained
   weights do; rerun with --model on a real checkpoint (microsoft/xclip-base-patch32) for that.
2. Speed. The same decoded segments (read_video, the ingest defaults: 10 s segments, 1 frame a second, at most
   10 frames; and 4 s segments) embedded by X-CLIP (8 frames sampled per segment, get_video_features) and by
   the clip space as ingest does it (every frame through the image tower, then the mean), random-weight B/32
   checkpoints of both (real cost), rounds alternating.

Usage: python bench/xclip.py [--model XCLIP_DIR] [--video PATH] [--segments N] [--rounds R]
Media: ../shared/data (the sea clip, flickr8k-300 photos and captions) when present, else synthetic pictures.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
DATA = ROOT.parent / "shared" / "data"
VIDEO = DATA / "video" / "sea-360p-10s.mp4"
PHOTOS = DATA / "flickr8k-300"

QUERIES_FALLBACK = [
    "waves breaking on a beach", "a dog running in the grass", "a child climbing stairs", "people on a street",
    "a man riding a bike", "boats in a harbour", "a red car", "snow on a mountain", "two girls laughing",
    "a bird in the sky", "a crowd at a concert", "someone cooking dinner",
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="an X-CLIP checkpoint (hub id or folder) to measure rankings on as well")
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--segments", type=int, default=12, help="segments per speed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--no-sweep", action="store_true", help="skip the prompt-size sweep on the tiny model")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, torch threads {torch.get_num_threads()}")
    segments, queries, source = ranking_media()
    print(f"\n## Rankings: {len(queries)} queries x {len(segments)} segments of 8 frames ({source})")
    from checkpoints import tiny_xclip
    from fullsize import fullsize_xclip

    with tempfile.TemporaryDirectory() as tmp:
        models = [("tiny random (tests' checkpoint, 16-d)", str(tiny_xclip(Path(tmp) / "tiny"))),
                  ("random B/32 architecture (512-d)", str(fullsize_xclip()))]
        if args.model:
            models.append((f"{args.model}", args.model))
        for i, (label, model) in enumerate(models):
            rankings(label, model, segments, queries, sweep=i == 0 and not args.no_sweep)
    if not args.skip_speed:
        speed(args.video, args.segments, args.rounds)


def ranking_media():
    """V segments of 8 frames and Q text queries: the sea clip cut in 2 s segments and flickr8k photos in groups
    of 8 with their captions when ../shared/data is here, else synthetic pictures and fixed queries."""
    import numpy as np
    from PIL import Image

    segments = []
    if VIDEO.exists() and (PHOTOS / "images").is_dir():
        from mmcore.media import ReadOptions, read_media

        options = ReadOptions(token_spans=lambda t: [], max_tokens=10, video_segment_s=2.0, frames_per_second=4.0, max_frames_per_segment=8)
        segments += [c.payload for c in read_media(VIDEO.name, VIDEO.read_bytes(), options).chunks]
        photos = sorted((PHOTOS / "images").glob("*.jpg"))[:216]
        for i in range(0, len(photos), 8):
            group = [Image.open(p).convert("RGB") for p in photos[i : i + 8]]
            for im in group:
                im.thumbnail((320, 320))
            segments.append(group)
        with open(PHOTOS / "captions.csv", newline="") as f:
            captions = [row["caption"] for row in csv.DictReader(f)]
        queries = captions[::125][:12]
        return segments, queries, "the sea clip in 2 s segments + flickr8k photos in groups of 8; flickr8k captions"
    rng = np.random.default_rng(0)
    for _ in range(32):
        base = rng.integers(0, 255, (6, 8, 3))
        segments.append([Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)).resize((64, 48)) for _ in range(8)])
    return segments, QUERIES_FALLBACK, "synthetic pictures (no ../shared/data); fixed queries"


def rankings(label: str, model: str, segments, queries, sweep: bool = False) -> None:
    import numpy as np
    import torch
    from scipy.stats import spearmanr

    from mmcore.spaces.xclip import XClipSpace

    space = XClipSpace.load(model, device="cpu", batch_size=32)
    texts = space.embed_texts(queries)
    videos = space.embed_videos(segments)
    stored = texts @ videos.T  # (Q, V): what a search over stored vectors ranks by

    def full_forward():
        with torch.inference_mode():
            out = space.model(**space.text_inputs(queries), **space.video_inputs(segments))
        return out.logits_per_text.float().numpy(), out.text_embeds.float().numpy(), out.video_embeds.float().numpy()

    sizes = []  # |prompt term| / |text embedding| per (video, query), seen at the prompt generator

    def measure(module, inputs, output):
        sizes.append((output.norm(dim=-1) / inputs[0].norm(dim=-1)).flatten())

    hook = space.model.prompts_generator.register_forward_hook(measure)
    full, conditioned, video_embeds = full_forward()  # conditioned: (V, Q, d), normalised
    ratio = float(torch.cat(sizes).median())
    alpha = space.model.prompts_generator.alpha
    saved = alpha.detach().clone()

    def with_alpha(scale: float):
        with torch.no_grad():
            alpha.copy_(saved * scale)
        try:
            return full_forward()[0]
        finally:
            with torch.no_grad():
                alpha.copy_(saved)

    control = with_alpha(0.0)

    def compare(a, b):
        rho = [spearmanr(x, y).statistic for x, y in zip(a, b)]
        top1 = [int(np.argmax(x) == np.argmax(y)) for x, y in zip(a, b)]
        top5 = [len(set(np.argsort(-x)[:5]) & set(np.argsort(-y)[:5])) / 5 for x, y in zip(a, b)]
        return float(np.mean(rho)), float(np.min(rho)), float(np.mean(top1)), float(np.mean(top5))

    rho, rho_min, top1, top5 = compare(stored, full)
    c_rho, _, c_top1, _ = compare(stored, control)
    drift = np.einsum("vqd,qd->vq", conditioned, texts)  # cosine of each conditioned query to its stored vector
    spread = float(np.mean(stored.max(axis=1) - stored.min(axis=1)))
    print(f"\n{label}: {model}")
    print(f"  video vectors: stored path vs the full forward's video_embeds, max |diff| {np.abs(videos - video_embeds).max():.1e}")
    print(f"  prompt-generator alpha: mean |alpha| {float(saved.abs().mean()):.3f}; prompt term / text embedding, median norm ratio {ratio:.2f}")
    print(f"  conditioned query vs stored query: cosine mean {drift.mean():.4f}, min {drift.min():.4f}")
    print(f"  spread of stored cosines per query (max - min over segments): {spread:.4f}")
    print(f"  stored ranking vs full model: Spearman rho mean {rho:.3f} (min {rho_min:.3f}), top-1 agreement {top1:.0%}, top-5 overlap {top5:.0%}")
    print(f"  control, prompt generator off: Spearman rho {c_rho:.3f}, top-1 agreement {c_top1:.0%}")
    if sweep:  # the same model with the prompt term scaled to a chosen size relative to the text embedding
        print("  prompt term rescaled to a norm ratio of: " + "; ".join(
            "{:g}: rho {:.3f}, top-1 {:.0%}, top-5 {:.0%}".format(r, *(lambda m: (m[0], m[2], m[3]))(compare(stored, with_alpha(r / ratio))))
            for r in (0.01, 0.03, 0.1, 0.3, 1.0)
        ))
    hook.remove()


def speed(video: Path, n: int, rounds: int) -> None:
    import torch

    from fullsize import fullsize_clip, fullsize_xclip
    from mmcore.media import ReadOptions, read_media
    from mmcore.spaces.clip import ClipSpace
    from mmcore.spaces.xclip import XClipSpace

    if not video.exists():
        from media_av import make_video

        print(f"\n({video} is not here: a synthetic 10 s, 10 fps, 640 x 360 video instead)")
        data, name = make_video(seconds=10, fps=10, size=(640, 360)), "synthetic.mp4"
    else:
        data, name = video.read_bytes(), video.name
    xclip = XClipSpace.load(str(fullsize_xclip()), device="cpu", batch_size=32)
    clip = ClipSpace.load(str(fullsize_clip()), device="cpu", batch_size=32)
    print(f"\n## Speed: {name}, random-weight B/32 checkpoints (real cost), batch 32 frames, {rounds} rounds, median")
    print("| segments | frames per segment | X-CLIP segments/s (8 frames each) | CLIP frame mean segments/s | X-CLIP / CLIP |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for seg_s in (10.0, 4.0):
        options = ReadOptions(token_spans=lambda t: [], max_tokens=10, video_segment_s=seg_s)
        started = time.perf_counter()
        decoded = read_media(name, data, options).chunks
        decode_s = time.perf_counter() - started
        chunks = (decoded * n)[:n]
        x_rates, c_rates = [], []
        for _ in range(rounds):
            started = time.perf_counter()
            xclip.embed_videos([c.payload for c in chunks])
            x_rates.append(n / (time.perf_counter() - started))
            started = time.perf_counter()
            clip.embed(chunks)  # the path ingest takes for video segments in the clip space (the frame mean)
            c_rates.append(n / (time.perf_counter() - started))
        x, c = statistics.median(x_rates), statistics.median(c_rates)
        frames = "/".join(str(len(ch.payload)) for ch in decoded)
        print(f"| {len(decoded)} of {seg_s:g} s, repeated to {n} (decoding took {decode_s:.2f} s) | {frames} | {x:.2f} | {c:.2f} | {x / c:.2f}x |")
    print(f"(load {os.getloadavg()[0]:.1f}, torch threads {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
