"""Feed-forward layers: the GELU MLP (keys ``0`` and ``3``) and SwiGLU (spec §3.6)."""

from __future__ import annotations

from torch import Tensor, nn

from roost.models.layers.norms import ACTIVATIONS, make_norm


def ffn(dim: int, hidden: int, act: str = "gelu") -> nn.Sequential:
    """Linear -> activation -> Dropout -> Linear -> Dropout; the layout fixes the keys ``0.*``, ``3.*``."""
    layers = [nn.Linear(dim, hidden), ACTIVATIONS[act](), nn.Dropout(0.0), nn.Linear(hidden, dim), nn.Dropout(0.0)]
    return nn.Sequential(*layers)


class SwiGLU(nn.Module):
    """fc2(SiLU(fc1_g(x)) * fc1_x(x)), optionally with a norm over the hidden width (NormFormer ``nf``)."""

    def __init__(self, dim: int, hidden: int, *, norm: tuple[str, float] | None = None) -> None:
        super().__init__()
        self.fc1_g = nn.Linear(dim, hidden)
        self.fc1_x = nn.Linear(dim, hidden)
        self.act = nn.SiLU()
        self.norm = make_norm(norm[0], hidden, norm[1]) if norm else nn.Identity()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.norm(self.act(self.fc1_g(x)) * self.fc1_x(x)))

    def init_weights(self) -> None:
        nn.init.normal_(self.fc1_g.weight, std=1e-6)
        nn.init.ones_(self.fc1_g.bias)
