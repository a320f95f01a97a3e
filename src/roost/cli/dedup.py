"""``roost dedup``, ``roost index`` and ``roost search``: options in, one library call, a summary out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from roost.cli.batch import Run, _flags, _shown_path, batch_command
from roost.cli.common import EXIT_INPUT_ERRORS, user_errors
from roost.cli.progress import STDERR, job_progress
from roost.errors import JobOptionError

_DEDUP_FLAGS = {"hash_similarity": "--hash-similarity", "similarity": "--similarity", "keep": "--keep",
                "action": "--action", "(to=...)": "(--to DIR)", "model or index": "--model or --index"}  # fmt: skip


def _dedup_flags(text: str) -> str:
    """A library message in the words of the command line (parameter names as flags)."""
    first, _, rest = text.partition(" ")
    text = f"{_DEDUP_FLAGS.get(first, first)} {rest}"
    for name, flag in _DEDUP_FLAGS.items():
        if not name.isidentifier():
            text = text.replace(name, flag)
    return _flags(text)


@batch_command
def dedup(
    paths: Annotated[list[str] | None, typer.Argument(help="Image files and folders.", show_default=False)] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Report: .csv, .jsonl or .parquet (its caches resume a run).")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Also compare embeddings of this model (name or file).")
    ] = None,
    index: Annotated[
        Path | None, typer.Option("--index", help="Reuse the embeddings of this index (roost index).")
    ] = None,
    similarity: Annotated[float, typer.Option("--similarity", help="Least cosine of embeddings (0-1).")] = 0.9,
    hash_similarity: Annotated[
        float, typer.Option("--hash-similarity", help="Least perceptual-hash similarity, 1 - bits apart / 64 (0-1).")
    ] = 0.84,
    keep: Annotated[
        str,
        typer.Option(
            "--keep",
            help="Keeper of each group: pixels (most pixels, then largest file, then oldest), "
            "size (largest file first), oldest, newest, or path (first in sorted order).",
        ),
    ] = "pixels",
    action: Annotated[
        str,
        typer.Option(
            "--action",
            help="report (change nothing), move (duplicates to --to, undo with --undo), "
            "or link (symbolic links to the kept images in --to).",
        ),
    ] = "report",
    to: Annotated[Path | None, typer.Option("--to", help="Folder for --action move or link.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what --action would do; change nothing.")] = False,
    undo: Annotated[
        Path | None, typer.Option("--undo", help="Move back every file a --action move manifest moved.")
    ] = None,
    *,
    run: Run,
) -> None:
    """Find duplicate and near-duplicate images; keep one of each group; optionally move or link.

    Stages, each cheaper than the next: identical bytes, identical pixels (a PNG of a JPEG's pixels, a
    lossless rotation), perceptual hashes (resized, recompressed, rotated by 90/180/270, EXIF-turned,
    slightly cropped, brighter or grayscale copies), and with --model or --index, embeddings. Report
    first, review the groups, then act: moves are journaled and undone with --undo; nothing is deleted.

    \b
    Examples:
      roost dedup photos/ -r --report dups.csv
      roost dedup photos/ -r --report dups.csv --action move --to duplicates/ --dry-run
      roost dedup photos/ -r --report dups.csv --action move --to duplicates/
      roost dedup --undo duplicates/roost-dedup-manifest.jsonl
      roost dedup photos/ -r --report dups.parquet --action link --to unique/ --keep oldest
      roost dedup photos/ -r --report dups.csv --model rope_i_vit_reg1_s16_pn_npn_avg_c1_pe-spatial
    """
    from roost.dedup import DedupOptions, dedup_files
    from roost.dedup import undo as undo_moves

    with user_errors(_dedup_flags), job_progress(run.quiet) as on_event:
        if undo is not None:
            if paths:
                raise JobOptionError("--undo takes only the manifest; give no paths")
            outcome = undo_moves(undo)
            _finish_action(f"undo: {outcome.done} restored, {outcome.skipped} done before", outcome.failures)
            return
        if not paths or report is None:
            raise JobOptionError("dedup needs PATH... and --report FILE (or --undo MANIFEST)")
        choices: dict[str, Any] = {"keep": keep, "action": action}  # strings, checked by DedupOptions
        options = DedupOptions(hash_similarity=hash_similarity, similarity=similarity, to=to, dry_run=dry_run,
                               model=model, index=index, **choices)  # fmt: skip
        summary = dedup_files(paths, report=report, options=options, run=run.options(), ray=run.ray(),
                              on_event=on_event)  # fmt: skip
    STDERR.print(summary.line())
    if summary.manifest:
        STDERR.print(f"manifest: {summary.manifest} (roost dedup --undo {summary.manifest} moves them back)")
    if summary.errors or summary.failures:
        raise typer.Exit(EXIT_INPUT_ERRORS)


def _finish_action(line: str, failures: list[str]) -> None:
    for failure in failures:
        STDERR.print(failure)
    STDERR.print(line + (f", {len(failures)} refused" if failures else ""))
    if failures:
        raise typer.Exit(EXIT_INPUT_ERRORS)


@batch_command
def index(
    paths: Annotated[list[str], typer.Argument(help="Image files and folders.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Published weights name or a .pt/.safetensors file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Index folder: created, or extended and resumed.")],
    *,
    run: Run,
) -> None:
    """Build an embedding index of a collection for roost search and roost dedup --index.

    Run again over a grown collection to add only the new images (a killed run resumes the same way); an
    index made with another model is refused.

    \b
    Examples:
      roost index photos/ -r -m rope_i_vit_reg1_s16_pn_npn_avg_c1_pe-spatial -o photos.index
      roost index new_photos/ -m rope_i_vit_reg1_s16_pn_npn_avg_c1_pe-spatial -o photos.index
    """
    from roost.index import build_index

    with user_errors(_flags), job_progress(run.quiet) as on_event:
        summary = build_index(paths, model=model, output=output, options=run.options(), ray=run.ray(),
                              on_event=on_event)  # fmt: skip
    STDERR.print(summary.line())
    if summary.errors or summary.earlier_errors:
        raise typer.Exit(EXIT_INPUT_ERRORS)


def search(
    index: Annotated[Path, typer.Argument(help="Index folder (roost index).")],
    queries: Annotated[list[str], typer.Argument(help="Query images.")],
    k: Annotated[int, typer.Option("--k", "-k", help="Results per query (>= 1).")] = 10,
    report: Annotated[Path | None, typer.Option("--report", help="Write the results (.csv, .jsonl, .parquet).")] = None,
    device: Annotated[str | None, typer.Option("--device", help="torch device for queries not in the index.")] = None,
) -> None:
    """Search an index by example: the k most similar indexed images of each query image.

    A query that is in the index finds itself first, with similarity 1.

    \b
    Examples:
      roost search photos.index query.jpg --k 5
      roost search photos.index a.jpg b.jpg --report matches.csv
    """
    from roost.dedup.run import write_report
    from roost.index import SEARCH_SCHEMA, search_index
    from roost.jobs.base import RunOptions

    with user_errors(), job_progress(True) as on_event:
        rows = search_index(index, queries, k=k, options=RunOptions(device=device), on_event=on_event)
        if report is not None:
            write_report(report, rows, SEARCH_SCHEMA)
    if report is None:
        _print_results(rows)
    else:
        STDERR.print(f"search: {len(queries)} queries, {sum(1 for r in rows if r['rank'])} results; report: {report}")
    if any(r["error"] for r in rows):
        raise typer.Exit(EXIT_INPUT_ERRORS)


def _print_results(rows: list[dict[str, Any]]) -> None:
    table = Table("query", "rank", "path", "similarity", "error", title="search")
    for r in rows:
        similarity = "" if r["similarity"] is None else f"{r['similarity']:.4f}"
        table.add_row(_shown_path(r["query"]), str(r["rank"] or ""), _shown_path(r["path"] or ""), similarity,
                      r["error"] or "")  # fmt: skip
    Console(markup=False, highlight=False).print(table)
