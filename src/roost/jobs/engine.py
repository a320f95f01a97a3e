"""The loop every engine shares: resume, error rows, model batches, effects, one report writer, a summary.

An engine is a *source*: given the items still to compute, it yields computed batches (the model output of
each decoded image, or why it failed). :func:`local_source` decodes in worker processes and runs the model
here; the Ray engine (``ray.py``) computes on a cluster. Everything else (which inputs are pending, the
rows, the fixes, the report) is here, once, for both.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from roost.data.datasets import iter_batches
from roost.errors import EngineError
from roost.jobs.base import Advanced, Computed, Job, OnEvent, Row, RunOptions, Source, Started, Summary, ignore
from roost.jobs.inputs import Item, expand
from roost.jobs.model import JobModel
from roost.jobs.report import ReportWriter, check_writable, last_rows, open_report

if TYPE_CHECKING:
    from roost.jobs.ray import RayOptions


OnRows = Callable[[list[Row]], None]


def local_source(model: JobModel, job: Job) -> Source:
    """Decode in worker processes (input order kept) and run the model batch by batch, here."""

    def source(items: list[Item]) -> Iterator[Computed]:
        o = model.options
        batches = iter_batches(
            [item.key for item in items], model.transform.pixels, batch_size=o.batch_size, workers=o.workers,
            draft=model.draft, pin_memory=o.torch_device().type == "cuda",
        )  # fmt: skip
        start = 0
        for batch, array in model.run(batches, job.output, total=len(items)):
            count = len(batch.ok) + len(batch.errors)
            outputs = {i - start: array[k] for k, i in enumerate(batch.ok)} if array is not None else {}
            errors = {i - start: e for i, e in batch.errors.items()}
            yield Computed(items[start : start + count], outputs, errors)
            start += count

    return source


def run(
    job: Job,
    items: Sequence[Item],
    source: Source,
    *,
    report: Path | None,
    on_event: OnEvent = ignore,
    on_rows: OnRows | None = None,
    chunk: int = 16,
) -> Summary:
    """Run a bound ``job`` over ``items``, appending one row per input to ``report``; what it did."""
    summary = Summary(job.name, report=os.fspath(report) if report is not None else None)
    writer = open_report(report, job.schema) if report is not None else None
    try:
        write = _Write(job, writer, summary, on_event, on_rows)
        state = last_rows(report, job.schema, job.state_columns()) if report is not None else {}
        recovered = job.recover(state)
        write(recovered)
        state |= {row["path"]: row for row in recovered}
        todo, effects = _split(job, items, state)
        summary.done_before = len(items) - len(todo) - len(effects)
        pending = {i.key for i in todo} | {i.key for i, _ in effects}
        summary.earlier_errors = sum(1 for i in items if i.key not in pending and (state[i.key].get("error")))
        on_event(Started(job.name, len(items), summary.done_before))
        problems = [i for i in todo if i.problem is not None]
        for batch in _chunks(problems, chunk):
            write([job.error_row(i.key, i.problem or "") for i in batch])
        for batch in _chunks(effects, chunk):
            rows = [row for _, row in batch]
            job.after_batch(rows, [item for item, _ in batch])
            write(rows)
        pending = [i for i in todo if i.problem is None]
        for computed in source(pending) if pending else ():
            rows = _rows(job, computed)
            job.after_batch(rows, computed.items)
            write(rows)
    finally:
        if writer is not None:
            writer.close()
    return summary


def _chunks(seq: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _split(job: Job, items: Sequence[Item], state: dict[str, Row]) -> tuple[list[Item], list[tuple[Item, Row]]]:
    """Items to compute, and current rows whose effect alone must be redone; the rest is done."""
    todo: list[Item] = []
    effects: list[tuple[Item, Row]] = []
    for item in items:
        row = state.get(item.key)
        verdict = "rerun" if row is None else job.resume(row)
        if verdict == "rerun":
            todo.append(item)
        elif verdict == "effect" and row is not None:
            effects.append((item, dict(row)))
    return todo, effects


def _rows(job: Job, computed: Computed) -> list[Row]:
    rows = []
    for k, item in enumerate(computed.items):
        if k in computed.outputs:
            rows.append({"path": item.key, **job.values(computed.outputs[k]), "error": None})
        else:
            rows.append(job.error_row(item.key, computed.errors.get(k, "not computed")))
    return rows


@dataclass
class _Write:
    """Append a batch of rows to the report (if any), count them and tell the caller."""

    job: Job
    writer: ReportWriter | None
    summary: Summary
    on_event: OnEvent
    on_rows: OnRows | None

    def __call__(self, rows: list[Row]) -> None:
        if not rows:
            return
        if self.writer is not None:
            self.writer.write(rows)
        self.summary.processed += len(rows)
        self.summary.errors += sum(1 for r in rows if r.get("error"))
        self.job.tally(rows, self.summary.counts)
        if self.on_rows is not None:
            self.on_rows(rows)
        self.on_event(Advanced(len(rows)))


def execute(
    job: Job,
    inputs: Sequence[str | os.PathLike[str]],
    *,
    model: str | os.PathLike[str],
    report: str | os.PathLike[str] | None,
    options: RunOptions,
    ray: RayOptions | None = None,
    exclude: Sequence[Path] = (),
    on_event: OnEvent = ignore,
    on_rows: OnRows | None = None,
) -> Summary:
    """Check everything, load the model, expand the inputs and run ``job`` on the local or the Ray engine.

    The report (and ``exclude``: the folder of copies) is never an input. Errors in the arguments are raised
    before anything is read or written.
    """
    path = Path(report) if report is not None else None
    if path is not None:
        check_writable(path)
    items = _items(inputs, options, ray, [p for p in (path, *exclude) if p is not None])  # before the model loads
    if ray is None:
        model_ = JobModel.load(model, options, on_event)
        job.bind(model_.facts)
        source = local_source(model_, job)
    else:
        from roost.jobs.ray import ray_source

        source = ray_source(job, model, options, ray, on_event)
    return run(job, items, source, report=path, on_event=on_event, on_rows=on_rows)


def _items(inputs: Sequence[str | os.PathLike[str]], options: RunOptions, ray: RayOptions | None, never: list[Path]):
    """The input items: local paths expanded here, or (Ray engine only) URIs listed through pyarrow."""
    uris = [os.fspath(p) for p in inputs if "://" in os.fspath(p)]
    if not uris:
        return expand(inputs, recursive=options.recursive, exclude=never)
    if ray is None or len(uris) != len(inputs):
        raise EngineError("URIs (s3://, gs://, …) run on the Ray engine only, and not mixed with local paths")
    from roost.jobs.ray import list_uris

    return list_uris(uris, recursive=options.recursive)
