"""Attention-pooling heads (spec §3.9, §12)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from roost.models.layers.mlp import ffn


class MultiHeadAttentionPool(nn.Module):
    """One learned latent query attends over the tokens; then proj and a residual pre-norm MLP.

    No residual from the latent, no norm on keys or values, no RoPE (spec §3.9).
    """

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, *, norm_eps: float = 1e-5, act: str = "gelu") -> None:
        super().__init__()
        self.num_heads = num_heads
        self.latent = nn.Parameter(torch.empty(1, 1, dim))
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = ffn(dim, mlp_dim, act)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, L, D) -> (B, D)."""
        b, n, dim = x.shape
        d = dim // self.num_heads
        q = self.q(self.latent).view(1, 1, self.num_heads, d).transpose(1, 2).expand(b, -1, -1, -1)
        k, v = self.kv(x).view(b, n, 2, self.num_heads, d).permute(2, 0, 3, 1, 4).unbind(0)
        o = F.scaled_dot_product_attention(q.to(v.dtype), k, v, scale=d**-0.5)
        o = self.proj(o.transpose(1, 2).reshape(b, 1, dim))
        o = o + self.mlp(self.norm(o))
        return o[:, 0]

    def init_weights(self) -> None:
        nn.init.trunc_normal_(self.latent, std=self.latent.shape[-1] ** -0.5)


class EfficientProbing(nn.Module):
    """Efficient probing (Psomas et al. 2025): 32 latent queries attend over the raw tokens.

    The keys are the input itself split into heads, the values a single linear map; the attention is
    averaged over heads and queries. Not checked against reference outputs (no published weights use it).
    """

    def __init__(self, dim: int, num_heads: int = 1, num_queries: int = 32) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.latent = nn.Parameter(torch.empty(1, num_queries, dim))
        self.v = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, dim = x.shape
        h, d = self.num_heads, dim // self.num_heads
        q = self.latent.view(1, -1, h, d).transpose(1, 2)  # (1, h, Q, d)
        k = x.view(b, n, h, d).transpose(1, 2)  # (B, h, L, d)
        attn = torch.softmax(q @ k.transpose(-2, -1) * d**-0.5, dim=-1).mean(dim=(1, 2))  # (B, L)
        return (attn.unsqueeze(1) @ self.v(x))[:, 0]

    def init_weights(self) -> None:
        nn.init.trunc_normal_(self.latent, std=0.02)
