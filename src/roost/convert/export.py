"""Export a network to ONNX, ``.pt2`` (torch.export), TorchScript or safetensors, checked against eager outputs.

Metadata follows the reference (``api.md`` §3.3–3.5): TorchScript ``_extra_files`` and pt2 ``extra_files``
hold ``birder_version``, ``task``, ``class_to_idx``, ``signature`` and ``rgb_stats`` (the last three JSON);
ONNX gets a ``<name>.onnx_metadata.json`` sidecar with the same fields as JSON objects (batch 0). Every
export is reloaded and run on a fresh random batch; ``ExportError`` when it drifts past the tolerance.

TorchScript comes from ``torch.jit.trace``: the RoPE-ViT forward uses Python-level caching that
``torch.jit.script`` does not take. A traced module keeps a dynamic batch but its input size is fixed.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from roost.convert.onnx_export import write_onnx
from roost.errors import ExportError
from roost.files.atomic import atomic_target, atomic_write
from roost.models.rope_vit import RoPEViT
from roost.weights.checkpoint import (
    Checkpoint,
    ModelInfo,
    encode_extra_files,
    export_metadata,
    get_size_from_signature,
    write_checkpoint,
)

ExportFormat = Literal["onnx", "pt2", "torchscript", "safetensors"]
Dtype = Literal["fp32", "fp16", "bf16"]
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
SUFFIXES: dict[str, str] = {"onnx": ".onnx", "pt2": ".pt2", "torchscript": ".pts", "safetensors": ".safetensors"}
TOLERANCE: dict[str, float] = {"fp32": 1e-4, "fp16": 5e-2, "bf16": 2e-1}  # absolute, on the outputs


@dataclass(frozen=True)
class ExportOptions:
    format: ExportFormat = "onnx"
    output: Path | None = None  # default: <model stem><suffix> in the working directory
    dynamic_batch: bool = False
    dynamic_size: bool = False
    dtype: Dtype = "fp32"
    check_batch: int = 2
    atol: float | None = None  # None: TOLERANCE[dtype]


@dataclass
class ExportResult:
    path: Path
    max_abs_error: float
    checked_shapes: list[tuple[int, ...]] = field(default_factory=list)
    sidecar: Path | None = None


# ------------------------------------------------------------------------------ entry point
def export_model(model: str | os.PathLike[str], options: ExportOptions | None = None) -> ExportResult:
    """Load ``model`` (pretrained name or checkpoint path), export it and verify the export on the spot."""
    from roost.weights.load import load_pretrained_model  # deferred: keeps `import roost.convert` light

    options = options or ExportOptions()
    net, info = load_pretrained_model(model, inference=True)
    output = options.output or Path(Path(str(model)).name.split(".")[0] + SUFFIXES[options.format])
    return export_network(net, info, output, options)


def export_network(net: RoPEViT, info: ModelInfo, output: Path, options: ExportOptions) -> ExportResult:
    output = Path(output)
    if options.dtype not in DTYPES:
        raise ExportError(f"unknown dtype {options.dtype!r}; choose one of {sorted(DTYPES)}")
    net = net.eval().requires_grad_(False).to(DTYPES[options.dtype])
    if options.dynamic_size:
        if options.format == "torchscript":
            raise ExportError("TorchScript traces a fixed input size; use format='onnx' or 'pt2' for dynamic_size")
        net.set_dynamic_size(True)
    size = get_size_from_signature(info.signature)
    exporter = _EXPORTERS[options.format]
    path = exporter(net, info, output, options, size)  # dynamic size: the model traces its tables (_traced_dynamic)
    shapes = check_shapes(size, options, net.config.patch_size)
    error = verify(net, load_runner(path, options.format), shapes, options.dtype)
    atol = options.atol if options.atol is not None else TOLERANCE[options.dtype]
    if not error <= atol:
        raise ExportError(f"{path}: outputs differ from eager by {error:.3g} (> {atol:g})")
    sidecar = _sidecar(path) if options.format == "onnx" else None
    return ExportResult(path, error, shapes, sidecar)


def check_shapes(size: tuple[int, int], options: ExportOptions, patch: int) -> list[tuple[int, ...]]:
    """The input shapes the export is verified on: the sample, and others the dynamic axes allow."""
    batch = options.check_batch if options.dynamic_batch or options.format == "onnx" else 1
    shapes = [(batch, 3, *size)]
    if options.dynamic_batch or options.format in ("onnx", "torchscript"):
        shapes.append((batch + 1, 3, *size))
    if options.dynamic_size:
        shapes.append((batch, 3, size[0] - 2 * patch, size[1] + 2 * patch))
    return shapes


def verify(net: nn.Module, runner: Callable[[Tensor], Tensor], shapes: list[tuple[int, ...]], dtype: str) -> float:
    """The largest absolute difference between ``runner`` and eager ``net`` over random inputs of ``shapes``."""
    generator = torch.Generator().manual_seed(0)
    error = 0.0
    for shape in shapes:
        x = torch.randn(shape, generator=generator).to(DTYPES[dtype])
        with torch.inference_mode():
            expected = net(x).float()
        got = runner(x).float()
        if got.shape != expected.shape:
            raise ExportError(f"export returns shape {tuple(got.shape)} for input {shape}; eager gives "
                              f"{tuple(expected.shape)}")
        error = max(error, (got - expected).abs().max().item() if expected.numel() else 0.0)
    return error


def sample_input(size: tuple[int, int], options: ExportOptions) -> Tensor:
    batch = options.check_batch if options.dynamic_batch or options.format == "onnx" else 1
    return torch.randn(batch, 3, *size, dtype=DTYPES[options.dtype])


def _dynamic_shapes(options: ExportOptions) -> dict[str, dict[int, Any]] | None:
    dim = torch.export.Dim.DYNAMIC
    axes: dict[int, Any] = {}
    if options.dynamic_batch or options.format == "onnx":  # ONNX classification: always a dynamic batch
        axes[0] = dim
    if options.dynamic_size:
        axes |= {2: dim, 3: dim}
    return {"x": axes} if axes else None


# ------------------------------------------------------------------------------ exporters
class _Forward(nn.Module):
    """Gives the exported graph the input name ``x`` whatever the wrapped module calls it."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _export_program(net: nn.Module, options: ExportOptions, size: tuple[int, int]) -> torch.export.ExportedProgram:
    try:
        program = torch.export.export(
            _Forward(net), (sample_input(size, options),), dynamic_shapes=_dynamic_shapes(options), strict=False
        )
    except Exception as err:  # torch raises many exporter-internal types
        raise ExportError(f"torch.export failed: {type(err).__name__}: {err}") from err
    return program.run_decompositions({})


def export_pt2(net: RoPEViT, info: ModelInfo, output: Path, options: ExportOptions, size: tuple[int, int]) -> Path:
    program = _export_program(net, options, size)
    batch = options.check_batch if options.dynamic_batch else 1
    meta = export_metadata(info, net.task, batch)
    with atomic_target(output) as tmp:
        torch.export.save(program, tmp, extra_files=encode_extra_files(meta))
    return output


def export_torchscript(
    net: RoPEViT, info: ModelInfo, output: Path, options: ExportOptions, size: tuple[int, int]
) -> Path:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
        traced = torch.jit.trace(_Forward(net), sample_input(size, options), check_trace=False)
    with atomic_target(output) as tmp:
        torch.jit.save(traced, str(tmp), _extra_files=encode_extra_files(export_metadata(info, net.task)))
    return output


def export_onnx(net: RoPEViT, info: ModelInfo, output: Path, options: ExportOptions, size: tuple[int, int]) -> Path:
    write_onnx(_Forward(net), sample_input(size, options), output, _dynamic_shapes(options), ("output",))
    meta_path = _sidecar(output)
    atomic_write(meta_path, json.dumps(export_metadata(info, net.task), indent=2).encode())
    return output


def export_safetensors(
    net: RoPEViT, info: ModelInfo, output: Path, options: ExportOptions, size: tuple[int, int]
) -> Path:
    ckpt = Checkpoint(
        state=dict(net.state_dict()), signature=info.signature, class_to_idx=dict(info.class_to_idx),
        rgb_stats=dict(info.rgb_stats), config=info.custom_config, network=getattr(net, "network_name", None),
    )
    return write_checkpoint(output, ckpt, "safetensors")


_EXPORTERS = {"onnx": export_onnx, "pt2": export_pt2, "torchscript": export_torchscript,
              "safetensors": export_safetensors}


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".onnx") + ".onnx_metadata.json")


# ------------------------------------------------------------------------------ reloading
def load_runner(path: Path, fmt: str) -> Callable[[Tensor], Tensor]:
    """A callable running the exported file the way a user would load it (ORT for ONNX)."""
    if fmt == "onnx":
        from roost.inference.ort import OrtSession

        return OrtSession(path)
    from roost.weights.load import load_model

    net, _ = load_model(None, path, inference=True)

    def run(x: Tensor) -> Tensor:
        with torch.inference_mode():
            return net(x.float() if fmt == "safetensors" else x)  # safetensors reload as float32

    return run
