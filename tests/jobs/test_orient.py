"""The orient job's promises: fix later from a report, each file fixed once, copies that never collide or
overwrite somebody else's file, failed fixes retried, and the decision policy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from roost.errors import JobModelError, JobOptionError
from roost.jobs.base import RunOptions, Summary
from roost.jobs.orient import (
    ACTION_COPIED,
    ACTION_LOW_CONFIDENCE,
    ACTION_NONE,
    ACTION_ROTATE,
    REPORT_SCHEMA,
    copy_base,
    decide,
    journal_path,
    orient_files,
)
from roost.jobs.report import last_rows, read_rows
from tests.conftest import SHARED

ROTNET = SHARED / "fixtures" / "checkpoints" / "rope_vit_reg8_so150m_p14_swiglu_rms_ap_tiny-rotnet.pt"
PLACES = SHARED / "fixtures" / "checkpoints" / "rope_vit_reg4_b14_tiny-places.safetensors"
OPTIONS = RunOptions(workers=0, batch_size=4)
pytestmark = pytest.mark.skipif(not ROTNET.exists(), reason="shared fixtures not present")


def make_photos(folder: Path, names: tuple[str, ...] = ("kite", "dune", "garden", "wood")) -> list[Path]:
    """Small real photos, rotated by 0/90/180/270, as MCU-aligned JPEGs (lossless fixes) and one PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, name in enumerate(names):
        image = Image.open(SHARED / "photos" / f"{name}.jpg").convert("RGB").resize((96, 64))
        rotated = image.rotate(90 * i, expand=True)
        path = folder / (f"{name}.png" if i == 3 else f"{name}.jpg")
        rotated.save(path)
        out.append(path)
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def current(report: Path) -> dict[str, dict]:
    return last_rows(report, REPORT_SCHEMA, REPORT_SCHEMA.names)


def orient(*inputs: Path, **kwargs: Any) -> Summary:
    return orient_files(list(inputs), model=ROTNET, **({"threshold": 0.0, "options": OPTIONS} | kwargs))


# ---------------------------------------------------------------------------------- decisions
def test_decide() -> None:
    assert decide([0.1, 0.7, 0.1, 0.1], 0.5) == (90, pytest.approx(0.7), ACTION_ROTATE)
    assert decide([0.9, 0.05, 0.03, 0.02], 0.5) == (0, pytest.approx(0.9), ACTION_NONE)
    assert decide([0.3, 0.4, 0.2, 0.1], 0.5)[2] == ACTION_LOW_CONFIDENCE
    with pytest.raises(JobModelError):
        decide([0.5, 0.5], 0.0)


@pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan"), "0.5"])
def test_threshold_out_of_range(tmp_path: Path, threshold: object) -> None:
    with pytest.raises(JobOptionError, match="threshold"):
        orient_files([tmp_path], model=ROTNET, threshold=threshold, options=OPTIONS)  # type: ignore[arg-type]


def test_a_model_without_four_classes_is_refused(tmp_path: Path) -> None:
    make_photos(tmp_path / "in")
    with pytest.raises(JobModelError, match="orientation model has 4"):
        orient_files([tmp_path / "in"], model=PLACES, options=OPTIONS)
    assert not list(tmp_path.glob("*.csv"))


# ---------------------------------------------------------------------------------- fix later
def test_report_now_fix_later_without_computing_again(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "in")
    report = tmp_path / "r.csv"
    orient(tmp_path / "in", report=report)
    first = current(report)
    assert {r["action"] for r in first.values()} <= {ACTION_ROTATE, ACTION_NONE}
    summary = orient(tmp_path / "in", report=report, fix="copy", output_dir=tmp_path / "up")
    assert summary.done_before == 0 and summary.processed == len(photos) and summary.counts["fixed"] == len(photos)
    fixed = current(report)
    for key, row in fixed.items():
        assert [row[f"p{a}"] for a in (0, 90, 180, 270)] == [first[key][f"p{a}"] for a in (0, 90, 180, 270)]
        assert row["fix"] == "copy" and Path(row["output"]).exists()
        if row["rotation"] == 0:
            assert row["action"] == ACTION_COPIED and Path(row["output"]).read_bytes() == Path(key).read_bytes()
        else:
            assert row["action"].startswith("rotated")
    # A third run has nothing left to do.
    again = orient(tmp_path / "in", report=report, fix="copy", output_dir=tmp_path / "up")
    assert again.processed == 0 and again.done_before == len(photos)


def test_a_dry_run_then_the_real_run(tmp_path: Path) -> None:
    make_photos(tmp_path / "in")
    before = snapshot(tmp_path / "in")
    report = tmp_path / "r.jsonl"
    orient(tmp_path / "in", report=report, fix="exif", dry_run=True)
    assert snapshot(tmp_path / "in") == before
    rotated = [k for k, r in current(report).items() if r["rotation"] != 0]
    assert rotated and all(current(report)[k]["action"] == "would fix (exif)" for k in rotated)
    orient(tmp_path / "in", report=report, fix="exif")
    after = snapshot(tmp_path / "in")
    assert [k for k in before if after[k] != before[k]] == sorted(os.path.basename(k) for k in rotated)


def test_inplace_fixes_each_file_once(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "in")
    (tmp_path / "in" / "link.jpg").symlink_to(photos[1])
    report = tmp_path / "r.parquet"
    inputs = [tmp_path / "in", photos[1], tmp_path / "in" / ".." / "in" / photos[1].name]  # the same file 4 ways
    orient(*inputs, report=report, fix="inplace")
    fixed = snapshot(tmp_path / "in")
    rows = current(report)
    assert rows[str(tmp_path / "in" / "link.jpg")]["error"].startswith("same file as")
    assert (tmp_path / "in" / "dune.jpg.orig").exists() and not (tmp_path / "in" / "dune.jpg.orig.1").exists()
    orient(*inputs, report=report, fix="inplace")  # nothing is fixed twice
    orient(*inputs, report=report, fix="exif")  # nor fixed again another way
    assert snapshot(tmp_path / "in") == fixed
    upright = np.asarray(Image.open(photos[1]).convert("RGB"))
    original = np.asarray(Image.open(tmp_path / "in" / "dune.jpg.orig").convert("RGB"))
    rotation = rows[str(photos[1])]["rotation"]
    assert upright.shape == np.rot90(original, k=-rotation // 90).shape


def test_a_link_named_as_input_stays_a_link_to_the_fixed_file(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "in")
    (tmp_path / "links").mkdir()
    link = tmp_path / "links" / "dune.jpg"
    link.symlink_to(photos[1])
    orient(link, report=tmp_path / "r.csv", fix="inplace")
    assert link.is_symlink() and link.resolve() == photos[1]
    assert (tmp_path / "in" / "dune.jpg.orig").exists() and not (tmp_path / "links" / "dune.jpg.orig").exists()
    assert current(tmp_path / "r.csv")[str(link)]["output"] == str(tmp_path / "in" / "dune.jpg.orig")


# ---------------------------------------------------------------------------------- copies
def test_copies_keep_the_layout_and_never_collide(tmp_path: Path) -> None:
    make_photos(tmp_path / "a")
    make_photos(tmp_path / "b")  # the same names in another folder
    orient(tmp_path / "a", tmp_path / "b", fix="copy", output_dir=tmp_path / "out")
    assert snapshot(tmp_path / "out").keys() == {f"{d}/{n}" for d in "ab" for n in snapshot(tmp_path / "a")}
    assert copy_base([tmp_path / "a"]) == str(tmp_path / "a")
    assert copy_base([tmp_path / "a" / "kite.jpg", tmp_path / "b" / "kite.jpg"]) == str(tmp_path)


def test_an_output_folder_inside_the_inputs_is_never_an_input(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "in")
    report = tmp_path / "r.csv"
    for _ in range(2):
        orient(tmp_path / "in", report=report, fix="copy", output_dir=tmp_path / "in" / "upright",
               options=RunOptions(workers=0, recursive=True))  # fmt: skip
    rows = list(read_rows(report, REPORT_SCHEMA))
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in photos)


def test_a_file_roost_did_not_write_is_not_overwritten_and_the_fix_is_retried(tmp_path: Path) -> None:
    make_photos(tmp_path / "in")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "kite.jpg").write_bytes(b"somebody else's file")
    report = tmp_path / "r.csv"
    summary = orient(tmp_path / "in", report=report, fix="copy", output_dir=tmp_path / "out")
    row = current(report)[str(tmp_path / "in" / "kite.jpg")]
    assert summary.errors == 1 and row["action"] == "fix failed" and "not written by roost" in row["error"]
    assert (tmp_path / "out" / "kite.jpg").read_bytes() == b"somebody else's file"
    (tmp_path / "out" / "kite.jpg").unlink()  # the user moves it away; the failed fix is retried
    retry = orient(tmp_path / "in", report=report, fix="copy", output_dir=tmp_path / "out")
    assert retry.processed == 1 and retry.errors == 0
    assert current(report)[str(tmp_path / "in" / "kite.jpg")]["fix"] == "copy"


def test_copies_roost_wrote_may_be_rewritten(tmp_path: Path) -> None:
    photos = make_photos(tmp_path / "in")
    report = tmp_path / "r.csv"
    orient(tmp_path / "in", report=report, fix="copy", output_dir=tmp_path / "out")
    old_copy = (tmp_path / "out" / "kite.jpg").read_bytes()
    Image.open(SHARED / "photos" / "storm.jpg").resize((64, 96)).save(photos[0])  # the user replaced a photo
    report.unlink()  # and starts the report afresh; the fix journal beside it remembers roost's copies
    summary = orient(tmp_path / "in", report=report, fix="copy", output_dir=tmp_path / "out")
    # the three unchanged photos come back from the journal; the replaced one is copied again, over roost's copy
    assert summary.errors == 0 and summary.counts["fixed"] == 1
    assert {r["fix"] for r in current(report).values()} == {"copy"} and len(current(report)) == len(photos)
    assert (tmp_path / "out" / "kite.jpg").read_bytes() != old_copy
    assert journal_path(report).exists()


def test_output_dir_checks(tmp_path: Path) -> None:
    make_photos(tmp_path / "in")
    with pytest.raises(JobOptionError, match="needs output_dir"):
        orient(tmp_path / "in", fix="copy")
    with pytest.raises(JobOptionError, match="holds the input"):
        orient(tmp_path / "in", fix="copy", output_dir=tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(JobOptionError, match="is a file"):
        orient(tmp_path / "in", fix="copy", output_dir=tmp_path / "file")
    with pytest.raises(JobOptionError, match="fix must be one of"):
        orient(tmp_path / "in", fix="rotate")
