"""int8 dynamic quantization of the Linear layers (weights int8, activations quantized per batch at run time).

Two routes to the same idea: torch's eager ``quantize_dynamic`` (CPU, fbgemm/x86 kernels) and ONNX
Runtime's ``quantize_dynamic`` on an exported graph (MatMul/Gemm). Attention products, norms and the
patch convolution stay float32. ``top1_agreement`` measures what it costs against float32.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from roost.errors import ExportError
from roost.files.atomic import atomic_target


def quantize_linear_int8(net: nn.Module, *, inplace: bool = False) -> nn.Module:
    """A CPU copy of ``net`` whose ``nn.Linear`` layers run as dynamic int8 (torch.ao)."""
    from torch.ao.quantization import quantize_dynamic

    model = net if inplace else copy.deepcopy(net)
    model = model.eval().float().cpu()
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)


def quantize_onnx(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """ONNX Runtime dynamic int8 quantization of the MatMul/Gemm weights of ``src`` into ``dst`` (atomic)."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as err:
        raise ExportError("onnxruntime is not installed; pip install 'roost[export]'") from err
    dst = Path(dst)
    with atomic_target(dst) as tmp:
        quantize_dynamic(
            str(src), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"],
            per_channel=True,
        )
    return dst


def top1_agreement(reference: Tensor, candidate: Tensor) -> float:
    """The share of rows whose argmax is the same in both (B, C) logit tensors."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shapes differ: {tuple(reference.shape)} vs {tuple(candidate.shape)}")
    return (reference.argmax(dim=1) == candidate.argmax(dim=1)).float().mean().item()
