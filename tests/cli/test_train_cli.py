"""``roost train …`` end to end through the CLI: options at 0, several data paths, epoch lines, run folders,
bad values; and the trained checkpoints used by ``roost orient / predict`` (on the shared photos)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from roost.cli.app import app
from roost.models.registry import create_model
from roost.weights.load import load_model, save_model
from tests.conftest import SHARED
from tests.training.conftest import make_folder

PHOTOS = ["ladybird.jpg", "kite.jpg", "dune.jpg", "garden.jpg", "wood.jpg", "aqua.jpg", "storm.jpg", "path.jpg"]
TINY = "model_config={num_layers=1, hidden_dim=32, num_heads=2, mlp_dim=64, drop_path_rate=0.0}"
COMMON = ["--batch-size", "4", "--set", TINY, "--set", "workers=0"]
CAPI_TINY = ["--set", "decoder_layers=1", "--set", "decoder_dim=32", "--set", "decoder_heads=2",
             "--set", "num_clusters=16", "--set", "kept_mask_ratio=0.5"]
runner = CliRunner()
needs_photos = pytest.mark.skipif(not (SHARED / "photos" / "kite.jpg").exists(), reason="shared photos not present")


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


def cli(*args: str) -> str:
    code, output = invoke(*args)
    assert code == 0, output
    return output


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


@pytest.fixture(scope="module")
def colours(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two generated class-folder roots: 4 classes x 2 images, and 4 classes x 3 images."""
    base = tmp_path_factory.mktemp("colours")
    return make_folder(base / "a", 2, 0), make_folder(base / "b", 3, 1)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


@needs_photos
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


@needs_photos
def test_classify_then_predict(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "cls"
    cli("train", "classify", "--network", "rope_vit_reg4_b14", "--data-path", str(photos), "--val-path", str(photos),
        "--out-dir", str(out), "--epochs", "1", "--size", "28", *COMMON, "--set", "top_k=1")
    checkpoint = out / "rope_vit_reg4_b14_1.pt"
    _, info = load_model(None, checkpoint)
    assert info.class_to_idx == {"a": 0, "b": 1}
    assert [int(r["epoch"]) for r in rows(out / "eval.csv")] == [1]
    report = tmp_path / "p.csv"
    cli("predict", str(photos), "-r", "--model", str(checkpoint), "--topk", "2", "--report", str(report),
        "--workers", "0", "--quiet")
    found = rows(report)
    assert len(found) == len(PHOTOS)
    assert all({r["label_1"], r["label_2"]} == {"a", "b"} for r in found)


@needs_photos
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


@pytest.mark.parametrize("lr", ["0", "0.01"])
def test_lr_zero_is_honoured(lr: str, colours: tuple[Path, Path], tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = create_model("rope_vit_reg4_b14", 4, size=28, config={"num_layers": 1, "hidden_dim": 32, "num_heads": 2,
                                                                 "mlp_dim": 64, "drop_path_rate": 0.0})
    classes = {"blue": 0, "green": 1, "red": 2, "yellow": 3}
    rgb = {"mean": (0.5,) * 3, "std": (0.5,) * 3}
    init = save_model(tmp_path / "init.pt", net, class_to_idx=classes, rgb_stats=rgb)
    cli("train", "classify", "--init", str(init), "--data-path", str(colours[1]), "--out-dir", str(tmp_path / "out"),
        "--epochs", "1", "--lr", lr, "--size", "28", "--batch-size", "4", "--set", "val_path=[]", "--set", "workers=0")
    trained, _ = load_model(None, tmp_path / "out" / "rope_vit_reg4_b14_1.pt")
    assert len(rows(tmp_path / "out" / "log.csv")) == 3  # 12 images, batch 4: three optimizer steps
    same = [torch.equal(t, trained.state_dict()[k]) for k, t in net.state_dict().items()]
    assert all(same) if lr == "0" else not all(same)


def test_zero_epochs_is_refused_before_anything_is_written(colours: tuple[Path, Path], tmp_path: Path) -> None:
    code, output = invoke("train", "classify", "--network", "rope_vit_reg4_b14", "--data-path", str(colours[0]),
                          "--out-dir", str(tmp_path / "out"), "--epochs", "0", *COMMON)
    assert code == 2 and "epochs must be >= 1, got 0" in output and "Traceback" not in output
    assert not (tmp_path / "out").exists()
    assert "Epochs to train, >= 1" in invoke("train", "classify", "--help")[1]


@pytest.mark.parametrize(
    ("command", "extra"),
    [
        ("classify", ["--size", "28", "--val-path", "B", "--set", "top_k=1"]),
        ("rotnet", ["--size", "28", "--set", "val_path=[]"]),
        ("capi", ["--size", "56", *CAPI_TINY]),
    ],
)
def test_every_data_path_is_used_and_epochs_show_losses(
    command: str, extra: list[str], colours: tuple[Path, Path], tmp_path: Path
) -> None:
    extra = [str(colours[1]) if e == "B" else e for e in extra]
    output = cli("train", command, "--network", "rope_vit_reg4_b14", "--data-path", str(colours[0]), "--data-path",
                 str(colours[1]), "--out-dir", str(tmp_path / "out"), "--epochs", "2", *COMMON, *extra)
    assert "20 training images, 5 batches per epoch, 2 epochs" in output  # 8 + 12
    assert len(rows(tmp_path / "out" / "log.csv")) == 10  # 20 images / batch 4 x 2 epochs
    epoch_lines = [line for line in output.splitlines() if re.match(r"epoch \d/2 \(step \d+\): ", line)]
    assert len(epoch_lines) == 2
    expected = {"classify": ["train_loss", "train_top1", "val_loss", "val_top1"], "rotnet": ["train_loss"],
                "capi": ["train_loss", "capi_loss", "clustering_loss"]}[command]
    for key in expected:
        assert all(re.search(rf"\b{key}=-?\d", line) for line in epoch_lines), (key, epoch_lines)
    assert ("val_loss" in epoch_lines[0]) == (command == "classify")


def test_a_used_run_folder_needs_resume_or_overwrite(colours: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["train", "rotnet", "--network", "rope_vit_reg4_b14", "--data-path", str(colours[0]), "--out-dir", str(out),
            "--epochs", "1", "--size", "28", *COMMON]
    cli(*args)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()}
    code, output = invoke(*args)
    assert code == 2 and len(output.strip().splitlines()) == 1 and "already holds a run" in output
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir()} == before
    assert "resuming after step 2" in cli(*args, "--resume")
    assert "epoch 1/1" in cli(*args, "--overwrite")
    code, output = invoke(*args, "--resume", "--overwrite")
    assert code == 2 and "give one" in output


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--lr", "-1"], "lr must be >= 0, got -1.0"),
        (["--batch-size", "0"], "batch_size must be >= 1, got 0"),
        (["--set", "log_every=0"], "log_every must be >= 1"),
        (["--set", "epochs=abc"], "option epochs='abc' does not fit type int"),
        (["--set", "betas=[0.9]"], "option betas=[0.9] does not fit type tuple[float, float]"),
        (["--set", "warmup_epochs=5"], "warmup_epochs must be in [0, epochs=1]"),
        (["--rotation-prob", "0"], "rotation_prob must be in (0, 1]"),
    ],
)
def test_bad_values_are_one_line(option: list[str], message: str, colours: tuple[Path, Path], tmp_path: Path) -> None:
    code, output = invoke("train", "rotnet", "--network", "rope_vit_reg4_b14", "--data-path", str(colours[0]),
                          "--out-dir", str(tmp_path / "out"), "--epochs", "1", *COMMON, *option)
    assert code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), lines
    assert not (tmp_path / "out").exists()
