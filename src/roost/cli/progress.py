"""Progress of a batch job on stderr: a bar for the images, one for a weights download, notes as lines."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from roost.jobs.base import Advanced, Downloading, Event, Note, OnEvent, Started

STDERR = Console(stderr=True, markup=False, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def job_progress(quiet: bool) -> Iterator[OnEvent]:
    """An event handler drawing the job's progress while the block runs (notes only when ``quiet``)."""
    images = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), console=STDERR, disable=quiet,
    )  # fmt: skip
    downloads = Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=STDERR,
        disable=quiet,
    )  # fmt: skip
    tasks: dict[str, TaskID] = {}

    def show(event: Event) -> None:
        if isinstance(event, Note):
            STDERR.print(event.text)
        elif isinstance(event, Downloading):
            if event.name not in tasks:
                downloads.start()
                tasks[event.name] = downloads.add_task(f"download {event.name}", total=event.total)
            downloads.update(tasks[event.name], completed=event.done, total=event.total)
        elif isinstance(event, Started):
            downloads.stop()
            images.start()
            tasks[""] = images.add_task(event.job, total=event.total, completed=event.done_before)
        elif isinstance(event, Advanced) and "" in tasks:
            images.advance(tasks[""], event.rows)

    try:
        yield show
    finally:
        downloads.stop()
        images.stop()
