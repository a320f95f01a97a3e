"""Build networks from checkpoints: ``load_model``, ``load_pretrained_model``, ``save_model`` (``api.md`` §1).

The network name comes from the caller (``network``), else from the checkpoint's ``network`` entry (files
roost writes), else from the file name ``<network>[_<tag>][_<epoch>].<ext>`` (the longest prefix that is a
network name).
Class count and input size come from the stored signature, the config from the stored ``config`` updated
with the caller's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from roost.errors import CheckpointError, ConfigError, UnknownModelError, WeightsNotFoundError
from roost.models import registry
from roost.models.names import parse_name
from roost.models.rope_vit import RoPEViT
from roost.settings import Settings
from roost.weights.checkpoint import (
    EXTRA_FILE_KEYS,
    Checkpoint,
    CheckpointFormat,
    ModelInfo,
    decode_extra_files,
    get_channels_from_signature,
    get_num_labels_from_signature,
    get_signature,
    get_size_from_signature,
    read_checkpoint,
    write_checkpoint,
)
from roost.weights.hub import ProgressCallback, fetch_weights
from roost.weights.manifest import REGISTRY
from roost.weights.progress import stderr_download_bars

PathLike = str | os.PathLike[str]
Device = torch.device | str | None


def load_model(
    network: str | None,
    path: PathLike,
    *,
    config: Mapping[str, Any] | None = None,
    new_size: tuple[int, int] | int | None = None,
    inference: bool = False,
    device: Device = None,
    dtype: torch.dtype | None = None,
) -> tuple[RoPEViT, ModelInfo]:
    """Build ``network`` (None: taken from the file) and load the checkpoint at ``path`` into it."""
    path = Path(path)
    fmt = CheckpointFormat.from_path(path)
    if fmt is CheckpointFormat.PTL:
        raise NotImplementedError("loading ptl files is not supported; use .pt, .safetensors, .pt2 or .pts")
    if fmt in (CheckpointFormat.PT2, CheckpointFormat.PTS):
        return load_exported(path, fmt, inference=inference, device=device, dtype=dtype)  # type: ignore[return-value]
    ckpt = read_checkpoint(path, fmt)
    network = network or ckpt.network or network_from_file_name(path)
    net = build_from_checkpoint(network, ckpt, config=config, source=path)
    if new_size is not None:
        net.adjust_size(new_size)
    net.to(torch.device(device) if device is not None else torch.device("cpu"))
    if dtype is not None:
        net.to(dtype)
    if inference:
        net.eval()
        net.requires_grad_(False)
    return net, ckpt.model_info()


def load_exported(
    path: Path, fmt: CheckpointFormat, *, inference: bool, device: Device = None, dtype: torch.dtype | None = None
) -> tuple[torch.nn.Module, ModelInfo]:
    """A ``.pts`` (TorchScript) or ``.pt2`` (torch.export) file with its extra-file metadata (api.md §1.2).

    Sets ``task``, ``input_channels`` and ``size`` on the module; the stored config and ``new_size`` do not
    apply. pt2 modules are not put in eval mode (the exported graph fixed it), as in the reference.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    files: dict[str, Any] = dict.fromkeys(EXTRA_FILE_KEYS, "")
    target = torch.device(device) if device is not None else torch.device("cpu")
    try:
        if fmt is CheckpointFormat.PTS:
            net = torch.jit.load(str(path), map_location=target, _extra_files=files)
        else:
            net = torch.export.load(path, extra_files=files).module().to(target)
    except (RuntimeError, ValueError, KeyError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable {fmt.value} file: {err}") from err
    missing = [key for key, value in files.items() if not value]
    if missing:
        raise CheckpointError(f"{path}: {fmt.value} file lacks the metadata {missing}; not a Birder export")
    meta = decode_extra_files(files)
    net.task = meta["task"]
    net.input_channels = get_channels_from_signature(meta["signature"])  # type: ignore[assignment]
    net.size = get_size_from_signature(meta["signature"])  # type: ignore[assignment]
    if dtype is not None:
        net.to(dtype)
    if inference:
        for param in net.parameters():
            param.requires_grad_(False)
        if fmt is CheckpointFormat.PTS:
            net.eval()
    return net, ModelInfo(meta["class_to_idx"], meta["signature"], meta["rgb_stats"], None)


def build_from_checkpoint(
    network: str, ckpt: Checkpoint, *, config: Mapping[str, Any] | None = None, source: PathLike = "checkpoint"
) -> RoPEViT:
    """Create ``network`` as the checkpoint describes it and load its state (strict)."""
    channels = get_channels_from_signature(ckpt.signature)
    if channels != 3:
        raise CheckpointError(f"{source}: {channels}-channel inputs are not supported (RoPE-ViT takes RGB)")
    merged = {**(ckpt.config or {}), **(config or {})} or None
    with torch.device("meta"):  # no wasted random init: the checkpoint supplies every parameter
        net = registry.create_model(
            network,
            get_num_labels_from_signature(ckpt.signature),
            size=get_size_from_signature(ckpt.signature),
            config=merged,
        )
    expected = net.state_dict()
    # The reference copies into float32 parameters; keep that when a file stores another dtype.
    state = {k: v.to(expected[k].dtype) if k in expected else v for k, v in ckpt.state.items()}
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as err:
        raise CheckpointError(f"{source} does not fit network {network!r} (config {merged}): {err}") from err
    left = [name for name, t in [*net.named_parameters(), *net.named_buffers()] if t.is_meta]
    if left:
        raise CheckpointError(f"{source}: nothing in the checkpoint fills {left} of {network!r}")
    return net


def network_from_file_name(path: PathLike) -> str:
    """The longest ``_``-separated prefix of the file's stem that names a network."""
    stem = Path(path).name.split(".", 1)[0]
    parts = stem.split("_")
    for end in range(len(parts), 0, -1):
        candidate = "_".join(parts[:end])
        if _is_network(candidate):
            return candidate
    raise CheckpointError(
        f"{path} does not record its network and its name does not start with a network name "
        "(<network>[_<tag>][_<epoch>]); pass network= explicitly"
    )


def _is_network(name: str) -> bool:
    """Whether ``name`` parses as a network (every catalogued name does, aliases included)."""
    try:
        registry.resolve_name(name)
    except (UnknownModelError, ConfigError):
        return False
    return True


def load_pretrained_model(
    weights: PathLike,
    *,
    dst: PathLike | None = None,
    file_format: str = "pt",
    inference: bool = False,
    device: Device = None,
    dtype: torch.dtype | None = None,
    new_size: tuple[int, int] | int | None = None,
    custom_config: Mapping[str, Any] | None = None,
    progress_bar: bool = True,
    network: str | None = None,
    on_progress: ProgressCallback | None = None,
) -> tuple[RoPEViT, ModelInfo]:
    """Load published weights by name (downloaded and sha256-checked as needed) or a local file.

    ``file_format`` is one of pt, safetensors, pt2, pts; ``custom_config`` updates the stored config.
    ``network`` builds a local file as that network: needed for files that record none and whose name
    does not start with one; like ``load_model``'s, it wins over both. Download progress goes to
    ``on_progress``; without it, ``progress_bar`` draws a bar on stderr.
    """
    common: dict[str, Any] = {"inference": inference, "device": device, "dtype": dtype, "new_size": new_size}
    local = local_checkpoint(weights)
    if local is not None:
        return load_model(network, local, config=custom_config, **common)
    if network is not None:
        raise ConfigError(f"network= applies to checkpoint files; published weights {weights!r} name their own")
    if file_format == "ptl":
        raise ValueError("ptl format not supported")
    if new_size is not None and file_format in ("pt2", "pts"):
        raise ValueError(f"new_size cannot be applied to {file_format} files (their size is fixed at export)")
    settings = Settings.from_env()
    entry = REGISTRY.get(str(weights), settings)
    entry.check_format(file_format)
    if entry.task != "image_classification":
        raise ValueError(f"Unknown model type: {entry.task}")
    if on_progress is not None or not progress_bar:
        path = fetch_weights(entry, file_format, dst=dst, on_progress=on_progress, settings=settings)
    else:
        with stderr_download_bars() as show:
            path = fetch_weights(entry, file_format, dst=dst, on_progress=show, settings=settings)
    return load_model(entry.network, path, config=custom_config, **common)


def local_checkpoint(weights: PathLike) -> Path | None:
    """``weights`` as a local file path, or None when it should be a published weights name.

    A path object, a string with a folder separator or a model-file suffix is a path; it must exist.
    """
    path = Path(weights)
    suffixes = {f".{fmt.value}" for fmt in CheckpointFormat} | {".onnx"}
    if isinstance(weights, str) and "/" not in weights and os.sep not in weights and path.suffix not in suffixes:
        return None
    if not path.is_file():
        raise WeightsNotFoundError(f"no checkpoint file at {path}")
    return path


def save_model(
    path: PathLike,
    net: RoPEViT,
    *,
    class_to_idx: Mapping[str, int],
    rgb_stats: Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``net`` as a Birder-compatible checkpoint (format from the suffix).

    ``config`` is the override on top of the network name's config, as the reference stores it.
    """
    size = tuple(net.size)
    ckpt = Checkpoint(
        state=dict(net.state_dict()),
        signature=get_signature((1, 3, *size), net.num_classes),
        class_to_idx=dict(class_to_idx),
        rgb_stats={key: tuple(value) for key, value in rgb_stats.items()},
        config=dict(config) if config is not None else _config_override(net),
        network=getattr(net, "network_name", None),
    )
    return write_checkpoint(path, ckpt)


def _config_override(net: RoPEViT) -> dict[str, Any] | None:
    """What ``net``'s config changes relative to its name's config (None when nothing, or unknown)."""
    name, config = getattr(net, "network_name", None), getattr(net, "config", None)
    if name is None or config is None or not hasattr(config, "diff"):
        return None
    return config.diff(parse_name(registry.resolve_name(name)).config()) or None
