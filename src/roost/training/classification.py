"""Supervised fine-tuning and linear probing (Birder ``train.py``; training.md §3).

Image folders (class per sub-folder), Birder-level augmentation, MixUp/CutMix, label smoothing, layer-wise
LR decay, model EMA (validated and saved instead of the raw weights), top-1/top-k validation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from roost.data.transforms import classification_transform, get_rgb_stats
from roost.errors import CheckpointError, TrainingConfigError
from roost.models.registry import create_model
from roost.models.rope_vit import RoPEViT
from roost.training.config import FRACTION, NON_NEGATIVE, POSITIVE, Range, RunConfig, as_lists, check_ranges
from roost.training.data import (
    AugmentConfig,
    EvalSampler,
    EvalTransform,
    SampleDataset,
    TrainTransform,
    image_folders,
    make_generator,
    mix_batch,
    read_class_file,
    wds_samples,
)
from roost.training.engine import Plan, Progress, Unit, fit
from roost.training.optim import OptimizerSpec, build_optimizer, param_groups
from roost.training.state import DistInfo, ModelEma, all_reduce_sum, effective_ema_decay
from roost.weights.checkpoint import get_size_from_signature, read_checkpoint
from roost.weights.load import network_from_file_name, save_model


@dataclass(frozen=True)
class ClassifyConfig(RunConfig):
    """``roost train classify``. ``init`` is a roost/Birder checkpoint file or a pretrained weights name.

    ``data_path`` / ``val_path`` list roots of class sub-folders (or shards with ``wds``); the classes are the
    union of the roots' sub-folders; an empty ``val_path`` skips validation.
    """

    RANGES: ClassVar[dict[str, Range]] = {
        "label_smoothing": Range(0, 0.5, high_open=True), "mixup_alpha": NON_NEGATIVE, "ema_decay": FRACTION,
        "ema_steps": POSITIVE, "ema_warmup_epochs": NON_NEGATIVE, "top_k": POSITIVE,
    }

    network: str | None = None
    init: str | None = None
    model_config: dict[str, Any] = field(default_factory=dict)  # --model-config, e.g. {drop_path_rate = 0.1}
    tag: str | None = None
    data_path: list[str] = field(default_factory=lambda: ["data/training"])
    val_path: list[str] = field(default_factory=lambda: ["data/validation"])
    label_smoothing: float = 0.0  # --smoothing-alpha
    mixup_alpha: float = 0.0
    cutmix: bool = False
    linear_probe: bool = False  # --reset-head --freeze-body: a new head on a frozen body
    unfreeze_features: bool = False  # with linear_probe: also train the final norm / pooling head
    model_ema: bool = False
    ema_decay: float = 0.9999
    ema_steps: int = 32
    ema_warmup_epochs: float | None = None  # default: warmup_epochs
    top_k: int = 5
    wds: bool = False  # data_path / val_path are WebDataset .tar shards (or folders of them)
    wds_class_file: str | None = None  # with wds (mandatory): one class name per line, line order = index

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, ClassifyConfig.RANGES)
        as_lists(self, "data_path", "val_path")
        if self.network is None and self.init is None:
            raise TrainingConfigError("give network (a fresh network) or init (weights to start from)")
        if self.wds and self.wds_class_file is None:
            raise TrainingConfigError("wds needs wds_class_file (one class name per line)")


# ------------------------------------------------------------------------------------------ networks


def _source_state(init: str) -> tuple[str | None, dict[str, Tensor], dict[str, Any] | None, tuple[int, int]]:
    """(network, state, config, size) of a checkpoint file or a pretrained weights name."""
    if os.path.isfile(init):
        ckpt = read_checkpoint(init)
        name = ckpt.network or network_from_file_name(init)
        return name, ckpt.state, ckpt.config, get_size_from_signature(ckpt.signature)
    from roost.weights.load import load_pretrained_model

    net, info = load_pretrained_model(init)
    return net.network_name, net.state_dict(), info.custom_config, net.size


def build_network(
    network: str | None, init: str | None, num_classes: int, size: int, model_config: Mapping[str, Any]
) -> tuple[RoPEViT, bool]:
    """The network to train and whether its classifier is new (absent from, or a misfit for, ``init``).

    Weights load non-strictly only where heads may differ: ``classifier.*`` and ``attn_pool.*`` keys.
    """
    if init is None:
        if network is None:
            raise TrainingConfigError("give network (a fresh network) or init (weights to start from)")
        return create_model(network, num_classes, size=size, config=dict(model_config) or None), True
    src_name, state, src_config, src_size = _source_state(init)
    name = network or src_name
    if name is None:
        raise CheckpointError(f"{init} does not record its network: give network")
    config = {**(src_config or {}), **model_config} or None
    net = create_model(name, num_classes, size=src_size, config=config)
    expected = net.state_dict()
    state = {k: v for k, v in state.items() if k in expected and v.shape == expected[k].shape}
    missing, unexpected = net.load_state_dict(state, strict=False)
    bad = [k for k in missing if not k.startswith(("classifier.", "attn_pool."))]
    if bad or unexpected:
        raise CheckpointError(f"{init} does not fit {name}: missing {bad[:5]}, unexpected {unexpected[:5]}")
    net.adjust_size(size)
    return net, any(k.startswith("classifier.") for k in missing)


def probe_setup(net: RoPEViT, unfreeze_features: bool) -> None:
    """Freeze the body; train the classifier (and the final norm / pooling head when asked)."""
    net.freeze(freeze_classifier=False, unfreeze_features=unfreeze_features)


# --------------------------------------------------------------------------------------------- steps


def classification_loss(
    net: nn.Module, images: Tensor, targets: Tensor, smoothing: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """Cross-entropy on hard (B,) or soft (B, C) targets; training top-1 against the argmax target."""
    logits = net(images)
    loss = F.cross_entropy(logits.float(), targets, label_smoothing=smoothing)
    hard = targets.argmax(-1) if targets.dim() == 2 else targets
    return loss, {"train_top1": (logits.argmax(-1) == hard).float().mean()}


@torch.no_grad()
def evaluate(net: nn.Module, loader: DataLoader, device: torch.device, top_k: int, info: DistInfo) -> dict[str, float]:
    """Validation loss, top-1 and top-k over the whole (sharded) set; sums all-reduced."""
    was_training = net.training
    net.eval()
    sums = torch.zeros(4, dtype=torch.float64)  # loss, top1, topk, count
    for images, labels in loader:
        images, labels = images.to(device), torch.as_tensor(labels, device=device)
        logits = net(images).float()
        k = min(top_k, logits.shape[-1])
        top = logits.topk(k, dim=-1).indices
        sums += torch.tensor([
            F.cross_entropy(logits, labels, reduction="sum").item(),
            (top[:, 0] == labels).sum().item(),
            (top == labels[:, None]).any(-1).sum().item(),
            labels.numel(),
        ], dtype=torch.float64)
    net.train(was_training)
    loss, top1, topk, count = all_reduce_sum(sums, info).tolist()
    count = max(count, 1)
    return {"val_loss": loss / count, "val_top1": top1 / count, f"val_top{top_k}": topk / count}


def collate_labelled(items: list[tuple[Tensor, int]]) -> tuple[Tensor, Tensor]:
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


# ---------------------------------------------------------------------------------------------- task


class SupervisedTask:
    """One network, one optimizer; optional EMA; classification loss on (image, label) batches."""

    def __init__(
        self,
        cfg: ClassifyConfig,
        info: DistInfo,
        device: torch.device,
        net: RoPEViT,
        data: tuple[SampleDataset, SampleDataset | None],
        class_to_idx: dict[str, int],
        name: str,
    ) -> None:
        self.cfg, self.info, self.device, self.name = cfg, info, device, name
        self.net, self.class_to_idx = net.to(device), class_to_idx
        self.train_set, self.val_set = data
        self.rgb_stats = get_rgb_stats(cfg.rgb_mode)
        groups = param_groups(net, weight_decay=cfg.wd, norm_weight_decay=cfg.norm_wd, layer_decay=cfg.layer_decay)
        spec = OptimizerSpec(cfg.opt, cfg.lr, cfg.betas, momentum=cfg.momentum)
        self.units = [Unit("model", net, build_optimizer(groups, spec), cfg.lr)]
        self.ema: ModelEma[RoPEViT] | None = None

    def set_plan(self, plan: Plan) -> None:
        cfg = self.cfg
        if cfg.model_ema:
            decay = effective_ema_decay(
                cfg.ema_decay, self.info.world, cfg.batch_size, cfg.grad_accum, cfg.ema_steps, cfg.epochs
            )
            warm = cfg.warmup_epochs if cfg.ema_warmup_epochs is None else cfg.ema_warmup_epochs
            self.ema = ModelEma(self.net, decay, cfg.ema_steps, round(warm * plan.steps_per_epoch))

    def collate(self, items: list[tuple[Tensor, int]]) -> tuple[Tensor, Tensor]:
        return collate_labelled(items)

    def loss(self, batch: tuple[Tensor, Tensor], micro: int, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        images, labels = batch[0].to(self.device), batch[1].to(self.device)
        targets: Tensor = labels
        if self.cfg.mixup_alpha > 0 or self.cfg.cutmix:
            g = make_generator(self.cfg.seed, 11, micro)
            images, targets = mix_batch(
                images, labels, self.net.num_classes, g, mixup_alpha=self.cfg.mixup_alpha, cutmix=self.cfg.cutmix
            )
        return classification_loss(self.units[0].wrapped, images, targets, self.cfg.label_smoothing)

    def after_step(self, step: int, micro: int) -> None:
        if self.ema is not None:
            self.ema.update(self.net, step)

    def final_model(self) -> RoPEViT:
        return self.ema.module if self.ema is not None else self.net

    def evaluate(self) -> dict[str, float]:
        if self.val_set is None:
            return {}
        sampler = EvalSampler(len(self.val_set), self.cfg.batch_size, self.info.rank, self.info.world)
        loader = DataLoader(
            self.val_set, batch_sampler=sampler, num_workers=self.cfg.workers, collate_fn=collate_labelled
        )
        return evaluate(self.final_model(), loader, self.device, self.cfg.top_k, self.info)

    def save_artifacts(self, out_dir: Path, epoch: int) -> None:
        save_model(out_dir / f"{self.name}_{epoch}.pt", self.final_model(), class_to_idx=self.class_to_idx,
                   rgb_stats=self.rgb_stats)

    def train_mode(self) -> None:
        self.net.train()  # a frozen body stays in train mode: its drop-path is active, as in the reference

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "ema": self.ema.state_dict() if self.ema is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])


def labelled_samples(cfg: ClassifyConfig) -> tuple[list, list | None, dict[str, int]]:
    """(train samples, validation samples or None, class_to_idx) from image folders or WebDataset shards."""
    if cfg.wds:
        assert cfg.wds_class_file is not None
        class_to_idx = read_class_file(cfg.wds_class_file)
        val = wds_samples(cfg.val_path, len(class_to_idx)) if cfg.val_path else None
        return wds_samples(cfg.data_path, len(class_to_idx)), val, class_to_idx
    samples, class_to_idx = image_folders(cfg.data_path)
    val = image_folders(cfg.val_path, class_to_idx)[0] if cfg.val_path else None
    return samples, val, class_to_idx


def make_classify_task(cfg: ClassifyConfig, info: DistInfo, device: torch.device) -> SupervisedTask:
    samples, val_samples, class_to_idx = labelled_samples(cfg)
    rgb = get_rgb_stats(cfg.rgb_mode)
    aug = AugmentConfig(cfg.aug_level, cfg.min_scale, cfg.re_prob, cfg.grayscale)
    train_set = SampleDataset(samples, TrainTransform(cfg.size, rgb, aug), cfg.seed)
    val_set = None
    if val_samples is not None:
        val_set = SampleDataset(val_samples, EvalTransform(classification_transform(cfg.size, rgb)), cfg.seed)
    net, new_head = build_network(cfg.network, cfg.init, len(class_to_idx), cfg.size, cfg.model_config)
    if new_head and cfg.init is not None and isinstance(net.classifier, nn.Linear):
        net.classifier.reset_parameters()  # --reset-head: PyTorch's default Linear init, not zeros
    if cfg.linear_probe:
        probe_setup(net, cfg.unfreeze_features)
    name = f"{net.network_name}" + (f"_{cfg.tag}" if cfg.tag else "")
    return SupervisedTask(cfg, info, device, net, (train_set, val_set), class_to_idx, name)


def train_classifier(cfg: ClassifyConfig, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Run ``roost train classify``; returns the per-epoch validation history."""
    return fit(make_classify_task, cfg, progress)
