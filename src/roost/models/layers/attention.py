"""Multi-head self-attention with 2-D RoPE on scaled_dot_product_attention (spec §3.5)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from roost.models.layers.norms import make_norm
from roost.models.layers.rope import apply_rope


class RoPEAttention(nn.Module):
    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        rotation: str,
        qkv_bias: bool = True,
        qk_norm: bool = False,
        attn_norm: bool = False,
        norm: tuple[str, float] = ("LayerNorm", 1e-6),
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.rotation = rotation
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = make_norm(norm[0], self.head_dim, norm[1]) if qk_norm else nn.Identity()
        self.k_norm = make_norm(norm[0], self.head_dim, norm[1]) if qk_norm else nn.Identity()
        self.norm = make_norm(norm[0], dim, norm[1]) if attn_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, sin: Tensor, cos: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """x (B, N, D); sin/cos (N, d) or (B, N, d) with identity rows for the special tokens."""
        b, n, dim = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q = apply_rope(self.q_norm(q), sin, cos, self.rotation).to(v.dtype)
        k = apply_rope(self.k_norm(k), sin, cos, self.rotation).to(v.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=self.head_dim**-0.5)
        return self.proj(self.norm(out.transpose(1, 2).reshape(b, n, dim)))
