"""CAPI's inverse block masking with roll (training.md §1.2), as pure functions of a generator.

The visible region is one rectangle of exactly ``n_visible`` cells (trimmed in raster order), rolled
cyclically on the patch grid; everything else is masked. ``ids_predict`` is a random subset of the masked
positions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

ASPECT_RANGE = (0.5, 2.0)


def mask_counts(num_patches: int, mask_ratio: float, kept_mask_ratio: float) -> tuple[int, int, int]:
    """(n_masked, n_visible, n_predict): at 224 with 0.65 / 0.05 this is (166, 90, 8)."""
    n_masked = math.floor(num_patches * mask_ratio)
    return n_masked, num_patches - n_masked, math.floor(n_masked * kept_mask_ratio)


def log_aspect_range(grid: tuple[int, int], n_visible: int) -> tuple[float, float]:
    """The requested log-aspect range clipped to the feasible one; the closest feasible bound if disjoint."""
    h, w = grid
    lo_req, hi_req = math.log(ASPECT_RANGE[0]), math.log(ASPECT_RANGE[1])
    lo_f, hi_f = math.log(n_visible / w**2), math.log(h**2 / n_visible)
    lo, hi = max(lo_req, lo_f), min(hi_req, hi_f)
    if lo <= hi:
        return lo, hi
    bound = hi_f if hi_f < lo_req else lo_f
    return bound, bound


def visible_rectangle(grid: tuple[int, int], n_visible: int, log_ar: float, top: int, left: int) -> Tensor:
    """(H, W) bool map with the first ``n_visible`` cells (raster order) of the h×w rectangle at (top, left)."""
    h_grid, w_grid = grid
    h, w = rectangle_shape(grid, n_visible, log_ar)
    cells = torch.zeros(h * w, dtype=torch.bool)
    cells[:n_visible] = True
    out = torch.zeros(grid, dtype=torch.bool)
    out[top : top + h, left : left + w] = cells.view(h, w)
    assert top + h <= h_grid and left + w <= w_grid
    return out


def rectangle_shape(grid: tuple[int, int], n_visible: int, log_ar: float) -> tuple[int, int]:
    ar = math.exp(log_ar)
    return min(grid[0], math.ceil(math.sqrt(n_visible * ar))), min(grid[1], math.ceil(math.sqrt(n_visible / ar)))


def inverse_roll_block_mask(grid: tuple[int, int], n_visible: int, g: torch.Generator) -> Tensor:
    """(H, W) bool mask, True = masked; exactly H·W - n_visible cells masked."""
    lo, hi = log_aspect_range(grid, n_visible)
    log_ar = lo + (hi - lo) * torch.rand((), generator=g, dtype=torch.float64).item()
    h, w = rectangle_shape(grid, n_visible, log_ar)
    top = int(torch.randint(0, grid[0] - h + 1, (), generator=g))
    left = int(torch.randint(0, grid[1] - w + 1, (), generator=g))
    visible = visible_rectangle(grid, n_visible, log_ar, top, left)
    shift_r = int(torch.randint(0, grid[0], (), generator=g))
    shift_c = int(torch.randint(0, grid[1], (), generator=g))
    return ~visible.roll((shift_r, shift_c), dims=(0, 1))


def sample_mask_ids(
    grid: tuple[int, int], mask_ratio: float, kept_mask_ratio: float, g: torch.Generator
) -> tuple[Tensor, Tensor]:
    """(ids_keep ascending (n_visible,), ids_predict in random order (n_predict,)) for one image."""
    _, n_visible, n_predict = mask_counts(grid[0] * grid[1], mask_ratio, kept_mask_ratio)
    mask = inverse_roll_block_mask(grid, n_visible, g).flatten()
    ids_keep = torch.nonzero(~mask).flatten()
    masked = torch.nonzero(mask).flatten()
    ids_predict = masked[torch.randperm(masked.numel(), generator=g)[:n_predict]]
    return ids_keep, ids_predict
