"""The checkpoint codec: ``.pt`` and ``.safetensors`` files interchangeable with Birder 0.8.4 (``api.md`` §3).

``.pt`` is a plain dict written with ``torch.save``, keys in the reference's order (``state``,
``birder_version``, ``task``, ``signature``, ``class_to_idx``, ``rgb_stats``, optional ``config``) plus
roost's own ``network`` and ``roost_version``, which the reference ignores. ``.safetensors`` holds the
state tensors and the same fields as string metadata (JSON for the dicts). Files are read with
``weights_only=True`` / safetensors only and written atomically.

Exported models (``.pt2``, ``.pts``) carry the same fields as extra files (§3.3–3.4); their codec is here
too, so that loading one needs nothing from ``roost.convert``.
"""

from __future__ import annotations

import json
import os
import pickle
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from roost.errors import CheckpointError
from roost.files.atomic import atomic_target

BIRDER_VERSION = "v0.8.4"
DEFAULT_TASK = "image_classification"
_REQUIRED = ("state", "signature", "class_to_idx", "rgb_stats")
_META_JSON = ("signature", "class_to_idx", "rgb_stats")


class CheckpointFormat(StrEnum):
    PT = "pt"
    SAFETENSORS = "safetensors"
    PT2 = "pt2"
    PTS = "pts"
    PTL = "ptl"

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> CheckpointFormat:
        suffix = Path(path).suffix.lstrip(".").lower()
        if suffix == "onnx":
            raise CheckpointError(
                f"{path}: an ONNX file is not a checkpoint roost builds a model from. ONNX Runtime runs a model "
                'through backend="ort" or "ort-int8", which exports (and caches) its own ONNX: pass the .pt or '
                ".safetensors checkpoint this file was exported from"
            )
        try:
            return cls(suffix)
        except ValueError:
            known = ", ".join(f".{f}" for f in cls)
            raise CheckpointError(f"{path}: unknown checkpoint suffix; expected one of {known}") from None


class ModelInfo(NamedTuple):
    """What ``load_model`` returns beside the network; field order is the reference's."""

    class_to_idx: dict[str, int]
    signature: dict[str, Any]
    rgb_stats: dict[str, Any]
    custom_config: dict[str, Any] | None


@dataclass
class Checkpoint:
    state: dict[str, Tensor]
    signature: dict[str, Any]
    class_to_idx: dict[str, int]
    rgb_stats: dict[str, Any]
    config: dict[str, Any] | None = None
    task: str = DEFAULT_TASK
    network: str | None = None
    birder_version: str = BIRDER_VERSION

    def model_info(self) -> ModelInfo:
        return ModelInfo(self.class_to_idx, self.signature, self.rgb_stats, self.config or None)


# Signatures (api.md §1.3): {"inputs": [{"data_shape": [0, C, H, W]}], "outputs": [{"data_shape": [0, N]}]}


def get_signature(input_shape: tuple[int, ...], num_outputs: int) -> dict[str, Any]:
    """A classification signature; the batch entry is always written as 0."""
    return {
        "inputs": [{"data_shape": [0, *(int(d) for d in input_shape[1:])]}],
        "outputs": [{"data_shape": [0, int(num_outputs)]}],
    }


def get_size_from_signature(signature: Mapping[str, Any]) -> tuple[int, int]:
    height, width = signature["inputs"][0]["data_shape"][2:4]
    return (height, width)


def get_channels_from_signature(signature: Mapping[str, Any]) -> int:
    return signature["inputs"][0]["data_shape"][1]


def get_num_labels_from_signature(signature: Mapping[str, Any]) -> int:
    if "num_labels" in signature:
        return signature["num_labels"]
    return signature["outputs"][0]["data_shape"][1]


# Reading


def read_checkpoint(path: str | os.PathLike[str], fmt: CheckpointFormat | str | None = None) -> Checkpoint:
    """Read a ``.pt`` or ``.safetensors`` checkpoint (format from ``fmt`` or the suffix) onto the CPU."""
    fmt = CheckpointFormat(fmt) if fmt is not None else CheckpointFormat.from_path(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    if fmt is CheckpointFormat.PT:
        return _read_pt(Path(path))
    if fmt is CheckpointFormat.SAFETENSORS:
        return _read_safetensors(Path(path))
    raise NotImplementedError(f"{fmt.value} checkpoints are not supported yet; use .pt or .safetensors")


def _read_pt(path: Path) -> Checkpoint:
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise CheckpointError(f"{path}: not a readable weights-only .pt checkpoint: {err}") from err
    if not isinstance(raw, Mapping) or any(key not in raw for key in _REQUIRED):
        found = sorted(raw) if isinstance(raw, Mapping) else type(raw).__name__
        raise CheckpointError(f"{path}: not a Birder checkpoint (needs keys {list(_REQUIRED)}, found {found})")
    return Checkpoint(
        state=dict(raw["state"]),
        signature=raw["signature"],
        class_to_idx=raw["class_to_idx"],
        rgb_stats=raw["rgb_stats"],
        config=raw.get("config"),
        task=raw.get("task", DEFAULT_TASK),
        network=raw.get("network"),
        birder_version=raw.get("birder_version", BIRDER_VERSION),
    )


def _read_safetensors(path: Path) -> Checkpoint:
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file: {err}") from err
    missing = [key for key in _META_JSON if key not in meta]
    if missing:
        raise CheckpointError(f"{path}: safetensors metadata lacks {missing}; not a Birder checkpoint")
    decoded = {key: _json_field(path, meta, key) for key in _META_JSON}
    config = _json_field(path, meta, "config") if meta.get("config") else None
    return Checkpoint(
        state=state,
        config=config,
        task=meta.get("task", DEFAULT_TASK),
        network=meta.get("network") or None,
        birder_version=meta.get("birder_version", BIRDER_VERSION),
        **decoded,
    )


def _json_field(path: Path, meta: Mapping[str, str], key: str) -> Any:
    try:
        return json.loads(meta[key])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: metadata {key!r} is not JSON: {err}") from err


# Exported models: TorchScript ``_extra_files`` / torch.export ``extra_files``

EXTRA_FILE_KEYS = ("task", "class_to_idx", "signature", "rgb_stats")
"""The extra files a loader reads (``birder_version`` is written too, and ignored when read)."""
_TEXT_FIELDS = ("task", "birder_version")


def export_metadata(info: ModelInfo, task: str, batch: int = 0) -> dict[str, Any]:
    """The reference's five metadata fields of an export, the signature's batch entry set to ``batch``."""
    signature = json.loads(json.dumps(info.signature))
    signature["inputs"][0]["data_shape"][0] = batch
    return {
        "birder_version": BIRDER_VERSION,
        "task": task,
        "class_to_idx": dict(info.class_to_idx),
        "signature": signature,
        "rgb_stats": {key: list(value) for key, value in info.rgb_stats.items()},
    }


def encode_extra_files(meta: Mapping[str, Any]) -> dict[str, str]:
    """Extra-file contents: text fields as they are, the dicts as JSON."""
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in meta.items()}


def decode_extra_files(files: Mapping[str, str | bytes]) -> dict[str, Any]:
    """The inverse of :func:`encode_extra_files` (torch hands extra files back as str or bytes)."""

    def text(value: str | bytes) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    return {key: text(v) if key in _TEXT_FIELDS else json.loads(text(v)) for key, v in files.items()}


# Writing


def write_checkpoint(
    path: str | os.PathLike[str], ckpt: Checkpoint, fmt: CheckpointFormat | str | None = None
) -> Path:
    """Write ``ckpt`` atomically as ``.pt`` or ``.safetensors`` (format from ``fmt`` or the suffix)."""
    path = Path(path)
    fmt = CheckpointFormat(fmt) if fmt is not None else CheckpointFormat.from_path(path)
    state = {key: tensor.detach().cpu() for key, tensor in ckpt.state.items()}
    with atomic_target(path) as tmp:
        if fmt is CheckpointFormat.PT:
            torch.save(_pt_payload(ckpt, state), tmp)
        elif fmt is CheckpointFormat.SAFETENSORS:
            save_file(_unshared(state), tmp, metadata=_st_metadata(ckpt))
        else:
            raise NotImplementedError(f"writing {fmt.value} checkpoints is not supported yet")
    return path


def _roost_version() -> str:
    import roost  # deferred: roost/__init__ imports this module

    return roost.__version__


def _pt_payload(ckpt: Checkpoint, state: dict[str, Tensor]) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "state": OrderedDict(state),
        "birder_version": ckpt.birder_version,
        "task": ckpt.task,
        "signature": ckpt.signature,
        "class_to_idx": dict(ckpt.class_to_idx),
        "rgb_stats": {key: tuple(value) for key, value in ckpt.rgb_stats.items()},
    }
    if ckpt.config is not None:
        payload["config"] = ckpt.config
    if ckpt.network is not None:
        payload["network"] = ckpt.network
    payload["roost_version"] = _roost_version()
    return payload


def _st_metadata(ckpt: Checkpoint) -> dict[str, str]:
    meta = {
        "birder_version": ckpt.birder_version,
        "task": ckpt.task,
        "class_to_idx": json.dumps(ckpt.class_to_idx),
        "signature": json.dumps(ckpt.signature),
        "rgb_stats": json.dumps({key: list(value) for key, value in ckpt.rgb_stats.items()}),
    }
    if ckpt.config is not None:
        meta["config"] = json.dumps(ckpt.config)
    if ckpt.network is not None:
        meta["network"] = ckpt.network
    meta["roost_version"] = _roost_version()
    return meta


def _unshared(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """safetensors refuses tensors sharing memory: give every repeat its own contiguous copy."""
    seen: set[tuple[int, int]] = set()
    out = {}
    for key, tensor in state.items():
        ident = (tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        shared = ident in seen and tensor.numel() > 0
        seen.add(ident)
        out[key] = tensor.clone() if shared else tensor.contiguous()
    return out
