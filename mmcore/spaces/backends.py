"""Inference backends: what runs a space's towers once its checkpoint is loaded.

`torch` (the default) runs the transformers model eagerly in its own precision: float32 on a CPU.
`openvino-bf16` converts each tower to an OpenVINO model and runs it on the CPU with bfloat16 matrix products
(AVX512-BF16 or AMX). On the 2-core development machine (AMD EPYC with AVX512-BF16) it runs ViT-B/32's image
tower at 2.5x and its text tower at 3.2x the items/s of eager float32, and its vectors keep a cosine
similarity of 0.9999 with float32's (bench/backends.py prints both, bench/RESULTS.md has the figures;
tests/test_backends.py checks the parity on every run).

Backends of one parity family make vectors that may share a collection: cosine >= 0.99 with eager float32 on
the same inputs. Dynamic int8 (torch, onnxruntime) was as fast and left out: its per-tensor activation scales
lose parity when activations have outlier channels, which real transformer checkpoints have and random-weight
ones don't (bench/backends.py --outliers 30: cosine 0.93-0.98, bfloat16 still 0.9999), and those scales make
an item's vector depend on the rest of its batch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import MMError, ModelUnavailable

TORCH = "torch"
OPENVINO_BF16 = "openvino-bf16"
DEFAULT_BACKEND = TORCH

BACKENDS = {
    TORCH: "eager PyTorch in the checkpoint's own precision (float32 on a CPU)",
    OPENVINO_BF16: "OpenVINO on the CPU with bfloat16 matrix products (needs AVX512-BF16 or AMX)",
}
# Backends in one family give vectors with cosine >= 0.99 to each other's on the same inputs.
PARITY_FAMILY = {TORCH: "float32", OPENVINO_BF16: "float32"}
PARITY_MIN_COSINE = 0.99


class BackendUnavailable(ModelUnavailable):
    """The backend asked for can't run here (its package is missing or the CPU lacks what it needs)."""


def check_backend(name: str) -> str:
    """`name` if it is a known backend; raises MMError naming the known ones otherwise."""
    if name not in BACKENDS:
        known = "; ".join(f"{b} ({what})" for b, what in BACKENDS.items())
        raise MMError(f"MMCORE_BACKEND={name!r} is not a known inference backend. Known backends: {known}.")
    return name


def compatible(a: str, b: str) -> bool:
    """Whether vectors made by backends `a` and `b` (of the same model and revision) may share a collection."""
    return a == b or (a in PARITY_FAMILY and PARITY_FAMILY.get(a) == PARITY_FAMILY.get(b))


def prepare(backend: str, device: str | None) -> str | None:
    """Check that `backend` can run here, before any weights are loaded; returns the torch device to load them on.

    Raises:
        MMError: an unknown backend.
        BackendUnavailable: openvino-bf16 with a GPU device, without the openvino package, or on a CPU without
            bfloat16 instructions.
    """
    check_backend(backend)
    if backend == TORCH:
        return device
    if device and not device.startswith("cpu"):
        raise BackendUnavailable(
            f"MMCORE_BACKEND={OPENVINO_BF16} runs on the CPU, but MMCORE_DEVICE={device}: set MMCORE_DEVICE=cpu "
            f"(or unset it), or use MMCORE_BACKEND={TORCH} on {device}."
        )
    _cpu_has_bf16(_import_openvino())
    return "cpu"


def _cpu_has_bf16(ov) -> None:
    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if "BF16" not in capabilities:
        raise BackendUnavailable(
            f"MMCORE_BACKEND={OPENVINO_BF16} needs a CPU with bfloat16 instructions (AVX512-BF16 or AMX); this one "
            f"offers {', '.join(capabilities)}. Use MMCORE_BACKEND={TORCH}."
        )


def _import_openvino():
    """openvino, imported with its usage telemetry disabled: mmscope never sends anything off the machine.

    `import openvino` loads its converter, which reports an "import" event to Google Analytics unless the
    openvino_telemetry package can't be imported; marking it unimportable makes the converter use its
    built-in no-op stub.
    """
    if "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # import raises ImportError
    elif sys.modules["openvino_telemetry"] is not None:
        raise BackendUnavailable("openvino_telemetry was imported before mmscope could disable it; refusing to use OpenVINO.")
    try:
        import openvino
    except ImportError as e:
        raise BackendUnavailable(
            f"MMCORE_BACKEND={OPENVINO_BF16} needs the openvino package, which is not installed ({e}). Install "
            f"the version pinned in requirements.txt (pip install -r requirements.txt), or use MMCORE_BACKEND={TORCH}."
        ) from e
    return openvino


class OpenVinoTower:
    """One tower (a `get_*_features` method of a transformers model) converted to OpenVINO and compiled for the CPU.

    Called like the method it replaces, with the processor's tensors as keywords; returns a float32 torch tensor.
    Every call gets its own infer request, so threads may share the tower.
    """

    def __init__(self, compiled, names: Sequence[str]):
        self.compiled = compiled
        self.names = list(names)

    def __call__(self, **inputs) -> Any:
        import torch

        missing = [n for n in self.names if n not in inputs]
        if missing:
            raise MMError(f"the OpenVINO tower expects {self.names}, got {sorted(inputs)}")
        request = self.compiled.create_infer_request()
        request.infer({n: np.ascontiguousarray(inputs[n].cpu().numpy()) for n in self.names})
        return torch.from_numpy(np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True))


def convert_tower(net, method: str, example: dict, dynamic: dict[str, int]):
    """The OpenVINO model of `net.<method>(**inputs)`, traced on `example` (name -> tensor).

    `dynamic` gives each input's rank; every dimension of it is left dynamic (batch, and sequence for text).
    """
    import torch

    ov = _import_openvino()
    names = list(example)

    class Tower(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, *tensors):
            out = getattr(self.net, method)(**dict(zip(names, tensors)))
            return getattr(out, "pooler_output", out)  # transformers 5 returns an output object

    shapes = [ov.PartialShape([-1] * dynamic[n]) for n in names]
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shapes: the inputs' dimensions are declared dynamic
        model = ov.convert_model(Tower().eval(), example_input=tuple(example[n] for n in names), input=shapes)
    for port, name in zip(model.inputs, names):
        port.get_tensor().set_names({name})
    return model, names


def compile_bf16(model, threads: int | None = None):
    """`model` compiled for the CPU with bfloat16 inference precision; refuses rather than running in float32."""
    ov = _import_openvino()
    _cpu_has_bf16(ov)
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(model, "CPU", config)
    precision = compiled.get_property("INFERENCE_PRECISION_HINT")
    if precision != ov.Type.bf16:
        raise BackendUnavailable(f"OpenVINO compiled the model in {precision}, not bfloat16; use MMCORE_BACKEND={TORCH}.")
    return compiled


_convert_lock = threading.Lock()


def cache_root() -> Path:
    """Where converted models are kept: $XDG_CACHE_HOME/mmscope/openvino (~/.cache/...), outside the data dir so
    backups don't carry them. Deleting it is always safe: they are converted again on next load."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mmscope" / "openvino"


def cache_key(source: str, revision: str, towers: dict) -> str:
    """Names the converted towers of one checkpoint: its source and revision, a folder's file sizes and times, the
    towers' inputs and the versions of everything that shapes the conversion."""
    import torch
    import transformers

    ov = _import_openvino()
    folder = Path(source)
    files = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in folder.iterdir() if f.is_file()) if folder.is_dir() else []
    described = {name: (method, {k: list(v.shape) for k, v in example.items()}) for name, (method, example, _) in towers.items()}
    parts = [OPENVINO_BF16, source, revision, files, described, ov.get_version(), torch.__version__, transformers.__version__]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:24]


def openvino_towers(
    net, towers: dict[str, tuple[str, dict, dict[str, int]]], source: str, revision: str, threads: int | None = None,
    cache: Path | None = None,
) -> dict[str, OpenVinoTower]:
    """Each named tower of `net` as OpenVINO compiled in bfloat16: {name: (method, example inputs, ranks)} -> {name: tower}.

    Converted models are kept under `cache` (default `cache_root()`), keyed by `cache_key`; a cache entry appears
    whole (written beside it, then renamed) or not at all, and one that can't be read is converted again.
    """
    ov = _import_openvino()
    cache = cache or cache_root()
    folder = cache / cache_key(source, revision, towers)
    with _convert_lock:  # conversion traces the shared torch model
        models = _read_cached(ov, folder, towers)
        if models is None:
            models = {name: convert_tower(net, method, example, ranks) for name, (method, example, ranks) in towers.items()}
            _write_cached(ov, folder, models)
    return {name: OpenVinoTower(compile_bf16(model, threads), names) for name, (model, names) in models.items()}


def _read_cached(ov, folder: Path, towers: dict) -> dict | None:
    try:
        models = {name: ov.Core().read_model(folder / f"{name}.xml") for name in towers}
        return {name: (model, [port.get_any_name() for port in model.inputs]) for name, model in models.items()}
    except Exception:  # missing or unreadable: convert again
        return None


def _write_cached(ov, folder: Path, models: dict) -> None:
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=folder.parent))
    except OSError:
        return  # an unwritable cache only costs the next load a conversion
    try:
        for name, (model, _) in models.items():
            ov.save_model(model, staging / f"{name}.xml", compress_to_fp16=False)  # fp16 weights would change the vectors
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    except OSError:
        pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
