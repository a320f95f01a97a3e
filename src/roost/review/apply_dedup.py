"""``roost apply`` for the decisions of a dedup review: move the confirmed duplicates aside, or link the kept.

Columns: ``path, group, keeper, decision`` (and ``sha256``, the file's content when it was reviewed). In a
group, ``keeper`` marks the one image kept; an accepted non-keeper is a duplicate of it, a rejected one was
split out of the group (it is kept: not a duplicate). Images in no group have an empty ``group``.

* **move** moves every accepted duplicate under ``to`` at its path below the reviewed files' common folder,
  with ``roost dedup``'s own mover: journaled in ``<to>/roost-dedup-manifest.jsonl`` before each step,
  resumable after a kill, never moved twice, undone with ``roost dedup --undo``.
* **link** writes in ``to`` a symbolic link to every kept image (keepers, split-out and ungrouped images).

A file whose content differs from the one reviewed is left alone (one line says so).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from roost.dedup.actions import Action, Outcome, Planned, link_files, manifest_path, move_files
from roost.dedup.signatures import blake2b_file
from roost.errors import ReviewError
from roost.jobs.base import Note, OnEvent, Summary, ignore
from roost.jobs.inputs import normalise
from roost.jobs.journal import read_sha256
from roost.jobs.orient import copy_base

DEDUP_COLUMNS = ("path", "group", "keeper", "decision")


@dataclass(frozen=True)
class GroupDecision:
    path: str
    group: str | None
    keeper: bool
    accept: bool
    sha256: str | None = None

    @property
    def kept(self) -> bool:
        """Whether the image stays in the de-duplicated collection (a keeper, split out, or in no group)."""
        return self.keeper or not self.accept or self.group is None


def read_dedup_decisions(path: str | os.PathLike[str]) -> list[GroupDecision]:
    """The decisions of a dedup review's ``decisions.csv``; exactly one keeper per group."""
    with open(path, "rb") as f:
        reader = csv.DictReader(io.StringIO(f.read().decode("utf-8-sig", errors="surrogateescape"), newline=""))
    decisions: list[GroupDecision] = []
    for line, record in enumerate(reader, start=2):
        where = f"{path}, line {line}"
        verdict = (record.get("decision") or "").strip().lower()
        if verdict not in ("accept", "reject"):
            raise ReviewError(f"{where}: decision must be accept or reject, got {record.get('decision')!r}")
        keeper = (record.get("keeper") or "").strip().lower()
        if keeper not in ("true", "false"):
            raise ReviewError(f"{where}: keeper must be true or false, got {record.get('keeper')!r}")
        if not (record.get("path") or "").strip():
            raise ReviewError(f"{where}: no path")
        group = (record.get("group") or "").strip() or None
        sha = (record.get("sha256") or "").strip().lower() or None
        decisions.append(
            GroupDecision(normalise(record["path"] or ""), group, keeper == "true", verdict == "accept", sha)
        )
    _check_keepers(path, decisions)
    return decisions


def _check_keepers(path: str | os.PathLike[str], decisions: Sequence[GroupDecision]) -> None:
    keepers: dict[str, int] = {}
    for d in decisions:
        if d.group is not None:
            keepers[d.group] = keepers.get(d.group, 0) + d.keeper
    bad = [g for g, n in keepers.items() if n != 1]
    if bad:
        raise ReviewError(f"{path}: group {bad[0]} has {keepers[bad[0]]} keepers; each group keeps exactly one")
    seen: set[str] = set()
    for d in decisions:
        if d.path in seen:
            raise ReviewError(f"{path}: {d.path} is decided twice")
        seen.add(d.path)


def apply_dedup_decisions(
    decisions: str | os.PathLike[str],
    *,
    action: Action | str,
    to: str | os.PathLike[str] | None,
    dry_run: bool = False,
    on_event: OnEvent = ignore,
) -> Summary:
    """Move the accepted duplicates to ``to`` (``move``) or link the kept images there (``link``)."""
    act = Action(action) if action in (Action.MOVE, Action.LINK) else None
    if act is None:
        raise ReviewError(f"action must be move or link for dedup decisions, got {action!r}")
    if to is None:
        raise ReviewError(f"action {act.value!r} needs output_dir (the folder duplicates go to, or links are made in)")
    chosen = read_dedup_decisions(decisions)
    target = Path(to).resolve()
    base = copy_base([d.path for d in chosen]) if chosen else os.fspath(target)
    if normalise(target) == base or any(d.path.startswith(normalise(target) + os.sep) for d in chosen):
        raise ReviewError(f"output_dir {to} holds reviewed files; give a folder outside them")
    summary = Summary("apply", processed=len(chosen))
    picked = [d for d in chosen if (not d.kept if act is Action.MOVE else d.kept)]
    planned, refused = _plan(picked, target, base)
    summary.counts["duplicates" if act is Action.MOVE else "kept"] = len(picked)
    if dry_run:
        for item in planned:
            on_event(Note(f"would {act.value} {item.source} -> {item.target}"))
        outcome = Outcome()
        summary.counts[f"would {act.value}"] = len(planned)
    else:
        outcome = move_files(planned, target) if act is Action.MOVE else link_files(planned)
        summary.counts["moved" if act is Action.MOVE else "linked"] = outcome.done
        if act is Action.MOVE:
            summary.report = os.fspath(manifest_path(target))
    for line in [*refused, *outcome.failures]:
        on_event(Note(line))
    summary.errors = len(refused) + len(outcome.failures)
    return summary


def _plan(picked: Sequence[GroupDecision], to: Path, base: str) -> tuple[list[Planned], list[str]]:
    """The file operations, and a line for each file that changed since the review (left alone)."""
    planned: list[Planned] = []
    refused: list[str] = []
    for d in picked:
        target = os.fspath(to / os.path.relpath(d.path, base))
        if not os.path.lexists(d.path):  # moved by an earlier run (the mover knows), or gone (it says so)
            planned.append(Planned(d.path, target))
            continue
        try:
            if d.sha256 is not None and read_sha256(d.path) != d.sha256:
                refused.append(f"{d.path}: changed since it was reviewed; left alone")
                continue
            planned.append(Planned(d.path, target, os.path.getsize(d.path), blake2b_file(d.path)))
        except OSError as err:
            refused.append(f"{d.path}: {err.strerror or err}")
    return planned, refused
