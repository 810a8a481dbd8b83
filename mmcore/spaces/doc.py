"""The `doc` space (optional: on when MMCORE_DOC_MODEL is set): document pages by late interaction, with the ColPali
family in transformers: ColModernVBert (the default, about 250M parameters: the one practical on a CPU), ColPali and
ColQwen2, loaded through AutoModelForPreTraining + AutoProcessor (AutoModel refuses their configs).

These models read a page as an image and give one unit vector per token (its patches and a short prompt's tokens);
a text query gets one per token too (its words and ten "augmentation" tokens the models were trained with). A page
and a query are compared by MaxSim (mmcore.late_interaction). `embed_page_tokens` / `embed_query_tokens` give those
matrices, with the rows the attention mask zeroes (batch padding) dropped; `patch_grid` says which rows are which
patches of the page; `embed_with_tokens` gives an ingest both forms of its pages from one pass, the pooled vectors for
Chroma and the matrices for mmcore.multivector. For the rest of mmscope (one vector per item: filters, maps, clusters, candidates) the space
is also a plain one: a page's or query's vector is the mean of its token vectors, renormalised.
"""

from __future__ import annotations

import threading
from typing import Sequence

import numpy as np

from ..errors import ModelUnavailable
from ..late_interaction import Tile
from . import SpaceInfo, normalize
from .backends import OPENVINO_BF16, TORCH, openvino_towers
from .backends import prepare as prepare_backend
from .embed import Towers
from .hf import load_pretrained, revision
from .registry import SpaceSpec, register

NAME = "doc"
ENV_VAR = "MMCORE_DOC_MODEL"
# The transformers-format ColModernVBert checkpoint (the one transformers' own docs name); ModernVBERT/colmodernvbert
# holds the colpali-engine layout, which ColModernVBertForRetrieval does not load.
DEFAULT_MODEL = "ModernVBERT/colmodernvbert-merged"
FAMILIES = {"colmodernvbert": "ColModernVBert", "colpali": "ColPali", "colqwen2": "ColQwen2"}
HOW_TO_PROVIDE = (
    "To use it offline, download it on a machine with internet access "
    "(`hf download {model} --local-dir ./models/doc`), copy that folder here and set "
    f"{ENV_VAR}=./models/doc; or set {ENV_VAR} to the hub id or local folder of another ColModernVBert, ColPali "
    "or ColQwen2 checkpoint in transformers' format (vidore/colpali-v1.3-hf, vidore/colqwen2-v1.0-hf) that has "
    "model.safetensors."
)
# A page is several tiles for ColModernVBert (up to 17 of 512 px), so a forward pass takes fewer pages than the
# pictures MMCORE_BATCH_SIZE counts for the clip space: about as many tiles as it has pictures.
TILES_PER_PAGE = 8


class DocSpace(Towers):
    """A ColPali-family retriever: pages (PIL images) and text queries as token matrices, or one pooled vector each."""

    def __init__(self, model, processor, info: SpaceInfo, device: str, batch_size: int):
        self.model = model
        self.processor = processor
        self.info = info
        self.device = device
        self.family = model.config.model_type
        self.pages_per_batch = max(1, batch_size // TILES_PER_PAGE)
        self.queries_per_batch = max(1, batch_size)
        # The processor's tokenizer keeps padding/truncation settings between calls (see ClipSpace).
        self._processor_lock = threading.Lock()
        # What runs the model: its own forward (None), or OpenVINO conversions of it by path ("query", "page").
        self.towers: dict | None = None

    @classmethod
    def load(cls, model: str = DEFAULT_MODEL, device: str | None = None, batch_size: int = 32,
             backend: str = TORCH) -> "DocSpace":
        """Load a checkpoint by hub id (cache first, then the hub) or local directory, run by `backend`.

        Raises:
            MMError: `backend` is not a known backend.
            ModelUnavailable: it is neither cached nor reachable, has no safetensors weights, or isn't one of the
                ColPali family's retrievers; BackendUnavailable (a ModelUnavailable): the backend can't run here.
        openvino-bf16 runs ColModernVBert; ColPali and ColQwen2 run on torch (their SpaceInfo says so), as the
        families other than CLIP's do.
        """
        device = prepare_backend(backend, device)
        net, processor, source, device = load_pretrained(
            model, "ColPali-family", HOW_TO_PROVIDE, DEFAULT_MODEL, device, auto_class="AutoModelForPreTraining"
        )
        if net.config.model_type not in FAMILIES:
            raise ModelUnavailable(
                f"{model!r} is a {type(net).__name__}, not a ColModernVBert, ColPali or ColQwen2 retriever. "
                + HOW_TO_PROVIDE.format(model=DEFAULT_MODEL)
            )
        if net.config.model_type != "colmodernvbert":
            backend = TORCH
        info = SpaceInfo(NAME, source, revision(net), int(net.config.embedding_dim), backend)
        space = cls(net, processor, info, device, batch_size)
        if backend == OPENVINO_BF16:
            space.use_openvino()
        return space

    def use_openvino(self) -> None:
        """Run queries and pages with OpenVINO in bfloat16 (converted on first use of this checkpoint, then cached):
        per-token cosine 0.9998 with eager float32, a query about 6x faster (bench/RESULTS.md). Pages go
        one a pass: the conversion is traced on one page, and `OnePage` keeps its tile count free."""
        import torch
        from PIL import Image

        query = {k: v for k, v in self._query_inputs(["an example query"]).items() if k in ("input_ids", "attention_mask")}
        page = {k: v for k, v in self._page_inputs([Image.new("RGB", (210, 297), "white")]).items()
                if k in ("input_ids", "attention_mask", "pixel_values")}
        towers = {"query": ("query", query, {k: v.dim() for k, v in query.items()}),
                  "page": ("page", page, {k: v.dim() for k, v in page.items()})}
        self.towers = openvino_towers(_one_page_module()(self.model), towers, self.info.model_id, self.info.revision,
                                      threads=torch.get_num_threads())
        self.pages_per_batch = 1

    # Token matrices: what MaxSim compares.

    def embed_page_tokens(self, images: Sequence) -> list[np.ndarray]:
        """Per page (a PIL image), its token vectors: float16, n x dim, unit rows, padding dropped."""
        return self.embed_pages(images)[1]

    def embed_query_tokens(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per query, its token vectors (the processor's query path: prefix, text, augmentation tokens)."""
        return self._tokens(texts, self.queries_per_batch, self._query_inputs, "query")[1]

    def embed_pages(self, images: Sequence) -> tuple[np.ndarray, list[np.ndarray]]:
        """Both forms of each page from one forward pass: (pooled float32 vectors, n x dim; token matrices)."""
        return self._tokens(images, self.pages_per_batch, self._page_inputs, "page")

    # One vector each: what the rest of mmscope stores and compares by cosine.

    def embed_with_tokens(self, chunks: Sequence) -> tuple[np.ndarray, list[np.ndarray]]:
        """Page chunks' pooled vectors and token matrices from one forward pass: what an ingest stores."""
        return self.embed_pages([chunk.payload for chunk in chunks])

    def embed_images(self, images: Sequence) -> np.ndarray:
        """One float32 unit vector per page: the mean of its token vectors, renormalised."""
        return self.embed_pages(images)[0]

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """One float32 unit vector per query: the mean of its token vectors, renormalised."""
        return self._tokens(texts, self.queries_per_batch, self._query_inputs, "query")[0]

    @property
    def page_size(self) -> int:
        """Pixels on a page's long side that the processor scales it to (ColModernVBert: 2,048, then 512 px tiles;
        ColPali: its square input; ColQwen2: what its pixel budget allows a page of A4's shape): pages are rendered
        at this size for it (mmcore.media.pdf), not smaller and upscaled."""
        images = self.processor.image_processor
        size = images.size
        if self.family == "colqwen2":  # a pixel budget (transformers keeps max_pixels as size's longest_edge)
            budget = getattr(images, "max_pixels", None) or size["longest_edge"]
            return int((budget * 297 / 210) ** 0.5)
        if self.family == "colpali":
            return max(int(size["height"]), int(size["width"]))
        return int(size["longest_edge"])

    def patch_grid(self, image) -> tuple[Tile, ...]:
        """Which rows of `embed_page_tokens([image])[0]` are the page's image patches, tile by tile, and where
        each tile lies on the page (for a heat map over it). Runs the processor only, not the model."""
        inputs = self._page_inputs([image])
        ids = inputs["input_ids"][0][inputs["attention_mask"][0].bool()].numpy()
        rows = np.flatnonzero(ids == self.processor.image_token_id)
        if self.family == "colqwen2":
            _, h, w = (int(v) for v in inputs["image_grid_thw"][0])
            merge = int(self.processor.image_processor.merge_size)
            return (Tile(rows.reshape(h // merge, w // merge)),)
        if self.family == "colpali":
            side = int(round(len(rows) ** 0.5))
            return (Tile(rows.reshape(side, side)),)
        # ColModernVBert (Idefics3's layout): tiles row by row, then the whole page shrunk to one tile; each tile is
        # image_seq_len tokens, a square grid in row-major order (the connector's pixel shuffle keeps that order).
        split = self.processor.image_processor(images=[[image.convert("RGB")]], return_row_col_info=True)
        n_rows, n_cols = int(split["rows"][0][0]), int(split["cols"][0][0])
        per_tile = int(self.processor.image_seq_len)
        side = int(round(per_tile ** 0.5))
        tiles = [
            Tile(rows[(r * n_cols + c) * per_tile:(r * n_cols + c + 1) * per_tile].reshape(side, side),
                 (r / n_rows, c / n_cols, (r + 1) / n_rows, (c + 1) / n_cols))
            for r in range(n_rows) for c in range(n_cols)
        ]
        return tuple(tiles) + (Tile(rows[-per_tile:].reshape(side, side)),)

    def _page_inputs(self, batch: Sequence):
        with self._processor_lock:
            return self.processor.process_images([image.convert("RGB") for image in batch], return_tensors="pt")

    def _query_inputs(self, batch: Sequence[str]):
        with self._processor_lock:
            return self.processor.process_queries(list(batch), return_tensors="pt")

    def _tokens(self, items: Sequence, per_batch: int, prepare, path: str) -> tuple[np.ndarray, list[np.ndarray]]:
        import torch

        pooled, tokens = [], []
        for i in range(0, len(items), per_batch):
            prepared = prepare(items[i:i + per_batch])
            if self.towers is not None:
                embeddings = self.towers[path](**prepared).numpy()
            else:
                inputs = {k: v.to(self.device, self.model.dtype) if v.is_floating_point() else v.to(self.device)
                          for k, v in prepared.items() if k in ("input_ids", "attention_mask", "pixel_values",
                                                                "pixel_attention_mask", "image_grid_thw")}
                with torch.inference_mode():
                    embeddings = self.model(**inputs).embeddings.float().cpu().numpy()
            mask = prepared["attention_mask"].bool().numpy()
            for rows, keep in zip(embeddings, mask):
                kept = rows[keep]
                pooled.append(kept.mean(axis=0))
                tokens.append(kept.astype(np.float16))
        if not tokens:
            return np.zeros((0, self.info.dim), dtype=np.float32), []
        return normalize(np.stack(pooled)), tokens


def _one_page_module():  # made on first use: torch is imported only when a model is
    import torch

    class OnePage(torch.nn.Module):
        """ColModernVBert's forward as OpenVINO converts it: `query` (a batch of queries) and `page` (one page's
        tiles). The model's own image path splits its features per page by counts that tracing would freeze, so a
        converted page of 12 tiles would refuse one of 16; with one page a pass there is nothing to split, and this
        is the same computation (ModernVBertModel.forward, ColModernVBertForRetrieval.forward) without it."""

        def __init__(self, net):
            super().__init__()
            self.net = net

        def query(self, input_ids, attention_mask):
            return self.net(input_ids=input_ids, attention_mask=attention_mask).embeddings

        def page(self, input_ids, attention_mask, pixel_values):
            vlm = self.net.vlm
            embeds = vlm.text_model.get_input_embeddings()(input_ids)
            tiles = vlm.vision_model(pixel_values=pixel_values[0].to(vlm.dtype)).last_hidden_state
            features = vlm.connector(tiles)
            features = features.reshape(-1, features.shape[-1]).to(embeds.dtype)
            embeds = embeds.masked_scatter((input_ids == vlm.config.image_token_id).unsqueeze(-1), features)
            hidden = vlm.text_model(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
            out = self.net.embedding_proj_layer(hidden)
            out = out / out.norm(dim=-1, keepdim=True)
            return out * attention_mask.unsqueeze(-1).to(out.dtype)

    return OnePage


register(SpaceSpec(
    name=NAME, title="ColPali-family", variable=ENV_VAR, default_model=None,
    load=lambda model, s: DocSpace.load(model, device=s.device, batch_size=s.batch_size, backend=s.backend),
    # Pages only: these models were trained on document screenshots, and each item costs hundreds of token vectors
    # and a vision-language model's forward pass (a photo is CLIP's or SigLIP's to embed). Text queries only.
    modalities=frozenset({"page"}), queries=frozenset({"text"}), multivector=True, backends=True,
))
