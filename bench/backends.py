"""Inference backends for the clip space, side by side: images/s of each, its speed-up over eager float32 and the
cosine similarity of its vectors with eager float32's on the same inputs. Prints figures; asserts nothing.

Usage: python bench/backends.py [--model DIR] [--rounds 5] [--batch 32] [--threads 2] [--no-text] [--outliers S]

Without --model, a random-weight checkpoint of the real ViT-B/32 architecture is used (real cost, meaningless
vectors). Every backend runs the same preprocessed batch (real photos from ../shared/data/flickr8k-300 when
present, else synthetic pictures), one round of every backend after another, so a machine shared with other
jobs slows them alike; each figure is the median of the rounds, and the load average is printed.

Random weights have no activation outliers, which real checkpoints do, and which int8's per-tensor activation
scales are sensitive to. --outliers S rescales 8 channels of every layer norm in the image tower by S and the
next layer's weights by 1/S: float32 computes the same function, but the activations now have outlier channels,
as real transformers' do. The parity columns then show which backends keep parity when that happens.

Backends that need a package that isn't installed (onnx, for the onnxruntime rows) are listed as skipped.
"""

from __future__ import annotations

import argparse
import copy
import csv
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
PHOTOS = ROOT.parent / "shared" / "data" / "flickr8k-300"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="a real checkpoint folder (default: random full-size ViT-B/32)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-text", action="store_true", help="image tower only")
    parser.add_argument("--outliers", type=float, default=0, help="give the image tower outlier channels of this scale")
    args = parser.parse_args()

    import torch
    from transformers import CLIPModel, CLIPProcessor

    from fullsize import fullsize_clip

    torch.set_num_threads(args.threads)
    model = args.model or str(fullsize_clip())
    print(f"model: {model}" + ("" if args.model else " (random weights, real ViT-B/32 cost)"))
    net = CLIPModel.from_pretrained(model, use_safetensors=True).eval()
    processor = CLIPProcessor.from_pretrained(model)
    if args.outliers:
        add_outlier_channels(net.vision_model, args.outliers)
        print(f"image tower rescaled: 8 outlier channels x{args.outliers:g} before every linear layer (same float32 function)")
    images, texts, origin = inputs(args.batch)
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    tokens = processor(text=texts, return_tensors="pt", padding=True, truncation=True, max_length=77)
    print(f"inputs: {len(images)} {origin}, batch {args.batch}; {len(texts)} texts padded to {tokens['input_ids'].shape[1]} tokens; "
          f"{args.threads} threads; {os.cpu_count()} CPUs")

    image_backends, text_backends, skipped = build(net, pixels, dict(tokens), args.threads, with_text=not args.no_text)
    for name, why in skipped:
        print(f"skipped {name}: {why}")
    print(f"load average before: {fmt_load()}")
    rows = [("image", measure(image_backends, args.rounds))]
    if not args.no_text:
        rows.append(("text", measure(text_backends, args.rounds)))
    if not args.outliers and not any(name == "openvino-bf16" for name, _ in skipped):
        rows.append(("clip space", measure(through_space(model, images, args.batch), args.rounds)))
    print(f"load average after:  {fmt_load()}")
    for tower, results in rows:
        base_rate, _, base_vectors = results["torch fp32 (eager)"]
        unit = "texts/s" if tower == "text" else "images/s"
        if tower == "clip space":
            print(f"\nClipSpace.embed_images on the decoded photos, preprocessing included (what ingest calls): {unit}")
        else:
            print(f"\n{tower} tower: {unit}, speed-up over eager float32, cosine with eager float32 (min / mean over the batch)")
        print(f"| backend | {unit} | slowest-fastest round | speed-up | min cosine | mean cosine |\n"
              "| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, (rate, spread, vectors) in results.items():
            cos = (vectors * base_vectors).sum(axis=1)
            print(f"| {name} | {rate:.1f} | {spread[0]:.1f}-{spread[1]:.1f} | {rate / base_rate:.2f}x | {cos.min():.5f} | {cos.mean():.5f} |")


def inputs(n: int):
    """n real photos and captions when the shared sample is here, else synthetic pictures and sentences."""
    from PIL import Image

    photos = sorted((PHOTOS / "images").glob("*.jpg"))[:n]
    if len(photos) == n:
        with open(PHOTOS / "captions.csv", newline="", encoding="utf-8") as f:
            captions = [row["caption"] for row in csv.DictReader(f)][::5][:n]  # one of each photo's five
        return [Image.open(p).convert("RGB") for p in photos], captions, "photos from flickr8k-300"
    import numpy as np

    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)) for _ in range(n)]
    sentences = [f"a photo of {i} boats in the harbour at dawn, seen from the pier" for i in range(n)]
    return pictures, sentences, "synthetic noise pictures"


def add_outlier_channels(tower, scale: float, channels: int = 8) -> None:
    """Scale `channels` outputs of every layer norm by `scale` and the matching inputs of the linears it feeds by 1/scale."""
    import torch

    picked = torch.randperm(tower.config.hidden_size, generator=torch.Generator().manual_seed(0))[:channels]
    with torch.no_grad():
        for layer in tower.encoder.layers:
            for norm, linears in ((layer.layer_norm1, (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj)),
                                  (layer.layer_norm2, (layer.mlp.fc1,))):
                norm.weight[picked] *= scale
                norm.bias[picked] *= scale
                for linear in linears:
                    linear.weight[:, picked] /= scale


def build(net, pixels, tokens, threads: int, with_text: bool):
    """{name: forward()} for the image and text towers, and [(name, why)] for backends that can't run here."""
    import numpy as np
    import torch

    from mmcore.spaces import backends as mm

    def features(out):
        return getattr(out, "pooler_output", out)

    image, text, skipped = {}, {}, []
    image["torch fp32 (eager)"] = lambda: features(net.get_image_features(pixel_values=pixels))
    text["torch fp32 (eager)"] = lambda: features(net.get_text_features(**tokens))

    bf16 = copy.deepcopy(net)
    for module in bf16.modules():
        if isinstance(module, torch.nn.Linear):
            module.to(torch.bfloat16)  # weights cast once, not on every call

    def autocast(fn):
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return features(fn())
        return run

    image["torch bf16 (autocast)"] = autocast(lambda: bf16.get_image_features(pixel_values=pixels))
    text["torch bf16 (autocast)"] = autocast(lambda: bf16.get_text_features(**tokens))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantize_dynamic's deprecation notice
        int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(net), {torch.nn.Linear}, dtype=torch.qint8)
    image["torch int8 (dynamic, Linear)"] = lambda: features(int8.get_image_features(pixel_values=pixels))

    tmp = Path(tempfile.mkdtemp(prefix="bench-backends-"))
    try:
        import onnx  # noqa: F401  (the quantiser needs it)
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic

        exported = export_onnx(net, pixels, tmp / "image.onnx")
        logging.getLogger().setLevel(logging.ERROR)  # the quantiser's advice to pre-process first
        quantize_dynamic(str(exported), str(tmp / "image-int8.onnx"), weight_type=QuantType.QInt8, per_channel=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        for name, path in (("onnxruntime fp32", exported), ("onnxruntime int8 (dynamic)", tmp / "image-int8.onnx")):
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            image[name] = (lambda s: lambda: torch.from_numpy(s.run(None, {"pixel_values": pixels.numpy()})[0]))(session)
    except ImportError as e:
        skipped.append(("onnxruntime fp32 / int8", f"{e.name} is not installed"))

    try:
        ov = mm._import_openvino()
        started = time.perf_counter()
        image_model, _ = mm.convert_tower(net, "get_image_features", {"pixel_values": pixels[:1]}, {"pixel_values": 4})
        text_model, names = mm.convert_tower(net, "get_text_features", {k: v[:1] for k, v in tokens.items()},
                                             {k: 2 for k in tokens})
        print(f"OpenVINO conversion of both towers: {time.perf_counter() - started:.1f} s (cached on disk by mmcore)")
        f32 = ov.Core().compile_model(image_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads,
                                                             "PERFORMANCE_HINT": "LATENCY"})
        image["openvino fp32"] = lambda: torch.from_numpy(np.array(f32({"pixel_values": pixels.numpy()})[0]))
        image_bf16 = mm.OpenVinoTower(mm.compile_bf16(image_model, threads), ["pixel_values"])
        text_bf16 = mm.OpenVinoTower(mm.compile_bf16(text_model, threads), names)
        image["openvino-bf16 (MMCORE_BACKEND)"] = lambda: image_bf16(pixel_values=pixels)
        text["openvino-bf16 (MMCORE_BACKEND)"] = lambda: text_bf16(**tokens)
    except mm.BackendUnavailable as e:
        skipped.append(("openvino-bf16", str(e)))
    return image, (text if with_text else {}), skipped


def through_space(model: str, images, batch: int) -> dict:
    """{name: embed()} of the clip space itself, loaded with each backend mmcore offers."""
    import torch

    from mmcore.spaces.clip import ClipSpace

    spaces = {"torch fp32 (eager)": ClipSpace.load(model, device="cpu", batch_size=batch),
              "openvino-bf16 (MMCORE_BACKEND)": ClipSpace.load(model, batch_size=batch, backend="openvino-bf16")}
    return {name: (lambda s: lambda: torch.from_numpy(s.embed_images(images)))(space) for name, space in spaces.items()}


def export_onnx(net, pixels, path: Path) -> Path:
    import torch

    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, pixel_values):
            out = self.net.get_image_features(pixel_values=pixel_values)
            return getattr(out, "pooler_output", out)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Tower().eval(), (pixels[:2],), str(path), input_names=["pixel_values"], output_names=["features"],
                          dynamic_axes={"pixel_values": {0: "batch"}, "features": {0: "batch"}}, opset_version=17, dynamo=False)
    return path


def measure(backends: dict, rounds: int) -> dict:
    """{name: (median items/s, (slowest, fastest) items/s, unit vectors)}: one warm-up call each, then `rounds`
    rounds of every backend in turn."""
    import numpy as np
    import torch

    vectors, times = {}, {name: [] for name in backends}
    with torch.inference_mode():
        for name, run in backends.items():
            out = run().float().numpy()
            vectors[name] = out / np.linalg.norm(out, axis=1, keepdims=True)
        for _ in range(rounds):
            for name, run in backends.items():
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)
    n = next(iter(vectors.values())).shape[0]
    return {name: (n / statistics.median(times[name]), (n / max(times[name]), n / min(times[name])), vectors[name])
            for name in backends}


def fmt_load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
