"""Every trainer under bf16 autocast (no torch.compile) and with LAMB: losses finite and falling."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from roost.training.capi import CapiConfig, train_capi
from roost.training.classification import ClassifyConfig, train_classifier
from roost.training.rotnet import RotNetConfig, train_rotnet
from tests.training.conftest import TINY


def _run(kind: str, folders: tuple[Path, Path], out: Path, **kw) -> list[float]:
    common = dict(model_config=TINY, out_dir=str(out), batch_size=8, lr_update="step", **kw)
    if kind == "classify":
        train_classifier(ClassifyConfig(network="rope_vit_reg4_b14", size=28, data_path=[str(folders[0])],
                                        val_path=[str(folders[1])], epochs=4, lr=3e-3, aug_level=1, **common))
    elif kind == "rotnet":
        train_rotnet(RotNetConfig(network="rope_vit_reg4_b14", size=28, data_path=[str(folders[0])], epochs=8,
                                  lr=1e-2, **common))
    else:
        train_capi(CapiConfig(network="rope_vit_reg4_b14", size=56, data_path=[str(folders[0])], epochs=6, lr=2e-3,
                              warmup_epochs=1, decoder_layers=1, decoder_dim=64, decoder_heads=4, num_clusters=64,
                              kept_mask_ratio=0.5, momentum_teacher=0.99, **common))
    key = "capi_loss" if kind == "capi" else "loss"
    with open(out / "log.csv") as fh:
        return [float(r[key]) for r in csv.DictReader(fh)]


def _assert_falls(losses: list[float], margin: float) -> None:
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - margin, losses


@pytest.mark.parametrize("kind", ["classify", "rotnet", "capi"])
def test_bf16_autocast(kind: str, folders, tmp_path) -> None:
    amp = _run(kind, folders, tmp_path / "amp", amp=True, amp_dtype="bfloat16")
    _assert_falls(amp, 0.05)
    fp32 = _run(kind, folders, tmp_path / "fp32", stop_after_steps=2)
    assert amp[:2] != fp32[:2]  # autocast really ran the matmuls in bf16


@pytest.mark.parametrize("kind", ["classify", "capi"])
def test_lamb(kind: str, folders, tmp_path) -> None:
    _assert_falls(_run(kind, folders, tmp_path, opt="lamb", wd=0.05, norm_wd=0.0), 0.05)
