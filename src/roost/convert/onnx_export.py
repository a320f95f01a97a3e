"""Writing one module to a self-contained ONNX file (``api.md`` §3.5), for ``roost export`` and the ORT backend.

Kept apart from ``export.py`` so that the ONNX Runtime backend can export without importing the
exporters, which in turn reload their results through that backend.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from roost.errors import ExportError
from roost.files.atomic import atomic_target

ONNX_OPSET = 20


def write_onnx(
    module: nn.Module, sample: Tensor, output: Path, dynamic_shapes: dict | None, output_names: tuple[str, ...]
) -> Path:
    """``torch.onnx.export`` (dynamo, opset 20, one self-contained file) then a full ``onnx.checker`` pass."""
    onnx = require("onnx")
    require("onnxscript")
    with atomic_target(output) as tmp:
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    module, (sample,), str(tmp), dynamo=True, opset_version=ONNX_OPSET, input_names=["x"],
                    output_names=list(output_names), dynamic_shapes=dynamic_shapes, external_data=False,
                    verbose=False,
                )
        except Exception as err:  # the exporter raises its own error types
            raise ExportError(f"ONNX export failed: {type(err).__name__}: {err}") from err
        onnx.checker.check_model(str(tmp), full_check=True)
    return output


def require(module: str) -> Any:
    """Import an optional export dependency, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ExportError(f"{module} is not installed; pip install 'roost[export]'") from err
