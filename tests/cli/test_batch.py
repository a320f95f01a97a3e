"""End-to-end ``roost orient / predict / embed`` on real photos with reference-written checkpoints."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import roost
from roost.cli.app import app
from roost.data.decode import load_image
from tests.conftest import SHARED

CKPT = SHARED / "fixtures" / "checkpoints"
ROTNET = CKPT / "rope_vit_reg8_so150m_p14_swiglu_rms_ap_tiny-rotnet.pt"
PLACES = CKPT / "rope_vit_reg4_b14_tiny-places.safetensors"
PE = CKPT / "rope_i_vit_reg1_s16_pn_npn_avg_c1_tiny-pe.pt"
PHOTOS = ["ladybird.jpg", "kite.jpg", "dune.jpg", "garden.jpg", "wood.jpg", "aqua.jpg"]
ANGLES = [0, 90, 180, 270]
runner = CliRunner()
pytestmark = pytest.mark.skipif(not ROTNET.exists(), reason="shared fixtures not present")


def cli(*args: str, code: int = 1) -> None:
    """Run a batch command; ``code`` 1 is expected where the inputs include the bad files."""
    result = runner.invoke(app, [*args, "--quiet", "--workers", "0", "--dtype", "fp32"], env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output + repr(result.exception)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Real photos rotated by known angles (PNG, and JPEG via lossless-safe sizes), plus bad files."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for i, name in enumerate(PHOTOS):
        image = Image.open(SHARED / "photos" / name).convert("RGB")
        angle = ANGLES[i % 4]
        rotated = image.rotate(angle, expand=True)
        rotated.save(folder / f"{Path(name).stem}_{angle}.png")
        w, h = (d // 16 * 16 for d in rotated.size)  # MCU-aligned, so the JPEG fix is lossless
        rotated.crop((0, 0, w, h)).save(folder / "sub" / f"{Path(name).stem}_{angle}.jpg", quality=90)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes((SHARED / "photos" / "kite.jpg").read_bytes()[:3000])
    (folder / "notes.png").write_text("not an image")
    return folder


def expected_probs(paths: list[Path]) -> dict[str, np.ndarray]:
    net, info = roost.load_pretrained_model(ROTNET, inference=True)
    transform = roost.classification_transform(roost.get_size_from_signature(info.signature), info.rgb_stats)
    with torch.inference_mode():
        return {str(p): net(transform(load_image(p)).unsqueeze(0)).softmax(1)[0].numpy() for p in paths}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_orient_report_fix_copy_and_resume(photos: Path, tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in photos.rglob("*") if p.is_file()}
    report, out = tmp_path / "report.csv", tmp_path / "upright"
    cli("orient", str(photos), "-r", "-m", str(ROTNET), "--report", str(report), "--fix", "copy",
        "-o", str(out), "--threshold", "0", "--no-draft")
    rows = read_csv(report)
    assert len(rows) == len(before)
    errors = {Path(r["path"]).name for r in rows if r["error"]}
    assert errors == {"empty.jpg", "truncated.jpg", "notes.png"}
    good = [r for r in rows if not r["error"]]
    expected = expected_probs([Path(r["path"]) for r in good])
    for row in good:
        probs = expected[row["path"]]
        assert int(row["rotation"]) == ANGLES[int(np.argmax(probs))]
        np.testing.assert_allclose([float(row[f"p{a}"]) for a in ANGLES], probs, atol=1e-5)
        src = Path(row["path"])
        fixed = out / src.relative_to(photos)
        if row["rotation"] == "0":  # the copy folder holds every image: upright ones unchanged
            assert row["action"] == "copied unchanged" and fixed.read_bytes() == src.read_bytes()
            continue
        assert row["action"] == "rotated (lossless)"
        upright = np.asarray(Image.open(src).convert("RGB").rotate(-int(row["rotation"]), expand=True), np.int16)
        got = np.asarray(Image.open(fixed).convert("RGB"), np.int16)
        if src.suffix == ".png":
            assert np.array_equal(got, upright)  # pixel for pixel
        else:  # DCT-domain rotation: same coefficients; only chroma upsampling differs slightly
            assert got.shape == upright.shape and np.abs(got - upright).mean() < 1.0
    assert {p: p.read_bytes() for p in photos.rglob("*") if p.is_file()} == before  # originals intact
    assert any(r["rotation"] != "0" for r in good), "the fixture model should call some image rotated"

    # Resume: a second run finds every input finished and adds nothing.
    # Exit status 1 still: the bad files' rows from the first run have errors.
    cli("orient", str(photos), "-r", "-m", str(ROTNET), "--report", str(report), code=1)
    assert len(read_csv(report)) == len(rows)


def test_orient_resumes_after_an_interruption(photos: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.jsonl"
    cli("orient", str(photos), "-m", str(ROTNET), "--report", str(report))
    lines = report.read_text().splitlines()
    report.write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])  # a crash mid-write
    cli("orient", str(photos), "-m", str(ROTNET), "--report", str(report), code=1)
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert sorted(r["path"] for r in rows) == sorted(json.loads(line)["path"] for line in lines)


def test_orient_inplace_keeps_a_backup(photos: Path, tmp_path: Path) -> None:
    target = photos / "sub"
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    report = tmp_path / "report.parquet"
    cli("orient", str(target), "-m", str(ROTNET), "--report", str(report), "--fix", "inplace", "--threshold", "0",
        code=0)
    table = pq.read_table(report).to_pylist()
    rotated = [r for r in table if r["rotation"] != 0]
    assert rotated and all(r["action"] == "rotated (lossless)" for r in rotated)
    for r in rotated:
        path = Path(r["path"])
        assert (path.parent / (path.name + ".orig")).read_bytes() == before[path.name]
        assert path.read_bytes() != before[path.name]
    for r in table:
        if r["rotation"] == 0:
            assert Path(r["path"]).read_bytes() == before[Path(r["path"]).name]


def test_orient_dry_run_and_threshold_change_nothing(photos: Path, tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in photos.rglob("*") if p.is_file()}
    report = tmp_path / "r.csv"
    cli("orient", str(photos), "-r", "-m", str(ROTNET), "--report", str(report), "--fix", "inplace", "--dry-run")
    cli("orient", str(photos), "-r", "-m", str(ROTNET), "--report", str(tmp_path / "t.csv"), "--fix", "exif",
        "--threshold", "0.999")
    assert {p: p.read_bytes() for p in photos.rglob("*") if p.is_file()} == before
    assert {r["action"] for r in read_csv(tmp_path / "t.csv") if not r["error"]} <= {"none", "skipped (low confidence)"}


def test_predict_topk(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred.csv"
    cli("predict", str(photos), "-m", str(PLACES), "--topk", "3", "--report", str(out))
    rows = [r for r in read_csv(out) if not r["error"]]
    assert rows and list(rows[0]) == ["path", "label_1", "prob_1", "label_2", "prob_2", "label_3", "prob_3", "error"]
    net, info = roost.load_pretrained_model(PLACES, inference=True)
    names = {i: n for n, i in info.class_to_idx.items()}
    transform = roost.classification_transform(roost.get_size_from_signature(info.signature), info.rgb_stats)
    with torch.inference_mode():
        probs = net(transform(load_image(rows[0]["path"])).unsqueeze(0)).softmax(1)[0]
    assert rows[0]["label_1"] == names[int(probs.argmax())]
    assert float(rows[0]["prob_1"]) == pytest.approx(float(probs.max()), abs=1e-5)
    assert float(rows[0]["prob_1"]) >= float(rows[0]["prob_2"]) >= float(rows[0]["prob_3"])


@pytest.mark.parametrize("suffix", [".parquet", ".npy"])
def test_embed(photos: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"emb{suffix}"
    if suffix == ".parquet":
        cli("embed", str(photos), "-m", str(PE), "--report", str(out))
    else:
        cli("embed", str(photos), "-m", str(PE), "--report", str(tmp_path / "emb.jsonl"), "--npy", str(out))
    if suffix == ".parquet":
        table = pq.read_table(out).to_pylist()
        good = [r for r in table if r["error"] is None]
        vectors = np.array([r["embedding"] for r in good], dtype=np.float32)
        paths = [r["path"] for r in good]
    else:
        index = [r for r in read_csv(tmp_path / "emb.index.csv") if not r["error"]]
        vectors = np.load(out)[[int(r["row"]) for r in index]]
        paths = [r["path"] for r in index]
    net, info = roost.load_pretrained_model(PE, inference=True)
    transform = roost.classification_transform(roost.get_size_from_signature(info.signature), info.rgb_stats)
    with torch.inference_mode():
        expected = net.embedding(transform(load_image(paths[0])).unsqueeze(0))[0].numpy()
    assert vectors.shape == (len(PHOTOS), 96)
    np.testing.assert_allclose(vectors[0], expected, atol=1e-5)


def test_unknown_model_is_one_clear_line(photos: Path) -> None:
    result = runner.invoke(app, ["predict", str(photos), "-m", "rope_vit_reg4_b14_capi-places366"])
    assert result.exit_code == 2 and "rope_vit_reg4_b14_capi-places365" in result.stderr


@pytest.mark.parametrize(("backend", "atol"), [("ort", 1e-4), ("ort-int8", 0.1)])
def test_predict_with_onnx_runtime_backend(photos: Path, tmp_path: Path, backend: str, atol: float) -> None:
    pytest.importorskip("onnxruntime")
    cli("predict", str(photos), "-m", str(PLACES), "--topk", "1", "--report", str(tmp_path / "torch.csv"))
    cli("predict", str(photos), "-m", str(PLACES), "--topk", "1", "--report", str(tmp_path / "ort.csv"),
        "--backend", backend)
    ours, theirs = read_csv(tmp_path / "torch.csv"), read_csv(tmp_path / "ort.csv")
    assert [r["path"] for r in ours] == [r["path"] for r in theirs]
    for a, b in zip(ours, theirs, strict=True):
        assert a["error"] == b["error"]
        if not a["error"]:
            assert float(a["prob_1"]) == pytest.approx(float(b["prob_1"]), abs=atol)
            if backend == "ort":
                assert a["label_1"] == b["label_1"]
