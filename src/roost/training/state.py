"""Run state: distributed setup, model EMA, the training-state file (exact resume) and the CSV log (training.md §4).

The training-state file holds everything a run needs to continue bit-identically: raw weights of every
module, optimizer and GradScaler states, the EMA, each rank's torch RNG states and the data position
(epoch, batch). LR schedules are pure functions of the step, so the step count is their whole state.
"""

from __future__ import annotations

import copy
import csv
import io
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn

from roost.errors import ResumeError
from roost.files.atomic import atomic_target, atomic_write

M = TypeVar("M", bound=nn.Module)

STATE_FILE = "training_state.pt"
LOG_FILE = "log.csv"


# ------------------------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup_distributed(env: Mapping[str, str] | None = None, backend: str | None = None) -> DistInfo:
    """Join the process group torchrun describes (RANK / WORLD_SIZE / LOCAL_RANK); gloo on CPU, NCCL on GPU."""
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(env["RANK"]), world, int(env.get("LOCAL_RANK", "0")))
    if not torch_dist.is_initialized():
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        torch_dist.init_process_group(backend, rank=info.rank, world_size=world)
    return info


def teardown_distributed() -> None:
    """Leave the process group ``setup_distributed`` joined (a no-op in a single process)."""
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def resolve_device(name: str, info: DistInfo) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{info.local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(name)


def all_reduce_sum(t: Tensor, info: DistInfo) -> Tensor:
    if info.enabled:
        torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
    return t


def barrier(info: DistInfo) -> None:
    if info.enabled:
        torch_dist.barrier()


# ------------------------------------------------------------------------------------------------- EMA


@torch.no_grad()
def ema_update_(target: Iterable[Tensor], source: Iterable[Tensor], momentum: float) -> None:
    """target ← m·target + (1 − m)·source, in place (CAPI teacher, model EMA)."""
    target, source = list(target), list(source)
    torch._foreach_mul_(target, momentum)  # pyright: ignore[reportPrivateImportUsage]  (the fused multi-tensor path)
    torch._foreach_add_(target, source, alpha=1.0 - momentum)  # pyright: ignore[reportPrivateImportUsage]


class ModelEma(Generic[M]):
    """An averaged copy (parameters and float buffers) updated every ``every`` optimizer steps.

    During the first ``warmup`` optimizer steps it copies the weights (spec §3.3).
    """

    def __init__(self, model: M, decay: float, every: int = 32, warmup: int = 0) -> None:
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.every, self.warmup = decay, every, warmup
        self.num_updates = 0

    def _tensors(self, model: nn.Module) -> list[Tensor]:
        return [t for t in model.state_dict().values() if t.dtype.is_floating_point]

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        if step % self.every:
            return
        self.num_updates += 1
        momentum = 0.0 if step <= self.warmup else self.decay
        ema_update_(self._tensors(self.module), self._tensors(model), momentum)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "num_updates": self.num_updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state["num_updates"])


def effective_ema_decay(decay: float, world: int, batch: int, accum: int, every: int, epochs: int) -> float:
    """Birder's decay per EMA update: 1 − min(1, (1 − decay)·world·batch·accum·every / epochs)."""
    return 1.0 - min(1.0, (1.0 - decay) * world * batch * accum * every / epochs)


# --------------------------------------------------------------------------------------- training state


def rng_states(info: DistInfo) -> list[dict[str, Tensor]]:
    """Every rank's torch CPU (and CUDA) RNG state, gathered on all ranks."""
    mine = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        mine["cuda"] = torch.cuda.get_rng_state()
    if not info.enabled:
        return [mine]
    gathered: list[Any] = [None] * info.world
    torch_dist.all_gather_object(gathered, mine)
    return gathered


def set_rng_state(states: list[dict[str, Tensor]], info: DistInfo) -> None:
    if len(states) != info.world:
        raise ResumeError(f"the state holds RNG states of {len(states)} ranks; this run has {info.world}")
    state = states[info.rank]
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_target(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ResumeError(f"no training state at {path}; start without resume")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError) as err:
        raise ResumeError(f"{path} is not a readable training state: {err}") from err


def check_resumable(saved: Mapping[str, Any], current: Mapping[str, Any], free: Iterable[str]) -> None:
    """Refuse to resume with options that change what the run computes."""
    changed = sorted(k for k in set(saved) | set(current) if k not in free and saved.get(k) != current.get(k))
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise ResumeError(f"the run was started with other options ({diffs}); use a new out_dir")


# ------------------------------------------------------------------------------------------------ log


class CsvLog:
    """Appends one row per logged step; on resume, drops rows past the resumed step (a crash leaves some)."""

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        self.fields: list[str] | None = None
        if resume_step is not None and path.is_file():
            with open(path, newline="") as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
            self._rewrite(rows)
        elif path.exists():
            path.unlink()

    def _rewrite(self, rows: list[dict[str, str]]) -> None:
        if not rows:
            self.path.unlink(missing_ok=True)
            return
        self.fields = list(rows[0])
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, self.fields)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(self.path, text.getvalue().encode())

    def write(self, row: Mapping[str, Any]) -> None:
        new = self.fields is None
        fields = self.fields = list(row) if self.fields is None else self.fields
        with open(self.path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
