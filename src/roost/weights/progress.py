"""The one place that draws download progress: rich bars on stderr for ``load_pretrained_model(progress_bar=True)``.

The download code itself only calls a :data:`~roost.weights.hub.ProgressCallback`; front ends (the CLI)
may use this renderer or their own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from roost.weights.hub import DownloadProgress, ProgressCallback


@contextlib.contextmanager
def stderr_download_bars() -> Iterator[ProgressCallback]:
    """A progress callback drawing one bar per file on stderr while the block runs.

    Nothing is drawn until the first event (a cached file shows no bar); the bars go when the block ends.
    """
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    bars: Progress | None = None
    tasks: dict[str, TaskID] = {}

    def show(event: DownloadProgress) -> None:
        nonlocal bars
        if bars is None:
            columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
            bars = Progress(*columns, console=Console(stderr=True), transient=True)
            bars.start()
        if event.url not in tasks:
            tasks[event.url] = bars.add_task(event.name, total=event.total)
        bars.update(tasks[event.url], completed=event.done, total=event.total)

    try:
        yield show
    finally:
        if bars is not None:
            bars.stop()
