"""Random-weight checkpoints with the real openai/clip-vit-base-patch32 and microsoft/xclip-base-patch32
architectures (same compute cost), for benchmarks on machines where the real weights can't be downloaded.
Vectors are meaningless; speed is real."""

from __future__ import annotations

import string
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / ".cache" / "bench-clip-vit-b32-random"
XCLIP_CHECKPOINT = ROOT / ".cache" / "bench-xclip-b32-random"
COLMODERNVBERT_CHECKPOINT = ROOT / ".cache" / "bench-colmodernvbert-random"


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



def fullsize_colmodernvbert(path: Path = COLMODERNVBERT_CHECKPOINT) -> Path:
    """ColModernVBert as ModernVBERT/colmodernvbert-merged is built: SigLIP 2 base at 512 px (patches of 16), pixel
    shuffle 4 (64 tokens a tile), ModernBERT base (22 layers, 50,368 tokens), 128-d output; its processor scales a
    page to 2,048 px on the long side and cuts it into 512 px tiles plus the whole page. A byte-level tokenizer
    stands in for ModernBERT's (token ids don't change the compute)."""
    if (path / "model.safetensors").exists():
        return path
    import sys

    import torch
    from transformers import ColModernVBertConfig, ColModernVBertForRetrieval, ColModernVBertProcessor, Idefics3ImageProcessor

    sys.path.insert(0, str(ROOT / "tests"))
    from checkpoints import _byte_level_tokenizer

    tokenizer = _byte_level_tokenizer(
        ["<|begin_of_text|>", "<global-img>"] + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    )
    images = Idefics3ImageProcessor(size={"longest_edge": 2048}, max_image_size={"longest_edge": 512},
                                    image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=1)
    processor = ColModernVBertProcessor(image_processor=images, tokenizer=tokenizer, image_seq_len=64)
    config = ColModernVBertConfig(
        vlm_config=dict(
            model_type="modernvbert", image_token_id=processor.image_token_id, pixel_shuffle_factor=4,
            text_config=dict(model_type="modernbert", vocab_size=50368, hidden_size=768, intermediate_size=1152,
                             num_hidden_layers=22, num_attention_heads=12, pad_token_id=tokenizer.pad_token_id),
            vision_config=dict(model_type="siglip_vision_model", hidden_size=768, intermediate_size=3072,
                               num_hidden_layers=12, num_attention_heads=12, image_size=512, patch_size=16),
        ),
        embedding_dim=128,
    )
    torch.manual_seed(0)
    path.mkdir(parents=True, exist_ok=True)
    ColModernVBertForRetrieval(config).save_pretrained(path)
    processor.save_pretrained(path)
    return path

if __name__ == "__main__":
    print(fullsize_clip())
