"""The classification trainer: loss falls, exact resume, linear probing, EMA, Birder-format outputs."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import torch

from roost.training.classification import ClassifyConfig, build_network, train_classifier
from roost.training.state import STATE_FILE, load_state
from roost.weights.load import load_model, save_model
from tests.training.conftest import TINY


def _cfg(folders: tuple[Path, Path], out: Path, **kw) -> ClassifyConfig:
    base = dict(
        network="rope_vit_reg4_b14", model_config=TINY, size=28, data_path=[str(folders[0])],
        val_path=[str(folders[1])], out_dir=str(out), epochs=4, batch_size=8, lr=3e-3, aug_level=1,
        lr_update="step", warmup_epochs=1,
    )
    return ClassifyConfig(**{**base, **kw})


def _losses(out: Path, key: str = "loss") -> list[float]:
    with open(out / "log.csv") as fh:
        return [float(r[key]) for r in csv.DictReader(fh)]


def test_loss_falls_and_outputs_are_birder_checkpoints(folders, tmp_path) -> None:
    history = train_classifier(_cfg(folders, tmp_path, epochs=6, layer_decay=0.75, clip_grad_norm=1.0))
    losses = _losses(tmp_path)
    assert len(losses) == 24
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.2
    assert history[-1]["val_top1"] >= 0.75 and "val_top5" in history[-1]
    net, info = load_model(None, tmp_path / "rope_vit_reg4_b14_6.pt")
    assert info.class_to_idx == {"blue": 0, "green": 1, "red": 2, "yellow": 3}
    assert net.num_classes == 4


def _final_state(out: Path) -> dict:
    return load_state(out / STATE_FILE)


def test_resume_is_bit_identical(folders, tmp_path) -> None:
    kw = dict(
        epochs=3, grad_accum=2, mixup_alpha=0.4, cutmix=True, label_smoothing=0.1, model_ema=True, ema_steps=1,
        model_config={**TINY, "drop_path_rate": 0.2}, save_every_steps=1,
    )
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train_classifier(_cfg(folders, whole, **kw))
    train_classifier(_cfg(folders, parts, stop_after_steps=3, **kw))  # dies mid-epoch 2
    assert load_state(parts / STATE_FILE)["position"] == {"epoch": 1, "batch": 2, "step": 3}
    train_classifier(_cfg(folders, parts, resume=True, **kw))
    a, b = _final_state(whole), _final_state(parts)
    for key, tensor in a["task"]["net"].items():
        assert torch.equal(tensor, b["task"]["net"][key]), key
    for key, tensor in a["task"]["ema"]["module"].items():
        assert torch.equal(tensor, b["task"]["ema"]["module"][key]), key
    assert _losses(whole) == _losses(parts)


def test_linear_probe_trains_only_the_head(folders, tmp_path) -> None:
    body = _cfg(folders, tmp_path / "pre", epochs=1)
    net, _ = build_network("rope_vit_reg4_b14", None, 0, 28, TINY)
    save_model(tmp_path / "backbone.pt", net, class_to_idx={}, rgb_stats={"mean": (0.5,) * 3, "std": (0.5,) * 3})
    cfg = dataclasses.replace(body, network=None, init=str(tmp_path / "backbone.pt"), linear_probe=True, epochs=2)
    train_classifier(cfg)
    trained, _ = load_model(None, tmp_path / "pre" / "rope_vit_reg4_b14_2.pt")
    before = net.state_dict()
    for key, tensor in trained.state_dict().items():
        if key.startswith("classifier."):
            assert tensor.abs().sum() > 0
        else:
            assert torch.equal(tensor, before[key]), key
