"""Inverse block masking with roll: counts, shape of the visible block and hand-checked rectangles."""

from __future__ import annotations

import math

import torch

from roost.training.masking import (
    inverse_roll_block_mask,
    log_aspect_range,
    mask_counts,
    sample_mask_ids,
    visible_rectangle,
)


def test_counts_at_224() -> None:
    assert mask_counts(256, 0.65, 0.05) == (166, 90, 8)


def test_rectangle_is_trimmed_in_raster_order() -> None:
    # 6 visible cells at aspect 1: a ceil(sqrt 6) = 3 x 3 rectangle, of which the first two rows are kept
    got = visible_rectangle((4, 4), 6, 0.0, 1, 0).int()
    expected = torch.tensor([[0, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]])
    assert torch.equal(got, expected)


def test_aspect_range_is_clipped_to_what_fits() -> None:
    lo, hi = log_aspect_range((16, 16), 90)
    assert (lo, hi) == (math.log(0.5), math.log(2.0))
    lo, hi = log_aspect_range((4, 16), 30)  # tall rectangles cannot exceed 4 rows: hi = log(16 / 30)
    assert hi == math.log(16 / 30) and lo == math.log(0.5)
    lo, hi = log_aspect_range((2, 16), 20)  # disjoint: the feasible bound closest to [0.5, 2]
    assert lo == hi == math.log(4 / 20)


def _is_rolled_block(visible: torch.Tensor) -> bool:
    """Some cyclic shift turns the map into rows of a rectangle trimmed in raster order."""
    h, w = visible.shape
    n = int(visible.sum())
    for dr in range(h):
        for dc in range(w):
            m = visible.roll((dr, dc), (0, 1))
            rows = torch.nonzero(m.any(1)).flatten()
            cols = torch.nonzero(m.any(0)).flatten()
            top, left = int(rows[0]), int(cols[0])
            rh, rw = int(rows[-1]) - top + 1, int(cols[-1]) - left + 1
            cells = torch.zeros(rh * rw, dtype=torch.bool)
            cells[:n] = True
            if rh * rw >= n and torch.equal(m[top : top + rh, left : left + rw], cells.view(rh, rw)):
                return True
    return False


def test_masks_have_exact_counts_and_one_wrapped_block() -> None:
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        mask = inverse_roll_block_mask((8, 8), 23, g)
        assert int((~mask).sum()) == 23
        assert _is_rolled_block(~mask)


def test_ids_are_sorted_visible_and_masked_subsets() -> None:
    g = torch.Generator().manual_seed(0)
    ids_keep, ids_predict = sample_mask_ids((16, 16), 0.65, 0.05, g)
    assert ids_keep.shape == (90,) and ids_predict.shape == (8,)
    assert torch.equal(ids_keep, ids_keep.sort().values)
    assert not set(ids_keep.tolist()) & set(ids_predict.tolist())
    assert len(set(ids_predict.tolist())) == 8
