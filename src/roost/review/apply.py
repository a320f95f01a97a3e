"""``roost apply``: carry out the orient decisions a review page exported (``decisions.csv``).

Columns: ``path, decision, rotation`` (``decision``: accept or reject; ``rotation``: the one decided, counter-
clockwise as in the orient report) and, as the page writes them, ``sha256``: the file's content when it was
reviewed. An accepted row is fixed by its rotation; a rejected one is left alone (with ``--fix copy`` it is
copied unchanged, so the copies are the whole collection). A file whose content differs from the one
reviewed is not touched (its row says so): the decision was made on other pixels, or the fix was already
made.

The decisions run through the orient job itself (``roost.jobs.orient.OrientJob``) with a source that, in
place of a model, gives each file the one-hot probabilities of its decided rotation. So applying has exactly
the batch jobs' safety: every change journaled before it is made (``<report>.fixes.jsonl``), a kill at any
moment loses nothing and a re-run resumes without applying anything twice, backups for ``inplace``, and a
report of what was done (an orient report: ``roost review`` reads it too).
"""

from __future__ import annotations

import csv
import io
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from roost.errors import ReviewError
from roost.jobs.base import Computed, OnEvent, Row, Source, Summary, ignore
from roost.jobs.engine import run
from roost.jobs.inputs import Item, normalise
from roost.jobs.journal import Journal, read_sha256
from roost.jobs.orient import REPORT_SCHEMA, ROTATIONS, SHOWN_UPRIGHT, OrientJob, copy_base, journal_path
from roost.jobs.report import check_writable, last_rows
from roost.review.apply_dedup import DEDUP_COLUMNS, apply_dedup_decisions

ORIENT_COLUMNS = ("path", "decision", "rotation")
BATCH = 16


@dataclass(frozen=True)
class Decision:
    """One reviewed file: its report key, whether its fix is accepted, the rotation decided, its content then."""

    path: str
    accept: bool
    rotation: int
    sha256: str | None = None

    @property
    def turn(self) -> int:
        """The rotation to fix by: the decided one if accepted, else none."""
        return self.rotation if self.accept else 0


def read_decisions(path: str | os.PathLike[str]) -> list[Decision]:
    """The orient decisions of a ``decisions.csv``, checked line by line (``ReviewError`` names the line)."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8-sig", errors="surrogateescape")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = set(reader.fieldnames or ())
    if set(DEDUP_COLUMNS) <= columns:
        raise ReviewError(f"{path} holds dedup decisions; apply them with an action (move or link)")
    if not set(ORIENT_COLUMNS) <= columns:
        found = ", ".join(reader.fieldnames or ()) or "none"
        raise ReviewError(f"{path} is not a decisions file of an orient review (columns: {found}; "
                          f"expected {', '.join(ORIENT_COLUMNS)})")  # fmt: skip
    decisions: dict[str, Decision] = {}
    for line, record in enumerate(reader, start=2):
        decision = _decision(record, f"{path}, line {line}")
        if decisions.get(decision.path, decision) != decision:
            raise ReviewError(f"{path}, line {line}: {decision.path} is decided twice, differently")
        decisions[decision.path] = decision
    return list(decisions.values())


def decision_columns(path: str | os.PathLike[str]) -> list[str]:
    """The header of a decisions file."""
    with open(path, "rb") as f:
        first = f.readline().decode("utf-8-sig", errors="surrogateescape")
    return next(csv.reader([first]), [])


def _decision(record: dict[str, str | None], where: str) -> Decision:
    path, verdict = (record.get("path") or "").strip(), (record.get("decision") or "").strip().lower()
    if not path:
        raise ReviewError(f"{where}: no path")
    if verdict not in ("accept", "reject"):
        raise ReviewError(f"{where}: decision must be accept or reject, got {record.get('decision')!r}")
    text = (record.get("rotation") or "").strip()
    if not text and verdict == "reject":
        text = "0"
    if text not in {str(r) for r in ROTATIONS}:
        raise ReviewError(f"{where}: rotation must be 0, 90, 180 or 270, got {record.get('rotation')!r}")
    sha = (record.get("sha256") or "").strip().lower() or None
    return Decision(normalise(path), verdict == "accept", int(text), sha)


@dataclass
class ApplyJob(OrientJob):
    """The orient job whose rows come from decisions; a changed decision for an unfixed row is redone."""

    decided: dict[str, int] = field(default_factory=dict)
    name: str = "apply"

    def resume(self, row: Row) -> Literal["done", "rerun", "effect"]:
        if row.get("rotation") != self.decided.get(row["path"], row.get("rotation")) and not _fixes(row):
            return "rerun"
        return super().resume(row)


def decision_source(decisions: Sequence[Decision]) -> Source:
    """A source (``roost.jobs.base.Source``) giving each file the one-hot probabilities of its decision."""
    by_key = {d.path: d for d in decisions}

    def source(items: list[Item]) -> Iterator[Computed]:
        for start in range(0, len(items), BATCH):
            batch = items[start : start + BATCH]
            outputs: dict[int, np.ndarray] = {}
            errors: dict[int, str] = {}
            for k, item in enumerate(batch):
                problem = _changed(by_key[item.key])
                if problem is None:
                    outputs[k] = np.eye(len(ROTATIONS), dtype=np.float32)[ROTATIONS.index(by_key[item.key].turn)]
                else:
                    errors[k] = problem
            yield Computed(batch, outputs, errors)

    return source


def _changed(decision: Decision) -> str | None:
    """Why a file cannot take its decision now (unreadable, or not the content reviewed); None if it can."""
    try:
        digest = read_sha256(decision.path)
    except OSError as err:
        return f"{type(err).__name__}: {err.strerror or err}: {decision.path}"
    if decision.sha256 is not None and digest != decision.sha256:
        return "the file changed since it was reviewed (already fixed?); not applied: review it again"
    return None


def apply_decisions(
    decisions: str | os.PathLike[str],
    *,
    fix: str = "exif",
    action: str = "move",
    output_dir: str | os.PathLike[str] | None = None,
    report: str | os.PathLike[str] | None = None,
    dry_run: bool = False,
    backup_suffix: str | None = ".orig",
    on_event: OnEvent = ignore,
) -> Summary:
    """Apply a review's decisions: orient ones with ``fix`` (rows to ``report``, default beside the decisions),
    dedup ones with ``action`` (see ``apply_dedup.py``) into ``output_dir``."""
    if set(DEDUP_COLUMNS) <= set(decision_columns(decisions)):
        return apply_dedup_decisions(decisions, action=action, to=output_dir, dry_run=dry_run, on_event=on_event)
    chosen = read_decisions(decisions)
    path = Path(report) if report is not None else default_report(decisions)
    check_writable(path)
    keys = [d.path for d in chosen]
    out = Path(output_dir) if output_dir is not None else None
    if fix == "copy" and out is None:
        raise ReviewError("fix 'copy' needs output_dir (the folder the upright copies go to)")
    if out is not None and any(k == normalise(out) or k.startswith(normalise(out) + os.sep) for k in keys):
        raise ReviewError(f"output_dir {out} holds a file to fix; copies must go to a folder outside it")
    _check_conflicts(path, chosen)
    job = ApplyJob(
        fix=fix, output_dir=out, copy_base=copy_base(keys) if out is not None and keys else None,  # type: ignore[arg-type]
        dry_run=dry_run, backup_suffix=backup_suffix, journal=Journal(journal_path(path)),
        decided={d.path: d.turn for d in chosen},
    )  # fmt: skip
    try:
        items = [Item(k, problem=_problem(k)) for k in keys]
        return run(job, items, decision_source(chosen), report=path, on_event=on_event)
    finally:
        assert job.journal is not None
        job.journal.close()


def default_report(decisions: str | os.PathLike[str]) -> Path:
    """Where ``roost apply`` records what it did by default: ``<decisions>.applied.csv`` beside the decisions."""
    path = Path(decisions)
    return path.with_name(path.stem + ".applied.csv")


def _check_conflicts(report: Path, decisions: Sequence[Decision]) -> None:
    """Refuse decisions that contradict a fix this report says was already made (it cannot be redone)."""
    state = last_rows(report, REPORT_SCHEMA, ["path", "rotation", "fix"])
    clash = [(d, state[d.path]) for d in decisions if d.path in state and _fixes(state[d.path])
             and state[d.path]["rotation"] != d.turn]  # fmt: skip
    if clash:
        d, row = clash[0]
        raise ReviewError(
            f"{len(clash)} decisions differ from fixes {report} says were made (first: {d.path}, fixed by "
            f"{row['rotation']}°, now {d.turn}°); review the fixed files again and apply with another --report"
        )


def _fixes(row: Row) -> set[str]:
    return {mode for mode in str(row.get("fix") or "").split("+") if mode} & (SHOWN_UPRIGHT | {"copy"})


def _problem(key: str) -> str | None:
    try:
        mode = os.stat(key).st_mode
    except FileNotFoundError:
        return "file not found (moved or deleted since the review)"
    except OSError as err:
        return f"{type(err).__name__}: {err.strerror}"
    return None if stat.S_ISREG(mode) else "not a regular file"
