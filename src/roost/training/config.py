"""The options every trainer shares, as a frozen dataclass; recipes subclass it. TOML files and ``key=value``
overrides map onto the same fields, so a run is described by one flat table."""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from roost.errors import TrainingConfigError

C = TypeVar("C", bound="RunConfig")


@dataclass(frozen=True)
class RunConfig:
    """Shared training options (Birder flag names in comments where they differ).

    ``batch_size`` is per process (Birder's per-GPU ``--batch-size``): the global batch is batch_size·world.
    ``warmup_epochs`` may be fractional. ``lr_update`` picks per-step or per-epoch scheduler updates.
    """

    out_dir: str = "runs/roost"
    epochs: int = 10
    batch_size: int = 32
    grad_accum: int = 1  # --grad-accum-steps
    opt: Literal["adamw", "sgd", "lamb", "lambw"] = "adamw"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)  # --opt-betas
    momentum: float = 0.9  # SGD
    wd: float = 1e-4
    norm_wd: float | None = None
    layer_decay: float | None = None
    min_lr: float = 0.0  # --lr-cosine-min
    warmup_epochs: float = 0.0
    lr_update: Literal["step", "epoch"] = "epoch"  # --lr-scheduler-update
    lr_scheduler: Literal["cosine", "constant"] = "cosine"
    cosine_fraction: float = 1.0  # --lr-cosine-fraction
    clip_grad_norm: float | None = None
    amp: bool = False
    amp_dtype: Literal["bfloat16", "float16"] = "bfloat16"
    compile: bool = False
    size: int = 224
    rgb_mode: str = "birder"
    aug_level: int = 4
    min_scale: float | None = None  # --resize-min-scale
    re_prob: float | None = None
    grayscale: bool = False  # --use-grayscale
    seed: int = 0
    workers: int = 0  # -j
    device: str = "auto"
    save_every_steps: int = 0  # also save the training state every N optimizer steps (0: epoch ends only)
    stop_after_steps: int | None = None  # stop (saving the state) after N optimizer steps: planned interruptions
    resume: bool = False
    log_every: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise TrainingConfigError("epochs, batch_size and grad_accum must be >= 1")
        if self.lr <= 0:
            raise TrainingConfigError(f"lr must be positive, got {self.lr}")
        if self.warmup_epochs < 0 or self.warmup_epochs > self.epochs:
            raise TrainingConfigError(f"warmup_epochs must be in [0, epochs], got {self.warmup_epochs}")
        if not 0 < self.cosine_fraction <= 1:
            raise TrainingConfigError(f"cosine_fraction must be in (0, 1], got {self.cosine_fraction}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# Options that may change between an interrupted run and its resumption.
RESUME_FREE = frozenset({"resume", "stop_after_steps", "workers", "device", "compile", "log_every", "save_every_steps"})


def build_config(cls: type[C], toml_path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> C:
    """``cls`` from a TOML file (flat table; a ``[train]`` table also works) updated with ``overrides``."""
    values: dict[str, Any] = {}
    if toml_path is not None:
        with open(toml_path, "rb") as fh:
            data = tomllib.load(fh)
        values.update(data.get("train", data))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise TrainingConfigError(f"unknown option(s) {unknown} for {cls.__name__}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _coerce(k, v, hints[k]) for k, v in values.items()})


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lr=1e-3", "betas=[0.9,0.95]"]`` -> {"lr": 0.001, "betas": [0.9, 0.95]} (values parsed as TOML)."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise TrainingConfigError(f"override {item!r} is not key=value")
        try:
            out[key.strip().replace("-", "_")] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip().replace("-", "_")] = raw
    return out


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Lists to tuples, ints to floats, strings to numbers where the field's type asks for it."""
    is_union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    options = typing.get_args(hint) if is_union else (hint,)
    if value is None:
        return None
    for option in options:
        origin = typing.get_origin(option)
        if origin is tuple and isinstance(value, list | tuple):
            return tuple(_coerce(name, v, a) for v, a in zip(value, typing.get_args(option), strict=True))
        if option is float and isinstance(value, int | float | str) and not isinstance(value, bool):
            return float(value)
        if option is int and isinstance(value, int | str) and not isinstance(value, bool):
            return int(value)
        if option is bool and isinstance(value, bool | str):
            return value if isinstance(value, bool) else value.lower() in ("1", "true", "yes")
        if option is str and isinstance(value, str):
            return value
        if origin is Literal and value in typing.get_args(option):
            return value
        if origin is dict and isinstance(value, dict):
            return dict(value)
        if origin is list and isinstance(value, list | str):
            return [value] if isinstance(value, str) else list(value)
    raise TrainingConfigError(f"option {name}={value!r} does not fit type {hint}")
