"""ONNX Runtime inference: a session wrapper and a backend with the eager model's ``embedding``/``classify``.

``OrtBackend`` runs the network body (image -> embedding) in ONNX Runtime, optionally int8-quantized,
and keeps the classifier (one Linear, or nothing) in torch, so the batch jobs can use it where they
use a RoPE-ViT: ``embedding(x)`` then ``classify(e)``. onnxruntime is an optional dependency.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from roost.errors import ExportError

_NUMPY_DTYPES = {torch.float32: np.float32, torch.float16: np.float16}


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
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def run(self, x: Tensor) -> list[np.ndarray]:
        if x.dtype not in _NUMPY_DTYPES:
            raise ExportError(f"ONNX Runtime inputs must be float32 or float16, not {x.dtype}")
        array = x.detach().cpu().numpy().astype(_NUMPY_DTYPES[x.dtype], copy=False)
        return self.session.run(None, {self.input_name: np.ascontiguousarray(array)})

    def __call__(self, x: Tensor) -> Tensor:
        return torch.from_numpy(self.run(x)[0])


class _Embedding(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net.embedding(x)


class OrtBackend(nn.Module):
    """``embedding`` through ONNX Runtime, ``classify`` through the torch classifier (CPU, float32)."""

    def __init__(self, session: OrtSession, classifier: nn.Module) -> None:
        super().__init__()
        self.session = session
        self.classifier = classifier
        # run_model asks next(net.parameters()) for the device: keep one (empty) parameter on the CPU.
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    @classmethod
    def from_network(
        cls,
        net: nn.Module,
        size: tuple[int, int],
        *,
        quantize: bool = False,
        folder: str | os.PathLike[str] | None = None,
        threads: int | None = None,
    ) -> OrtBackend:
        """Export ``net``'s body to ONNX (dynamic batch) in ``folder`` (a temporary one by default)."""
        from roost.convert.export import write_onnx
        from roost.convert.quantize import quantize_onnx

        net = net.eval().requires_grad_(False).float().cpu()
        folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="roost-ort-"))
        path = folder / "embedding.onnx"
        sample = torch.randn(2, 3, *size)
        write_onnx(_Embedding(net), sample, path, {"x": {0: torch.export.Dim.DYNAMIC}}, ("embedding",))
        if quantize:
            path = quantize_onnx(path, folder / "embedding_int8.onnx")
        backend = cls(OrtSession(path, threads=threads), net.classifier)
        backend.embedding_size = net.embedding_size
        return backend

    def embedding(self, x: Tensor) -> Tensor:
        return self.session(x.float())

    def classify(self, embedding: Tensor) -> Tensor:
        return self.classifier(embedding)

    def forward(self, x: Tensor) -> Tensor:
        return self.classify(self.embedding(x))
