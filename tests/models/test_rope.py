"""RoPE tables and rotations against the spec's check values (architecture.md §3.3, §3.4)."""

from __future__ import annotations

import math

import pytest
import torch

from roost.models.layers.rope import apply_rope, rope_table, split_table

A = {"head_dim": 56, "grid": (18, 18), "temperature": 100.0}
B = {"head_dim": 64, "grid": (16, 16), "temperature": 100.0}
C = {"head_dim": 64, "grid": (32, 32), "temperature": 10000.0, "indexing": "xy", "offset": 1}


@pytest.mark.parametrize(("kwargs", "total"), [(A, 13489.844298), (B, 12825.872614), (C, 51839.147394)])
def test_table_sums(kwargs: dict, total: float) -> None:
    table = rope_table(**kwargs)
    d = kwargs["head_dim"]
    assert table.dtype == torch.float32
    assert table.shape == (kwargs["grid"][0] * kwargs["grid"][1], 2 * d)
    assert table.double().sum().item() == pytest.approx(total, abs=1e-5)


def test_check_values() -> None:
    b = rope_table(**B)[17]  # r=1, c=1
    expected = torch.tensor([0.841471, 0.841471, 0.681561, 0.681561, 0.533168, 0.533168])
    assert torch.allclose(b[:6], expected, atol=1e-6)
    assert torch.allclose(b[32:38], expected, atol=1e-6)
    assert torch.allclose(b[64:67], torch.tensor([0.540302, 0.540302, 0.731761]), atol=1e-6)
    assert torch.equal(rope_table(**B)[0, :64], torch.zeros(64))
    a = rope_table(**A)[5]  # r=0, c=5
    assert torch.equal(a[:28], torch.zeros(28))
    assert a[28].item() == pytest.approx(math.sin(5), abs=1e-6) and a[29] == a[28]
    c = rope_table(**C)[5]  # r=0, c=5, xy with offset 1
    assert c[0].item() == pytest.approx(math.sin(6), abs=1e-6) and c[1] == c[0]
    assert c[2].item() == pytest.approx(-0.230368, abs=1e-6)
    assert c[32].item() == pytest.approx(math.sin(1), abs=1e-6)
    assert c[64].item() == pytest.approx(math.cos(6), abs=1e-6)


def test_coordinates_are_divide_then_multiply() -> None:
    # With P = s the coordinate is ((i + 0) / 13) * 13 in float32, 1 ULP off some integers.
    table = rope_table(head_dim=8, grid=(13, 1), temperature=100.0)
    i = torch.arange(13, dtype=torch.float32)
    assert torch.equal(table[:, 0], torch.sin(i / 13 * 13))


def test_rotations_follow_the_spec_formulas() -> None:
    table = rope_table(head_dim=8, grid=(2, 2), temperature=100.0)
    x = torch.randn(1, 1, 4, 8, dtype=torch.float64)
    s, c = table[:, :8].double(), table[:, 8:].double()
    std = apply_rope(x, *split_table(table.double(), 0, "standard"), "standard")
    half = torch.cat([-x[..., 4:], x[..., :4]], dim=-1)
    assert torch.allclose(std, x * c + half * s)
    inter = apply_rope(x, *split_table(table.double(), 0, "interleaved"), "interleaved")
    pairs = torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).flatten(-2)
    assert torch.allclose(inter, x * c + pairs * s)


@pytest.mark.parametrize("rotation", ["standard", "interleaved"])
def test_special_tokens_stay_unrotated(rotation: str) -> None:
    table = rope_table(head_dim=16, grid=(2, 3), temperature=100.0)
    sin, cos = split_table(table, 2, rotation)
    x = torch.randn(1, 2, 8, 16)
    y = apply_rope(x, sin, cos, rotation)
    assert torch.equal(y[:, :, :2], x[:, :, :2])
    assert not torch.allclose(y[:, :, 3:], x[:, :, 3:])


def test_interleaved_is_a_rotation() -> None:
    table = rope_table(head_dim=16, grid=(3, 3), temperature=10000.0)
    sin, cos = split_table(table, 0, "interleaved")
    x = torch.randn(1, 1, 9, 16, dtype=torch.float64)
    y = apply_rope(x, sin.double(), cos.double(), "interleaved")  # a true rotation of each pair
    pair_norms = lambda t: t.unflatten(-1, (-1, 2)).norm(dim=-1)  # noqa: E731
    assert torch.allclose(pair_norms(x), pair_norms(y))


def test_other_styles_build() -> None:
    axial = rope_table(head_dim=16, grid=(2, 3), temperature=100.0, style="axial")
    centered = rope_table(head_dim=16, grid=(2, 3), temperature=100.0, style="centered_separate")
    assert axial.shape == centered.shape == (6, 32)
    assert torch.equal(centered[:, :4], centered[:, 8:12])  # tiled, not duplicated
    with pytest.raises(ValueError, match="unknown RoPE style"):
        rope_table(head_dim=16, grid=(2, 3), temperature=100.0, style="spiral")
