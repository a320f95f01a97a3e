"""Real SIGKILLs of ``python -m roost orient``: a kill at any moment loses at most the batch in flight, never
an original, never applies a fix twice, and the resumed run ends where an uninterrupted one does.

Each case runs the same command on a fresh copy of small real photos, kills it at chosen moments (as soon
as the fix journal or the report grows, a backup or copy appears, just before or after an atomic write's
rename, or after a random delay drawn from the measured run time), checks what a kill may leave, and
resumes until the command finishes. The end state (file bytes, backups, copies, the current report rows)
must equal the reference: the same command run once, uninterrupted. ``slow`` marks the exhaustive variant
(kills after every step).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from roost.files.atomic import TEMP_SUFFIX, remove_stale_temps
from roost.jobs.base import RunOptions
from roost.jobs.journal import read_journal
from roost.jobs.orient import REPORT_SCHEMA, journal_path, orient_files
from roost.jobs.report import last_rows, open_report, read_rows
from tests.conftest import SHARED
from tests.killing import kill_env, killing_roost

ROTNET = SHARED / "fixtures" / "checkpoints" / "rope_vit_reg8_so150m_p14_swiglu_rms_ap_tiny-rotnet.pt"
PHOTOS = 10
ANGLES = (0, 90, 180, 270)
BAD = {"empty.jpg": b"", "notes.png": b"not an image\n"}
ENV = os.environ | {"OMP_NUM_THREADS": "1"}  # lighter on a shared machine; the reference runs the same way
TIMEOUT_S = 120.0
BOOT = killing_roost("replace")  # python -m roost, able to kill itself at its n-th os.replace
POLL_S = 0.001
ATOL = 1e-5
pytestmark = pytest.mark.skipif(not ROTNET.exists(), reason="shared fixtures not present")

Tree = dict[str, bytes]
Row = dict[str, Any]


# ---------------------------------------------------------------------------------- inputs and workspaces
@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real photos, small, rotated by known angles: MCU-aligned JPEGs (lossless fixes) and PNGs; two bad files."""
    folder = tmp_path_factory.mktemp("originals")
    for i, photo in enumerate(sorted((SHARED / "photos").glob("*.jpg"))[:PHOTOS]):
        image = Image.open(photo).convert("RGB").resize((128, 80)).rotate(ANGLES[i % 4], expand=True)
        if i % 3 == 2:
            image.save(folder / f"{photo.stem}_{ANGLES[i % 4]}.png")
        else:
            image.save(folder / f"{photo.stem}_{ANGLES[i % 4]}.jpg", quality=90)
    for name, data in BAD.items():
        (folder / name).write_bytes(data)
    return folder


@dataclass(frozen=True)
class Case:
    fix: str
    report: str  # the report's file name; its suffix picks the format

    def __str__(self) -> str:
        return f"{self.fix}-{self.report}"


CASES = [
    Case("inplace", "report.parquet"),
    Case("inplace", "report.csv"),
    Case("exif", "report.jsonl"),
    Case("copy", "report.parquet"),
]


@dataclass(frozen=True)
class Workspace:
    """A copy of the inputs and where one case's command writes: ``in/``, the report, its journal, ``out/``."""

    root: Path
    case: Case

    @classmethod
    def fresh(cls, root: Path, case: Case, originals: Path) -> Workspace:
        shutil.copytree(originals, root / "in")
        return cls(root, case)

    @property
    def inputs(self) -> Path:
        return self.root / "in"

    @property
    def report(self) -> Path:
        return self.root / self.case.report

    @property
    def journal(self) -> Path:
        return self.root / f"{self.case.report}.fixes.jsonl"

    @property
    def out(self) -> Path:
        return self.root / "out"

    def command(self, fix: bool = True) -> list[str]:
        cmd = [sys.executable, "-c", BOOT, "orient", str(self.inputs), "--model", str(ROTNET)]
        cmd += ["--report", str(self.report), "--threshold", "0", "--batch-size", "2", "--workers", "0", "-q"]
        if fix:
            cmd += ["--fix", self.case.fix]
        if fix and self.case.fix == "copy":
            cmd += ["--output", str(self.out)]
        return cmd

    def rows(self) -> list[Row]:
        return list(read_rows(self.report, REPORT_SCHEMA))

    def current(self) -> dict[str, Row]:
        """The current row of each input, named relative to the workspace (so two workspaces compare)."""
        rows = last_rows(self.report, REPORT_SCHEMA, REPORT_SCHEMA.names).values()
        return {os.path.relpath(r["path"], self.inputs): {k: self._relative(v) for k, v in r.items()} for r in rows}

    def _relative(self, value: Any) -> Any:
        return value.replace(str(self.root), "<root>") if isinstance(value, str) else value


def tree(folder: Path) -> Tree:
    """Every file below ``folder`` (hidden ones too), by relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------- running and killing
Probe = Callable[[Workspace], float]


def journal_lines(ws: Workspace) -> float:
    return ws.journal.read_bytes().count(b"\n") if ws.journal.exists() else 0


def report_rows(ws: Workspace) -> float:
    return sum(1 for _ in read_rows(ws.report, REPORT_SCHEMA, ["path"]))


def written_files(ws: Workspace) -> float:
    """Backups (``--fix inplace``) or copies (``--fix copy``) in place (temporaries come and go: not counted)."""
    folder, pattern = (ws.out, "**/*") if ws.case.fix == "copy" else (ws.inputs, "*.orig*")
    return sum(1 for p in folder.glob(pattern) if p.is_file() and not p.name.endswith(TEMP_SUFFIX))


def clock(ws: Workspace) -> float:
    return time.monotonic()


class KillPoint:
    """When to SIGKILL a run: :meth:`arm` at its start gives the test polled until the kill."""

    def arm(self, ws: Workspace) -> Callable[[], bool]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """Environment the run starts with (how a run is told to kill itself at an exact step)."""
        return {}


@dataclass(frozen=True)
class Grows(KillPoint):
    """As soon as ``probe`` has grown by ``by`` since the run started."""

    probe: Probe
    by: float

    def arm(self, ws: Workspace) -> Callable[[], bool]:
        target = self.probe(ws) + self.by
        return lambda: self.probe(ws) >= target


@dataclass(frozen=True)
class AtReplace(KillPoint):
    """At the run's ``n``-th ``os.replace``, just ``before`` or after it: an atomic write half done (its
    temporary written and synced, not yet in place) or just published (its folder not yet synced, its journal
    entry not yet closed). The run kills itself there, so the moment is exact on any machine."""

    n: int
    before: bool = True

    def arm(self, ws: Workspace) -> Callable[[], bool]:
        return lambda: False

    def env(self) -> dict[str, str]:
        return kill_env(self.n, self.before)


class Never(KillPoint):
    """Never kills; notes when the run started and when its work did (the report or the journal appeared)."""

    def __init__(self) -> None:
        self.start = self.work = math.nan

    def arm(self, ws: Workspace) -> Callable[[], bool]:
        self.start = time.monotonic()

        def ready() -> bool:
            if math.isnan(self.work) and (ws.journal.exists() or ws.report.exists()):
                self.work = time.monotonic()
            return False

        return ready


def spawn(ws: Workspace, fix: bool = True, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], Any]:
    err = tempfile.TemporaryFile()  # noqa: SIM115 (closed by finish)
    cmd = ws.command(fix)
    env = ENV | (env or {})
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True), err


def finish(proc: subprocess.Popen[bytes], err: Any, kill: bool) -> int:
    """Kill the run (and its process group) if asked, reap it; its exit status (``-SIGKILL`` when killed)."""
    if kill:
        os.killpg(proc.pid, signal.SIGKILL)
    rc = proc.wait()
    err.seek(0)
    text = err.read().decode(errors="replace")
    err.close()
    assert rc in (0, 1, -signal.SIGKILL), f"exit status {rc}: {text}"
    return rc


def run_until(ws: Workspace, point: KillPoint | None, fix: bool = True) -> int:
    """Run the case's command, SIGKILLed at ``point`` (None: to the end); its exit status."""
    point = point or Never()
    proc, err = spawn(ws, fix, point.env())
    ready = point.arm(ws)
    deadline = time.monotonic() + TIMEOUT_S
    while proc.poll() is None:
        late = time.monotonic() > deadline
        if late or ready():
            rc = finish(proc, err, kill=True)
            assert not late, f"{ws.command(fix)} ran past {TIMEOUT_S} s"
            return rc
        time.sleep(POLL_S)
    return finish(proc, err, kill=False)


@dataclass(frozen=True)
class Reference:
    """The end state of the uninterrupted command, and its timing (to draw kill delays from)."""

    inputs: Tree
    out: Tree
    rows: dict[str, Row]
    work_s: tuple[float, float]  # from start: the first journal line or report row, the exit

    def delays(self, seed: int, count: int) -> list[KillPoint]:
        rng = random.Random(seed)
        return [Grows(clock, rng.uniform(*self.work_s)) for _ in range(count)]


@pytest.fixture(scope="module")
def reference(originals: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[Case], Reference]:
    """The reference of a case's fix (with a Parquet report), run once per module and fix."""
    done: dict[str, Reference] = {}

    def get(case: Case) -> Reference:
        if case.fix not in done:
            root = tmp_path_factory.mktemp(f"ref-{case.fix}")
            done[case.fix] = _reference(Workspace.fresh(root, Case(case.fix, "ref.parquet"), originals))
        return done[case.fix]

    return get


def _reference(ws: Workspace) -> Reference:
    timing = Never()
    assert run_until(ws, timing) == 1  # the bad files' error rows
    end = time.monotonic() - timing.start
    out = tree(ws.out) if ws.out.exists() else {}
    return Reference(tree(ws.inputs), out, ws.current(), (timing.work - timing.start, end))


# ---------------------------------------------------------------------------------- what a kill may leave
def check_after_kill(ws: Workspace, ref: Reference, before: Tree) -> None:
    """Between runs: every file is its original or its final self, every original is kept, no row doubled."""
    now = {name: data for name, data in tree(ws.inputs).items() if not name.startswith(".")}  # temps may stay
    for name, data in before.items():
        assert now[name] in (data, ref.inputs[name]), f"{name} is neither its original nor the reference's result"
        if data != now[name] and ws.case.fix == "inplace":
            assert now.get(f"{name}.orig") == data, f"{name} was changed without its original kept"
    for name, data in now.items():
        if name not in before:
            assert name.endswith(".orig") and data == before[name.removesuffix(".orig")], f"unexpected file {name}"
    if ws.case.fix == "copy":
        for name, data in (tree(ws.out) if ws.out.exists() else {}).items():
            assert name.split("/")[-1].startswith(".") or data == ref.out[name], f"copy {name} is not the reference's"
    keys = [r["path"] for r in ws.rows()]
    assert len(keys) == len(set(keys)), "a reported input was reported again: a fix or a row was repeated"


def check_end(ws: Workspace, ref: Reference, before: Tree) -> None:
    """After the final run: the reference's bytes, backups, copies and current rows; no temporaries left."""
    assert tree(ws.inputs) == ref.inputs  # bytes of every file, backups included; no temporaries, no .orig.1
    assert (tree(ws.out) if ws.out.exists() else {}) == ref.out
    for name, data in ref.inputs.items():
        if name.endswith(".orig"):
            assert data == before[name.removesuffix(".orig")]
    rows, current = ws.rows(), ws.current()
    assert sorted(current) == sorted(before) and len(rows) == len(before), "a row lost or repeated"
    for name, row in current.items():
        expected = ref.rows[name]
        for column, value in row.items():
            if isinstance(value, float):
                assert math.isclose(value, expected[column], abs_tol=ATOL), (name, column)
            else:
                assert value == expected[column], (name, column, value, expected[column])
    assert {p.name for p in ws.root.iterdir()} <= {"in", "out", ws.report.name, ws.journal.name}
    if ws.report.is_dir():
        assert all(p.name.startswith("part-") and p.suffix == ".parquet" for p in ws.report.iterdir())


def crash_and_resume(ws: Workspace, ref: Reference, points: list[KillPoint]) -> int:
    """Run to each kill point in turn (resuming each time), then to the end; the number of kills that landed."""
    before = tree(ws.inputs)
    kills = 0
    for point in points:
        rc = run_until(ws, point)
        if rc != -signal.SIGKILL:  # finished before the point was reached: nothing left to kill
            check_end(ws, ref, before)
            return kills
        kills += 1
        check_after_kill(ws, ref, before)
    run_until(ws, None)  # exits 0 or 1: 1 when this run wrote error rows (not those of earlier runs)
    check_end(ws, ref, before)
    return kills


# ---------------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("case", CASES, ids=str)
def test_killed_and_resumed_equals_uninterrupted(
    case: Case, originals: Path, tmp_path: Path, reference: Callable[[Case], Reference]
) -> None:
    ref = reference(case)
    ws = Workspace.fresh(tmp_path, case, originals)
    points = [AtReplace(1), Grows(journal_lines, 1), AtReplace(1, before=False), Grows(report_rows, 4)]
    assert crash_and_resume(ws, ref, points) == len(points)


def exhaustive_points(case: Case) -> list[list[KillPoint]]:
    """Kill chains: after every journal intent, every report batch, every backup or copy, mid-write."""
    inputs = PHOTOS + len(BAD)
    chains: list[list[KillPoint]] = [[Grows(journal_lines, 1)] * PHOTOS, [Grows(report_rows, 1)] * (inputs // 2)]
    if case.fix != "exif":
        chains.append([Grows(written_files, 1)] * PHOTOS)
    chains.append([AtReplace(n) for n in (1, 1, 2, 3)])
    chains.append([AtReplace(n, before=False) for n in (1, 2, 1)])
    return chains


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=str)
def test_killed_at_every_step(
    case: Case, originals: Path, tmp_path: Path, reference: Callable[[Case], Reference]
) -> None:
    ref = reference(case)
    landed = []
    for i, points in enumerate(exhaustive_points(case)):
        ws = Workspace.fresh(tmp_path / f"chain{i}", case, originals)
        landed.append(crash_and_resume(ws, ref, points))
    assert all(n >= 1 for n in landed), landed
    for seed in range(4):  # random moments: some land before the work starts or after it ends, as they may
        ws = Workspace.fresh(tmp_path / f"random{seed}", case, originals)
        crash_and_resume(ws, ref, ref.delays(seed, count=3))


@pytest.mark.parametrize("report", ["report.parquet", "report.csv", "report.jsonl"])
def test_a_killed_writer_keeps_every_reported_batch(report: str, originals: Path, tmp_path: Path) -> None:
    ws = Workspace.fresh(tmp_path, Case("none", report), originals)
    proc, err = spawn(ws, fix=False)
    seen: list[Row] = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(seen) < 6 and proc.poll() is None and time.monotonic() < deadline:  # 3 batches of 2
        seen = ws.rows()
        time.sleep(POLL_S)
    assert finish(proc, err, kill=True) == -signal.SIGKILL, "the run ended before three batches were reported"
    after = ws.rows()
    assert len(seen) >= 6 and after[: len(seen)] == seen
    assert len(after) < PHOTOS + len(BAD), "the kill landed after the run's last batch"
    with open_report(ws.report, REPORT_SCHEMA):  # reopening recovers a torn tail or a pending Parquet stream
        pass
    assert ws.rows() == after
    if ws.report.is_dir():
        assert remove_stale_temps(ws.report, older_than_s=0) == 0
        assert [p.name for p in ws.report.iterdir()] == ["part-00000.parquet"]


# ---------------------------------------------------------------------------------- kill states made on purpose
def test_a_torn_journal_line_is_cut_before_the_next_intent(originals: Path, tmp_path: Path, one_thread: None) -> None:
    """A kill mid-append (a record across a page boundary) tears the journal's last line; the next intent must
    not be glued to it, or the run after cannot read the journal at all."""
    ws = Workspace.fresh(tmp_path, Case("inplace", "report.csv"), originals)
    ws.journal.write_bytes(b'{"mode": "inplace", "target": "')
    summary = orient_files([ws.inputs], model=ROTNET, report=ws.report, fix="inplace", threshold=0.0,
                           options=RunOptions(batch_size=2, workers=0))  # fmt: skip
    records = [json.loads(line) for line in journal_path(ws.report).read_bytes().splitlines()]
    assert summary.counts["fixed"] >= 1 and len(records) == summary.counts["fixed"]
    assert records == list(read_journal(ws.journal))


def test_a_part_written_but_its_stream_not_removed_is_read_once(tmp_path: Path) -> None:
    """A writer killed between writing a Parquet part and removing its pending stream leaves both."""
    report = tmp_path / "report.parquet"
    rows = [{"path": f"/p/{i}.jpg", "rotation": 0, "error": None} for i in range(4)]
    with open_report(report, REPORT_SCHEMA) as writer:
        writer.write(rows[:2])
        writer.write(rows[2:])
        (pending,) = report.glob(".pending-*.arrows")
        kept = pending.read_bytes()
    pending.write_bytes(kept)  # as if killed right after the part was written
    assert [r["path"] for r in read_rows(report, REPORT_SCHEMA)] == [r["path"] for r in rows]
    with open_report(report, REPORT_SCHEMA):
        pass
    assert [p.name for p in report.iterdir()] == ["part-00000.parquet"]
    assert [r["path"] for r in read_rows(report, REPORT_SCHEMA)] == [r["path"] for r in rows]
