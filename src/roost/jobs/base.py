"""What every batch job shares: run options (validated), progress events, the ``Job`` protocol, the summary.

A job (``orient.py``, ``predict.py``, ``embed.py``) says what it needs from the model, the columns of its
report, the values of one row, how a row found in an existing report resumes, and what it does after each
batch before that batch's rows are written (the orientation fixes). Engines (``local.py``, ``ray.py``) run
any job; ``engine.py`` holds the loop they share.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import torch

from roost.errors import JobOptionError

if TYPE_CHECKING:
    from roost.jobs.inputs import Item

Row = dict[str, Any]
Output = Literal["probs", "embedding"]


class Dtype(StrEnum):
    """The precision a model runs in (``model.py`` implements each)."""

    FP32 = "fp32"  # exact
    BF16 = "bf16"  # float32 weights, bfloat16 autocast
    FP16 = "fp16"  # float32 weights, float16 autocast
    BF16_HELD = "bf16-held"  # weights and activations in bfloat16; the head (final norm, pool, classifier) in fp32
    AUTO = "auto"  # picked for the device by ``model.resolve_dtype``


class Compile(StrEnum):
    """Whether the model's embedding runs under ``torch.compile``; auto: where the run repays compiling."""

    OFF = "off"
    ON = "on"
    AUTO = "auto"


class Backend(StrEnum):
    TORCH = "torch"
    ORT = "ort"
    ORT_INT8 = "ort-int8"


def default_workers(device: torch.device | None = None) -> int:
    """Decoding processes for this machine and device (None: CUDA when available, else CPU), at least 1.

    On CPU the model needs the cores: one is left to it, and at most 4 decode. On a GPU the model outruns
    any one decoder (a camera JPEG takes a core about 0.3 s, a batch of them the GPU milliseconds), so
    every core but one decodes, at most 16.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    most = 16 if (device or check_device(None)).type == "cuda" else 4
    return max(1, min(cpus - 1, most))


@dataclass(frozen=True)
class RunOptions:
    """How a job runs: batching, decoding workers, device, precision, JPEG draft decoding, model backend."""

    batch_size: int = 16
    workers: int = field(default_factory=default_workers)  # sized from this machine
    device: str | None = None  # None: CUDA when available, else CPU
    dtype: Dtype = Dtype.FP32
    draft: bool = True
    compile: Compile = Compile.OFF  # True and False are taken for on and off
    recursive: bool = False
    backend: Backend = Backend.TORCH
    network: str | None = None  # for checkpoint files that do not record their network

    def __post_init__(self) -> None:
        _at_least("batch_size", self.batch_size, 1)
        _at_least("workers", self.workers, 0)
        object.__setattr__(self, "dtype", _member(Dtype, "dtype", self.dtype))
        if isinstance(self.compile, bool):
            object.__setattr__(self, "compile", Compile.ON if self.compile else Compile.OFF)
        object.__setattr__(self, "compile", _member(Compile, "compile", self.compile))
        object.__setattr__(self, "backend", _member(Backend, "backend", self.backend))
        if self.backend is not Backend.TORCH and self.dtype not in (Dtype.FP32, Dtype.AUTO):
            raise JobOptionError(f"backend {self.backend.value!r} runs in fp32; leave dtype at fp32")
        if self.backend is not Backend.TORCH and self.compile is Compile.ON:
            raise JobOptionError(f"compile applies to the torch backend, not {self.backend.value!r}")
        self.torch_device()  # validates

    def torch_device(self) -> torch.device:
        return check_device(self.device)


def check_device(name: str | None) -> torch.device:
    """The torch device ``name`` (None: CUDA when available, else CPU), checked to exist on this machine."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise JobOptionError(f"device {name!r} is not a torch device (try cpu, cuda, cuda:1, mps)") from None
    available = {
        "cpu": lambda: True,
        "cuda": lambda: torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count(),
        "mps": lambda: torch.backends.mps.is_available(),
    }
    if not available.get(device.type, lambda: False)():
        where = "cuda" if device.type == "cuda" and torch.cuda.is_available() else "cpu"
        raise JobOptionError(f"device {name!r} is not available on this machine; use device={where!r}")
    return device


def _at_least(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise JobOptionError(f"{name} must be a whole number >= {low}, got {value!r}")


def _member(enum: type[StrEnum], name: str, value: Any) -> Any:
    try:
        return enum(value)
    except ValueError:
        raise JobOptionError(f"{name} must be one of {', '.join(m.value for m in enum)}; got {value!r}") from None


def check_fraction(name: str, value: float) -> float:
    """``value`` as a float in [0, 1] (NaN refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise JobOptionError(f"{name} must be a number from 0 to 1, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------------- events
@dataclass(frozen=True)
class Started:
    job: str
    total: int  # inputs of this run
    done_before: int  # of which an earlier run already finished


@dataclass(frozen=True)
class Advanced:
    rows: int


@dataclass(frozen=True)
class Note:
    """A one-line message for the user (what precision was picked, an ONNX export cached, …)."""

    text: str


@dataclass(frozen=True)
class Downloading:
    """Bytes of a weights file downloaded so far (``total`` None when the server does not say)."""

    name: str
    done: int
    total: int | None


Event = Started | Advanced | Note | Downloading
OnEvent = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The default event handler: progress goes nowhere."""


@dataclass
class Summary:
    """What one run did: counts by outcome, and the report written."""

    job: str
    done_before: int = 0
    processed: int = 0
    errors: int = 0
    earlier_errors: int = 0  # inputs done before whose row has an error (not retried)
    counts: dict[str, int] = field(default_factory=dict)  # job-specific (orient: rotated, fixed)
    report: str | None = None

    def line(self) -> str:
        extra = "".join(f", {n} {name}" for name, n in self.counts.items())
        where = f"; report: {self.report}" if self.report else ""
        earlier = f" (+{self.earlier_errors} from earlier runs)" if self.earlier_errors else ""
        counts = f"{self.processed} processed{extra}, {self.errors} errors{earlier}, {self.done_before} done before"
        return f"{self.job}: {counts}{where}"


# ---------------------------------------------------------------------------------- jobs
@dataclass
class Computed:
    """One computed batch: its items, the output of each decoded one (by position), errors by position."""

    items: list[Item]
    outputs: dict[int, np.ndarray]
    errors: dict[int, str]


Source = Callable[["list[Item]"], Iterator[Computed]]
"""An engine: computes the given items, yielding batches in any order."""


@dataclass(frozen=True)
class ModelFacts:
    """What a job checks about the loaded model and needs for its rows."""

    name: str
    class_names: list[str]
    embedding_size: int | None


class Job:
    """A batch job: subclasses set ``name`` and ``output`` and define ``bind`` and ``values``.

    The defaults suit a job without side effects: a reported row is done, nothing to recover or tally.
    """

    name: str
    output: Output  # the model output the job's rows are made of
    schema: pa.Schema  # set by bind: path first, error last

    def bind(self, model: ModelFacts) -> pa.Schema:
        """Check that the model suits the job; set and return the report schema."""
        raise NotImplementedError

    def values(self, output: np.ndarray) -> Row:
        """The row values (between path and error) of one decoded image, from its model output."""
        raise NotImplementedError

    def error_row(self, key: str, error: str) -> Row:
        return {name: None for name in self.schema.names} | {"path": key, "error": error}

    def state_columns(self) -> Sequence[str]:
        """The columns :meth:`resume` and :meth:`after_batch` need from an existing report."""
        return ("path", "error")

    def resume(self, row: Row) -> Literal["done", "rerun", "effect"]:
        """For the current row of a key in an existing report: skip it, compute it again, or redo its effect."""
        return "done"

    def recover(self, state: dict[str, Row]) -> list[Row]:
        """Rows to write before anything else, from what a killed run left behind (its fix journal)."""
        return []

    def after_batch(self, rows: list[Row], items: Sequence[Item]) -> None:
        """Side effects of a batch (fixes), recorded in its rows, before the rows are written."""

    def tally(self, rows: Sequence[Row], counts: dict[str, int]) -> None:
        """Add this batch to the job's own counts of the summary."""
