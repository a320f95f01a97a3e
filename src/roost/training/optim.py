"""Parameter groups, layer-wise LR decay, optimisers and the pure LR / momentum schedules (training.md §1.6, §3.3).

Schedules are plain functions of the step index, so a scheduler's whole state is one integer and resuming is
exact by construction.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from roost.errors import TrainingConfigError

BLOCK_REGEX = r"encoder\.block\.(\d+)"
_NORM_TYPES = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d)
OptimizerName = Literal["adamw", "sgd", "lamb", "lambw"]


def _norm_param_names(model: nn.Module) -> set[str]:
    names = set()
    for mod_name, module in model.named_modules():
        if isinstance(module, _NORM_TYPES) or type(module).__name__.endswith(("Norm", "RMSNorm", "LayerNorm")):
            names.update(f"{mod_name}.{p}" if mod_name else p for p, _ in module.named_parameters(recurse=False))
    return names


def layer_ids(names: list[str], block_regex: str = BLOCK_REGEX) -> list[int]:
    """Group index per parameter in module order: contiguous non-block runs form their own group (spec §3.3)."""
    ids, group, last_key = [], -1, None
    pattern = re.compile(block_regex)
    for name in names:
        match = pattern.search(name)
        key = ("block", match.group(1)) if match else ("other", None)
        if key != last_key:
            group += 1
            last_key = key
        ids.append(group)
    return ids


def param_groups(
    model: nn.Module,
    *,
    weight_decay: float,
    norm_weight_decay: float | None = None,
    layer_decay: float | None = None,
    layer_decay_min_scale: float = 0.0,
    block_regex: str = BLOCK_REGEX,
) -> list[dict[str, Any]]:
    """Trainable parameters grouped by (weight decay, LR scale); each group carries ``lr_scale``.

    With ``layer_decay`` d and L groups, group g gets scale max(min_scale, d^(L-1-g)).
    """
    named = list(model.named_parameters())
    norm_names = _norm_param_names(model)
    ids = layer_ids([n for n, _ in named], block_regex)
    num_layers = max(ids) + 1 if ids else 1
    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for (name, param), layer in zip(named, ids, strict=True):
        if not param.requires_grad:
            continue
        wd = norm_weight_decay if norm_weight_decay is not None and name in norm_names else weight_decay
        scale = 1.0 if layer_decay is None else max(layer_decay_min_scale, layer_decay ** (num_layers - 1 - layer))
        group = groups.setdefault((wd, scale), {"params": [], "weight_decay": wd, "lr_scale": scale})
        group["params"].append(param)
    return list(groups.values())


@dataclass(frozen=True)
class OptimizerSpec:
    name: OptimizerName = "adamw"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9
    nesterov: bool = False


def build_optimizer(groups: list[dict[str, Any]], spec: OptimizerSpec) -> torch.optim.Optimizer:
    for group in groups:
        group["lr"] = spec.lr * group.get("lr_scale", 1.0)
    if spec.name == "adamw":
        return torch.optim.AdamW(groups, lr=spec.lr, betas=spec.betas, eps=spec.eps)
    if spec.name == "sgd":
        return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov)
    if spec.name in ("lamb", "lambw"):
        return Lamb(groups, lr=spec.lr, betas=spec.betas, decoupled=spec.name == "lambw")
    raise TrainingConfigError(f"unknown optimizer {spec.name!r}; expected adamw, sgd, lamb or lambw")


class Lamb(torch.optim.Optimizer):
    """LAMB (You et al., arXiv 1904.00962) as timm / Birder ``lamb`` (``lambw``: ``decoupled=True``).

    The global gradient norm is first clipped to ``max_grad_norm``; the Adam step (with bias correction) gets
    the weight decay added (or applied to the weights directly when decoupled), then each tensor's step is
    scaled by the trust ratio ‖w‖ / ‖step‖ (1 where either norm is 0). Tensors of a group without weight
    decay (norms, biases with ``norm_wd=0``) are not adapted, as in the reference (``always_adapt=False``).
    """

    def __init__(self, params: Any, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6,
                 weight_decay: float = 0.01, max_grad_norm: float | None = 1.0, decoupled: bool = False) -> None:
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "decoupled": decoupled}
        super().__init__(params, defaults)
        self.max_grad_norm = max_grad_norm

    def _grad_scale(self) -> torch.Tensor | float:
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        if self.max_grad_norm is None or not grads:
            return 1.0
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        return (norm / self.max_grad_norm).clamp(min=1.0)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = closure() if closure is not None else None
        scale = self._grad_scale()
        for group in self.param_groups:
            for p in (p for p in group["params"] if p.grad is not None):
                self._update(p, p.grad / scale, group)
        return loss

    def _update(self, p: torch.Tensor, grad: torch.Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        if not state:
            state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
        (beta1, beta2), wd, lr = group["betas"], group["weight_decay"], group["lr"]
        state["step"] += 1
        state["exp_avg"].lerp_(grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (state["exp_avg_sq"] / (1 - beta2 ** state["step"])).sqrt_().add_(group["eps"])
        update = state["exp_avg"] / (1 - beta1 ** state["step"]) / denom
        if wd != 0 and group["decoupled"]:
            p.mul_(1 - lr * wd)
        elif wd != 0:
            update.add_(p, alpha=wd)
        if wd != 0:
            w_norm, u_norm = p.norm(), update.norm()
            update.mul_(torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, 1.0))
        p.add_(update, alpha=-lr)


@dataclass(frozen=True)
class LRSchedule:
    """Linear warmup from ``warmup_decay``·base, then a (possibly truncated) cosine to ``min_lr``.

    ``total`` and ``warmup`` count scheduler updates (optimizer steps, or epochs with per-epoch updates);
    ``fraction`` < 1 stops the cosine early (CAPI's 0.8), T_max = round((total - warmup - 1) / fraction).
    ``kind="constant"`` keeps the base LR after warmup.
    """

    total: int
    warmup: int = 0
    warmup_decay: float = 0.01
    fraction: float = 1.0
    min_lr: float = 0.0
    kind: Literal["cosine", "constant"] = "cosine"

    def lr(self, step: int, base: float) -> float:
        if step < self.warmup:
            return base * (self.warmup_decay + (1 - self.warmup_decay) * step / self.warmup)
        if self.kind == "constant":
            return base
        t_max = round((self.total - self.warmup - 1) / self.fraction)
        if t_max <= 0:
            return base
        progress = min(step - self.warmup, t_max) / t_max
        return self.min_lr + (base - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def set_lrs(optimizer: torch.optim.Optimizer, schedule: LRSchedule, step: int, base_lr: float) -> float:
    """Set every group's LR for scheduler update ``step``; return the unscaled LR."""
    for group in optimizer.param_groups:
        group["lr"] = schedule.lr(step, base_lr * group.get("lr_scale", 1.0))
    return schedule.lr(step, base_lr)


def teacher_momentum(t: int, total: int, warmup: int, m0: float, fraction: float = 1.0) -> float:
    """CAPI's teacher EMA momentum at micro-batch ``t`` (spec §1.6): 1 -> m0 linearly, then cosine back toward 1."""
    if t < warmup:
        return 1.0 + (m0 - 1.0) * t / warmup
    span = max(total - warmup, 1)
    return 1.0 - (1.0 - m0) * 0.5 * (1 + math.cos(math.pi * fraction * (t - warmup) / span))
