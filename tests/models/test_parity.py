"""Parity with the reference on every case of ../shared/parity (weights rebuilt by formula)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import roost
from tests.conftest import SHARED
from tests.formula import fill_formula

PARITY = SHARED / "parity"
CASES = sorted(p.parent.name for p in PARITY.glob("*/manifest.json"))

pytestmark = pytest.mark.skipif(not CASES, reason=f"parity fixtures not found at {PARITY}")


def _build(case: str) -> tuple[dict, torch.nn.Module]:
    manifest = json.loads((PARITY / case / "manifest.json").read_text())
    net = roost.create_model(manifest["network"], manifest["num_classes"], size=tuple(manifest["size"]))
    fill_formula(net)
    run = tuple(manifest["run_size"])
    if run != tuple(manifest["size"]):
        if manifest["dynamic"]:
            net.set_dynamic_size(True)
        else:
            net.adjust_size(run)
    return manifest, net.eval()


@pytest.mark.parametrize("case", CASES)
def test_state_dict_matches_manifest(case: str) -> None:
    manifest = json.loads((PARITY / case / "manifest.json").read_text())
    with torch.device("meta"):  # names, shapes and dtypes only: no need to fill full-size weights
        net = roost.create_model(manifest["network"], manifest["num_classes"], size=tuple(manifest["size"]))
    got = [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in net.state_dict().items()]
    assert got == manifest["state_dict"]
    assert sum(p.numel() for p in net.parameters()) == manifest["num_params"]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_outputs_match_reference(case: str) -> None:
    manifest, net = _build(case)
    io = load_file(PARITY / case / "io.safetensors")
    with torch.inference_mode():
        x = io["input"]
        assert torch.allclose(net(x), io["logits"], atol=1e-4, rtol=0)
        assert torch.allclose(net.embedding(x), io["embedding"], atol=1e-4, rtol=0)
        features = net.detection_features(x)
    assert sorted(features) == sorted(manifest["outputs"]["detection_features"])
    for stage, value in features.items():
        assert torch.allclose(value, io[f"features.{stage}"], atol=1e-4, rtol=0), stage
