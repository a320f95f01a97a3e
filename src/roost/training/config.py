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
from typing import Any, ClassVar, Literal, TypeVar

from roost.errors import TrainingConfigError

C = TypeVar("C", bound="RunConfig")


@dataclass(frozen=True)
class Range:
    """The values an option allows: an interval, open or closed at each end (``None``: unbounded)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


POSITIVE = Range(1)  # counts: epochs, batch size, steps
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1)
OPEN_FRACTION = Range(0, 1, low_open=True)  # (0, 1]


def check_ranges(cfg: Any, ranges: Mapping[str, Range]) -> None:
    """TrainingConfigError naming the first option outside its range; unset (None) options pass."""
    for name, allowed in ranges.items():
        value = getattr(cfg, name)
        values = value if isinstance(value, tuple) else (value,)
        if any(v is not None and v not in allowed for v in values):
            raise TrainingConfigError(f"{name} must be {allowed}, got {value!r}")


def as_lists(cfg: Any, *names: str) -> None:
    """Wrap a single path given as a string (``data_path="train/"``) in a list, on a frozen dataclass."""
    for name in names:
        if isinstance(getattr(cfg, name), str):
            object.__setattr__(cfg, name, [getattr(cfg, name)])


@dataclass(frozen=True)
class RunConfig:
    """Shared training options (Birder flag names in comments where they differ).

    ``batch_size`` is per process (Birder's per-GPU ``--batch-size``): the global batch is batch_size·world.
    ``warmup_epochs`` may be fractional. ``lr_update`` picks per-step or per-epoch scheduler updates.
    ``lr = 0`` is allowed (the weights stay put; statistics and EMA buffers still update). A fresh run refuses
    an ``out_dir`` that already holds files unless ``resume`` (continue it) or ``overwrite`` (start afresh in it).
    """

    RANGES: ClassVar[dict[str, Range]] = {
        "epochs": POSITIVE, "batch_size": POSITIVE, "grad_accum": POSITIVE, "lr": NON_NEGATIVE,
        "betas": Range(0, 1, high_open=True), "momentum": FRACTION, "wd": NON_NEGATIVE, "norm_wd": NON_NEGATIVE,
        "layer_decay": OPEN_FRACTION, "min_lr": NON_NEGATIVE, "warmup_epochs": NON_NEGATIVE,
        "cosine_fraction": OPEN_FRACTION, "clip_grad_norm": Range(0, low_open=True), "size": POSITIVE,
        "aug_level": Range(0, 10), "min_scale": OPEN_FRACTION, "re_prob": FRACTION, "workers": NON_NEGATIVE,
        "save_every_steps": NON_NEGATIVE, "stop_after_steps": POSITIVE, "log_every": POSITIVE,
    }

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
    overwrite: bool = False
    log_every: int = 1

    def __post_init__(self) -> None:
        check_ranges(self, RunConfig.RANGES)
        if self.warmup_epochs > self.epochs:
            raise TrainingConfigError(f"warmup_epochs must be in [0, epochs={self.epochs}], got {self.warmup_epochs}")
        if self.resume and self.overwrite:
            raise TrainingConfigError("resume continues the run in out_dir and overwrite starts afresh: give one")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# Options that may change between an interrupted run and its resumption.
RESUME_FREE = frozenset(
    {"resume", "overwrite", "stop_after_steps", "workers", "device", "compile", "log_every", "save_every_steps"}
)


def build_config(cls: type[C], toml_path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> C:
    """``cls`` from a TOML file (flat table; a ``[train]`` table also works) updated with ``overrides``."""
    values: dict[str, Any] = {}
    if toml_path is not None:
        with open(toml_path, "rb") as fh:
            try:
                data = tomllib.load(fh)
            except tomllib.TOMLDecodeError as err:
                raise TrainingConfigError(f"{toml_path} is not valid TOML: {err}") from err
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
    try:
        return _coerce_value(name, value, hint)
    except ValueError as err:  # int("abc"), a tuple of the wrong length
        raise TrainingConfigError(f"option {name}={value!r} does not fit type {_type_name(hint)}") from err


def _coerce_value(name: str, value: Any, hint: Any) -> Any:
    is_union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    options = typing.get_args(hint) if is_union else (hint,)
    if value is None:
        return None
    for option in options:
        origin = typing.get_origin(option)
        if origin is tuple and isinstance(value, list | tuple):
            return tuple(_coerce_value(name, v, a) for v, a in zip(value, typing.get_args(option), strict=True))
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
    raise TrainingConfigError(f"option {name}={value!r} does not fit type {_type_name(hint)}")


def _type_name(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
