"""CAPI pieces against hand-computed values, and a tiny run whose loss falls and whose teacher file loads."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from roost.training.capi import (
    CapiConfig,
    L2NormLinear,
    OnlineClustering,
    capi_loss,
    select_targets,
    sincos_embedding,
    sinkhorn_knopp,
    train_capi,
)
from roost.weights.load import load_model
from tests.training.conftest import TINY


def test_sinkhorn_one_iteration_by_hand() -> None:
    # exp(logits) = [[1, 3], [1, 1]]; columns / [2, 4] -> [[.5, .75], [.5, .25]]; rows / [1.25, .75]
    logits = torch.log(torch.tensor([[[1.0, 3.0], [1.0, 1.0]]]))
    q = sinkhorn_knopp(logits, temp=1.0, n_iter=1)
    assert torch.allclose(q, torch.tensor([[[0.4, 0.6], [2 / 3, 1 / 3]]]), atol=1e-6)


def test_sinkhorn_rows_sum_to_one_and_columns_balance() -> None:
    logits = torch.randn(3, 64, 8, generator=torch.Generator().manual_seed(0))
    q = sinkhorn_knopp(logits, temp=0.06, n_iter=3)
    assert torch.allclose(q.sum(-1), torch.ones(3, 64), atol=1e-5)
    assert torch.allclose(sinkhorn_knopp(torch.zeros(1, 4, 5), 0.06), torch.full((1, 4, 5), 0.2))
    balanced = sinkhorn_knopp(logits, temp=1.0, n_iter=50).sum(1)  # many iterations: B / K per prototype
    assert torch.allclose(balanced, torch.full((3, 8), 8.0), atol=1e-2)


def test_sincos_embedding_by_hand() -> None:
    # position 5 on a 4-wide grid is row 1, col 1; dim 8 -> omega = [1, 1e-4]
    got = sincos_embedding(torch.tensor([5]), 4, 8)[0]
    s, c = [math.sin(1), math.sin(1e-4)], [math.cos(1), math.cos(1e-4)]
    assert torch.allclose(got, torch.tensor(s + c + s + c), atol=1e-6)
    assert torch.allclose(sincos_embedding(torch.tensor([0]), 4, 8)[0], torch.tensor([0.0, 0, 1, 1, 0, 0, 1, 1]))


def test_targets_follow_student_order() -> None:
    a = torch.arange(3 * 2 * 1, dtype=torch.float32).view(3, 2, 1)  # (N=3, B=2, K=1): value = n * 2 + b
    got = select_targets(a, torch.tensor([[2, 0], [1, 2]]))
    assert got.flatten().tolist() == [4.0, 0.0, 3.0, 5.0]


def test_heads_and_losses() -> None:
    head = L2NormLinear(16, 10)
    assert torch.equal(head.weight_g, torch.ones(10, 1))
    out = head(torch.randn(5, 16) * 100)
    assert out.abs().max() <= 1 + 1e-6
    clustering = OnlineClustering(16, 10)
    loss, targets = clustering(torch.randn(4, 6, 16))
    assert targets.shape == (4, 6, 10) and not targets.requires_grad and loss.requires_grad
    t = torch.softmax(torch.randn(6, 10), -1)
    assert capi_loss(torch.zeros(6, 10), t).dtype == torch.float64
    assert capi_loss(torch.zeros(6, 10), t).item() == pytest.approx(math.log(10))


def test_capi_loss_falls_and_teacher_is_a_birder_encoder(folders, tmp_path) -> None:
    cfg = CapiConfig(
        network="rope_vit_reg4_b14", model_config=TINY, size=56, data_path=[str(folders[0])], out_dir=str(tmp_path),
        epochs=8, batch_size=8, lr=2e-3, warmup_epochs=1, decoder_layers=1, decoder_dim=64, decoder_heads=4,
        num_clusters=64, kept_mask_ratio=0.5, momentum_teacher=0.99,
    )
    train_capi(cfg)
    with open(tmp_path / "log.csv") as fh:
        losses = [float(r["capi_loss"]) for r in csv.DictReader(fh)]
    assert len(losses) == 32
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.2
    teacher, info = load_model(None, tmp_path / "rope_vit_reg4_b14_capi_8.pt")
    assert teacher.num_classes == 0 and info.class_to_idx == {}
    assert info.signature["outputs"][0]["data_shape"] == [0, 0]


def test_capi_rejects_a_grid_with_nothing_to_predict(folders, tmp_path) -> None:
    from roost.errors import TrainingConfigError

    cfg = CapiConfig(
        network="rope_vit_reg4_b14", model_config=TINY, size=28, data_path=[str(folders[0])], out_dir=str(tmp_path),
        decoder_layers=1, decoder_dim=64, decoder_heads=4, num_clusters=8,
    )
    with pytest.raises(TrainingConfigError, match="0 of 2 masked patches"):  # 2x2 grid: 2 masked, 5 % of them = 0
        train_capi(cfg)


def test_capi_resume_is_bit_identical(folders, tmp_path) -> None:
    from roost.training.state import STATE_FILE, load_state

    kw = dict(
        network="rope_vit_reg4_b14", model_config={**TINY, "drop_path_rate": 0.1}, size=56,
        data_path=[str(folders[0])], epochs=2, batch_size=8, warmup_epochs=1, decoder_layers=1, decoder_dim=64,
        decoder_heads=4, num_clusters=32, kept_mask_ratio=0.5, save_every_steps=1,
    )
    train_capi(CapiConfig(out_dir=str(tmp_path / "a"), **kw))
    train_capi(CapiConfig(out_dir=str(tmp_path / "b"), stop_after_steps=3, **kw))
    train_capi(CapiConfig(out_dir=str(tmp_path / "b"), resume=True, **kw))
    a, b = (load_state(tmp_path / run / STATE_FILE) for run in ("a", "b"))
    for part in ("student", "teacher", "clustering"):
        for key, tensor in a["task"][part].items():
            assert torch.equal(tensor, b["task"][part][key]), (part, key)
    moments = [s["optimizers"]["clustering"]["state"][0]["exp_avg"] for s in (a, b)]
    assert torch.equal(*moments)
