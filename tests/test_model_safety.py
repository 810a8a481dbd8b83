"""Models: only safetensors weights are loaded, never a pickle, and never code shipped with a checkpoint.

Each malicious checkpoint here would create a marker file if it were loaded the unsafe way; the tests check
that the load is refused with a clear error (or takes the safetensors beside it) and the marker never appears.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from browser import ROOT
from mmcore.config import Settings
from mmcore.errors import ModelUnavailable
from mmcore.spaces import get_space
from mmcore.spaces.clip import ClipSpace
from mmcore.speech import get_transcriber


class _CreatesMarker:
    """Unpickling this runs `Path(marker).touch()`: what a malicious pytorch_model.bin could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def pickled_checkpoint(path: Path, marker: Path) -> None:
    """A real torch checkpoint (torch.save's zip of a pickle) whose unpickling creates `marker`."""
    import torch

    torch.save(_CreatesMarker(marker), path)


# How each kind of model is loaded, from its folder: the same entry points ingest and search use.
LOADERS = {
    "clip": lambda folder, data: get_space("clip", Settings(data_dir=data, models={"clip": str(folder)})),
    "clip (ClipSpace.load)": lambda folder, data: ClipSpace.load(str(folder), device="cpu"),
    "clap": lambda folder, data: get_space("clap", Settings(data_dir=data, models={"clap": str(folder)})),
    "whisper": lambda folder, data: get_transcriber(Settings(data_dir=data, asr_model=str(folder))),
}
CHECKPOINTS = {"clip": "clip_dir", "clip (ClipSpace.load)": "clip_dir", "clap": "clap_dir", "whisper": "whisper_dir"}


@pytest.fixture(params=list(LOADERS))
def kind(request):
    return request.param, request.getfixturevalue(CHECKPOINTS[request.param])


def test_the_malicious_checkpoint_does_run_code_when_unpickled(tmp_path):
    """The payload is real: torch.load without weights_only runs it. Everything below must never get here."""
    import torch

    probe = tmp_path / "probe"
    pickled_checkpoint(tmp_path / "probe.bin", probe)
    torch.load(tmp_path / "probe.bin", weights_only=False)
    assert probe.exists()


def test_pickled_weights_are_refused_and_never_unpickled(kind, tmp_path):
    name, source = kind
    folder = tmp_path / "pickled"
    shutil.copytree(source, folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    pickled_checkpoint(folder / "pytorch_model.bin", marker)

    with pytest.raises(ModelUnavailable) as caught:
        LOADERS[name](folder, tmp_path / "data")
    assert "safetensors" in str(caught.value) and "pickle" in str(caught.value)
    assert not marker.exists(), "the pickled weights were unpickled"


def test_safetensors_are_taken_and_a_pickle_beside_them_is_never_opened(kind, tmp_path):
    name, source = kind
    folder = tmp_path / "both"
    shutil.copytree(source, folder)
    marker = tmp_path / "pwned"
    pickled_checkpoint(folder / "pytorch_model.bin", marker)

    assert LOADERS[name](folder, tmp_path / "data") is not None
    assert not marker.exists(), "the pickled weights were unpickled"


def test_a_checkpoint_that_needs_its_own_code_is_refused_and_its_code_never_runs(clip_dir, tmp_path, monkeypatch):
    # Left unset, trust_remote_code makes transformers ask on the terminal; someone answering "y" would run it.
    monkeypatch.setattr("builtins.input", lambda *args: "y")
    folder = tmp_path / "remote-code"
    shutil.copytree(clip_dir, folder)
    marker = tmp_path / "pwned"
    (folder / "evil_model.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n")
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="evil", auto_map={"AutoConfig": "evil_model.EvilConfig", "AutoModel": "evil_model.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))

    with pytest.raises(ModelUnavailable, match="custom code"):
        ClipSpace.load(str(folder), device="cpu")
    assert not marker.exists(), "the checkpoint's own code ran"


def test_no_code_asks_for_remote_code_or_pickled_weights():
    """Every from_pretrained says trust_remote_code=False, every model load use_safetensors=True, and every
    torch.load weights_only=True."""
    sources = [*ROOT.glob("mmcore/**/*.py"), ROOT / "app.py", ROOT / "ui.py", *ROOT.glob("pages/*.py")]
    assert len(sources) > 10
    loads = 0
    for path in sources:
        text = path.read_text()
        assert not re.search(r"trust_remote_code\s*=\s*True", text), path
        # torch.load only as a reader of tensors (the imagebind space's user-provided weights): never a pickle's code.
        assert all("weights_only=True" in line for line in text.splitlines() if "torch.load(" in line), path
        for auto_class, args in re.findall(r"(\w+)\)?\.from_pretrained\(([^)]*)\)", text):
            assert "trust_remote_code=False" in args, (path, auto_class)
            loads_no_weights = any(part in auto_class for part in ("Processor", "Tokenizer", "FeatureExtractor"))
            assert loads_no_weights or "use_safetensors=True" in args, (path, auto_class)
            loads += 1
    assert loads >= 2, "the model and processor loads were not found: update this test"
