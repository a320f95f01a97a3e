"""``roost dedup``, ``roost index`` and ``roost search`` from the command line: exit codes, one-line errors,
move then --undo, search output."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from roost.cli.app import app
from roost.dedup.groups import REPORT_SCHEMA
from roost.index import SEARCH_SCHEMA
from roost.jobs.report import read_rows
from tests.conftest import SHARED

PE = SHARED / "fixtures" / "checkpoints" / "rope_i_vit_reg1_s16_pn_npn_avg_c1_tiny-pe.pt"
PLACES = SHARED / "fixtures" / "checkpoints" / "rope_vit_reg4_b14_tiny-places.pt"
runner = CliRunner()
pytestmark = pytest.mark.skipif(not PE.exists(), reason="shared fixtures not present")


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Two photos, a byte copy and a half-size copy of the first, and a file that is not an image."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    kite, storm = SHARED / "photos" / "kite.jpg", SHARED / "photos" / "storm.jpg"
    shutil.copyfile(kite, folder / "kite.jpg")
    shutil.copyfile(storm, folder / "storm.jpg")
    shutil.copyfile(kite, folder / "sub" / "kite_copy.jpg")
    Image.open(kite).resize((512, 320)).save(folder / "sub" / "kite_small.png")
    return folder


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_report_move_and_undo(photos: Path, tmp_path: Path) -> None:
    before = tree(photos)
    report = tmp_path / "dups.csv"
    result = invoke("dedup", photos, "-r", "--report", report, "-q", "-j", "0")
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).name: r for r in read_rows(report, REPORT_SCHEMA)}
    assert rows["kite.jpg"]["keeper"] and rows["kite_copy.jpg"]["match"] == "exact"
    assert rows["kite_small.png"]["match"] == "perceptual" and rows["storm.jpg"]["group"] is None
    dry = invoke("dedup", photos, "-r", "--report", report, "--action", "move", "--to", tmp_path / "dups", "--dry-run")
    assert dry.exit_code == 0 and "would move" in dry.stderr and tree(photos) == before
    moved = invoke("dedup", photos, "-r", "--report", report, "--action", "move", "--to", tmp_path / "dups", "-q")
    assert moved.exit_code == 0 and "2 moved" in moved.stderr, moved.output
    assert (tmp_path / "dups" / "sub" / "kite_copy.jpg").read_bytes() == before["sub/kite_copy.jpg"]
    assert set(tree(photos)) == {"kite.jpg", "storm.jpg"}
    undo = invoke("dedup", "--undo", tmp_path / "dups" / "roost-dedup-manifest.jsonl")
    assert undo.exit_code == 0 and "2 restored" in undo.stderr and tree(photos) == before


def test_bad_files_exit_1_with_their_row(photos: Path, tmp_path: Path) -> None:
    (photos / "empty.jpg").write_bytes(b"")
    result = invoke("dedup", photos, "--report", tmp_path / "r.jsonl", "-q", "-j", "0")
    assert result.exit_code == 1, result.output
    rows = {Path(r["path"]).name: r for r in read_rows(tmp_path / "r.jsonl", REPORT_SCHEMA)}
    assert "empty file" in rows["empty.jpg"]["error"]


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (["--keep", "best"], "--keep"),
        (["--action", "delete"], "--action"),
        (["--action", "move"], "--to"),
        (["--similarity", "2"], "--similarity"),
        (["--hash-similarity", "-1"], "--hash-similarity"),
        (["--model", "x.pt", "--index", "y"], "--model or --index"),
    ],
)
def test_bad_options_are_one_line_and_change_nothing(photos: Path, tmp_path: Path, args: list[str], word: str) -> None:
    result = invoke("dedup", photos, "--report", tmp_path / "r.csv", *args)
    assert result.exit_code == 2, result.output
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and word in error[0], result.stderr
    assert not (tmp_path / "r.csv").exists() and not (tmp_path / "r.csv.fingerprints.parquet").exists()


def test_dedup_needs_a_report_and_undo_a_manifest(photos: Path, tmp_path: Path) -> None:
    assert invoke("dedup", photos).exit_code == 2
    missing = invoke("dedup", "--undo", tmp_path / "nothing.jsonl")
    assert missing.exit_code == 2 and "no such manifest" in missing.stderr


def test_index_search_and_dedup_with_the_index(photos: Path, tmp_path: Path) -> None:
    index = tmp_path / "photos.index"
    built = invoke("index", photos, "-r", "-m", PE, "-o", index, "-q", "-j", "0", "--dtype", "fp32")
    assert built.exit_code == 0, built.output
    found = invoke("search", index, photos / "storm.jpg", "--k", "2", "--report", tmp_path / "hits.csv")
    assert found.exit_code == 0, found.output
    hits = list(read_rows(tmp_path / "hits.csv", SEARCH_SCHEMA))
    assert (Path(hits[0]["path"]).name, hits[0]["rank"], hits[0]["similarity"]) == ("storm.jpg", 1, 1.0)
    shown = invoke("search", index, photos / "kite.jpg", "--k", "1")
    assert shown.exit_code == 0 and "kite.jpg" in shown.stdout and "1.0000" in shown.stdout
    other = invoke("index", photos, "-m", PLACES, "-o", index, "-q")
    assert other.exit_code == 2 and "made with" in other.stderr
    reused = invoke("dedup", photos, "-r", "--report", tmp_path / "r.csv", "--index", index, "-q", "-j", "0")
    assert reused.exit_code == 0, reused.output
