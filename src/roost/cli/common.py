"""Helpers shared by the command modules."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from roost.errors import RoostError


@contextmanager
def user_errors() -> Iterator[None]:
    """Show roost's own errors (bad names, files, inputs) as one line and exit with status 2."""
    try:
        yield
    except (RoostError, FileNotFoundError) as err:
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(2) from err
