"""``roost orient FOLDER --report r.X`` on file names that break naive code: one row per input, exact names."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from roost.jobs.orient import REPORT_SCHEMA
from roost.jobs.report import read_rows
from tests.conftest import SHARED

ROTNET = SHARED / "fixtures" / "checkpoints" / "rope_vit_reg8_so150m_p14_swiglu_rms_ap_tiny-rotnet.pt"
pytestmark = pytest.mark.skipif(not ROTNET.exists(), reason="shared fixtures not present")

IMAGES = [
    b"caf\xe9.jpg",  # not UTF-8
    b"\xed\xa0\x80.png",  # an encoded surrogate: not UTF-8
    "café.jpg".encode(),
    b"\\udce9.jpg",
    b"new\nline.jpg",
    b"carriage\rreturn.jpg",
    b'quote"s.jpg',
    b"it's.jpg",
    b"comma,name.jpg",
    b"[bold]red[link=x].jpg",
    b"-d.jpg",
    b"--report.jpg",
    b" spaces .PNG",
    b"%s {0}.jpg",
    b"x" * 251 + b".jpg",
    "é".encode() * 125 + b"x.jpg",
]
BAD = {
    b"trunc\xe9.jpg": "ImageError",  # a JPEG cut short
    b"pipe\n.jpg": "FIFO",  # must not block the run
    b"gone\xe9.jpg": "broken symbolic link",
}


def make_folder(folder: Path, bad: bool) -> dict[str, str | None]:
    """Images (and bad files) with hostile names; each key with the text its error must contain."""
    folder.mkdir()
    base = os.fsencode(folder) + b"/"
    for i, name in enumerate(IMAGES):
        kind = "PNG" if name.lower().endswith(b".png") else "JPEG"
        Image.new("RGB", (48, 40), (20 * i % 256, 90, 160)).save(base + name, format=kind)
    expected: dict[str, str | None] = {os.fsdecode(base + n): None for n in IMAGES}
    if bad:
        with open(base + b"trunc\xe9.jpg", "wb") as f:
            f.write(b"\xff\xd8\xff\xe0\x00\x10JFIF")
        os.mkfifo(base + b"pipe\n.jpg")
        os.symlink(base + b"nowhere\xe9.jpg", base + b"gone\xe9.jpg")
        expected |= {os.fsdecode(base + n): text for n, text in BAD.items()}
    return expected


def orient(tmp_path: Path, report: str) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-m", "roost", "orient", str(tmp_path / "in"), "--report", report, "-q",
               "--workers", "0", "-m", str(ROTNET)]  # fmt: skip
    env = os.environ | {"ROOST_HOME": str(tmp_path / "home"), "ROOST_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, timeout=300, check=False)


def check_rows(report: Path, expected: dict[str, str | None]) -> list[dict[str, object]]:
    rows = list(read_rows(report, REPORT_SCHEMA))
    assert Counter(r["path"] for r in rows) == Counter(list(expected))  # every input once, by its exact name
    for row in rows:
        text = expected[str(row["path"])]
        if text is None:
            assert row["error"] is None and row["rotation"] in (0, 90, 180, 270), row
        else:
            assert text in str(row["error"]) and row["rotation"] is None, row
    return rows


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_every_hostile_name_gets_exactly_one_row(tmp_path: Path, fmt: str) -> None:
    expected = make_folder(tmp_path / "in", bad=True)
    result = orient(tmp_path, f"r.{fmt}")
    stderr = result.stderr.decode(errors="replace")
    assert b"Traceback" not in result.stdout + result.stderr, stderr
    assert result.returncode == 1, stderr  # finished, with error rows
    assert f"{len(BAD)} errors" in stderr
    check_rows(tmp_path / f"r.{fmt}", expected)


def test_a_clean_run_exits_0_and_a_rerun_adds_no_rows(tmp_path: Path) -> None:
    expected = make_folder(tmp_path / "in", bad=False)
    for _ in range(2):
        result = orient(tmp_path, "r.csv")
        assert b"Traceback" not in result.stdout + result.stderr
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        check_rows(tmp_path / "r.csv", expected)
