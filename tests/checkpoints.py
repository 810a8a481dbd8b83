"""Tiny random-weight checkpoints built from transformers configs, saved like real ones."""

from __future__ import annotations

import json
import string
from pathlib import Path


def char_vocab() -> dict[str, int]:
    """CLIP's special tokens and a token per character (alone and word-final): a 1 KB tokenizer that still runs
    CLIP's own tokenizer code."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "<unk>": 2}
    for ch in string.ascii_lowercase + string.digits + string.punctuation:
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    return vocab

def tiny_clip(path: Path, projection_dim: int = 16, seed: int = 0) -> Path:
    """A CLIP checkpoint with a character-level tokenizer: same code path as openai/clip-*, 1 MB on disk."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab = char_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], unk_token="<unk>")
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        ),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8),
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(path)
    return path


def tiny_siglip(path: Path, seed: int = 0) -> Path:
    """A SigLIP checkpoint (no projection_dim, max-length padding): the other CLIP-family layout."""
    import torch
    from transformers import CLIPTokenizer, SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    vocab = char_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], unk_token="<unk>", pad_token="<|endoftext|>")
    config = SiglipConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=64, eos_token_id=1, pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8),
    )
    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    model = SiglipModel(config)
    with torch.no_grad():  # a trained model's values (these init to zero): the probability must use them
        model.logit_scale.fill_(2.0)
        model.logit_bias.fill_(-1.0)
    model.save_pretrained(path)
    SiglipProcessor(image_processor=SiglipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer).save_pretrained(path)
    return path


def tiny_siglip2(path: Path, seed: int = 0) -> Path:
    """A SigLIP 2 NaFlex checkpoint: each image resized to at most 256 patches of 16 px (the processor's own
    defaults) with its aspect ratio kept (`pixel_attention_mask`, `spatial_shapes`), and a Gemma-style tokenizer
    whose texts are padded to 64 tokens."""
    import torch
    from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model, Siglip2Processor, Siglip2Tokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for ch in string.ascii_lowercase + string.digits + string.punctuation + " ":
        vocab.setdefault(ch, len(vocab))
    tokenizer = Siglip2Tokenizer(vocab=vocab, merges=[])
    config = Siglip2Config(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=2, eos_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           patch_size=16, num_patches=256),
    )
    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    model = Siglip2Model(config)
    with torch.no_grad():  # a trained model's values (these init to zero): the probability must use them
        model.logit_scale.fill_(2.3)
        model.logit_bias.fill_(-1.5)
    model.save_pretrained(path)
    images = Siglip2ImageProcessor(patch_size=16, max_num_patches=256)
    Siglip2Processor(image_processor=images, tokenizer=tokenizer).save_pretrained(path)
    return path


def tiny_clap(path: Path, projection_dim: int = 16, seed: int = 0, sampling_rate: int = 16_000) -> Path:
    """A CLAP checkpoint (HTSAT audio, RoBERTa text) with a byte-level tokenizer and 16 mel bins at `sampling_rate`
    (16 kHz; real CLAP's 48 kHz where a test needs it): 0.2 MB.

    Its feature extractor keeps the 10 s window of laion/clap-htsat-unfused, with a hop that makes it 251 frames,
    which fits the tiny model's 64 x 4 spectrogram input.
    """
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor, RobertaTokenizer

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
    for ch in sorted(ByteLevel.alphabet()):
        vocab.setdefault(ch, len(vocab))
    tokenizer = RobertaTokenizer(vocab=vocab, merges=[])
    config = ClapConfig(
        text_config=dict(
            vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=66,  # RoBERTa positions start after the padding index: 64 tokens
        ),
        audio_config=dict(
            num_mel_bins=16, spec_size=64, window_size=4, patch_embeds_hidden_size=16, hidden_size=32,
            depths=[1, 1], num_attention_heads=[2, 2], num_classes=8,
        ),
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = ClapModel(config)
    features = ClapFeatureExtractor(
        feature_size=16, sampling_rate=sampling_rate, hop_length=sampling_rate // 25, fft_window_size=1024, max_length_s=10,
        frequency_min=50, frequency_max=8_000, truncation="rand_trunc", padding="repeatpad",
    )
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    ClapProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(path)
    return path


def tiny_xclip(path: Path, projection_dim: int = 16, num_frames: int = 8, seed: int = 0) -> Path:
    """An X-CLIP checkpoint (CLIP towers, a frame-integration transformer over `num_frames` frames, a prompt
    generator) with CLIP's character-level tokenizer and a VideoMAE image processor, as microsoft/xclip-* ship: 1 MB.
    """
    import torch
    from transformers import CLIPTokenizer, VideoMAEImageProcessor, XCLIPConfig, XCLIPModel, XCLIPProcessor

    vocab = char_vocab()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], unk_token="<unk>")
    config = XCLIPConfig(
        text_config=dict(
            vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8,
            num_frames=num_frames, mit_hidden_size=projection_dim, mit_intermediate_size=32, mit_num_hidden_layers=1,
            mit_num_attention_heads=2,  # the integration transformer works on projected frame vectors
        ),
        projection_dim=projection_dim, prompt_layers=2, prompt_num_attention_heads=2,
    )
    torch.manual_seed(seed)
    path.mkdir(parents=True, exist_ok=True)
    XCLIPModel(config).save_pretrained(path)
    frames = VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    XCLIPProcessor(image_processor=frames, tokenizer=tokenizer).save_pretrained(path)
    return path


def tiny_whisper(path: Path, seed: int = 0) -> Path:
    """A Whisper checkpoint (multilingual layout: <|en|>, <|transcribe|>, timestamps <|0.00|>..<|30.00|>) with 16 mel
    bins, one layer each side and a vocabulary of lowercase letters and space, so whatever random weights say is
    plain text: 0.5 MB. It keeps Whisper's 30 s window, and stops after 20 new tokens per window.
    """
    import torch
    from transformers import (AddedToken, GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer)

    vocab = {ch: i for i, ch in enumerate(string.ascii_lowercase + "\u0120")}  # U+0120 is byte-level BPE's space
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[])
    # Whisper's special tokens in its order; <|notimestamps|> must be the last special one: timestamps follow it.
    specials = ["<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>",
                "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.add_tokens([AddedToken(f"<|{i * 0.02:.2f}|>", normalized=False, special=False) for i in range(1501)])
    ids = tokenizer.convert_tokens_to_ids
    eot, sot = ids("<|endoftext|>"), ids("<|startoftranscript|>")
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=16, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        max_source_positions=1500, max_target_positions=64,  # 1500 encoder positions: 30 s of 10 ms frames, halved
        pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        no_timestamps_token_id=ids("<|notimestamps|>"), max_initial_timestamp_index=50, is_multilingual=True,
        lang_to_id={"<|en|>": ids("<|en|>")},
        task_to_id={"translate": ids("<|translate|>"), "transcribe": ids("<|transcribe|>")},
        suppress_tokens=[], begin_suppress_tokens=[ids("\u0120"), eot], max_new_tokens=20,
    )
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    features = WhisperFeatureExtractor(feature_size=16)  # 16 mel bins; Whisper's 30 s window and 10 ms hop
    WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(path)
    return path



def tiny_colmodernvbert(path: Path, embedding_dim: int = 16, seed: int = 0, longest_edge: int = 128) -> Path:
    """A ColModernVBert checkpoint (SigLIP patches of 8 px on 64 px tiles, pixel shuffle 2: 16 tokens per tile;
    ModernBERT text) with a byte-level tokenizer holding the tokens its processor writes (Idefics3's tile tags
    <row_i_col_j>, <global-img>, <|begin_of_text|>; the processor adds <image> and two more). Pages are scaled to
    128 px on their long side (`longest_edge`) and cut into up to 2 x 2 tiles plus the whole page, as the real one
    does at 2048/512.
    """
    from transformers import ColModernVBertConfig, ColModernVBertForRetrieval, ColModernVBertProcessor, Idefics3ImageProcessor

    tokenizer = _byte_level_tokenizer(
        ["<|begin_of_text|>", "<global-img>"] + [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    )
    images = Idefics3ImageProcessor(size={"longest_edge": longest_edge}, max_image_size={"longest_edge": 64},
                                    image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = ColModernVBertProcessor(image_processor=images, tokenizer=tokenizer, image_seq_len=16)
    special = tokenizer.pad_token_id
    config = ColModernVBertConfig(
        vlm_config=dict(
            model_type="modernvbert", image_token_id=processor.image_token_id, pixel_shuffle_factor=2,
            text_config=dict(model_type="modernbert", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                             num_hidden_layers=2, num_attention_heads=2, local_attention=16, pad_token_id=special,
                             bos_token_id=special, eos_token_id=special, cls_token_id=special, sep_token_id=special),
            vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                               num_hidden_layers=2, num_attention_heads=2, image_size=64, patch_size=8),
        ),
        embedding_dim=embedding_dim,
    )
    return _save_retriever(path, ColModernVBertForRetrieval(_seeded(config, seed)), processor)


def tiny_colpali(path: Path, embedding_dim: int = 16, seed: int = 0) -> Path:
    """A ColPali checkpoint (PaliGemma: SigLIP 32 px, patches of 8: 16 image tokens; Gemma text) with a Gemma
    character tokenizer; its processor adds <image> and PaliGemma's 1,152 <locNNNN>/<segNNN> tokens, which the
    vocabulary is sized to."""
    from transformers import ColPaliConfig, ColPaliForRetrieval, ColPaliProcessor, GemmaTokenizer, SiglipImageProcessor

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for ch in string.ascii_letters + string.digits + string.punctuation + "\u2581\n":  # U+2581: Gemma's space
        vocab.setdefault(ch, len(vocab))
    tokenizer = GemmaTokenizer(vocab=vocab, merges=[])
    processor = ColPaliProcessor(
        image_processor=SiglipImageProcessor(size={"height": 32, "width": 32}, image_seq_length=16), tokenizer=tokenizer
    )
    config = ColPaliConfig(
        vlm_config=dict(
            model_type="paligemma", image_token_index=processor.image_token_id, vocab_size=len(tokenizer),
            projection_dim=32, hidden_size=32,
            text_config=dict(model_type="gemma", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                             num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                             pad_token_id=0, bos_token_id=2, eos_token_id=1),
            vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64,
                               num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8),
        ),
        embedding_dim=embedding_dim,
    )
    return _save_retriever(path, ColPaliForRetrieval(_seeded(config, seed)), processor)


def tiny_colqwen2(path: Path, embedding_dim: int = 16, seed: int = 0) -> Path:
    """A ColQwen2 checkpoint (Qwen2-VL: patches of 14 px merged 2 x 2, so a token per 28 px, 4 to 64 tokens a page
    with its aspect ratio kept; M-RoPE) with a byte-level tokenizer holding Qwen2-VL's special tokens."""
    from transformers import ColQwen2Config, ColQwen2ForRetrieval, ColQwen2Processor, Qwen2VLImageProcessor

    tokenizer = _byte_level_tokenizer(
        ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    )
    images = Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 64, patch_size=14, merge_size=2,
                                   temporal_patch_size=2)
    processor = ColQwen2Processor(image_processor=images, tokenizer=tokenizer)
    ids = tokenizer.convert_tokens_to_ids
    special = tokenizer.pad_token_id
    config = ColQwen2Config(
        vlm_config=dict(
            model_type="qwen2_vl", image_token_id=processor.image_token_id, video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
            text_config=dict(model_type="qwen2_vl_text", vocab_size=len(tokenizer), hidden_size=32,
                             intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                             rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
                             pad_token_id=special, bos_token_id=special, eos_token_id=special),
            vision_config=dict(depth=2, embed_dim=32, hidden_size=32, num_heads=2, patch_size=14,
                               spatial_merge_size=2, temporal_patch_size=2),
        ),
        embedding_dim=embedding_dim,
    )
    return _save_retriever(path, ColQwen2ForRetrieval(_seeded(config, seed)), processor)


def tiny_pe_av(path: Path, seed: int = 0, sampling_rate: int = 16_000) -> Path:
    """A PE-AV checkpoint (PeAudioVideoModel: ModernBERT text; DAC + transformer audio; a ViT of 32 px, patches of 8,
    per frame + transformer video; the joint audio-video encoder) with a byte-level tokenizer, as facebook/pe-av-*
    ship: its DAC hop is 320 samples (2 x 4 x 5 x 8), 50 frames a second at 16 kHz (CLAP's test rate).

    The released checkpoints' frame encoder is a timm PE-Core ViT; transformers' ViT stands in for it here (the same
    image-classifier interface: per-frame logits into the video encoder) so the tests need neither timm nor a
    torchvision for this torch (see mmcore.spaces.bind)."""
    from transformers import PeAudioFeatureExtractor, PeAudioVideoConfig, PeAudioVideoModel, ViTConfig
    from transformers.models.pe_video.video_processing_pe_video import PeVideoVideoProcessor

    tokenizer = _byte_level_tokenizer([])
    special = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    tokenizer.pad_token = tokenizer.cls_token = tokenizer.sep_token = "<|endoftext|>"
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, head_dim=16)
    ratios = [2, 4, 5, 8]
    config = PeAudioVideoConfig(
        text_config=dict(model_type="modernbert", vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, local_attention=16, pad_token_id=special,
                         bos_token_id=special, eos_token_id=special, cls_token_id=special, sep_token_id=special),
        audio_video_config=dict(
            **small,
            audio_config=dict(**small, dac_config=dict(encoder_hidden_size=4, downsampling_ratios=ratios, codebook_dim=8)),
            # A config, not a dict: PeVideoEncoderConfig makes every vision_config dict a timm one.
            video_config=dict(**small, vision_config=ViTConfig(
                image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, num_labels=16)),
        ),
    )
    hop = 1
    for r in ratios:
        hop *= r
    features = PeAudioFeatureExtractor(sampling_rate=sampling_rate, hop_length=hop)
    frames = PeVideoVideoProcessor(size={"height": 32, "width": 32}, do_resize=True, do_rescale=True, do_normalize=True,
                                   image_mean=[0.5] * 3, image_std=[0.5] * 3)
    # What PeAudioVideoProcessor.save_pretrained writes; the processor itself can't be built without torchvision.
    path.mkdir(parents=True, exist_ok=True)
    PeAudioVideoModel(_seeded(config, seed)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    processor = {"processor_class": "PeAudioVideoProcessor", "feature_extractor": features.to_dict(),
                 "video_processor": frames.to_dict()}
    (path / "processor_config.json").write_text(json.dumps(processor, indent=2, sort_keys=True) + "\n")
    return path


def _byte_level_tokenizer(specials: list[str]):
    """A Qwen2-style byte-level tokenizer with a token per byte (no merges), <|endoftext|> and `specials`."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2Tokenizer

    vocab = {ch: i for i, ch in enumerate(sorted(ByteLevel.alphabet()))}
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    return tokenizer


def _seeded(config, seed: int):
    import torch

    torch.manual_seed(seed)
    return config


def _save_retriever(path: Path, model, processor) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path

def tiny_blip(path: Path, seed: int = 0) -> Path:
    """A BLIP captioning checkpoint (BlipForConditionalGeneration) with 32-pixel images, one layer a tower and a
    vocabulary of lowercase letters, so whatever random weights write is plain text: 80 kB."""
    import string

    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessorPil, BlipProcessor

    path.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *string.ascii_lowercase]
    (path / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizer(str(path / "vocab.txt"), bos_token="[DEC]")
    config = BlipConfig(
        text_config=dict(vocab_size=len(words), hidden_size=16, encoder_hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=64, pad_token_id=0,
                         bos_token_id=words.index("[DEC]"), sep_token_id=3, eos_token_id=3),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    return _save_retriever(path, BlipForConditionalGeneration(_seeded(config, seed)), processor)


def tiny_florence2(path: Path, seed: int = 0) -> Path:
    """A Florence-2 checkpoint (Florence2ForConditionalGeneration: a DaViT vision tower, a BART text model) with 64-pixel
    images, one block a stage and a byte-level vocabulary of letters, space and "?" (what the task prompts need, and
    whatever random weights write is plain text): 250 kB. Its processor inserts as many image tokens as the
    tower gives for 64 pixels (a 2 x 2 grid and one pooled token)."""
    import json
    import string

    from transformers import (BartConfig, BartTokenizer, CLIPImageProcessorPil, Florence2Config,
                              Florence2ForConditionalGeneration, Florence2Processor, Florence2VisionConfig)

    path.mkdir(parents=True, exist_ok=True)
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", *string.ascii_letters, "\u0120", "?"])}
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = BartTokenizer(str(path / "vocab.json"), str(path / "merges.txt"), extra_special_tokens={"image_token": "<image>"})
    vision = Florence2VisionConfig(depths=(1, 1, 1, 1), embed_dim=(8, 16, 16, 16), num_heads=(1, 1, 1, 1),
                                   num_groups=(1, 1, 1, 1), window_size=2, projection_dim=16, drop_path_rate=0.0)
    text = BartConfig(vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                      decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=128,
                      pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2)
    config = Florence2Config(text_config=text, vision_config=vision, image_token_id=tokenizer.convert_tokens_to_ids("<image>"))
    images = CLIPImageProcessorPil(size={"height": 64, "width": 64}, crop_size={"height": 64, "width": 64},
                                   do_center_crop=False, image_seq_length=5)
    return _save_retriever(path, Florence2ForConditionalGeneration(_seeded(config, seed)),
                           Florence2Processor(image_processor=images, tokenizer=tokenizer))


if __name__ == "__main__":
    import sys

    print(tiny_clip(Path(sys.argv[1])))


IMAGEBIND_TINY = {"out_embed_dim": 16, **{f"{m}_{k}": v for m in ("vision", "audio", "text", "depth", "thermal", "imu")
                                          for k, v in (("embed_dim", 32), ("num_blocks", 1), ("num_heads", 2))}}


def tiny_imagebind(path: Path, seed: int = 0) -> Path:
    """A random ImageBindModel of IMAGEBIND_TINY's size (imagebind-unofficial's model code) saved as a user provides
    imagebind_huge.pth, its size in the imagebind.json beside it: the weights file's path."""
    import json

    import torch

    from mmcore.spaces import imagebind as ib

    code = ib.model_code()
    torch.manual_seed(seed)
    net = code.ImageBindModel(**IMAGEBIND_TINY)
    path.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path / "imagebind_tiny.pth")
    (path / ib.CONFIG_FILE).write_text(json.dumps(IMAGEBIND_TINY))
    return path / "imagebind_tiny.pth"
