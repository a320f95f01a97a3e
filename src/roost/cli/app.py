"""The ``roost`` command: a thin typer app over library functions."""

from __future__ import annotations

from importlib.metadata import version as package_version
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from roost.cli import batch, convert, dedup, review, train
from roost.cli.common import user_errors

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # help and errors as plain text: file names and install hints stay as written
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"roost {package_version('roost')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """RoPE Vision Transformers (the Birder family): inspect, run and curate.

    \b
    Exit codes: 0 done; 1 done, but some inputs have an error row in the report;
    2 bad arguments or setup (nothing was changed); 130 interrupted (run again to resume).
    """

for command in (batch.orient, batch.predict, batch.embed, batch.download):
    app.command()(command)
for command in (dedup.dedup, dedup.index, dedup.search):
    app.command()(command)
app.add_typer(train.app, name="train")
app.add_typer(convert.app, name="convert")
app.command("export")(convert.export)
app.command("review")(review.review)
app.command("apply")(review.apply)


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
def models(
    pattern: Annotated[str, typer.Argument(help="Shell-style filter, e.g. '*so150m*'.")] = "*",
    pretrained: Annotated[bool, typer.Option("--pretrained", "-p", help="List pretrained weights instead.")] = False,
) -> None:
    """List network names, or pretrained weights with their sizes and formats.

    Examples:

        roost models 'rope_i_*'

        roost models --pretrained '*capi*'
    """
    if not pretrained:
        from roost.models.registry import list_models

        for name in list_models(pattern):
            typer.echo(name)
        return
    from roost.settings import Settings
    from roost.weights.manifest import REGISTRY, list_pretrained_models

    table = Table("weights", "network", "resolution", "formats (MB)")
    with user_errors():
        settings = Settings.from_env()
        for name in list_pretrained_models(pattern):
            e = REGISTRY.get(name, settings)
            sizes = ", ".join(f"{fmt} {size}" for fmt, (size, _) in e.formats.items())
            table.add_row(name, e.network, "x".join(map(str, e.resolution)), sizes)
    Console().print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
