"""What LoRA fine-tuning of a CLIP ViT-B/32 would cost here, per 500 image-caption pairs, against the residual
adapter mmscope learns on stored vectors (mmcore.adapter).

The model is CLIP ViT-B/32 at its real size (transformers' CLIPConfig defaults: 151M parameters) with random weights:
the hub is out of reach here, and the cost of a training step does not depend on what the weights are. LoRA (peft,
rank 16 on the attention's q and v projections of both towers) trains on 500 random 224 x 224 images and 32-token
captions with CLIP's contrastive loss, batch 32: one epoch is 16 steps. Prints seconds per step and per epoch of
500 pairs, trainable parameters and peak memory; then the adapter's fit on 500 pairs of 512-d vectors. Asserts
nothing. Usage: python bench/lora_cost.py [--steps N] [--threads N]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAIRS, BATCH, TOKENS = 500, 32, 32


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4, help="training steps timed (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import CLIPConfig, CLIPModel

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig())
    total = sum(p.numel() for p in model.parameters())
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    pixels = torch.randn(BATCH, 3, 224, 224)
    ids = torch.randint(0, model.config.text_config.vocab_size, (BATCH, TOKENS))

    def step() -> float:
        started = time.perf_counter()
        loss = model(input_ids=ids, pixel_values=pixels, return_loss=True).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - started

    step()  # warm-up
    times = [step() for _ in range(args.steps)]
    per_step = float(np.median(times))
    steps = -(-PAIRS // BATCH)
    print(f"CLIP ViT-B/32: {total / 1e6:.0f}M parameters, LoRA r=16 on q/v: {trainable / 1e6:.2f}M trainable")
    print(f"torch threads {torch.get_num_threads()}; batch {BATCH}: {per_step:.1f} s a step (median of {len(times)}: "
          + ", ".join(f"{t:.1f}" for t in times) + ")")
    print(f"one epoch of {PAIRS} pairs = {steps} steps: {steps * per_step / 60:.1f} min; peak memory "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GB")

    from mmcore.adapter import apply_residual, fit_residual

    rng = np.random.default_rng(0)
    x = rng.normal(size=(PAIRS, 512)).astype(np.float32)
    t = rng.normal(size=(PAIRS, 512)).astype(np.float32)
    started = time.perf_counter()
    for strength in (0.01, 0.1, 1.0, 10.0, 100.0):
        apply_residual(x, fit_residual(x, t, strength))
    print(f"residual adapter, {PAIRS} pairs of 512-d vectors, 5 strengths fitted and applied: "
          f"{time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
