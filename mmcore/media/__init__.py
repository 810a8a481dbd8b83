"""Read, validate and chunk uploaded files: one reader per kind of media, chosen by file extension.

Every reader takes the file's name and bytes and returns a `Decoded` (its chunks, a thumbnail, the
detected mime type) or raises `MediaError` naming the file and the reason. Nothing here touches the store.
"""

from __future__ import annotations

from pathlib import PurePath

from ..errors import MediaError
from .base import MODALITIES, Chunk, Decoded, ReadOptions, Source
from . import audio, image, text
from . import video
from . import pdf

READERS = {
    **{ext: image.read_image for ext in image.EXTENSIONS},
    **{ext: video.read_video for ext in video.EXTENSIONS},
    ".txt": text.read_text,
    ".md": text.read_text,
    ".markdown": text.read_text,
    ".csv": text.read_csv,
    **{ext: audio.read_audio for ext in audio.EXTENSIONS},
    ".pdf": pdf.read_pdf,
}

SUPPORTED_EXTENSIONS = tuple(sorted(READERS))

__all__ = ["Chunk", "Decoded", "ReadOptions", "Source", "read_media", "is_supported", "modalities_of", "MODALITIES", "SUPPORTED_EXTENSIONS"]


def extension(name: str) -> str:
    return PurePath(name).suffix.lower()


AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a")


def modalities_of(name: str) -> tuple[str, ...]:
    """The modalities a file's own items may have, by its extension (transcripts of its speech not counted)."""
    ext = extension(name)
    if ext in AUDIO_EXTENSIONS:
        return ("audio",)
    if ext in video.EXTENSIONS:
        return ("video",)
    if ext in image.EXTENSIONS:
        return ("image",)
    if ext == ".pdf":
        return ("page", "text")
    return ("text",) if ext in READERS else ()


def may_hold_speech(name: str) -> bool:
    """Whether the file is audio or video, whose sound track may be transcribed."""
    return extension(name) in AUDIO_EXTENSIONS + video.EXTENSIONS


def is_supported(name: str) -> bool:
    return extension(name) in READERS


def read_media(name: str, data: bytes, options: ReadOptions) -> Decoded:
    """Decode one file into chunks ready to embed.

    Args:
        name: the file's name as the user knows it (used for the extension and in messages only).
        data: the file's bytes.
        options: limits and the text tokenizer of the target space.
    Raises:
        MediaError: the file is empty, too large, of an unsupported type, corrupt or unsafe.
    """
    if not data:
        raise MediaError(name, "the file is empty (0 bytes)")
    if len(data) > options.max_file_bytes:
        raise MediaError(
            name,
            f"the file is {len(data) / 2**20:.0f} MB, over the {options.max_file_bytes / 2**20:.0f} MB limit"
            " (raise MMCORE_MAX_FILE_MB to accept it)",
        )
    reader = READERS.get(extension(name))
    if reader is None:
        shown = extension(name) or "no extension"
        raise MediaError(name, f"unsupported file type ({shown}); supported: {', '.join(SUPPORTED_EXTENSIONS)}")
    return reader(name, data, options)
