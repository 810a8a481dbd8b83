"""The shapes readers return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Union

Scalar = Union[str, int, float, bool]
TokenSpans = Callable[[str], "list[tuple[int, int]]"]


# What each modality's payload is (which spaces embed it is theirs to say: mmcore.spaces.registry).
#   image: an RGB PIL image            text: a str
#   page:  an RGB PIL image of a rendered document page
#   video: a list of RGB PIL frames sampled inside one segment
#   audio: a mono float32 numpy array at ReadOptions.audio_rate
MODALITIES = ("image", "text", "page", "video", "audio")


@dataclass(frozen=True, eq=False)  # compared (and hashed) as itself: one per reading of a file
class Source:
    """A file as a reader got it, whole, with how it was cut: for a space that embeds a whole file at once (a hosted
    video model) instead of a chunk's frames. Never stored."""

    name: str
    data: bytes = field(repr=False)
    segment_s: float | None = None  # a video's segment length


@dataclass(frozen=True)
class Chunk:
    """What gets one vector: an image, a window of text, a document page, a video segment, an audio window.

    `locator` says where in the source the chunk lives (page, row, char_start/char_end, start_s/end_s); it is
    empty for a whole image. `meta` holds extra metadata stored with the item (image size, CSV columns).
    `thumbnail` is the chunk's own picture (a video segment's keyframe, a rendered page) where it has one;
    otherwise the item shows the file's thumbnail. `pair` is, for a caption read from an image-caption CSV, the
    image file its row names, as written there; ingest links the item to that image's item (`pair_of`).
    `source` is the whole file a video segment was cut from (see Source); ingest drops it with the pixels.
    `prepared` holds, by space name, a space's model inputs made from the payload ahead of the model (in an
    ingest's decoder threads, mmcore.spaces.embed.prepare_chunks); dropped with the pixels too.
    """

    modality: str
    payload: Any
    locator: dict[str, int | float] = field(default_factory=dict)
    meta: dict[str, Scalar] = field(default_factory=dict)
    thumbnail: Any = None  # PIL.Image or None
    pair: str | None = None
    source: Source | None = field(default=None, repr=False, compare=False)
    prepared: dict | None = field(default=None, repr=False, compare=False)

    @property
    def locator_key(self) -> str:
        """A short stable string for the locator, part of the item id."""
        loc = self.locator
        parts = [f"p{loc['page']}"] if "page" in loc else []
        parts += [f"r{loc['row']}"] if "row" in loc else []
        parts += [f"t{loc['start_s']:g}-{loc['end_s']:g}"] if "start_s" in loc else []
        parts += [f"c{loc['char_start']}-{loc['char_end']}"] if "char_start" in loc else []
        return ".".join([self.modality] + parts)


@dataclass(frozen=True)
class Decoded:
    """A file read and chunked: its mime type, the extension it will be stored under, and a thumbnail.

    `chunks` is a list, or an iterable that reads on as it is consumed (long media, big CSVs), so a file's chunks
    never all sit in memory; `count` then says how many it will give, where the reader knows.
    """

    mime: str
    stored_ext: str
    chunks: Iterable[Chunk]
    thumbnail: Any = None  # PIL.Image or None
    count: int | None = None
    pairs: frozenset[str] = frozenset()  # for an image-caption CSV: every image name its chunks give (`Chunk.pair`)

    @property
    def known_count(self) -> int | None:
        """How many chunks the file gives, if known before they are all read."""
        return len(self.chunks) if isinstance(self.chunks, list) else self.count


@dataclass(frozen=True)
class ReadOptions:
    """Limits and space-specific helpers that readers need.

    `token_spans` maps a text to the character span of each of its tokens in the target space's tokenizer;
    `max_tokens` is how many tokens fit in one window; `overlap_tokens` how many consecutive windows share.
    `pair_column` is for CSVs read one row per item: the column naming the image each row's caption belongs to,
    "auto" to find one (a column of image file names beside a text column), or "none" for no pairs.
    """

    token_spans: TokenSpans
    max_tokens: int
    overlap_tokens: int = 8
    max_file_bytes: int = 512 * 1024 * 1024
    max_image_pixels: int = 100_000_000
    csv_rows: bool = False
    pair_column: str = "auto"
    video_segment_s: float = 10.0
    frames_per_second: float = 1.0
    max_frames_per_segment: int = 10
    audio_segment_s: float = 10.0
    audio_rate: int = 48_000  # CLAP's sampling rate; ingest sets the loaded model's own
    max_media_seconds: float = 4 * 3600.0  # longest video or audio accepted (decoding stops here: bounded work)
    max_pdf_pages: int = 500
    max_text_bytes: int = 10 * 1024 * 1024  # largest text file, and most text in one PDF (in characters)
    page_size: int = 0  # pixels on a PDF page's long side that a space taking pages wants (mmcore.media.pdf)
