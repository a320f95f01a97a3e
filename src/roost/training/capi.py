"""CAPI: Cluster And Predict latent patches (Darcet et al., arXiv 2502.08769), as Birder 0.8.4 trains it
(training.md §1).

The student encodes the visible patches; a cross-attention predictor turns one query per masked position
into logits over K prototypes. The teacher (an EMA of the student backbone) encodes the whole image; an
online clustering head with Sinkhorn-Knopp gives the targets and trains on its own loss.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import Tensor, nn

from roost.data.transforms import get_rgb_stats
from roost.errors import TrainingConfigError
from roost.models.rope_vit import DropPath, RoPEViT
from roost.training.classification import build_network
from roost.training.config import FRACTION, OPEN_FRACTION, POSITIVE, Range, RunConfig, as_lists, check_ranges
from roost.training.data import AugmentConfig, SampleDataset, TrainTransform, image_files
from roost.training.engine import Plan, Progress, Unit, fit
from roost.training.masking import mask_counts, sample_mask_ids
from roost.training.optim import OptimizerSpec, build_optimizer, param_groups, teacher_momentum
from roost.training.state import DistInfo, ema_update_
from roost.weights.load import save_model

TARGET_TEMP, PRED_TEMP, STUDENT_TEMP, SK_ITERS = 0.06, 0.12, 0.12, 3


@dataclass(frozen=True)
class CapiConfig(RunConfig):
    """``roost train capi``; defaults are Birder 0.8.4's ``train_capi`` with the documented recipe's optimiser."""

    RANGES: ClassVar[dict[str, Range]] = {
        "decoder_layers": POSITIVE, "decoder_dim": POSITIVE, "decoder_heads": POSITIVE,
        "decoder_drop_path": Range(0, 1, high_open=True), "num_clusters": POSITIVE,
        "mask_ratio": Range(0, 1, low_open=True, high_open=True), "kept_mask_ratio": OPEN_FRACTION,
        "momentum_teacher": FRACTION,
    }

    network: str | None = None
    init: str | None = None
    model_config: dict[str, Any] = field(default_factory=dict)
    tag: str | None = None
    data_path: list[str] = field(default_factory=lambda: ["data/training"])
    decoder_layers: int = 12
    decoder_dim: int = 1024
    decoder_heads: int = 16
    decoder_drop_path: float = 0.2
    num_clusters: int = 16384
    mask_ratio: float = 0.65
    kept_mask_ratio: float = 0.05
    momentum_teacher: float = 0.999
    sk_mode: Literal["position-wise", "global"] = "position-wise"
    betas: tuple[float, float] = (0.9, 0.95)
    wd: float = 0.1
    norm_wd: float | None = 0.01
    lr_update: Literal["step", "epoch"] = "step"
    cosine_fraction: float = 0.8
    aug_level: int = 1
    min_scale: float | None = 0.6
    re_prob: float | None = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, CapiConfig.RANGES)
        as_lists(self, "data_path")
        if self.network is None and self.init is None:
            raise TrainingConfigError("give network (a fresh backbone) or init (a backbone checkpoint)")
        if self.decoder_dim % self.decoder_heads or self.decoder_dim % 4:
            raise TrainingConfigError(f"decoder_dim {self.decoder_dim} must divide by 4 and by decoder_heads")


# -------------------------------------------------------------------------------------------- modules


def sincos_embedding(ids: Tensor, grid_width: int, dim: int) -> Tensor:
    """Fixed 2D sin-cos rows (…, dim) for raster positions ``ids``: [sin(col·ω), cos(col·ω), sin(row·ω), cos(row·ω)],
    ω_i = 10000^(−i/(dim/4 − 1))."""
    quarter = dim // 4
    omega = 10000.0 ** (-torch.arange(quarter, dtype=torch.float64, device=ids.device) / max(quarter - 1, 1))
    row = (ids // grid_width).double()[..., None] * omega
    col = (ids % grid_width).double()[..., None] * omega
    return torch.cat([col.sin(), col.cos(), row.sin(), row.cos()], dim=-1).float()


class CrossAttention(nn.Module):
    def __init__(self, dim: int, memory_dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(memory_dim, 2 * dim, bias=False)
        self.proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        """x (B, P, d) attends to memory (B, M, e)."""
        b, p, d = x.shape
        q = self.q(x).view(b, p, self.num_heads, -1).transpose(1, 2)
        k, v = self.kv(memory).view(b, memory.shape[1], 2, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, p, d))


class DecoderBlock(nn.Module):
    """Pre-norm cross-attention + MLP, no self-attention between queries (0.8.4: no MLP biases)."""

    def __init__(self, dim: int, memory_dim: int, num_heads: int, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(dim, eps=1e-5)
        self.attn = CrossAttention(dim, memory_dim, num_heads)
        self.norm2 = nn.RMSNorm(dim, eps=1e-5)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim, bias=False), nn.GELU(), nn.Linear(4 * dim, dim, bias=False))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), memory))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Decoder(nn.Module):
    def __init__(self, memory_dim: int, dim: int, depth: int, num_heads: int, drop_path: float) -> None:
        super().__init__()
        self.dim = dim
        self.mask_token = nn.Parameter(torch.empty(1, 1, dim))
        self.blocks = nn.ModuleList(DecoderBlock(dim, memory_dim, num_heads, drop_path) for _ in range(depth))
        self.norm = nn.RMSNorm(dim, eps=1e-5, elementwise_affine=False)
        nn.init.normal_(self.mask_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)

    def forward(self, memory: Tensor, ids_predict: Tensor, grid_width: int) -> Tensor:
        """memory (B, M, e), ids_predict (B, P) -> (B, P, d)."""
        x = sincos_embedding(ids_predict, grid_width, self.dim).to(memory.dtype) + self.mask_token
        for block in self.blocks:
            x = block(x, memory)
        return self.norm(x)


class L2NormLinear(nn.Module):
    """Cosine logits: L2-normalised input through a weight-normalised linear map (gain g initialised to 1)."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight_v = nn.Parameter(nn.Linear(dim, out_dim, bias=False).weight.detach().clone())
        self.weight_g = nn.Parameter(torch.ones(out_dim, 1))

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight_g * self.weight_v / self.weight_v.norm(dim=1, keepdim=True)
        return F.linear(F.normalize(x, dim=-1), weight)


class CapiStudent(nn.Module):
    def __init__(self, backbone: RoPEViT, decoder: Decoder, head: L2NormLinear) -> None:
        super().__init__()
        self.backbone, self.decoder, self.head = backbone, decoder, head

    def forward(self, images: Tensor, ids_keep: Tensor, ids_predict: Tensor) -> Tensor:
        """Logits (B·P, K) in (image, predict-slot) order."""
        memory = self.backbone.masked_encoding_omission(images, ids_keep)["tokens"]  # special tokens included
        grid_width = images.shape[-1] // self.backbone.config.patch_size
        return self.head(self.decoder(memory, ids_predict, grid_width)).flatten(0, 1)


@torch.no_grad()
def sinkhorn_knopp(logits: Tensor, temp: float, n_iter: int = SK_ITERS, distributed: bool = False) -> Tensor:
    """Soft assignments (…, B, K) whose rows sum to 1, normalising columns first, ``n_iter`` times.

    ``logits`` is (N, B, K) (position-wise: one problem per position) or (1, T, K) (global). Column maxima
    and sums span the global batch when ``distributed``. Run in float32 (offset 50 as the reference).
    """
    m = logits.float() / temp
    peak = m.amax(dim=-2, keepdim=True)
    if distributed:
        torch_dist.all_reduce(peak, op=torch_dist.ReduceOp.MAX)
    q = torch.exp(m - peak + 50.0)
    for _ in range(n_iter):
        col = q.sum(dim=-2, keepdim=True)
        if distributed:
            torch_dist.all_reduce(col)
        q = q / (col + 1e-8)
        q = q / (q.sum(dim=-1, keepdim=True) + 1e-8)
    return q


class OnlineClustering(nn.Module):
    """Linear(d -> K, bias) on L2-normalised teacher tokens; trained on its own Sinkhorn targets."""

    def __init__(self, dim: int, num_clusters: int, sk_mode: str = "position-wise", distributed: bool = False) -> None:
        super().__init__()
        self.layer = nn.Linear(dim, num_clusters)
        self.sk_mode, self.distributed = sk_mode, distributed
        nn.init.normal_(self.layer.weight, std=1.0)
        nn.init.zeros_(self.layer.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (N, B, d) -> (clustering loss, detached assignments (N, B, K))."""
        logits = self.layer(F.normalize(x, dim=-1, eps=1e-7))
        flat = logits if self.sk_mode == "position-wise" else logits.reshape(1, -1, logits.shape[-1])
        targets = sinkhorn_knopp(flat.detach(), TARGET_TEMP, distributed=self.distributed).view_as(logits)
        loss = soft_cross_entropy(logits.float(), targets, PRED_TEMP).mean()
        return loss, targets


def soft_cross_entropy(logits: Tensor, targets: Tensor, temp: float) -> Tensor:
    """Per-row −Σ t·log softmax(logits / temp)."""
    return -(targets * F.log_softmax(logits / temp, dim=-1)).sum(dim=-1)


def capi_loss(student_logits: Tensor, targets: Tensor) -> Tensor:
    """Mean over tokens (in float64, as 0.8.4) of the soft cross-entropy at the student temperature."""
    return soft_cross_entropy(student_logits.float(), targets.float(), STUDENT_TEMP).double().mean()


def select_targets(assignments: Tensor, ids_predict: Tensor) -> Tensor:
    """(N, B, K) assignments -> (B·P, K) rows at ``ids_predict`` (B, P), in the student's order."""
    per_image = assignments.transpose(0, 1)
    index = ids_predict.unsqueeze(-1).expand(-1, -1, per_image.shape[-1])
    return per_image.gather(1, index).flatten(0, 1)


# ----------------------------------------------------------------------------------------------- task


class MaskSampler:
    """``SampleDataset`` extra: (x, label, g) -> (x, ids_keep, ids_predict)."""

    def __init__(self, grid: tuple[int, int], mask_ratio: float, kept_mask_ratio: float) -> None:
        self.grid, self.mask_ratio, self.kept = grid, mask_ratio, kept_mask_ratio

    def __call__(self, x: Tensor, label: int, g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        return (x, *sample_mask_ids(self.grid, self.mask_ratio, self.kept, g))


def _check_mask_counts(grid: tuple[int, int], mask_ratio: float, kept_mask_ratio: float) -> None:
    n_masked, n_visible, n_predict = mask_counts(grid[0] * grid[1], mask_ratio, kept_mask_ratio)
    if n_visible < 1 or n_predict < 1:
        raise TrainingConfigError(
            f"a {grid[0]}x{grid[1]} patch grid with mask_ratio {mask_ratio} and kept_mask_ratio {kept_mask_ratio} "
            f"leaves {n_visible} visible and {n_predict} of {n_masked} masked patches to predict; both must be >= 1 "
            "(raise size or kept_mask_ratio)"
        )


class CapiTask:
    def __init__(self, cfg: CapiConfig, info: DistInfo, device: torch.device) -> None:
        self.cfg, self.info, self.device = cfg, info, device
        backbone, _ = build_network(cfg.network, cfg.init, 0, cfg.size, cfg.model_config)
        tag = f"-{cfg.tag}" if cfg.tag else ""
        self.name = f"{backbone.network_name}_capi{tag}"
        self.rgb_stats = get_rgb_stats(cfg.rgb_mode)
        d = backbone.embedding_size
        decoder = Decoder(d, cfg.decoder_dim, cfg.decoder_layers, cfg.decoder_heads, cfg.decoder_drop_path)
        self.student = CapiStudent(backbone, decoder, L2NormLinear(cfg.decoder_dim, cfg.num_clusters)).to(device)
        self.teacher = copy.deepcopy(backbone).to(device).eval().requires_grad_(False)
        self.clustering = OnlineClustering(d, cfg.num_clusters, cfg.sk_mode, info.enabled).to(device)
        grid = backbone.grid(backbone.size)
        _check_mask_counts(grid, cfg.mask_ratio, cfg.kept_mask_ratio)
        aug = AugmentConfig(cfg.aug_level, cfg.min_scale, cfg.re_prob, cfg.grayscale)
        self.train_set = SampleDataset(
            image_files(cfg.data_path), TrainTransform(cfg.size, self.rgb_stats, aug), cfg.seed,
            MaskSampler(grid, cfg.mask_ratio, cfg.kept_mask_ratio),
        )
        student_groups = param_groups(self.student, weight_decay=cfg.wd, norm_weight_decay=cfg.norm_wd)
        spec = OptimizerSpec(cfg.opt, cfg.lr, cfg.betas, momentum=cfg.momentum)
        clustering_opt = torch.optim.AdamW(self.clustering.parameters(), lr=cfg.lr / 2, betas=(0.9, 0.95))
        self.units = [
            Unit("student", self.student, build_optimizer(student_groups, spec), cfg.lr,
                 find_unused=backbone.attn_pool is not None),
            Unit("clustering", self.clustering, clustering_opt, cfg.lr / 2),
        ]
        self.plan: Plan | None = None

    def set_plan(self, plan: Plan) -> None:
        self.plan = plan

    def collate(self, items: list[tuple[Tensor, Tensor, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
        return tuple(torch.stack(parts) for parts in zip(*items, strict=True))  # type: ignore[return-value]

    def loss(self, batch: tuple[Tensor, Tensor, Tensor], micro: int, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        images, ids_keep, ids_predict = (t.to(self.device) for t in batch)
        with torch.no_grad():
            tokens = self.teacher.forward_features(images)[:, self.teacher.num_special_tokens :]
        clustering_loss, assignments = self.units[1].wrapped(tokens.transpose(0, 1))
        targets = select_targets(assignments, ids_predict)
        logits = self.units[0].wrapped(images, ids_keep, ids_predict)
        student_loss = capi_loss(logits, targets)
        entropy = -(targets * targets.clamp_min(1e-12).log()).sum(-1).mean()
        metrics = {"capi_loss": student_loss, "clustering_loss": clustering_loss, "target_entropy": entropy}
        return student_loss + clustering_loss, metrics

    def momentum(self, micro: int) -> float:
        plan, cfg = self.plan, self.cfg
        assert plan is not None
        warmup = int(cfg.warmup_epochs * plan.batches_per_epoch)
        return teacher_momentum(micro, plan.total_batches, warmup, cfg.momentum_teacher, cfg.cosine_fraction)

    def after_step(self, step: int, micro: int) -> None:
        ema_update_(self.teacher.parameters(), self.student.backbone.parameters(), self.momentum(micro))

    def evaluate(self) -> dict[str, float]:
        return {}

    def save_artifacts(self, out_dir: Path, epoch: int) -> None:
        """The published "capi" encoder: the teacher backbone, 0 outputs, class_to_idx {}."""
        save_model(out_dir / f"{self.name}_{epoch}.pt", self.teacher, class_to_idx={}, rgb_stats=self.rgb_stats)

    def train_mode(self) -> None:
        self.student.train()
        self.clustering.train()
        self.teacher.eval()

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k).state_dict() for k in ("student", "teacher", "clustering")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("student", "teacher", "clustering"):
            getattr(self, key).load_state_dict(state[key])


def train_capi(cfg: CapiConfig, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Run ``roost train capi``; the teacher backbone is saved as ``<out_dir>/<network>_capi[-tag]_<epoch>.pt``."""
    return fit(CapiTask, cfg, progress)
