"""RotNet: 4-way rotation prediction on a frozen (CAPI) body (Birder ``train_rotnet``; training.md §2).

Labels are made on the fly: after the complete training transform, the normalised tensor is rotated
counter-clockwise by 90·k degrees, k = 0 with probability 1 − p, else uniform over {1, 2, 3}. The body is
frozen (drop-path still active); the final norm, the pooling head and the 4-way classifier train.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from roost.data.transforms import classification_transform, get_rgb_stats
from roost.training.classification import ClassifyConfig, SupervisedTask, build_network, probe_setup
from roost.training.config import OPEN_FRACTION, check_ranges
from roost.training.data import AugmentConfig, EvalTransform, SampleDataset, TrainTransform, image_files
from roost.training.engine import Progress, fit
from roost.training.state import DistInfo

ROTATION_CLASSES = {"0": 0, "90": 1, "180": 2, "270": 3}


@dataclass(frozen=True)
class RotNetConfig(ClassifyConfig):
    """``roost train rotnet``: data paths are unlabelled folders / files (sub-folders are not classes)."""

    val_path: list[str] = field(default_factory=list)
    rotation_prob: float = 0.75
    val_rotation_prob: float = 0.75  # held-out images: uniform over the four angles
    linear_probe: bool = True  # --freeze-body
    unfreeze_features: bool = True
    label_smoothing: float = 0.1
    aug_level: int = 4
    min_scale: float | None = 0.3
    re_prob: float | None = 0.0
    top_k: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, {"rotation_prob": OPEN_FRACTION, "val_rotation_prob": OPEN_FRACTION})


def rotation_label(g: torch.Generator, p: float) -> int:
    """0 with probability 1 − p, else 1, 2 or 3 uniformly."""
    if torch.rand((), generator=g, dtype=torch.float64).item() >= p:
        return 0
    return int(torch.randint(1, 4, (), generator=g))


def rotate(x: Tensor, k: int) -> Tensor:
    """Rotate a (…, H, W) tensor counter-clockwise by 90·k degrees."""
    return torch.rot90(x, k, dims=(-2, -1))


class Rotator:
    """``SampleDataset`` extra: (x, ignored label, generator) -> (rotated x, rotation label)."""

    def __init__(self, p: float) -> None:
        self.p = p

    def __call__(self, x: Tensor, label: int, g: torch.Generator) -> tuple[Tensor, int]:
        k = rotation_label(g, self.p)
        return rotate(x, k), k


def make_rotnet_task(cfg: RotNetConfig, info: DistInfo, device: torch.device) -> SupervisedTask:
    rgb = get_rgb_stats(cfg.rgb_mode)
    aug = AugmentConfig(cfg.aug_level, cfg.min_scale, cfg.re_prob, cfg.grayscale)
    train_set = SampleDataset(
        image_files(cfg.data_path), TrainTransform(cfg.size, rgb, aug), cfg.seed, Rotator(cfg.rotation_prob)
    )
    val_set = None
    if cfg.val_path:
        val_transform = EvalTransform(classification_transform(cfg.size, rgb))
        val_set = SampleDataset(image_files(cfg.val_path), val_transform, cfg.seed, Rotator(cfg.val_rotation_prob))
    net, _ = build_network(cfg.network, cfg.init, len(ROTATION_CLASSES), cfg.size, cfg.model_config)
    if cfg.linear_probe:
        probe_setup(net, cfg.unfreeze_features)
    name = f"{net.network_name}_rotnet" + (f"-{cfg.tag}" if cfg.tag else "")
    return SupervisedTask(cfg, info, device, net, (train_set, val_set), dict(ROTATION_CLASSES), name)


def train_rotnet(cfg: RotNetConfig, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Run ``roost train rotnet``; returns the per-epoch held-out orientation accuracy history."""
    return fit(make_rotnet_task, cfg, progress)
