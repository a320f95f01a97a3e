"""RoPE-ViT configuration: one frozen dataclass, size presets, and the Birder config-dict round trip.

Field names are Birder's config keys (spec ``architecture.md`` §2), so a checkpoint's stored ``config``
override maps onto fields one to one and back. Defaults are the spec's defaults for a missing key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from roost.errors import ConfigError

NormType = Literal["LayerNorm", "RMSNorm"]
MLPType = Literal["FFN", "SwiGLU_FFN", "Norm_SwiGLU_FFN"]
RoPEStyle = Literal["default", "axial", "centered_separate"]
RoPERotation = Literal["standard", "interleaved"]
PoolType = Literal["MultiHeadAttentionPool", "EfficientProbing"]
ActType = Literal["gelu", "quick_gelu", "gelu_tanh", "silu", "relu"]


# Birder keys roost accepts only at their default value (a full resolved Birder config carries them).
UNSUPPORTED_KEYS: dict[str, Any] = {"stem_type": "patchify", "mlp_head": False, "dropout": 0.0}
_MISSING = object()


@dataclass(frozen=True)
class SizePreset:
    num_layers: int
    num_heads: int
    hidden_dim: int
    mlp_dim: int
    drop_path_rate: float


# The letter (or word) in a name such as ``b14`` or ``so150m_p14``; spec §1.2.
SIZE_PRESETS: dict[str, SizePreset] = {
    "t": SizePreset(12, 3, 192, 768, 0.0),
    "s": SizePreset(12, 6, 384, 1536, 0.0),
    "m": SizePreset(12, 8, 512, 2048, 0.0),
    "b": SizePreset(12, 12, 768, 3072, 0.1),
    "l": SizePreset(24, 16, 1024, 4096, 0.1),
    "h": SizePreset(32, 16, 1280, 5120, 0.1),
    "so150m": SizePreset(18, 16, 896, 2320, 0.1),  # 896, not the paper's 880: head dim 56 suits RoPE
    "so400m": SizePreset(27, 16, 1152, 4304, 0.1),
    "g": SizePreset(40, 16, 1408, 6144, 0.1),
    "gigantic": SizePreset(48, 16, 1664, 8192, 0.1),
}


@dataclass(frozen=True)
class RoPEViTConfig:
    """Everything that shapes a RoPE-ViT network except its class count and input size."""

    patch_size: int
    num_layers: int
    num_heads: int
    hidden_dim: int
    mlp_dim: int
    drop_path_rate: float = 0.0
    num_reg_tokens: int = 0
    class_token: bool = True
    abs_pos_embed: bool = True
    pos_embed_special_tokens: bool = True
    pos_embed_interpolation_mode: Literal["bicubic", "bilinear", "nearest"] = "bicubic"
    pos_embed_antialias: bool = False
    pre_norm: bool = False
    post_norm: bool = True
    norm_after_pool: bool = False
    qkv_bias: bool = True
    qk_norm: bool = False
    attn_norm: bool = False
    attn_pool_head: bool = False
    attn_pool_type: PoolType = "MultiHeadAttentionPool"
    attn_pool_num_heads: int | None = None
    attn_pool_special_tokens: bool = False
    attn_pool_norm_eps: float = 1e-5
    attn_pool_act_layer_type: ActType = "gelu"
    norm_layer_type: NormType = "LayerNorm"
    norm_layer_eps: float = 1e-6
    mlp_layer_type: MLPType = "FFN"
    act_layer_type: ActType | None = None
    layer_scale_init_value: float | None = None
    rope_style: RoPEStyle = "default"
    rope_rot_type: RoPERotation = "standard"
    rope_grid_indexing: Literal["ij", "xy"] = "ij"
    rope_grid_offset: int = 0
    rope_temperature: float = 100.0
    pt_grid_size: tuple[int, int] | None = None
    head_bias: bool = True
    out_indices: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        # Lists arrive from JSON (safetensors metadata): store tuples so the config stays hashable.
        for name in ("pt_grid_size", "out_indices"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        self._validate()

    def _validate(self) -> None:
        head_dim, rest = divmod(self.hidden_dim, self.num_heads)
        checks = [
            (self.patch_size > 0, f"patch_size must be positive, got {self.patch_size}"),
            (rest == 0, f"hidden_dim {self.hidden_dim} is not divisible by num_heads {self.num_heads}"),
            (head_dim % 4 == 0, f"head dim {head_dim} must be divisible by 4 for 2-D RoPE"),
            (self.num_layers > 0, f"num_layers must be positive, got {self.num_layers}"),
            (self.num_reg_tokens >= 0, f"num_reg_tokens must be >= 0, got {self.num_reg_tokens}"),
            (
                self.rope_style != "axial" or self.rope_rot_type == "interleaved",
                "the axial RoPE style needs interleaved rotation",
            ),
            (
                self.rope_style != "centered_separate" or self.rope_rot_type == "standard",
                "the centered_separate RoPE style needs standard rotation",
            ),
            (
                self.class_token or self.num_reg_tokens > 0 or not self.attn_pool_special_tokens
                or not self.attn_pool_head,
                "attn_pool_special_tokens needs at least one special token",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.out_indices is not None:
            bad = [i for i in self.out_indices if not -self.num_layers <= i < self.num_layers]
            if bad:
                raise ConfigError(f"out_indices {bad} are outside 0..{self.num_layers - 1}")

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.num_heads

    @property
    def num_special_tokens(self) -> int:
        return self.num_reg_tokens + int(self.class_token)

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> RoPEViTConfig:
        """Apply a Birder-style config dict (a checkpoint's stored ``config`` or a caller's)."""
        if not overrides:
            return self
        overrides = {k: v for k, v in overrides.items() if UNSUPPORTED_KEYS.get(k, _MISSING) != v}
        known = {f.name for f in dataclasses.fields(self)}
        unsupported = sorted(set(overrides) & set(UNSUPPORTED_KEYS))
        if unsupported:
            raise ConfigError(f"config keys {unsupported} are only supported at their defaults {UNSUPPORTED_KEYS}")
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown RoPE-ViT config keys {unknown}; known keys: {sorted(known)}")
        return dataclasses.replace(self, **overrides)

    def to_birder_dict(self) -> dict[str, Any]:
        """The full resolved config as Birder stores it (JSON-friendly: tuples become lists)."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    def diff(self, base: RoPEViTConfig) -> dict[str, Any]:
        """The keys whose values differ from ``base``: what a checkpoint stores as its ``config``."""
        mine, theirs = self.to_birder_dict(), base.to_birder_dict()
        return {k: v for k, v in mine.items() if theirs[k] != v}
