"""RotNet: label probabilities and direction, and a run from a CAPI-style backbone file."""

from __future__ import annotations

import csv
from collections import Counter

import torch

from roost.models.registry import create_model
from roost.training.rotnet import RotNetConfig, rotate, rotation_label, train_rotnet
from roost.weights.load import load_model, save_model
from tests.training.conftest import TINY


def test_rotation_probabilities() -> None:
    g = torch.Generator().manual_seed(0)
    counts = Counter(rotation_label(g, 0.5) for _ in range(6000))
    assert abs(counts[0] / 6000 - 0.5) < 0.03
    for k in (1, 2, 3):
        assert abs(counts[k] / 6000 - 1 / 6) < 0.03


def test_rotation_is_counter_clockwise() -> None:
    x = torch.tensor([[1, 2], [3, 4]])
    assert rotate(x, 1).tolist() == [[2, 4], [1, 3]]  # the top-right corner moves to the top-left
    assert rotate(x, 2).tolist() == [[4, 3], [2, 1]]


def test_rotnet_from_backbone_file(folders, tmp_path) -> None:
    backbone = create_model("rope_vit_reg4_b14", 0, size=28, config=TINY)
    path = save_model(tmp_path / "rope_vit_reg4_b14_capi_1.pt", backbone, class_to_idx={},
                      rgb_stats={"mean": (0.5,) * 3, "std": (0.5,) * 3})
    cfg = RotNetConfig(
        network="rope_vit_reg4_b14", init=str(path), size=28, data_path=[str(folders[0])],
        val_path=[str(folders[1])], out_dir=str(tmp_path / "run"), epochs=8, batch_size=8, lr=1e-2,
        lr_update="step",
    )
    history = train_rotnet(cfg)
    with open(tmp_path / "run" / "log.csv") as fh:
        losses = [float(r["loss"]) for r in csv.DictReader(fh)]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.05
    assert 0 <= history[-1]["val_top1"] <= 1
    net, info = load_model(None, tmp_path / "run" / "rope_vit_reg4_b14_rotnet_8.pt")
    assert info.class_to_idx == {"0": 0, "90": 1, "180": 2, "270": 3}
    for key, tensor in backbone.state_dict().items():  # frozen body, trainable final norm
        if not key.startswith("norm."):
            assert torch.equal(net.state_dict()[key], tensor), key
