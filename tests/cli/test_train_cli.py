"""``roost train …`` end to end through the CLI, and the trained checkpoints used by ``roost orient / predict``."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from roost.cli.app import app
from roost.weights.load import load_model
from tests.conftest import SHARED

PHOTOS = ["ladybird.jpg", "kite.jpg", "dune.jpg", "garden.jpg", "wood.jpg", "aqua.jpg", "storm.jpg", "path.jpg"]
TINY = "model_config={num_layers=1, hidden_dim=32, num_heads=2, mlp_dim=64, drop_path_rate=0.0}"
COMMON = ["--batch-size", "4", "--set", TINY, "--set", "workers=0"]
runner = CliRunner()
pytestmark = pytest.mark.skipif(not (SHARED / "photos" / "kite.jpg").exists(), reason="shared photos not present")


def cli(*args: str) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test here runs on one torch thread (see tests/conftest.py)."""


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Real photos, shrunk to 64 px, in two class folders ("a": the first half, "b": the rest)."""
    for i, name in enumerate(PHOTOS):
        folder = tmp_path / "photos" / ("a" if i < len(PHOTOS) // 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.open(SHARED / "photos" / name).convert("RGB")
        image.thumbnail((64, 64))
        image.save(folder / f"{Path(name).stem}.png")
    return tmp_path / "photos"


def rows(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_rotnet_then_orient(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "rot"
    cli("train", "rotnet", "--network", "rope_vit_reg4_b14", "--data-path", str(photos), "--out-dir", str(out),
        "--epochs", "2", "--size", "28", *COMMON)
    checkpoint = out / "rope_vit_reg4_b14_rotnet_2.pt"
    assert len(rows(out / "log.csv")) == 4  # 8 images / batch 4 × 2 epochs
    report = tmp_path / "r.csv"
    cli("orient", str(photos), "-r", "--model", str(checkpoint), "--report", str(report), "--workers", "0", "--quiet")
    found = rows(report)
    assert len(found) == len(PHOTOS)
    assert all(r["rotation"] in {"0", "90", "180", "270"} and not r["error"] for r in found)


def test_classify_then_predict(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "cls"
    cli("train", "classify", "--network", "rope_vit_reg4_b14", "--data-path", str(photos), "--val-path", str(photos),
        "--out-dir", str(out), "--epochs", "1", "--size", "28", *COMMON, "--set", "top_k=1")
    checkpoint = out / "rope_vit_reg4_b14_1.pt"
    _, info = load_model(None, checkpoint)
    assert info.class_to_idx == {"a": 0, "b": 1}
    assert [int(r["epoch"]) for r in rows(out / "eval.csv")] == [1]
    report = tmp_path / "p.csv"
    cli("predict", str(photos), "-r", "--model", str(checkpoint), "--topk", "2", "-o", str(report), "--workers", "0",
        "--quiet")
    found = rows(report)
    assert len(found) == len(PHOTOS)
    assert all({r["label_1"], r["label_2"]} == {"a", "b"} for r in found)


def test_capi_then_rotnet_init(photos: Path, tmp_path: Path) -> None:
    capi = tmp_path / "capi"
    cli("train", "capi", "--network", "rope_vit_reg4_b14_avg", "--data-path", str(photos), "--out-dir", str(capi),
        "--epochs", "1", "--size", "56", *COMMON, "--set", "decoder_layers=1", "--set", "decoder_dim=32",
        "--set", "decoder_heads=2", "--set", "num_clusters=16", "--set", "kept_mask_ratio=0.5")
    teacher_file = capi / "rope_vit_reg4_b14_avg_capi_1.pt"
    teacher, info = load_model(None, teacher_file)
    assert info.class_to_idx == {} and teacher.num_classes == 0
    rot = tmp_path / "rot"
    cli("train", "rotnet", "--network", "rope_vit_reg4_b14_ap", "--init", str(teacher_file), "--data-path",
        str(photos), "--out-dir", str(rot), "--epochs", "1", "--size", "56", *COMMON)
    net, info = load_model(None, rot / "rope_vit_reg4_b14_ap_rotnet_1.pt")
    assert info.class_to_idx == {"0": 0, "90": 1, "180": 2, "270": 3}
    trained = net.state_dict()
    for key, tensor in teacher.state_dict().items():  # the body is the CAPI teacher, frozen
        if not key.startswith("norm."):
            assert torch.equal(trained[key], tensor), key
