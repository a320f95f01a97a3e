"""``roost review`` and ``roost apply``: a report turned into a page to decide on, and the decisions carried out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from roost.cli.common import EXIT_INPUT_ERRORS, user_errors
from roost.cli.progress import STDERR, job_progress
from roost.jobs.base import default_workers

FLAGS = {"only": "--only", "sort": "--sort", "thumb": "--thumb", "uncertain": "--uncertain",
         "projection": "--projection", "fix": "--fix", "action": "--action", "output_dir": "--output"}  # fmt: skip


def _flags(text: str) -> str:
    first = text.split(" ", 1)
    return " ".join([FLAGS.get(first[0], first[0]), *first[1:]]).replace("output_dir", "--output")


def review(
    report: Annotated[Path, typer.Argument(help="An orient, predict, dedup or embed report (.csv, .jsonl, .parquet).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder of the page (new, or an earlier review).")],
    only: Annotated[str, typer.Option("--only", help="all, rotated (orient) or uncertain.")] = "all",
    sort: Annotated[str, typer.Option("--sort", help="confidence (least sure first) or path.")] = "confidence",
    thumb: Annotated[int, typer.Option("--thumb", help="Thumbnail size in pixels (longer side).")] = 256,
    uncertain: Annotated[
        float, typer.Option("--uncertain", help="Below this confidence (or similarity) a row is uncertain (0-1).")
    ] = 0.8,
    projection: Annotated[
        str, typer.Option("--projection", help="embed: auto (UMAP if umap-learn is installed, else PCA), umap, pca.")
    ] = "auto",
    workers: Annotated[int | None, typer.Option("--workers", "-j", help="Thumbnail processes (0: this one).")] = None,
) -> None:
    """Write a page to look at a report's images, decide on them and export the decisions.

    The folder opens from disk in any browser (no network, no server): open OUTPUT/index.html. Orient:
    each photo now and after its fix, least certain first; accept, reject or pick another rotation. Dedup:
    each group side by side, keeper marked. Predict: grouped by top label. Embed: a map of the embeddings.
    The export button downloads decisions.csv for `roost apply`. Thumbnails are cached: a re-run is fast.

    \b
    Examples:
      roost review orient.csv -o review/
      roost review orient.csv -o review/ --only uncertain --uncertain 0.9
      roost review scenes.parquet -o scenes-review/ --sort path
      roost review embeddings.parquet -o map/ --projection pca
    """
    from roost.review.page import ReviewOptions, review_report

    with user_errors(_flags):
        options = ReviewOptions(
            only=only, sort=sort, thumb_px=thumb, uncertain=uncertain, projection=projection,  # type: ignore[arg-type]
            workers=default_workers() if workers is None else workers,
        )  # fmt: skip
        summary = review_report(report, output, options)
    STDERR.print(summary.line())


def apply(
    decisions: Annotated[Path, typer.Argument(help="decisions.csv exported by a review page.")],
    fix: Annotated[
        str,
        typer.Option(
            "--fix",
            help="exif: set the EXIF tag; copy: upright copies of every file in --output; "
            "inplace: rewrite the files (a .orig backup is kept); xmp: an XMP sidecar (where supported).",
        ),
    ] = "exif",
    action: Annotated[
        str, typer.Option("--action", help="Dedup decisions: move the duplicates to --output, or link the kept there.")
    ] = "move",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Folder of the copies (--fix copy), or of dedup's --action.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="What was done (default: DECISIONS.applied.csv); resumes.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would be done; change nothing.")] = False,
    no_backup: Annotated[bool, typer.Option("--no-backup", help="With --fix inplace: keep no backup.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Apply the accepted fixes of a review's decisions.csv; rejected files are left alone.

    Orient decisions: accepted rotations fixed with --fix. Dedup decisions: accepted duplicates moved to
    --output (undo with `roost dedup --undo`), or the kept images linked there. Every change is journaled
    before it is made: a run that is killed resumes where it stopped and never applies anything twice. A
    file that changed since it was reviewed is not touched (its row or a line says why).

    \b
    Examples:
      roost apply decisions.csv --dry-run
      roost apply decisions.csv --fix exif
      roost apply decisions.csv --fix copy --output upright/
      roost apply decisions.csv --fix inplace --report applied.csv
      roost apply dedup-decisions.csv --action move --output duplicates/
    """
    from roost.review.apply import apply_decisions

    with user_errors(_flags), job_progress(quiet) as on_event:
        summary = apply_decisions(
            decisions, fix=fix, action=action, output_dir=output, report=report, dry_run=dry_run,
            backup_suffix=None if no_backup else ".orig", on_event=on_event,
        )  # fmt: skip
    STDERR.print(summary.line())
    if summary.errors or summary.earlier_errors:
        raise typer.Exit(EXIT_INPUT_ERRORS)
