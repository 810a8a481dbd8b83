"""Settings from environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmcore.config import Settings
from mmcore.spaces.clip import DEFAULT_CLIP_MODEL
from mmcore.errors import MMError


def test_defaults_without_environment():
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.data_dir == Path("mmdata") and settings.model_for("clip") == DEFAULT_CLIP_MODEL
    assert settings.collection == "default" and settings.chroma_host is None


def test_values_from_environment():
    settings = Settings.from_env({
        "MMCORE_DATA_DIR": "/srv/mm", "MMCORE_CLIP_MODEL": "./models/clip", "MMCORE_COLLECTION": "photos",
        "MMCORE_BATCH_SIZE": " 8 ", "MMCORE_MAX_FILE_MB": "2", "MMCORE_MAX_IMAGE_PIXELS": "1_000_000",
        "MMCORE_CHROMA_HOST": "", "MMCORE_DEVICE": "cpu",
    })
    assert settings.data_dir == Path("/srv/mm")
    assert settings.model_for("clip") == "./models/clip" and settings.collection == "photos"
    assert settings.batch_size == 8
    assert settings.max_file_bytes == 2 * 1024 * 1024
    assert settings.max_image_pixels == 1_000_000
    assert settings.chroma_host is None and settings.device == "cpu"


@pytest.mark.parametrize("value,message", [("lots", "not a whole number"), ("0", "positive"), ("-3", "positive")])
def test_malformed_numbers_are_refused_naming_the_variable(value, message):
    with pytest.raises(MMError, match=message) as caught:
        Settings.from_env({"MMCORE_BATCH_SIZE": value})
    assert "MMCORE_BATCH_SIZE" in str(caught.value)
