"""The RoPE Vision Transformer family (Birder's ``RoPE_ViT``), exact to the reference.

Heo et al., "Rotary Position Embedding for Vision Transformer" (2024), with registers (Darcet et al.
2024). Numerics, token order and state_dict keys follow ``architecture.md`` §3-§7; attribute names are
a file format (every published Birder weight file loads unchanged), so they are kept even where unlovely.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from roost.errors import ConfigError, InputShapeError
from roost.models.config import RoPEViTConfig
from roost.models.layers.attention import RoPEAttention
from roost.models.layers.mlp import SwiGLU, ffn
from roost.models.layers.norms import make_norm
from roost.models.layers.pooling import EfficientProbing, MultiHeadAttentionPool
from roost.models.layers.rope import rope_table, split_table

Size = tuple[int, int]


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.init_value = init_value
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class DropPath(nn.Module):
    """Stochastic depth per sample; identity at eval."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty(x.shape[0], *([1] * (x.dim() - 1))).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class EncoderBlock(nn.Module):
    """x + attn(norm1(x)); x + mlp(norm2(x)), with optional layer scale (spec §3.8)."""

    def __init__(self, c: RoPEViTConfig, drop_path: float) -> None:
        super().__init__()
        norm = (c.norm_layer_type, c.norm_layer_eps)
        d = c.hidden_dim
        self.norm1 = make_norm(norm[0], d, norm[1])
        self.attn = RoPEAttention(
            d, c.num_heads, rotation=c.rope_rot_type, qkv_bias=c.qkv_bias, qk_norm=c.qk_norm,
            attn_norm=c.attn_norm, norm=norm,
        )
        self.layer_scale_1 = LayerScale(d, c.layer_scale_init_value) if c.layer_scale_init_value else nn.Identity()
        self.drop_path = DropPath(drop_path)
        self.norm2 = make_norm(norm[0], d, norm[1])
        if c.mlp_layer_type == "FFN":
            self.mlp: nn.Module = ffn(d, c.mlp_dim, c.act_layer_type or "gelu")
        else:
            self.mlp = SwiGLU(d, c.mlp_dim, norm=norm if c.mlp_layer_type == "Norm_SwiGLU_FFN" else None)
        self.layer_scale_2 = LayerScale(d, c.layer_scale_init_value) if c.layer_scale_init_value else nn.Identity()

    def forward(self, x: Tensor, sin: Tensor, cos: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        x = x + self.drop_path(self.layer_scale_1(self.attn(self.norm1(x), sin, cos, attn_mask)))
        return x + self.drop_path(self.layer_scale_2(self.mlp(self.norm2(x))))


class Encoder(nn.Module):
    def __init__(self, c: RoPEViTConfig) -> None:
        super().__init__()
        pre = [make_norm(c.norm_layer_type, c.hidden_dim, c.norm_layer_eps)] if c.pre_norm else []
        self.pre_block = nn.Sequential(*pre)
        n = c.num_layers
        rates = [c.drop_path_rate * i / (n - 1) if n > 1 else 0.0 for i in range(n)]
        self.block = nn.ModuleList(EncoderBlock(c, rate) for rate in rates)

    def forward(
        self, x: Tensor, sin: Tensor, cos: Tensor, attn_mask: Tensor | None = None, keep: Sequence[int] = ()
    ) -> tuple[Tensor, list[Tensor]]:
        """Run every block; also return the outputs of the blocks listed in ``keep``."""
        kept = []
        for i, block in enumerate(self.block):
            x = block(x, sin, cos, attn_mask)
            if i in keep:
                kept.append(x)
        return x, kept


class RoPE(nn.Module):
    """Caches the RoPE table of the model's grid as the non-persistent buffer ``pos_embed`` (L, 2d)."""

    def __init__(self, c: RoPEViTConfig, grid: Size) -> None:
        super().__init__()
        self.config = c
        self.grid = grid
        self._other: dict[tuple[Size, torch.device, torch.dtype], Tensor] = {}
        self.register_buffer("pos_embed", self._build(grid), persistent=False)

    def build(self, grid: Size) -> Tensor:
        """A fresh table for ``grid`` in the buffer's device and dtype (traceable: nothing cached)."""
        return self._build(grid).to(self.pos_embed.device, self.pos_embed.dtype)

    def _build(self, grid: Size) -> Tensor:
        c = self.config
        with torch.device("cpu"):  # built on the CPU even under a meta-device context, as the reference does
            return rope_table(
                c.head_dim, grid, temperature=c.rope_temperature, style=c.rope_style,
                indexing=c.rope_grid_indexing, offset=c.rope_grid_offset, pt_grid=c.pt_grid_size,
            )

    def table(self, grid: Size) -> Tensor:
        """The table for ``grid``: the buffer, or (dynamic size) one built once per grid, device and dtype."""
        if grid == self.grid:
            return self.pos_embed
        key = (grid, self.pos_embed.device, self.pos_embed.dtype)
        if key not in self._other:
            if len(self._other) >= 16:
                self._other.clear()
            self._other[key] = self.build(grid)
        return self._other[key]

    def set_grid_size(self, grid: Size) -> None:
        self.grid = grid
        self._other.clear()
        self.pos_embed = self.build(grid)


def resize_pos_embed(
    pos: Tensor, num_prefix: int, old_grid: Size, new_grid: Size, mode: str, antialias: bool
) -> Tensor:
    """Interpolate the patch rows of a (1, S + L, D) embedding to a new grid in float32 (spec §7.3)."""
    prefix, patch = pos[:, :num_prefix], pos[:, num_prefix:]
    dim = pos.shape[-1]
    grid = patch.reshape(1, *old_grid, dim).permute(0, 3, 1, 2).float()
    align = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    grid = F.interpolate(grid, size=new_grid, mode=mode, antialias=antialias, **align)
    return torch.cat([prefix, grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos.dtype)], dim=1)


class RoPEViT(nn.Module):
    """A RoPE-ViT network: ``RoPEViT(config, num_classes, size)``.

    Token order is [registers, class token, patches]; RoPE rotates only the patch tokens.
    """

    task = "image_classification"
    input_channels = 3

    def __init__(self, config: RoPEViTConfig, num_classes: int = 0, size: Size | int = (224, 224)) -> None:
        super().__init__()
        c = config
        self.config = c
        self.network_name: str | None = None
        self.num_classes = num_classes
        self.size = self._checked_size(size)
        self.embedding_size = c.hidden_dim
        self.dynamic_size = False
        self.num_special_tokens = c.num_special_tokens
        d, grid = c.hidden_dim, self.grid(self.size)
        if c.class_token:
            self.class_token = nn.Parameter(torch.empty(1, 1, d))
        if c.num_reg_tokens:
            self.reg_tokens = nn.Parameter(torch.empty(1, c.num_reg_tokens, d))
        if c.abs_pos_embed:
            rows = grid[0] * grid[1] + (c.num_special_tokens if c.pos_embed_special_tokens else 0)
            self.pos_embedding = nn.Parameter(torch.empty(1, rows, d))
        self.conv_proj = nn.Conv2d(3, d, c.patch_size, c.patch_size, bias=not c.pre_norm)
        self.encoder = Encoder(c)
        self.norm = self._norm() if c.post_norm and not c.norm_after_pool else nn.Identity()
        self.embedding_norm = self._norm() if c.norm_after_pool else nn.Identity()
        self.attn_pool = self._build_pool() if c.attn_pool_head else None
        self.classifier = self._build_classifier(num_classes)
        self.rope = RoPE(c, grid)
        if not self.conv_proj.weight.is_meta:
            self.init_weights()

    # ----------------------------------------------------------------------------------- building
    def _norm(self) -> nn.Module:
        return make_norm(self.config.norm_layer_type, self.config.hidden_dim, self.config.norm_layer_eps)

    def _build_pool(self) -> MultiHeadAttentionPool | EfficientProbing:
        c = self.config
        if c.attn_pool_type == "EfficientProbing":
            return EfficientProbing(c.hidden_dim, c.attn_pool_num_heads or 1)
        return MultiHeadAttentionPool(
            c.hidden_dim, c.attn_pool_num_heads or c.num_heads, c.mlp_dim,
            norm_eps=c.attn_pool_norm_eps, act=c.attn_pool_act_layer_type,
        )

    def _build_classifier(self, num_classes: int) -> nn.Module:
        if num_classes < 0:
            raise ConfigError(f"num_classes must be >= 0, got {num_classes}")
        return nn.Linear(self.embedding_size, num_classes, bias=self.config.head_bias) if num_classes else nn.Identity()

    def _checked_size(self, size: Size | int) -> Size:
        h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        p = self.config.patch_size
        if h <= 0 or w <= 0 or h % p or w % p:
            raise ConfigError(f"size {(h, w)} must be positive multiples of the patch size {p}")
        return h, w

    def grid(self, size: Sequence[int]) -> Size:
        return size[0] // self.config.patch_size, size[1] // self.config.patch_size

    @torch.no_grad()
    def init_weights(self) -> None:
        """Fresh-model initialisation (spec §9); loading a checkpoint overwrites all of it."""
        p = self.config.patch_size
        nn.init.trunc_normal_(self.conv_proj.weight, std=(1 / (3 * p * p)) ** 0.5)
        if self.conv_proj.bias is not None:
            nn.init.zeros_(self.conv_proj.bias)
        for name in ("class_token", "reg_tokens"):
            if hasattr(self, name):
                nn.init.zeros_(getattr(self, name))
        if hasattr(self, "pos_embedding"):
            nn.init.normal_(self.pos_embedding, std=0.02)
        for block in cast(Iterable[EncoderBlock], self.encoder.block):
            for linear in (block.attn.qkv, block.attn.proj):
                nn.init.trunc_normal_(linear.weight, std=0.02)
                if linear.bias is not None:
                    nn.init.zeros_(linear.bias)
            if isinstance(block.mlp, SwiGLU):
                block.mlp.init_weights()
        if self.attn_pool is not None:
            self.attn_pool.init_weights()
        if isinstance(self.classifier, nn.Linear):
            nn.init.zeros_(self.classifier.weight)
            if self.classifier.bias is not None:
                nn.init.zeros_(self.classifier.bias)

    # ------------------------------------------------------------------------------------ inputs
    def _check_input(self, x: Tensor) -> Size:
        if x.dim() != 4 or x.shape[1] != 3:
            raise InputShapeError(f"expected an image batch of shape (B, 3, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        p = self.config.patch_size
        if h % p or w % p:
            raise InputShapeError(f"input size {(h, w)} is not divisible by the patch size {p}")
        if not self.dynamic_size and (h, w) != self.size:
            raise InputShapeError(
                f"input size {(h, w)} differs from the model size {self.size}; call "
                "set_dynamic_size(True) for per-call adaptation or adjust_size() to resize the model"
            )
        return self.grid((h, w))

    def _traced_dynamic(self) -> bool:
        """Exporting a dynamic-size graph: compute per-size tables in the graph rather than in Python."""
        return self.dynamic_size and torch.compiler.is_exporting()

    def _pos_embedding(self, grid: Size, antialias: bool | None = None) -> Tensor | None:
        if not self.config.abs_pos_embed:
            return None
        # At the native grid the interpolation is the identity (no antialias), so a traced graph may always run it.
        if not self._traced_dynamic() and grid == self.grid(self.size):  # this order: no guard on the grid
            return self.pos_embedding
        c = self.config
        prefix = c.num_special_tokens if c.pos_embed_special_tokens else 0
        antialias = c.pos_embed_antialias if antialias is None else antialias
        return resize_pos_embed(
            self.pos_embedding, prefix, self.grid(self.size), grid, c.pos_embed_interpolation_mode, antialias
        )

    def _special_tokens(self, batch: int, pos: Tensor | None) -> Tensor | None:
        parts = [getattr(self, n).expand(batch, -1, -1) for n in ("reg_tokens", "class_token") if hasattr(self, n)]
        if not parts:
            return None
        tokens = torch.cat(parts, dim=1)
        return tokens if pos is None else tokens + pos

    def _tokens(
        self,
        x: Tensor,
        ids_keep: Tensor | None = None,
        mask: Tensor | None = None,
        mask_token: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Patchify, add position embeddings, prepend special tokens, pre-norm: (B, S + K, D), sin, cos."""
        grid = self._check_input(x)
        patches = self.conv_proj(x).flatten(2).transpose(1, 2)  # (B, L, D), row-major
        if mask is not None:
            fill = mask_token.to(patches.dtype) if mask_token is not None else patches.new_zeros(())
            patches = torch.where(mask.bool().unsqueeze(-1), fill, patches)
        s = self.num_special_tokens
        pos, special_pos = self._pos_embedding(grid), None
        if pos is not None and self.config.pos_embed_special_tokens:
            pos, special_pos = pos[:, s:], pos[:, :s]
        if pos is not None:
            patches = patches + pos
        table = self.rope.build(grid) if self._traced_dynamic() else self.rope.table(grid)
        if ids_keep is not None:
            patches = patches.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))
            table = table[ids_keep]  # (B, K, 2d)
        special = self._special_tokens(x.shape[0], special_pos)
        tokens = patches if special is None else torch.cat([special, patches], dim=1)
        sin, cos = split_table(table, s, self.config.rope_rot_type)
        return self.encoder.pre_block(tokens), sin, cos

    # ----------------------------------------------------------------------------------- forward
    def forward_features(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """(B, 3, H, W) -> all tokens after the final norm, (B, S + L, D)."""
        tokens, sin, cos = self._tokens(x)
        return self.norm(self.encoder(tokens, sin, cos, _additive(attn_mask, tokens))[0])

    def embedding_from_features(self, tokens: Tensor) -> Tensor:
        return self.embedding_norm(self._pool(tokens))

    def _pool(self, tokens: Tensor) -> Tensor:
        c, s = self.config, self.num_special_tokens
        if self.attn_pool is not None:
            return self.attn_pool(tokens if c.attn_pool_special_tokens else tokens[:, s:])
        if not c.class_token:
            return tokens[:, s:].mean(dim=1)
        return tokens[:, c.num_reg_tokens]

    def embedding(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> pooled embedding (B, D)."""
        return self.embedding_from_features(self.forward_features(x))

    def classify(self, embedding: Tensor) -> Tensor:
        return self.classifier(embedding)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, num_classes), or the embedding (B, D) when the model has no classifier."""
        return self.classify(self.embedding(x))

    def detection_features(self, x: Tensor) -> dict[str, Tensor]:
        """Un-normed patch tokens as maps (B, D, H/p, W/p): ``{"neck": …}``, or one ``stageK`` per out index."""
        tokens, sin, cos = self._tokens(x)
        indices = self._out_indices()
        last, kept = self.encoder(tokens, sin, cos, keep=indices)
        gh, gw = self.grid(x.shape[-2:])
        maps = [t[:, self.num_special_tokens :].transpose(1, 2).reshape(x.shape[0], -1, gh, gw) for t in kept or [last]]
        if self.config.out_indices is None:
            return {"neck": maps[0]}
        return {f"stage{i + 1}": m for i, m in enumerate(maps)}

    def _out_indices(self) -> list[int]:
        n = self.config.num_layers
        return sorted(i % n for i in self.config.out_indices or ())

    def flatten_features(self, features: Tensor, include_special_tokens: bool = True) -> Tensor:
        return features if include_special_tokens else features[:, self.num_special_tokens :]

    # ------------------------------------------------------------------------- masked encoding
    def masked_encoding_omission(
        self,
        x: Tensor,
        ids_keep: Tensor | None = None,
        return_all_features: bool = False,
        return_keys: Literal["tokens", "embedding", "all"] = "tokens",
    ) -> dict[str, Tensor]:
        """Encode only the kept patches (B, K) with their own RoPE rows, for CAPI/MAE (spec §5.6)."""
        tokens, sin, cos = self._tokens(x, ids_keep=ids_keep)
        keep = range(self.config.num_layers) if return_all_features else ()
        last, kept = self.encoder(tokens, sin, cos, keep=keep)
        normed = self.norm(last)
        out: dict[str, Tensor] = {}
        if return_keys in ("tokens", "all"):
            out["tokens"] = torch.stack([*kept[:-1], normed], dim=-1) if return_all_features else normed
        if return_keys in ("embedding", "all"):
            out["embedding"] = self.embedding_from_features(normed)
        return out

    def masked_encoding_retention(
        self,
        x: Tensor,
        mask: Tensor,
        mask_token: Tensor | None = None,
        return_keys: Literal["features", "embedding", "all"] = "features",
    ) -> dict[str, Tensor]:
        """Encode all patches, masked ones (mask (B, L), 1 = masked) replaced by ``mask_token`` or zero."""
        tokens, sin, cos = self._tokens(x, mask=mask, mask_token=mask_token)
        normed = self.norm(self.encoder(tokens, sin, cos)[0])
        out: dict[str, Tensor] = {}
        if return_keys in ("features", "all"):
            gh, gw = self.grid(x.shape[-2:])
            patches = normed[:, self.num_special_tokens :]
            out["features"] = patches.transpose(1, 2).reshape(x.shape[0], -1, gh, gw)
        if return_keys in ("embedding", "all"):
            out["embedding"] = self.embedding_from_features(normed)
        return out

    # ------------------------------------------------------------------------------- adaptation
    def set_dynamic_size(self, dynamic_size: bool = True) -> None:
        """Accept any input size divisible by the patch; pos-embedding and RoPE adapt per call."""
        self.dynamic_size = dynamic_size

    def adjust_size(self, new_size: Size | int) -> None:
        """Resize permanently: interpolate the stored pos-embedding (antialiased) and rebuild RoPE."""
        new_size = self._checked_size(new_size)
        if new_size == self.size:
            return
        if self.config.abs_pos_embed:
            with torch.no_grad():
                pos = self._pos_embedding(self.grid(new_size), antialias=True)
            assert pos is not None  # abs_pos_embed
            self.pos_embedding = nn.Parameter(pos, requires_grad=self.pos_embedding.requires_grad)
        self.size = new_size
        self.rope.set_grid_size(self.grid(new_size))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier = self._build_classifier(num_classes)
        ref = self.conv_proj.weight
        self.classifier.to(ref.device, ref.dtype)
        if isinstance(self.classifier, nn.Linear):
            nn.init.zeros_(self.classifier.weight)
            if self.classifier.bias is not None:
                nn.init.zeros_(self.classifier.bias)

    def freeze(self, freeze_classifier: bool = True, unfreeze_features: bool = False) -> None:
        """Stop gradients to the body (and the classifier unless told otherwise)."""
        for param in self.parameters():
            param.requires_grad_(False)
        if not freeze_classifier:
            self.classifier.requires_grad_(True)
        if unfreeze_features:
            for module in (self.norm, self.embedding_norm, self.attn_pool):
                if module is not None:
                    module.requires_grad_(True)


def _additive(mask: Tensor | None, tokens: Tensor) -> Tensor | None:
    """Bool masks (True = may attend) become additive 0/-inf masks in the tokens' dtype."""
    if mask is None or mask.dtype != torch.bool:
        return mask
    return torch.zeros(mask.shape, dtype=tokens.dtype, device=mask.device).masked_fill(~mask, float("-inf"))
