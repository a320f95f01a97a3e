"""The ``roost`` command: a thin typer app over library functions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from roost.errors import RoostError

app = typer.Typer(
    help="RoPE Vision Transformers (the Birder family): inspect, run and curate.",
    no_args_is_help=True,
    add_completion=False,
)


@contextmanager
def user_errors() -> Iterator[None]:
    """Show roost's own errors (bad names, files, inputs) as one line and exit with status 2."""
    try:
        yield
    except (RoostError, FileNotFoundError) as err:
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(2) from err


@app.command("info")
def info(
    names: Annotated[list[str], typer.Argument(help="Network names (see `roost models`).")],
    num_classes: Annotated[
        int | None,
        typer.Option("--num-classes", "-c", help="Classifier outputs (0: feature extractor; default: the card's)."),
    ] = None,
    size: Annotated[
        int | None, typer.Option("--size", "-s", help="Input size in pixels (default: the card size or 224).")
    ] = None,
) -> None:
    """Build networks and print parameter counts and output shapes.

    Examples:

        roost info rope_vit_reg4_b14 --num-classes 365

        roost info rope_i_vit_reg1_s16_pn_npn_avg_c1 --size 512
    """
    from roost.models.summary import summarize

    table = Table("network", "size", "params", "forward", "embedding", "detection_features")
    with user_errors():
        for name in names:
            table.add_row(*(str(v) for v in summarize(name, num_classes, size)))
    Console().print(table)


@app.command("models")
def models(pattern: Annotated[str, typer.Argument(help="Shell-style filter, e.g. '*so150m*'.")] = "*") -> None:
    """List network names.

    Examples:

        roost models

        roost models 'rope_i_*'
    """
    from roost.models.registry import list_models

    for name in list_models(pattern):
        typer.echo(name)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
