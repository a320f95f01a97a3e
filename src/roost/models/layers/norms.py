"""Norm and activation factories shared by the RoPE-ViT blocks."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def make_norm(kind: str, dim: int, eps: float) -> nn.Module:
    """LayerNorm (weight and bias) or RMSNorm (weight only), over the last dim."""
    if kind == "LayerNorm":
        return nn.LayerNorm(dim, eps=eps)
    if kind == "RMSNorm":
        return nn.RMSNorm(dim, eps=eps)
    raise ValueError(f"unknown norm layer type {kind!r}")


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x), the activation of OpenAI CLIP."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "quick_gelu": QuickGELU,
    "silu": nn.SiLU,
    "relu": nn.ReLU,
}
