"""Random-weight checkpoints with the real openai/clip-vit-base-patch32 and microsoft/xclip-base-patch32
architectures (same compute cost), for benchmarks on machines where the real weights can't be downloaded.
Vectors are meaningless; speed is real."""

from __future__ import annotations

import string
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / ".cache" / "bench-clip-vit-b32-random"
XCLIP_CHECKPOINT = ROOT / ".cache" / "bench-xclip-b32-random"


def _char_vocab() -> dict[str, int]:
    """CLIP's special tokens and a token per character (alone and word-final): random weights need no real vocabulary."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "<unk>": 2}
    for ch in string.ascii_lowercase + string.digits + string.punctuation:
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    return vocab


def fullsize_clip(path: Path = CHECKPOINT) -> Path:
    if (path / "model.safetensors").exists():
        return path
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab = _char_vocab()
    config = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                         num_attention_heads=8, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=224, patch_size=32),
        projection_dim=512,
    )
    torch.manual_seed(0)
    path.mkdir(parents=True, exist_ok=True)
    CLIPModel(config).save_pretrained(path)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}),
        tokenizer=CLIPTokenizer(vocab=vocab, merges=[], unk_token="<unk>"),
    )
    processor.save_pretrained(path)
    return path


def fullsize_xclip(path: Path = XCLIP_CHECKPOINT) -> Path:
    """X-CLIP B/32 with 8 frames: the ViT-B/32 image tower, a 1-layer frame-integration transformer, a 2-layer
    prompt generator (XCLIPConfig's defaults are this checkpoint's), its VideoMAE image processor at 224 x 224."""
    if (path / "model.safetensors").exists():
        return path
    import torch
    from transformers import CLIPTokenizer, VideoMAEImageProcessor, XCLIPConfig, XCLIPModel, XCLIPProcessor

    vocab = _char_vocab()
    config = XCLIPConfig(text_config=dict(bos_token_id=0, eos_token_id=1, pad_token_id=1))
    torch.manual_seed(0)
    path.mkdir(parents=True, exist_ok=True)
    XCLIPModel(config).save_pretrained(path)
    processor = XCLIPProcessor(
        image_processor=VideoMAEImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}),
        tokenizer=CLIPTokenizer(vocab=vocab, merges=[], unk_token="<unk>"),
    )
    processor.save_pretrained(path)
    return path


if __name__ == "__main__":
    print(fullsize_clip())
