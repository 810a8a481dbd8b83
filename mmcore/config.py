"""Settings from environment variables, read once into a frozen dataclass."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .access import parse_editors
from .errors import MMError

DEFAULT_COLLECTION = "default"


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with defaults that work without reading docs.

    Environment variables (all optional):
      MMCORE_DATA_DIR       where the embedded Chroma store, originals and thumbnails live (./mmdata)
      MMCORE_<SPACE>_MODEL  hub id or local directory of each space's model (mmcore.spaces.registry):
                            MMCORE_CLIP_MODEL (images, text, pages, video; on by default),
                            MMCORE_CLAP_MODEL (sound; on by default), MMCORE_SIGLIP_MODEL,
                            MMCORE_XCLIP_MODEL (video segments, searched by text) and
                            MMCORE_DOC_MODEL (PDF pages, searched by text), MMCORE_BIND_MODEL (PE-AV: sounds,
                            video and pictures in one space) and MMCORE_IMAGEBIND_WEIGHTS (ImageBind, from a weights
                            file; CC BY-NC-SA 4.0) (off unless set);
                            the hosted twelvelabs space is on only with MMCORE_TWELVELABS_API_KEY
                            (MMCORE_TWELVELABS_MODEL names its model; see mmcore.spaces.twelvelabs)
      MMCORE_ASR_MODEL      hub id or local directory of a speech-recognition model (Whisper); transcripts
                            of audio and video are made only when this is set
      MMCORE_CAPTION_MODEL  hub id or local directory of an image-to-text model (Florence-2, BLIP or GIT); pictures
                            are captioned at ingest only when this is set (mmcore.captions)
      MMCORE_CHROMA_HOST    use a Chroma server at this host instead of the embedded store
      MMCORE_CHROMA_PORT    that server's port (8000)
      MMCORE_COLLECTION     collection used when none is named (default)
      MMCORE_DEVICE         torch device for models (cuda when available, else cpu)
      MMCORE_BATCH_SIZE     items per model forward pass (32)
      MMCORE_BACKEND        inference backend of the clip space: torch (eager float32 on a CPU) or openvino-bf16
                            (2.5x the images/s on a CPU with AVX512-BF16 or AMX; see mmcore.spaces.backends)
      MMCORE_DOC_POOL       pooling factor of the doc space's page token matrices: 1 stores them whole; 2 or 3
                            stores a half or a third of the rows (see mmcore.multivector)
      MMCORE_MAX_FILE_MB    largest file accepted, in MB (512)
      MMCORE_MAX_UPLOAD_MB  most bytes one upload in the app may bring in all, in MB (2048)
      MMCORE_MAX_TEXT_MB    largest text file (.txt, .md, .csv) accepted, in MB; also the most text one PDF may hold (50)
      MMCORE_MAX_IMAGE_PIXELS  largest image accepted, in pixels (100,000,000)
      MMCORE_MAX_VECTORS_MB    largest vectors file or metadata CSV `import-vectors` reads, in MB (2048)
      MMCORE_MAX_RESTORE_MB    most bytes a backup may unpack to, in MB (262144, i.e. 256 GB)
      MMCORE_MAX_RESTORE_FILES most files and folders a backup may hold (1,000,000)
      MMCORE_VIDEO_SEGMENT_S   seconds of video per item (10)
      MMCORE_AUDIO_SEGMENT_S   seconds of audio per item (10)
      MMCORE_MAX_MEDIA_MINUTES longest video or audio accepted, in minutes (240)
      MMCORE_MAX_PDF_PAGES     most pages a PDF may have (500)
      MMCORE_EDITORS           with login on: comma-separated emails who may change things, or * (see mmcore.access)
    """

    data_dir: Path = Path("mmdata")
    # Model per space, as (space, model) pairs: given as a mapping, completed with the default model of every
    # family that has one and isn't named; a space named with None (or "") is off.
    models: Mapping[str, str | None] | tuple[tuple[str, str], ...] = field(default_factory=dict)
    asr_model: str | None = None
    caption_model: str | None = None
    chroma_host: str | None = None
    chroma_port: int = 8000
    collection: str = DEFAULT_COLLECTION
    device: str | None = None
    batch_size: int = 32
    backend: str = "torch"
    doc_pool: int = 1
    max_file_bytes: int = 512 * 1024 * 1024
    max_upload_bytes: int = 2048 * 1024 * 1024
    max_text_bytes: int = 50 * 1024 * 1024
    max_image_pixels: int = 100_000_000
    max_vectors_bytes: int = 2048 * 1024 * 1024
    max_restore_bytes: int = 256 * 1024 * 1024 * 1024
    max_restore_files: int = 1_000_000
    video_segment_s: int = 10
    audio_segment_s: int = 10
    max_media_seconds: int = 240 * 60
    max_pdf_pages: int = 500
    editors: tuple[str, ...] = ()

    def __post_init__(self):
        from .spaces.registry import default_models  # here: mmcore.spaces imports this module

        given = dict(self.models)
        merged = {**default_models(), **given}
        object.__setattr__(self, "models", tuple(sorted((k, str(v)) for k, v in merged.items() if v)))

    def model_for(self, space: str) -> str | None:
        """The model of `space` (hub id or local folder), or None when the space is off."""
        return dict(self.models).get(space)

    def with_model(self, space: str, model: str | None) -> "Settings":
        """These settings with `space`'s model replaced (None: off)."""
        from dataclasses import replace

        return replace(self, models={**dict(self.models), space: model})

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        """Build settings from `env` (os.environ by default); raises MMError on a malformed number."""
        env = dict(os.environ if env is None else env)

        def number(key: str, default: int) -> int:
            raw = env.get(key, "").strip()
            if not raw:
                return default
            try:
                value = int(raw.replace("_", ""))
            except ValueError:
                raise MMError(f"{key}={raw!r} is not a whole number") from None
            if value <= 0:
                raise MMError(f"{key} must be positive, got {value}")
            return value

        from .multivector import MAX_POOL
        from .spaces.backends import DEFAULT_BACKEND, check_backend  # here: mmcore.spaces imports this module

        def pool_factor(value: int) -> int:
            if value > MAX_POOL:
                raise MMError(f"MMCORE_DOC_POOL must be 1 (no pooling) to {MAX_POOL}, got {value}")
            return value
        from .spaces.registry import specs

        return cls(
            data_dir=Path(env.get("MMCORE_DATA_DIR") or "mmdata").expanduser(),
            models={s.name: s.model_in(env) for s in specs()},
            asr_model=env.get("MMCORE_ASR_MODEL") or None,
            caption_model=env.get("MMCORE_CAPTION_MODEL") or None,
            chroma_host=env.get("MMCORE_CHROMA_HOST") or None,
            chroma_port=number("MMCORE_CHROMA_PORT", 8000),
            collection=env.get("MMCORE_COLLECTION") or DEFAULT_COLLECTION,
            device=env.get("MMCORE_DEVICE") or None,
            batch_size=number("MMCORE_BATCH_SIZE", 32),
            backend=check_backend(env.get("MMCORE_BACKEND", "").strip() or DEFAULT_BACKEND),
            doc_pool=pool_factor(number("MMCORE_DOC_POOL", 1)),
            max_file_bytes=number("MMCORE_MAX_FILE_MB", 512) * 1024 * 1024,
            max_upload_bytes=number("MMCORE_MAX_UPLOAD_MB", 2048) * 1024 * 1024,
            max_text_bytes=number("MMCORE_MAX_TEXT_MB", 50) * 1024 * 1024,
            max_image_pixels=number("MMCORE_MAX_IMAGE_PIXELS", 100_000_000),
            max_vectors_bytes=number("MMCORE_MAX_VECTORS_MB", 2048) * 1024 * 1024,
            max_restore_bytes=number("MMCORE_MAX_RESTORE_MB", 256 * 1024) * 1024 * 1024,
            max_restore_files=number("MMCORE_MAX_RESTORE_FILES", 1_000_000),
            video_segment_s=number("MMCORE_VIDEO_SEGMENT_S", 10),
            audio_segment_s=number("MMCORE_AUDIO_SEGMENT_S", 10),
            max_media_seconds=number("MMCORE_MAX_MEDIA_MINUTES", 240) * 60,
            max_pdf_pages=number("MMCORE_MAX_PDF_PAGES", 500),
            editors=parse_editors(env.get("MMCORE_EDITORS", "")),
        )
