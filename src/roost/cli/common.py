"""Helpers shared by the command modules: errors as one plain line, and the exit codes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer

from roost.errors import RoostError

EXIT_OK = 0
EXIT_INPUT_ERRORS = 1  # the run finished; some inputs have an error row
EXIT_USAGE = 2  # bad arguments or setup: nothing was done
EXIT_INTERRUPTED = 130


@contextmanager
def user_errors(translate: Callable[[str], str] = str) -> Iterator[None]:
    """Show roost's own errors (bad names, files, options) as one unwrapped line and exit with status 2.

    ``translate`` rewrites the library's wording for the command (parameter names to flags).
    """
    try:
        yield
    except (RoostError, FileNotFoundError, NotADirectoryError, PermissionError) as err:
        typer.echo(f"error: {translate(_text(err))}", err=True)
        raise typer.Exit(EXIT_USAGE) from err
    except KeyboardInterrupt:
        typer.echo("interrupted: finished batches are in the report; run the same command again to resume", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _text(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.strerror}: {err.filename}"
    return " ".join(str(err).split())  # one line
