"""The one training loop every recipe runs: accumulation, AMP, clipping, DDP sync, schedules, checkpoints, resume.

A recipe supplies a ``Task``: its modules and optimizers (``Unit``), its data, a loss function for one
micro-batch, what happens after each optimizer step (EMA), evaluation, and its Birder-format artifacts.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from roost.errors import TrainingConfigError
from roost.training.config import RESUME_FREE, RunConfig
from roost.training.data import GlobalBatchSampler, SampleDataset, make_generator
from roost.training.optim import LRSchedule, set_lrs
from roost.training.state import (
    LOG_FILE,
    STATE_FILE,
    CsvLog,
    DistInfo,
    all_reduce_sum,
    barrier,
    check_resumable,
    load_state,
    resolve_device,
    rng_states,
    save_state,
    set_rng_state,
    setup_distributed,
)

Progress = Callable[[dict[str, Any]], None]


@dataclass
class Unit:
    """A module trained by its own optimizer; ``wrapped`` is the DDP / compiled view used for forwards."""

    name: str
    module: nn.Module
    optimizer: torch.optim.Optimizer
    base_lr: float
    find_unused: bool = False
    wrapped: nn.Module = field(init=False)

    def __post_init__(self) -> None:
        self.wrapped = self.module  # until the run wraps it


@dataclass(frozen=True)
class Plan:
    """Sizes of the run as seen by one rank."""

    batches_per_epoch: int
    steps_per_epoch: int
    epochs: int

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    @property
    def total_batches(self) -> int:
        return self.batches_per_epoch * self.epochs


class Task(Protocol):
    name: str
    units: list[Unit]

    @property
    def train_set(self) -> SampleDataset: ...

    def set_plan(self, plan: Plan) -> None: ...
    def collate(self, items: list[Any]) -> Any: ...
    def loss(self, batch: Any, micro: int, step: int) -> tuple[Tensor, dict[str, Tensor]]: ...
    def after_step(self, step: int, micro: int) -> None: ...
    def evaluate(self) -> dict[str, float]: ...
    def save_artifacts(self, out_dir: Path, epoch: int) -> None: ...
    def train_mode(self) -> None: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class Position:
    epoch: int = 0  # epochs completed
    batch: int = 0  # batches of the current epoch completed
    step: int = 0  # optimizer steps completed


@dataclass
class Run:
    cfg: RunConfig
    task: Task
    info: DistInfo
    device: torch.device
    plan: Plan
    schedule: LRSchedule
    scaler: torch.amp.GradScaler
    out_dir: Path
    progress: Progress | None
    log: CsvLog | None = None
    eval_log: CsvLog | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch_sums: dict[str, float] = field(default_factory=dict)  # this epoch's logged step means, summed
    epoch_steps: int = 0


def fit(
    make_task: Callable[[Any, DistInfo, torch.device], Task], cfg: RunConfig, progress: Progress | None = None
) -> list[dict[str, Any]]:
    """Train ``make_task(cfg, info, device)``; return the per-epoch history (mean train metrics, evaluation)."""
    check_out_dir(cfg)
    info = setup_distributed()
    device = resolve_device(cfg.device, info)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    task = make_task(cfg, info, device)
    sampler = GlobalBatchSampler(
        len(task.train_set), cfg.batch_size * info.world, rank=info.rank, world=info.world, seed=cfg.seed
    )
    plan = Plan(len(sampler), math.ceil(len(sampler) / cfg.grad_accum), cfg.epochs)
    task.set_plan(plan)
    run = Run(cfg, task, info, device, plan, _schedule(cfg, plan), _scaler(cfg, device), Path(cfg.out_dir), progress)
    torch.manual_seed(cfg.seed + 1000 * (info.rank + 1))  # per-rank stream for drop-path and the like
    pos = _restore(run) if cfg.resume else Position()
    _wrap(run)
    if info.is_main:
        run.out_dir.mkdir(parents=True, exist_ok=True)
        if not cfg.resume:  # an overwritten run's old state must not be resumed later
            (run.out_dir / STATE_FILE).unlink(missing_ok=True)
        (run.out_dir / "config.json").write_text(cfg.to_json())
        resumed = pos.step if cfg.resume else None
        run.log, run.eval_log = CsvLog(run.out_dir / LOG_FILE, resumed), CsvLog(run.out_dir / "eval.csv", resumed)
    _emit(run, event="start", step=pos.step, total=plan.total_steps, epoch=pos.epoch, epochs=plan.epochs,
          images=len(task.train_set), batches=plan.batches_per_epoch)
    loader = DataLoader(
        task.train_set, batch_sampler=sampler, num_workers=cfg.workers, collate_fn=task.collate,
        generator=make_generator(cfg.seed, 7),
    )
    while pos.epoch < cfg.epochs:
        sampler.set_epoch(pos.epoch, pos.batch)
        if _train_epoch(run, loader, pos):
            return run.history  # stopped by stop_after_steps, state saved
        pos.epoch, pos.batch = pos.epoch + 1, 0
        _end_epoch(run, pos)
        if cfg.stop_after_steps is not None and pos.step >= cfg.stop_after_steps:
            return run.history
    barrier(info)
    return run.history


def check_out_dir(cfg: RunConfig) -> None:
    """A fresh run (neither ``resume`` nor ``overwrite``) needs an ``out_dir`` that is missing or empty."""
    out = Path(cfg.out_dir)
    if cfg.resume or cfg.overwrite or not out.exists():
        return
    if not out.is_dir() or any(out.iterdir()):
        raise TrainingConfigError(
            f"{out} already holds a run: resume it (--resume), start afresh in it (--overwrite) or pick another out_dir"
        )


def _schedule(cfg: RunConfig, plan: Plan) -> LRSchedule:
    per = plan.steps_per_epoch if cfg.lr_update == "step" else 1
    return LRSchedule(
        total=cfg.epochs * per, warmup=round(cfg.warmup_epochs * per), fraction=cfg.cosine_fraction,
        min_lr=cfg.min_lr, kind=cfg.lr_scheduler,
    )


def _scaler(cfg: RunConfig, device: torch.device) -> torch.amp.GradScaler:
    return torch.amp.GradScaler(device.type, enabled=cfg.amp and cfg.amp_dtype == "float16")


def _wrap(run: Run) -> None:
    for unit in run.task.units:
        view = unit.module
        if run.info.enabled:
            ids = [run.device.index] if run.device.type == "cuda" else None
            view = DistributedDataParallel(view, device_ids=ids, find_unused_parameters=unit.find_unused)
        unit.wrapped = cast(nn.Module, torch.compile(view)) if run.cfg.compile else view


def _set_lrs(run: Run, step: int, epoch: int) -> float:
    index = step if run.cfg.lr_update == "step" else epoch
    lrs = [set_lrs(u.optimizer, run.schedule, index, u.base_lr) for u in run.task.units]
    return lrs[0]


def _train_epoch(run: Run, loader: DataLoader, pos: Position) -> bool:
    """Train the rest of epoch ``pos.epoch`` from batch ``pos.batch``; True when told to stop early."""
    cfg, task, plan = run.cfg, run.task, run.plan
    task.train_mode()
    amp_dtype = torch.bfloat16 if cfg.amp_dtype == "bfloat16" else torch.float16
    last_group = (plan.batches_per_epoch - 1) // cfg.grad_accum * cfg.grad_accum
    sums: dict[str, Tensor] = {}
    for b, batch in enumerate(loader, start=pos.batch):
        micro = pos.epoch * plan.batches_per_epoch + b
        group = cfg.grad_accum if b < last_group else plan.batches_per_epoch - last_group
        boundary = (b + 1) % cfg.grad_accum == 0 or b + 1 == plan.batches_per_epoch
        with _no_sync(run, boundary), torch.autocast(run.device.type, amp_dtype, enabled=cfg.amp):
            loss, metrics = task.loss(batch, micro, pos.step)
        run.scaler.scale(loss / group).backward()
        for key, value in {"loss": loss, **metrics}.items():
            sums[key] = sums.get(key, 0) + value.detach().float() / group
        pos.batch = b + 1
        if not boundary:
            continue
        lr = _set_lrs(run, pos.step, pos.epoch)
        grad_norm = _optimizer_step(run)
        pos.step += 1
        task.after_step(pos.step, micro)
        _log_step(run, pos, sums, lr, grad_norm)
        sums = {}
        if pos.batch == plan.batches_per_epoch:
            continue  # the epoch end saves
        if cfg.save_every_steps and pos.step % cfg.save_every_steps == 0:
            _save(run, pos)
        if cfg.stop_after_steps is not None and pos.step >= cfg.stop_after_steps:
            _save(run, pos)
            return True
    return False


def _no_sync(run: Run, boundary: bool) -> contextlib.AbstractContextManager:
    stack = contextlib.ExitStack()
    if not boundary:
        for unit in run.task.units:
            ddp = unit.wrapped if isinstance(unit.wrapped, DistributedDataParallel) else None
            ddp = ddp or getattr(unit.wrapped, "_orig_mod", None)
            if isinstance(ddp, DistributedDataParallel):
                stack.enter_context(ddp.no_sync())
    return stack


def _optimizer_step(run: Run) -> float:
    total_norm = 0.0
    for unit in run.task.units:
        params = [p for p in unit.module.parameters() if p.grad is not None]
        if run.cfg.clip_grad_norm is not None and params:
            run.scaler.unscale_(unit.optimizer)
            total_norm += float(torch.nn.utils.clip_grad_norm_(params, run.cfg.clip_grad_norm))
        run.scaler.step(unit.optimizer)
    run.scaler.update()
    for unit in run.task.units:
        unit.optimizer.zero_grad(set_to_none=True)
    return total_norm


def _log_step(run: Run, pos: Position, sums: dict[str, Tensor], lr: float, grad_norm: float) -> None:
    keys = sorted(sums)
    values = all_reduce_sum(torch.stack([sums[k].cpu() for k in keys]), run.info) / run.info.world
    means = dict(zip(keys, values.tolist(), strict=True))
    for key, value in means.items():
        run.epoch_sums[key] = run.epoch_sums.get(key, 0.0) + value
    run.epoch_steps += 1
    row = {"step": pos.step, "epoch": pos.epoch + 1, "lr": lr, **means}
    if run.cfg.clip_grad_norm is not None:
        row["grad_norm"] = grad_norm
    if run.log is not None and pos.step % run.cfg.log_every == 0:
        run.log.write(row)
    _emit(run, event="step", total=run.plan.total_steps, **row)


def _end_epoch(run: Run, pos: Position) -> None:
    metrics = run.task.evaluate()
    train = {"train_loss" if k == "loss" else k: v / max(run.epoch_steps, 1) for k, v in run.epoch_sums.items()}
    run.epoch_sums, run.epoch_steps = {}, 0
    run.history.append({"step": pos.step, "epoch": pos.epoch, **train, **metrics})
    if run.info.is_main:
        if metrics and run.eval_log is not None:
            run.eval_log.write({"step": pos.step, "epoch": pos.epoch, **metrics})
        run.task.save_artifacts(run.out_dir, pos.epoch)
    _save(run, pos)
    _emit(run, event="epoch", epochs=run.plan.epochs, **run.history[-1])


def _save(run: Run, pos: Position) -> None:
    rng = rng_states(run.info)  # collective: every rank takes part
    if run.info.is_main:
        state = {
            "config": run.cfg.to_dict(),
            "position": {"epoch": pos.epoch, "batch": pos.batch, "step": pos.step},
            "task": run.task.state_dict(),
            "optimizers": {u.name: u.optimizer.state_dict() for u in run.task.units},
            "scaler": run.scaler.state_dict(),
            "rng": rng,
            "epoch_metrics": {"sums": run.epoch_sums, "steps": run.epoch_steps},
        }
        save_state(run.out_dir / STATE_FILE, state)
    barrier(run.info)


def _restore(run: Run) -> Position:
    state = load_state(run.out_dir / STATE_FILE)
    check_resumable(state["config"], run.cfg.to_dict(), RESUME_FREE)
    run.task.load_state_dict(state["task"])
    for unit in run.task.units:
        unit.optimizer.load_state_dict(state["optimizers"][unit.name])
    if state["scaler"]:
        run.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"], run.info)
    run.epoch_sums = dict(state["epoch_metrics"]["sums"])
    run.epoch_steps = int(state["epoch_metrics"]["steps"])
    return Position(**state["position"])


def _emit(run: Run, **event: Any) -> None:
    if run.progress is not None and run.info.is_main:
        run.progress(event)
