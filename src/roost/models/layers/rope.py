"""2-D rotary position embedding: pure table builders and the two rotations (spec §3.3, §3.4, §12).

A table has one row per patch token, ``[sin (d) | cos (d)]``, computed in float32 exactly as the
reference does so that published weights see the same angles bit for bit.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _bands(head_dim: int, temperature: float) -> Tensor:
    nb = head_dim // 4
    exponents = torch.arange(nb, dtype=torch.float32) / nb
    return 1.0 / (temperature**exponents)


def _axis(length: int, offset: int, pretrain_length: int) -> Tensor:
    # Divide, then multiply, in float32: 1 ULP off the integer for some lengths, as in the reference.
    return (torch.arange(length, dtype=torch.float32) + offset) / length * pretrain_length


def _default_angles(
    head_dim: int,
    grid: tuple[int, int],
    temperature: float,
    indexing: str,
    offset: int,
    pt_grid: tuple[int, int] | None,
) -> Tensor:
    gh, gw = grid
    pt_h, pt_w = pt_grid or grid
    rows, cols = torch.meshgrid(_axis(gh, offset, pt_h), _axis(gw, offset, pt_w), indexing="ij")
    a0, a1 = (rows, cols) if indexing == "ij" else (cols, rows)
    f = _bands(head_dim, temperature)
    return torch.cat([a0.reshape(-1, 1) * f, a1.reshape(-1, 1) * f], dim=1)  # (L, d/2)


def _axial_angles(head_dim: int, grid: tuple[int, int], temperature: float) -> Tensor:
    gh, gw = grid
    rows, cols = torch.meshgrid(
        torch.arange(gh, dtype=torch.float32), torch.arange(gw, dtype=torch.float32), indexing="ij"
    )
    f = _bands(head_dim, temperature)
    return torch.cat([cols.reshape(-1, 1) * f, rows.reshape(-1, 1) * f], dim=1)


def _centered_angles(head_dim: int, grid: tuple[int, int], temperature: float) -> Tensor:
    gh, gw = grid
    row = (torch.arange(gh, dtype=torch.float32) + 0.5) / gh * 2 - 1
    col = (torch.arange(gw, dtype=torch.float32) + 0.5) / gw * 2 - 1
    rows, cols = torch.meshgrid(row, col, indexing="ij")
    f = _bands(head_dim, temperature)
    angles = 2 * math.pi * torch.cat([rows.reshape(-1, 1) * f, cols.reshape(-1, 1) * f], dim=1)
    return angles


def rope_table(
    head_dim: int,
    grid: tuple[int, int],
    *,
    temperature: float,
    style: str = "default",
    indexing: str = "ij",
    offset: int = 0,
    pt_grid: tuple[int, int] | None = None,
) -> Tensor:
    """The (L, 2d) float32 table ``[sin | cos]`` for a patch grid (gh, gw), on the CPU."""
    if style == "default":
        angles = _default_angles(head_dim, grid, temperature, indexing, offset, pt_grid)
    elif style == "axial":
        angles = _axial_angles(head_dim, grid, temperature)
    elif style == "centered_separate":
        angles = _centered_angles(head_dim, grid, temperature)
        return torch.cat([angles.sin(), angles.sin(), angles.cos(), angles.cos()], dim=1)  # tiled
    else:
        raise ValueError(f"unknown RoPE style {style!r}")
    # Adjacent duplication: each angle fills two neighbouring entries.
    return torch.cat([angles.sin(), angles.cos()], dim=1).repeat_interleave(2, dim=1)


def split_table(table: Tensor, num_special: int, rotation: str) -> tuple[Tensor, Tensor]:
    """(…, L, 2d) table -> (signed sin, cos), each (…, S + L, d), ready for :func:`apply_rope`.

    Special tokens are never rotated: they get cos = 1 and sin = 0, so one fused expression rotates the
    whole sequence and returns those tokens exactly unchanged. The sign of the rotation (the minus in
    rotate-half, or in the interleaved pairs) is folded into sin here, once per forward pass, so that
    each attention layer only swaps the pairs: one copy instead of a negation plus a concatenation.
    """
    d = table.shape[-1] // 2
    sin, cos = table[..., :d], table[..., d:]
    sign = torch.ones(d, dtype=table.dtype, device=table.device)
    if rotation == "standard":
        sign[: d // 2] = -1
    elif rotation == "interleaved":
        sign[0::2] = -1
    else:
        raise ValueError(f"unknown RoPE rotation {rotation!r}")
    sin = sin * sign
    if num_special:
        lead = (*table.shape[:-2], num_special, d)
        sin = torch.cat([sin.new_zeros(lead), sin], dim=-2)
        cos = torch.cat([cos.new_ones(lead), cos], dim=-2)
    return sin, cos


def swap_pairs(x: Tensor, rotation: str) -> Tensor:
    """The rotation partner of each element: j <-> j + d/2 (standard) or 2i <-> 2i+1 (interleaved)."""
    if rotation == "standard":
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x2, x1], dim=-1)
    return x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)


def apply_rope(x: Tensor, sin: Tensor, cos: Tensor, rotation: str) -> Tensor:
    """Rotate (B, h, N, d) queries or keys with tables from :func:`split_table` ((N, d) or (B, N, d)).

    standard: y[j] = x[j] cos[j] - x[j+d/2] sin[j], y[j+d/2] = x[j+d/2] cos[j+d/2] + x[j] sin[j+d/2];
    interleaved: y[2i] = x[2i] cos - x[2i+1] sin, y[2i+1] = x[2i+1] cos + x[2i] sin (spec §3.4).
    """
    if sin.dim() == 3:
        sin, cos = sin.unsqueeze(1), cos.unsqueeze(1)
    return torch.addcmul(x * cos, swap_pairs(x, rotation), sin)
