"""The shapes readers return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Union

Scalar = Union[str, int, float, bool]
TokenSpans = Callable[[str], "list[tuple[int, int]]"]


@dataclass(frozen=True)
class Chunk:
    """What gets one vector: an image, or a window of text.

    `locator` says where in the source the chunk lives (e.g. char_start/char_end, row); it is empty for a
    whole image. `meta` holds extra metadata stored with the item (image size, CSV columns).
    """

    modality: str
    payload: Any
    locator: dict[str, int] = field(default_factory=dict)
    meta: dict[str, Scalar] = field(default_factory=dict)

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
    """A file read and chunked: its mime type, the extension it will be stored under, and a thumbnail."""

    mime: str
    stored_ext: str
    chunks: list[Chunk]
    thumbnail: Any = None  # PIL.Image or None


@dataclass(frozen=True)
class ReadOptions:
    """Limits and space-specific helpers that readers need.

    `token_spans` maps a text to the character span of each of its tokens in the target space's tokenizer;
    `max_tokens` is how many tokens fit in one window; `overlap_tokens` how many consecutive windows share.
    """

    token_spans: TokenSpans
    max_tokens: int
    overlap_tokens: int = 8
    max_file_bytes: int = 512 * 1024 * 1024
    max_image_pixels: int = 100_000_000
    csv_rows: bool = False
