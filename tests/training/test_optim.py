"""Parameter groups, layer decay and the LR / momentum schedules against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from roost.errors import TrainingConfigError
from roost.models.registry import create_model
from roost.training.optim import (
    Lamb,
    LRSchedule,
    OptimizerSpec,
    build_optimizer,
    layer_ids,
    param_groups,
    teacher_momentum,
)
from tests.training.conftest import TINY


def test_layer_ids_follow_module_order() -> None:
    names = ["cls", "pos", "conv.w", "encoder.block.0.a", "encoder.block.0.b", "encoder.block.1.a", "norm.w", "head.w"]
    assert layer_ids(names) == [0, 0, 0, 1, 1, 2, 3, 3]


def test_layer_decay_scales_and_norm_wd() -> None:
    net = create_model("rope_vit_reg4_b14", 4, size=28, config=TINY)
    groups = param_groups(net, weight_decay=0.05, norm_weight_decay=0.0, layer_decay=0.5)
    scale_of = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    wd_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    named = dict(net.named_parameters())
    # 4 groups: [tokens, pos, patch conv], block 0, block 1, [norm, classifier] -> 0.5^3, 0.5^2, 0.5, 1
    assert scale_of[id(named["pos_embedding"])] == 0.125
    assert scale_of[id(named["encoder.block.0.attn.qkv.weight"])] == 0.25
    assert scale_of[id(named["encoder.block.1.mlp.0.weight"])] == 0.5
    assert scale_of[id(named["classifier.weight"])] == 1.0
    assert wd_of[id(named["encoder.block.0.norm1.weight"])] == 0.0
    assert wd_of[id(named["encoder.block.0.norm1.bias"])] == 0.0
    assert wd_of[id(named["encoder.block.0.attn.qkv.bias"])] == 0.05
    opt = build_optimizer(groups, OptimizerSpec("adamw", lr=1e-3))
    assert sorted({g["lr"] for g in opt.param_groups}) == [1.25e-4, 2.5e-4, 5e-4, 1e-3]


def test_frozen_parameters_are_skipped() -> None:
    net = create_model("rope_vit_reg4_b14", 4, size=28, config=TINY)
    net.freeze(freeze_classifier=False)
    groups = param_groups(net, weight_decay=0.0)
    assert sum(p.numel() for g in groups for p in g["params"]) == 4 * 64 + 4
    with pytest.raises(TrainingConfigError):
        build_optimizer(groups, OptimizerSpec("lion"))  # type: ignore[arg-type]


def test_warmup_is_a_linear_ramp_from_one_percent() -> None:
    s = LRSchedule(total=100, warmup=10)
    assert s.lr(0, 1.0) == pytest.approx(0.01)
    assert s.lr(5, 1.0) == pytest.approx(0.01 + 0.99 * 0.5)
    assert s.lr(10, 1.0) == pytest.approx(1.0)


def test_cosine_ends_at_min_and_truncated_cosine_at_0955() -> None:
    full = LRSchedule(total=10, min_lr=1e-7)  # per-epoch Places365 probe: T_max = 9
    assert full.lr(9, 7e-4) == pytest.approx(1e-7)
    assert full.lr(4, 1.0) == pytest.approx(1e-7 + (1 - 1e-7) * 0.5 * (1 + math.cos(math.pi * 4 / 9)))
    capi = LRSchedule(total=1001, warmup=100, fraction=0.8)  # T_max = round(900 / 0.8) = 1125
    assert capi.lr(1000, 1.0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.8)))
    assert capi.lr(1000, 1.0) == pytest.approx(0.0955, abs=1e-4)


def test_teacher_momentum_schedule() -> None:
    assert teacher_momentum(0, 1000, 100, 0.999) == 1.0
    assert teacher_momentum(50, 1000, 100, 0.999) == pytest.approx(0.9995)
    assert teacher_momentum(100, 1000, 100, 0.999) == pytest.approx(0.999)
    assert teacher_momentum(1000, 1000, 100, 0.999, fraction=0.8) == pytest.approx(0.999904, abs=1e-6)
    assert teacher_momentum(1000, 1000, 100, 0.999, fraction=1.0) == pytest.approx(1.0)


def _lamb_step(wd: float, decoupled: bool, grad: list[float]) -> tuple[torch.Tensor, Lamb]:
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    w.grad = torch.tensor(grad)
    opt = Lamb([{"params": [w], "weight_decay": wd}], lr=0.1, eps=1e-12, decoupled=decoupled)
    opt.step()
    return w.detach(), opt


def test_lamb_trust_ratio_by_hand() -> None:
    # step 1: Adam step m̂/√v̂ = sign(g) = [1, 0]; + wd·w = [1.3, 0.4]; trust = ‖w‖ / ‖step‖ = 5 / √1.85
    w, _ = _lamb_step(0.1, False, [0.5, 0.0])
    trust = 5 / math.sqrt(1.85)
    assert torch.allclose(w, torch.tensor([3 - 0.1 * trust * 1.3, 4 - 0.1 * trust * 0.4]))


def test_lamb_without_weight_decay_is_not_adapted() -> None:
    w, _ = _lamb_step(0.0, False, [0.5, 0.0])  # norms / biases: a plain Adam step
    assert torch.allclose(w, torch.tensor([2.9, 4.0]))


def test_lambw_decays_the_weights_first_and_clips_the_global_norm() -> None:
    w, opt = _lamb_step(0.1, True, [10.0, 0.0])
    decayed = torch.tensor([3.0, 4.0]) * (1 - 0.1 * 0.1)
    assert torch.allclose(w, decayed - 0.1 * decayed.norm() * torch.tensor([1.0, 0.0]))
    state = next(iter(opt.state.values()))
    assert torch.allclose(state["exp_avg"], torch.tensor([0.1, 0.0]))  # gradient clipped to norm 1 first


def test_build_optimizer_names() -> None:
    def groups() -> list[dict]:
        return [{"params": [torch.nn.Parameter(torch.zeros(2))], "weight_decay": 0.0}]

    assert build_optimizer(groups(), OptimizerSpec("lamb")).param_groups[0]["decoupled"] is False
    assert build_optimizer(groups(), OptimizerSpec("lambw")).param_groups[0]["decoupled"] is True
    with pytest.raises(TrainingConfigError):
        build_optimizer(groups(), OptimizerSpec("lars"))  # type: ignore[arg-type]
