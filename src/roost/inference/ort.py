"""ONNX Runtime inference: a session wrapper and a backend with the eager model's ``embedding``/``classify``.

``OrtBackend`` runs the network body (image -> embedding) in ONNX Runtime, optionally int8-quantized,
and keeps the classifier (one Linear, or nothing) in torch, so the batch jobs can use it where they
use a RoPE-ViT: ``embedding(x)`` then ``classify(e)``. onnxruntime is an optional dependency.

Exports are cached, one folder per key under ``Settings.onnx_cache_dir``: the key hashes what the export
depends on (the checkpoint's identity, input size, int8 or not, the network config, the roost, torch and
onnxruntime versions). A folder is exported under a temporary name and renamed into place, so a folder
with the key's name is complete; one that ONNX Runtime cannot load is exported again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from roost.errors import ExportError
from roost.models.rope_vit import RoPEViT
from roost.settings import Settings
from roost.weights.checkpoint import ModelInfo
from roost.weights.load import local_checkpoint
from roost.weights.manifest import REGISTRY

log = logging.getLogger(__name__)

_NUMPY_DTYPES = {torch.float32: np.float32, torch.float16: np.float16}
FP32_FILE = "embedding.onnx"
INT8_FILE = "embedding_int8.onnx"


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise ExportError("onnxruntime is not installed; pip install 'roost[export]'") from err
    return onnxruntime


class OrtSession:
    """One ONNX file in an ONNX Runtime CPU session: ``session(x)`` -> the first output as a tensor."""

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        ort = _ort()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's error types derive from Exception directly
            raise ExportError(f"ONNX Runtime cannot load {path}: {err}") from err
        self.input_name = self.session.get_inputs()[0].name

    def run(self, x: Tensor) -> list[np.ndarray]:
        if x.dtype not in _NUMPY_DTYPES:
            raise ExportError(f"ONNX Runtime inputs must be float32 or float16, not {x.dtype}")
        array = x.detach().cpu().numpy().astype(_NUMPY_DTYPES[x.dtype], copy=False)
        return self.session.run(None, {self.input_name: np.ascontiguousarray(array)})

    def __call__(self, x: Tensor) -> Tensor:
        return torch.from_numpy(self.run(x)[0])


class _Embedding(nn.Module):
    def __init__(self, net: RoPEViT) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net.embedding(x)


class OrtBackend(nn.Module):
    """``embedding`` through ONNX Runtime, ``classify`` through the torch classifier (CPU, float32).

    ``from_cache`` says whether the ONNX file (``path``) was already there or exported for this backend.
    """

    def __init__(
        self, session: OrtSession, classifier: nn.Module, embedding_size: int, *, from_cache: bool = False
    ) -> None:
        super().__init__()
        self.session = session
        self.classifier = classifier
        self.embedding_size = embedding_size
        self.from_cache = from_cache
        # run_model asks next(net.parameters()) for the device: keep one (empty) parameter on the CPU.
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    @property
    def path(self) -> Path:
        return self.session.path

    @classmethod
    def from_network(
        cls,
        net: RoPEViT,
        size: tuple[int, int],
        *,
        quantize: bool,
        cache_dir: Path,
        key: str,
        threads: int | None = None,
    ) -> OrtBackend:
        """``net``'s body in ONNX Runtime, from ``cache_dir / key`` when a loadable export is there, else
        exported there now (dynamic batch, ``size`` fixed)."""
        net = net.eval().requires_grad_(False).float().cpu()
        folder = Path(cache_dir) / key
        path = folder / (INT8_FILE if quantize else FP32_FILE)
        session = _open_cached(path, threads)
        from_cache = session is not None
        if session is None:
            _export_folder(net, size, quantize, folder)
            session = OrtSession(path, threads=threads)
        return cls(session, net.classifier, net.embedding_size, from_cache=from_cache)

    def embedding(self, x: Tensor) -> Tensor:
        return self.session(x.float())

    def classify(self, embedding: Tensor) -> Tensor:
        return self.classifier(embedding)

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.embedding(x))


def _open_cached(path: Path, threads: int | None) -> OrtSession | None:
    if not path.is_file():
        return None
    try:
        return OrtSession(path, threads=threads)
    except ExportError as err:
        log.warning("%s; exporting it again", err)
        return None


def _export_folder(net: RoPEViT, size: tuple[int, int], quantize: bool, folder: Path) -> None:
    """Export into a temporary folder beside ``folder``, then rename it to ``folder`` (replacing a broken one)."""
    from roost.convert.onnx_export import write_onnx
    from roost.convert.quantize import quantize_onnx

    tmp = folder.with_name(f".{folder.name}.{secrets.token_hex(4)}.partial")
    tmp.mkdir(parents=True)  # the usual new-folder mode: a shared cache stays readable
    try:
        batch = {"x": {0: torch.export.Dim.DYNAMIC}}
        fp32 = write_onnx(_Embedding(net), torch.randn(2, 3, *size), tmp / FP32_FILE, batch, ("embedding",))
        if quantize:
            quantize_onnx(fp32, tmp / INT8_FILE)
            fp32.unlink()
        shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not folder.is_dir():
                raise
            log.debug("another process exported %s first; using its export", folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def export_key(
    net: RoPEViT,
    info: ModelInfo,
    size: tuple[int, int],
    *,
    quantize: bool,
    source: str | os.PathLike[str],
    settings: Settings | None = None,
) -> str:
    """The cache folder name of ``net`` (loaded with ``info`` from ``source``: a checkpoint path or a
    published weights name) exported at ``size``: a readable label, then a hash of all the export depends on."""
    import roost  # deferred: roost/__init__ imports the weights loaders this module needs

    parts = {
        "source": _source_identity(source, settings or Settings.from_env()),
        "network": getattr(net, "network_name", None),
        "config": repr(getattr(net, "config", None)),
        "signature": info.signature,
        "size": list(size),
        "quantize": quantize,
        "versions": [roost.__version__, torch.__version__, _ort().__version__],
    }
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    label = re.sub(r"[^\w.-]", "_", Path(str(source)).name.split(".")[0])
    return f"{label}-{size[0]}x{size[1]}{'-int8' if quantize else ''}-{digest}"


def _source_identity(source: str | os.PathLike[str], settings: Settings) -> dict[str, Any]:
    """A local file by resolved path, size and mtime; published weights by their files' sha256."""
    local = local_checkpoint(source)
    if local is None:
        entry = REGISTRY.get(str(source), settings)
        return {"weights": entry.name, "sha256": {fmt: sha for fmt, (_, sha) in sorted(entry.formats.items())}}
    st = local.stat()
    return {"path": str(local.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def ort_backend_for(
    net: RoPEViT,
    info: ModelInfo,
    size: tuple[int, int],
    *,
    quantize: bool,
    source: str | os.PathLike[str],
    settings: Settings | None = None,
    threads: int | None = None,
) -> OrtBackend:
    """``net`` (loaded from ``source``) in ONNX Runtime through the export cache of ``settings``.

    The result's ``from_cache`` and ``path`` tell the caller which happened ("using cached ONNX export
    <path>" or "exported ONNX to <path>").
    """
    settings = settings or Settings.from_env()
    key = export_key(net, info, size, quantize=quantize, source=source, settings=settings)
    return OrtBackend.from_network(
        net, size, quantize=quantize, cache_dir=settings.onnx_cache_dir, key=key, threads=threads
    )
