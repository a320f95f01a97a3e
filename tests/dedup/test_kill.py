"""Real SIGKILLs of ``python -m roost dedup``: while fingerprinting (the next run resumes and ends as an
uninterrupted one does) and in the middle of moves (no file lost, none moved twice, undo restores all)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from roost.dedup.actions import moved_records
from roost.dedup.groups import REPORT_SCHEMA
from roost.dedup.signatures import FINGERPRINT_SCHEMA
from roost.jobs.report import read_rows
from tests.dedup.conftest import tree
from tests.killing import KILL_AT, killing_roost

ENV = os.environ | {"OMP_NUM_THREADS": "1"}
BOOT = killing_roost("link")  # python -m roost, able to kill itself at its n-th os.link
TIMEOUT_S = 120


def command(photos: Path, report: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", BOOT, "dedup", str(photos), "--report", str(report), "-b", "2", "-j", "0", "-q",
            *extra]  # fmt: skip


def finish(cmd: list[str], env: dict[str, str] = ENV) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    assert done.returncode in (0, -signal.SIGKILL), done.stderr
    return done


def current(report: Path, root: Path) -> list[dict]:
    return [r | {"path": os.path.relpath(r["path"], root)} for r in read_rows(report, REPORT_SCHEMA)]


@pytest.mark.slow
def test_a_kill_while_fingerprinting_resumes_to_the_same_report(workspace: Path, tmp_path: Path) -> None:
    reference = tmp_path / "reference.csv"
    finish(command(workspace, reference))
    report = tmp_path / "killed.csv"
    cache = Path(f"{report}.fingerprints.parquet")
    process = subprocess.Popen(command(workspace, report), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + TIMEOUT_S
    while sum(1 for _ in read_rows(cache, FINGERPRINT_SCHEMA, ["path"])) < 4 and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    rows = sum(1 for _ in read_rows(cache, FINGERPRINT_SCHEMA, ["path"]))
    assert 4 <= rows < len(tree(workspace)) and not report.exists()  # killed part-way, before the report
    resumed = finish(command(workspace, report))
    assert f"{rows} done before" in resumed.stderr  # the killed run's fingerprints are not computed again
    assert current(report, workspace) == current(reference, workspace)


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["1:before", "2:after", "5:after"])
def test_a_kill_mid_move_loses_nothing_and_moves_nothing_twice(workspace: Path, tmp_path: Path, kill_at: str) -> None:
    before = tree(workspace)
    to = tmp_path / "dups"
    move = command(workspace, tmp_path / "r.csv", "--action", "move", "--to", str(to))
    killed = finish(move, ENV | {KILL_AT: kill_at})
    assert killed.returncode == -signal.SIGKILL
    everywhere = {**tree(workspace), **{k: v for k, v in tree(to).items() if not k.endswith(".jsonl")}}
    assert set(everywhere.items()) == set(before.items())  # every file is somewhere, unchanged
    assert finish(move).returncode == 0
    records = moved_records(to / "roost-dedup-manifest.jsonl")
    assert len(records) == len({r["src"] for r in records}) == 22  # 2 families of 12: 11 duplicates each
    assert len(tree(workspace)) == len(before) - 22
    undone = finish([sys.executable, "-m", "roost", "dedup", "--undo", str(to / "roost-dedup-manifest.jsonl")])
    assert undone.returncode == 0 and tree(workspace) == before
