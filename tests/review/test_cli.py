"""``roost review`` on the command line: a summary line, and bad arguments as one plain line (status 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from roost.cli.app import app
from tests.review.helpers import PHOTOS, orient_rows, rotated_photos, write_orient

pytestmark = pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared fixtures not present")
runner = CliRunner()


@pytest.fixture
def report(tmp_path: Path) -> Path:
    return write_orient(tmp_path / "orient.csv", orient_rows(rotated_photos(tmp_path / "photos", 3)))


def test_review_writes_the_folder(tmp_path: Path, report: Path) -> None:
    result = runner.invoke(app, ["review", str(report), "-o", str(tmp_path / "rv"), "--thumb", "64", "-j", "0"])
    assert result.exit_code == 0, result.output
    assert "review (orient): 3 rows, 3 thumbnails" in result.stderr and (tmp_path / "rv" / "index.html").is_file()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--only", "sideways"], "--only must be one of"),
        (["--sort", "size"], "--sort must be one of"),
        (["--thumb", "4"], "--thumb"),
        (["--uncertain", "3"], "--uncertain"),
    ],
)
def test_bad_review_options(tmp_path: Path, report: Path, args: list[str], words: str) -> None:
    result = runner.invoke(app, ["review", str(report), "-o", str(tmp_path / "rv"), *args])
    assert result.exit_code == 2 and result.stderr.strip().startswith("error: ") and words in result.stderr
    assert not (tmp_path / "rv").exists()


def test_review_of_something_else(tmp_path: Path) -> None:
    notes = tmp_path / "notes.csv"
    notes.write_text("name,size\na,1\n")
    result = runner.invoke(app, ["review", str(notes), "-o", str(tmp_path / "rv")])
    assert result.exit_code == 2 and "not an orient, predict, dedup or embed report" in result.stderr
    missing = runner.invoke(app, ["review", str(tmp_path / "none.csv"), "-o", str(tmp_path / "rv")])
    assert missing.exit_code == 2 and "No such file" in missing.stderr
