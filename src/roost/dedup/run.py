"""``roost dedup``: fingerprint (resumable job), optionally embed, group, write the report, then act.

The fingerprints are cached in ``<report>.fingerprints.parquet`` and the embeddings (``model``) in
``<report>.embeddings.parquet``, both resumable reports of the job layer, so a killed run loses at most the
batch in flight and a repeated run computes only new or changed files. The grouping is then computed
whole and the report (``path, group, keeper, match, similarity, error``) replaced atomically. The action
runs last, from the grouping (see ``actions.py``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from roost.dedup.actions import Action, Planned, describe, link_files, manifest_path, move_files
from roost.dedup.groups import REPORT_SCHEMA, Keep, Thresholds, group_rows
from roost.dedup.signatures import FINGERPRINT_SCHEMA, FingerprintJob, local_fingerprints, ray_fingerprints
from roost.errors import JobOptionError
from roost.files.atomic import TEMP_SUFFIX, atomic_target
from roost.jobs import engine
from roost.jobs.base import Note, OnEvent, Row, RunOptions, Summary, _member, check_fraction, ignore
from roost.jobs.inputs import Item, expand
from roost.jobs.report import ReportFormat, check_writable, last_rows, open_report

if TYPE_CHECKING:
    from roost.jobs.ray import RayOptions

DEFAULT_HASH_SIMILARITY = 0.84  # at most 10 of 64 bits apart; distinct photos measured 14+ apart
DEFAULT_SIMILARITY = 0.9  # cosine of the embeddings


@dataclass(frozen=True)
class DedupOptions:
    """What counts as a duplicate, which copy is kept, and what is done with the others."""

    hash_similarity: float = DEFAULT_HASH_SIMILARITY
    similarity: float = DEFAULT_SIMILARITY
    keep: Keep = Keep.PIXELS
    action: Action = Action.REPORT
    to: Path | None = None  # the folder moved duplicates (move) or links (link) go to
    dry_run: bool = False
    model: str | None = None  # embed with this model for the embedding stage
    index: Path | None = None  # or reuse the embeddings of this index (``roost index``)

    def __post_init__(self) -> None:
        check_fraction("hash_similarity", self.hash_similarity)
        check_fraction("similarity", self.similarity)
        object.__setattr__(self, "keep", _member(Keep, "keep", self.keep))
        object.__setattr__(self, "action", _member(Action, "action", self.action))
        for name in ("to", "index"):  # str paths accepted
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        if self.action is not Action.REPORT and self.to is None:
            raise JobOptionError(f"action {self.action.value} needs a destination folder (to=...)")
        if self.model is not None and self.index is not None:
            raise JobOptionError("give model or index, not both (an index already holds its model's embeddings)")


@dataclass
class DedupSummary(Summary):
    """A dedup run: the summary counts, the files acted on (or that would be), failures, the manifest."""

    planned: list[Planned] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    manifest: str | None = None


def cache_paths(report: Path) -> tuple[Path, Path]:
    """The fingerprint and embedding caches kept beside a report."""
    fingerprints = report.with_name(report.name + ".fingerprints.parquet")
    return fingerprints, report.with_name(report.name + ".embeddings.parquet")


def dedup_files(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    report: str | os.PathLike[str] | None,
    options: DedupOptions | None = None,
    run: RunOptions | None = None,
    ray: RayOptions | None = None,
    on_event: OnEvent = ignore,
) -> DedupSummary:
    """Group duplicates among ``inputs``, write the report (if any), then apply ``options.action``."""
    options = options or DedupOptions()
    run = run or RunOptions()
    path = Path(report) if report is not None else None
    caches = cache_paths(path) if path is not None else None
    if path is not None:
        check_writable(path)
    exclude = [p for p in (path, *(caches or ()), options.to) if p is not None]
    items = expand(inputs, recursive=run.recursive, exclude=exclude)
    rows, done_before = _fingerprints(items, caches[0] if caches else None, run, ray, on_event)
    ok = [rows[i.key] for i in items if i.problem is None and i.key in rows and not rows[i.key]["error"]]
    vectors = _vectors([r["path"] for r in ok], caches[1] if caches else None, options, run, ray, on_event)
    on_event(Note(f"grouping {len(ok)} images"))
    grouped = {r["path"]: r for r in group_rows(ok, Thresholds(options.hash_similarity, options.similarity),
                                               options.keep, vectors)}  # fmt: skip
    final = [grouped.get(i.key) or _error_row(i.key, rows.get(i.key), i.problem) for i in items]
    summary = _summary(final, path)
    summary.done_before = done_before
    if path is not None:
        write_report(path, final)
    _act(options, items, final, rows, summary, on_event)
    return summary


def _fingerprints(
    items: list[Item], cache: Path | None, run: RunOptions, ray: RayOptions | None, on_event: OnEvent
) -> tuple[dict[str, Row], int]:
    """The fingerprint row of each item (from the cache where still current), and how many were cached."""
    job = FingerprintJob()
    source = local_fingerprints(run) if ray is None else ray_fingerprints(run, ray.address, ray.local_cpus)
    collected: list[Row] = []
    done = engine.run(job, items, source, report=cache, on_event=on_event,
                      on_rows=collected.extend if cache is None else None)  # fmt: skip
    if cache is None:
        return {r["path"]: r for r in collected}, 0
    return last_rows(cache, FINGERPRINT_SCHEMA, FINGERPRINT_SCHEMA.names), done.done_before


def _vectors(
    keys: list[str], cache: Path | None, options: DedupOptions, run: RunOptions, ray: RayOptions | None,
    on_event: OnEvent,
) -> np.ndarray | None:  # fmt: skip
    """(N, D) embeddings of ``keys`` (NaN rows where none), from the model or the index; None without."""
    if options.index is not None:
        from roost.index import load_index

        index = load_index(options.index)
        found = {p: i for i, p in enumerate(index.paths)}
        missing = sum(1 for k in keys if k not in found)
        if missing:
            on_event(Note(f"{missing} images are not in the index {options.index}: no embedding stage for them"))
        return _aligned(keys, {k: index.vectors[found[k]] for k in keys if k in found}, index.vectors.shape[1])
    if options.model is None or not keys:
        return None
    from roost.jobs.embed import EMBED_SCHEMA_ANY, embed_files

    collected: list[Row] = []
    embed_files(keys, model=options.model, report=cache, options=run, ray=ray, on_event=on_event,
                on_rows=collected.extend if cache is None else None)  # fmt: skip
    rows = (
        last_rows(cache, EMBED_SCHEMA_ANY, ["path", "embedding", "error"])
        if cache
        else {r["path"]: r for r in collected}
    )
    found = {k: np.asarray(r["embedding"], np.float32) for k, r in rows.items() if r["embedding"] is not None}
    dim = len(next(iter(found.values()))) if found else 1
    return _aligned(keys, found, dim)


def _aligned(keys: list[str], found: dict[str, np.ndarray], dim: int) -> np.ndarray:
    out = np.full((len(keys), dim), np.nan, np.float32)
    for i, key in enumerate(keys):
        if key in found:
            out[i] = found[key]
    return out


def _error_row(key: str, row: Row | None, problem: str | None) -> Row:
    error = problem or (row or {}).get("error") or "not fingerprinted"
    return {"path": key, "group": None, "keeper": None, "match": None, "similarity": None, "error": error}


def _summary(rows: list[Row], report: Path | None) -> DedupSummary:
    summary = DedupSummary("dedup", report=os.fspath(report) if report is not None else None)
    summary.processed = len(rows)
    summary.errors = sum(1 for r in rows if r["error"])
    groups = {r["group"] for r in rows if r["group"] is not None}
    summary.counts = {"groups": len(groups), "duplicates": sum(1 for r in rows if r["keeper"] is False)}
    return summary


def write_report(path: Path, rows: Sequence[Row], schema: pa.Schema = REPORT_SCHEMA) -> None:
    """Replace the report with ``rows`` at once: a reader sees the old report or the new one."""
    if ReportFormat.of(path) is not ReportFormat.PARQUET:
        with atomic_target(path) as tmp, open_report(tmp, schema) as writer:
            writer.write(rows)
        return
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent))
    try:  # a Parquet report is a folder: built beside, then swapped in
        with open_report(folder / path.name, schema) as writer:
            writer.write(rows)
        if path.exists():
            os.replace(path, folder / "old")
        os.replace(folder / path.name, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def plan(
    action: Action, items: Sequence[Item], report_rows: Sequence[Row], fingerprints: dict[str, Row], to: Path
) -> list[Planned]:
    """The files an action touches: non-keepers moved under ``to``, or kept images linked from ``to``."""
    by_key = {i.key: i for i in items}
    out = []
    for row in report_rows:
        if row["error"] or action is Action.REPORT:
            continue
        item, fp = by_key[row["path"]], fingerprints[row["path"]]
        if (action is Action.MOVE and row["keeper"] is False) or (action is Action.LINK and row["keeper"]):
            out.append(Planned(item.key, os.fspath(Path(to).resolve() / item.relative()), fp["size"], fp["bytes_hash"]))
    return out


def _act(
    options: DedupOptions, items: Sequence[Item], rows: Sequence[Row], fingerprints: dict[str, Row],
    summary: DedupSummary, on_event: OnEvent,
) -> None:  # fmt: skip
    if options.action is Action.REPORT or options.to is None:
        return
    summary.planned = plan(options.action, items, rows, fingerprints, options.to)
    if options.dry_run:
        for line in describe(options.action, summary.planned):
            on_event(Note(line))
        summary.counts["would " + options.action.value] = len(summary.planned)
        return
    if options.action is Action.MOVE:
        outcome = move_files(summary.planned, options.to)
        summary.manifest = os.fspath(manifest_path(options.to))
        summary.counts["moved"] = outcome.done
    else:
        outcome = link_files(summary.planned)
        summary.counts["linked"] = outcome.done
    summary.failures = outcome.failures
    summary.counts["action failures"] = len(outcome.failures)
    for failure in outcome.failures:
        on_event(Note(failure))
