"""``roost apply``: exactly the accepted fixes, with the batch jobs' safety (journal, resume, never twice,
originals kept, files changed since the review left alone), checked with real files and real SIGKILLs."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roost.cli.app import app
from roost.errors import ReviewError
from roost.files.rotate import read_exif_orientation
from roost.jobs.orient import REPORT_SCHEMA
from roost.jobs.report import last_rows
from roost.review.apply import apply_decisions, default_report, read_decisions
from tests.killing import KILL_AT, killing_roost
from tests.review.helpers import PHOTOS, rotated_photos, sha

pytestmark = pytest.mark.skipif(not PHOTOS.is_dir(), reason="shared fixtures not present")
runner = CliRunner()
EXIF_AFTER = {90: 6, 180: 3, 270: 8}  # the Orientation tag that shows a photo turned CCW by the key upright


def write_decisions(path: Path, rows: list[tuple[Path, str, int]], with_sha: bool = True) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "decision", "rotation", *(["sha256"] if with_sha else [])])
        for p, decision, rotation in rows:
            writer.writerow([p, decision, rotation, *([sha(p)] if with_sha else [])])
    return path


@pytest.fixture
def photos(tmp_path: Path) -> dict[Path, int]:
    return rotated_photos(tmp_path / "photos", 8)


def decide_all(photos: dict[Path, int], rejected: set[Path]) -> list[tuple[Path, str, int]]:
    return [(p, "reject" if p in rejected else "accept", a) for p, a in photos.items()]


def test_exif_fixes_exactly_the_accepted(tmp_path: Path, photos: dict[Path, int]) -> None:
    rejected = {p for p, a in photos.items() if a == 90}
    before = {p: sha(p) for p in photos}
    decisions = write_decisions(tmp_path / "decisions.csv", decide_all(photos, rejected))
    summary = apply_decisions(decisions, fix="exif")
    assert (summary.processed, summary.errors, summary.counts["fixed"]) == (8, 0, 4)
    for path, angle in photos.items():
        if path in rejected or angle == 0:
            assert sha(path) == before[path]
        else:
            assert read_exif_orientation(path.read_bytes()) == EXIF_AFTER[angle]
    rows = last_rows(default_report(decisions), REPORT_SCHEMA, REPORT_SCHEMA.names)
    assert {p: rows[str(p)]["fix"] for p in photos} == {p: "exif" if a and p not in rejected else None
                                                        for p, a in photos.items()}  # fmt: skip
    after = {p: sha(p) for p in photos}
    again = apply_decisions(decisions, fix="exif")
    assert again.done_before == 8 and again.processed == 0 and {p: sha(p) for p in photos} == after


def test_xmp_sidecars_for_the_accepted(tmp_path: Path, photos: dict[Path, int]) -> None:
    rejected = {next(p for p, a in photos.items() if a)}
    before = {p: sha(p) for p in photos}
    apply_decisions(write_decisions(tmp_path / "d.csv", decide_all(photos, rejected)), fix="xmp")
    sidecars = {p for p in photos if p.with_name(p.name + ".xmp").exists()}
    assert sidecars == {p for p, a in photos.items() if a and p not in rejected}
    assert {p: sha(p) for p in photos} == before  # the photos themselves are untouched


def test_dry_run_then_apply(tmp_path: Path, photos: dict[Path, int]) -> None:
    before = {p: sha(p) for p in photos}
    decisions = write_decisions(tmp_path / "d.csv", decide_all(photos, set()))
    dry = apply_decisions(decisions, fix="inplace", dry_run=True)
    assert dry.counts["would fix"] == 6 and {p: sha(p) for p in photos} == before
    assert not list((tmp_path / "photos").glob("*.orig"))
    real = apply_decisions(decisions, fix="inplace")  # resumes: only the effects are redone
    assert real.counts["fixed"] == 6
    for path, angle in photos.items():
        backup = path.with_name(path.name + ".orig")
        assert (sha(path) != before[path]) == (angle != 0) and (backup.exists() == (angle != 0))
        if angle:
            assert sha(backup) == before[path]


def test_copy_writes_the_whole_collection(tmp_path: Path, photos: dict[Path, int]) -> None:
    rejected = {next(p for p, a in photos.items() if a)}
    before = {p: sha(p) for p in photos}
    decisions = write_decisions(tmp_path / "d.csv", decide_all(photos, rejected))
    apply_decisions(decisions, fix="copy", output_dir=tmp_path / "upright")
    assert {p: sha(p) for p in photos} == before  # originals untouched
    for path, angle in photos.items():
        copy = tmp_path / "upright" / path.name
        assert (sha(copy) == before[path]) == (angle == 0 or path in rejected)


def test_changed_and_missing_files_are_left_alone(tmp_path: Path, photos: dict[Path, int]) -> None:
    decisions = write_decisions(tmp_path / "d.csv", decide_all(photos, set()))
    changed, gone = [p for p, a in photos.items() if a][:2]
    changed.write_bytes(changed.read_bytes() + b"\0")  # someone edited it after the review
    changed_sha = sha(changed)
    gone.unlink()
    result = runner.invoke(app, ["apply", str(decisions), "-q"])
    assert result.exit_code == 1, result.output  # done, with error rows
    rows = last_rows(default_report(decisions), REPORT_SCHEMA, ["path", "error"])
    assert "changed since it was reviewed" in rows[str(changed)]["error"] and sha(changed) == changed_sha
    assert "not found" in rows[str(gone)]["error"]
    assert sum(1 for r in rows.values() if r["error"]) == 2


def test_changed_decisions(tmp_path: Path, photos: dict[Path, int]) -> None:
    still, fixed = [p for p, a in photos.items() if a][:2]
    first = decide_all(photos, {still})
    apply_decisions(write_decisions(tmp_path / "d.csv", first, with_sha=False), fix="exif", report=tmp_path / "a.csv")
    assert sha(still) == sha(still) and read_exif_orientation(still.read_bytes()) == 1
    second = [(p, "accept", a) for p, _, a in first]  # the rejected one accepted now: it is fixed
    apply_decisions(write_decisions(tmp_path / "d.csv", second, with_sha=False), fix="exif", report=tmp_path / "a.csv")
    assert read_exif_orientation(still.read_bytes()) == EXIF_AFTER[photos[still]]
    third = [(p, "reject" if p == fixed else "accept", a) for p, _, a in first]  # cannot undo a fix: refused
    with pytest.raises(ReviewError, match="differ from fixes"):
        apply_decisions(
            write_decisions(tmp_path / "d.csv", third, with_sha=False), fix="exif", report=tmp_path / "a.csv"
        )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("path,decision,rotation\n/a.jpg,maybe,90\n", "line 2: decision must be accept or reject"),
        ("path,decision,rotation\n/a.jpg,accept,45\n", "rotation must be 0, 90, 180 or 270"),
        ("path,decision,rotation\n/a.jpg,accept,90\n/a.jpg,reject,90\n", "line 3: /a.jpg is decided twice"),
        ("path,group,keeper,decision\n/a.jpg,0,true,accept\n", "dedup decisions; apply them with an action"),
        ("path,label\n/a.jpg,x\n", "not a decisions file"),
    ],
)
def test_bad_decisions(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(ReviewError, match=words):
        read_decisions(path)
    result = runner.invoke(app, ["apply", str(path)])
    assert result.exit_code == 2 and result.stderr.strip().startswith("error: ") and "Traceback" not in result.output


def test_apply_options_refused(tmp_path: Path, photos: dict[Path, int]) -> None:
    decisions = write_decisions(tmp_path / "d.csv", decide_all(photos, set()))
    copy = runner.invoke(app, ["apply", str(decisions), "--fix", "copy"])
    assert copy.exit_code == 2 and "--output" in copy.stderr
    bad = runner.invoke(app, ["apply", str(decisions), "--fix", "rotate"])
    assert bad.exit_code == 2 and "fix must be one of" in bad.stderr
    inside = runner.invoke(app, ["apply", str(decisions), "--fix", "copy", "-o", str(tmp_path / "photos")])
    assert inside.exit_code == 2 and "outside" in inside.stderr
    assert not default_report(decisions).exists()


def write_group_decisions(path: Path, rows: list[tuple[Path, str, str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "group", "keeper", "decision", "sha256"])
        writer.writerows([p, group, keeper, decision, sha(p)] for p, group, keeper, decision in rows)
    return path


def test_dedup_decisions_move_link_and_resume(tmp_path: Path, photos: dict[Path, int]) -> None:
    p = list(photos)
    rows = [(p[0], "0", "true", "accept"), (p[1], "0", "false", "accept"), (p[2], "0", "false", "reject"),
            (p[3], "1", "true", "accept"), (p[4], "1", "false", "accept"), (p[5], "", "true", "accept")]  # fmt: skip
    decisions = write_group_decisions(tmp_path / "d.csv", rows)
    before = {q: sha(q) for q in p}
    dry = apply_decisions(decisions, action="move", output_dir=tmp_path / "dups", dry_run=True)
    assert dry.counts["would move"] == 2 and all(q.exists() for q in p) and not (tmp_path / "dups").exists()
    links = apply_decisions(decisions, action="link", output_dir=tmp_path / "view")
    assert links.counts["linked"] == 4  # the keepers, the one split out and the ungrouped one
    assert sorted(os.readlink(q) for q in (tmp_path / "view").iterdir()) == sorted(map(str, [p[0], p[2], p[3], p[5]]))
    moved = apply_decisions(decisions, action="move", output_dir=tmp_path / "dups")
    assert moved.counts["moved"] == 2 and moved.errors == 0
    assert {q for q in p if not q.exists()} == {p[1], p[4]}
    assert sha(tmp_path / "dups" / p[1].name) == before[p[1]]
    again = apply_decisions(decisions, action="move", output_dir=tmp_path / "dups")  # nothing moved twice
    assert again.counts["moved"] == 0 and again.errors == 0 and sha(tmp_path / "dups" / p[4].name) == before[p[4]]


def test_dedup_decisions_refused(tmp_path: Path, photos: dict[Path, int]) -> None:
    p = list(photos)
    two = write_group_decisions(tmp_path / "two.csv", [(p[0], "0", "true", "accept"), (p[1], "0", "true", "accept")])
    with pytest.raises(ReviewError, match="group 0 has 2 keepers"):
        apply_decisions(two, action="move", output_dir=tmp_path / "dups")
    rows = [(p[0], "0", "true", "accept"), (p[1], "0", "false", "accept")]
    decisions = write_group_decisions(tmp_path / "d.csv", rows)
    p[1].write_bytes(p[1].read_bytes() + b"\0")  # edited after the review: not moved
    result = runner.invoke(app, ["apply", str(decisions), "--action", "move", "-o", str(tmp_path / "dups")])
    assert result.exit_code == 1 and "changed since it was reviewed" in result.stderr and p[1].exists()
    no_to = runner.invoke(app, ["apply", str(decisions), "--action", "move"])
    assert no_to.exit_code == 2 and "--output" in no_to.stderr


# ------------------------------------------------------------------ real kills
BOOT = killing_roost("replace")  # python -m roost, able to kill itself at its n-th os.replace


def tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize(
    ("when", "steps"),
    [("before", (3,)), pytest.param("after", (1, 2, 3, 4, 5, 6), marks=pytest.mark.slow),
     pytest.param("before", (1, 2, 4, 5, 6), marks=pytest.mark.slow)],
)  # fmt: skip
def test_killed_apply_resumes_to_the_same_end(tmp_path: Path, when: str, steps: tuple[int, ...]) -> None:
    """SIGKILLed at its n-th atomic rename (before or after it), then run again: the end state is the same."""
    originals = rotated_photos(tmp_path / "originals", 4)
    reference = tmp_path / "reference"
    shutil.copytree(tmp_path / "originals", reference)
    rows = [(reference / p.name, "accept", a) for p, a in originals.items()]
    apply_decisions(write_decisions(tmp_path / "ref.csv", rows), fix="inplace")
    want = tree(reference)
    for step in steps:
        work = tmp_path / f"kill{step}"
        shutil.copytree(tmp_path / "originals", work / "photos")
        decisions = write_decisions(
            work / "d.csv", [(work / "photos" / p.name, "accept", a) for p, a in originals.items()]
        )
        cmd = [sys.executable, "-c", BOOT, "apply", str(decisions), "--fix", "inplace", "-q"]
        env = os.environ | {KILL_AT: f"{step}:{when}", "OMP_NUM_THREADS": "1"}
        killed = subprocess.run(cmd, env=env, capture_output=True, timeout=120, check=False)
        assert killed.returncode == -signal.SIGKILL, killed.stderr  # 3 fixes, each after its backup: 6 renames
        for name, data in tree(work / "photos").items():  # whatever the kill left: originals never lost
            if name.endswith(".orig"):
                assert data == (tmp_path / "originals" / name.removesuffix(".orig")).read_bytes()
        resumed = subprocess.run(cmd, env=env | {KILL_AT: "0:before"}, capture_output=True, timeout=120, check=False)
        assert resumed.returncode == 0, resumed.stderr
        assert tree(work / "photos") == want, f"killed at os.replace #{step} ({when})"
