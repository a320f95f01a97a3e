"""``roost orient``, ``predict``, ``embed`` and ``download``: options in, one library call, a summary out.

The options every batch command shares are declared once (``RUN_OPTIONS``) and added to each command by
:func:`batch_command`; they map one to one onto ``RunOptions`` and ``RayOptions``, which validate them.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from roost.cli.common import EXIT_INPUT_ERRORS, user_errors
from roost.cli.progress import STDERR, job_progress
from roost.errors import JobOptionError
from roost.jobs.base import Compile, RunOptions, Summary, check_device, default_workers
from roost.jobs.orient import ROTNET

Paths = Annotated[list[str], typer.Argument(help="Image files and folders (--engine ray: also s3://, gs:// URIs).")]
ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Published weights name or a .pt/.safetensors file.")]
SidecarOpt = Annotated[
    str,
    typer.Option("--sidecar", help="XMP sidecar name: append (photo.jpg.xmp: darktable, digiKam) or replace "
                 "(photo.xmp: Lightroom)."),
]  # fmt: skip
ReportOpt = Annotated[
    Path | None, typer.Option("--report", help="Report file: .csv, .jsonl or .parquet; an existing one resumes.")
]


def _option(name: str, default: Any, kind: Any, *flags: str, help: str) -> inspect.Parameter:
    annotation = Annotated[kind, typer.Option(*flags, help=help)]
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


WORKERS_HELP = (
    "Decoding processes (default: CPU cores - 1, at least 1, at most 4 when the model runs on the CPU and 16 "
    "on a GPU; 0: decode in this process)."
)
DTYPE_HELP = (
    "auto (default): bf16 autocast on CUDA; bf16-held (weights in bfloat16, head in float32) on CPUs with "
    "AMX-BF16 or AVX512-BF16; else fp32. Or: fp32 (exact), bf16/fp16 (autocast), bf16-held."
)
COMPILE_HELP = (
    "torch.compile the model's embedding (default: on CUDA for runs of 20000+ images; off on CPU, where it "
    "did not pay in our benchmark)."
)
RUN_OPTIONS = [
    _option("recursive", False, bool, "--recursive", "-r", help="Descend into sub-folders."),
    _option("batch_size", 16, int, "--batch-size", "-b", help="Images per forward pass (>= 1)."),
    _option("workers", None, int | None, "--workers", "-j", help=WORKERS_HELP),
    _option("device", None, str | None, "--device", help="torch device: cpu, cuda, cuda:1 (default: cuda if any)."),
    _option("dtype", "auto", str, "--dtype", help=DTYPE_HELP),
    _option("no_draft", False, bool, "--no-draft", help="Decode in full (default: JPEGs DCT-scaled, HEIC thumbnails)."),
    _option("compile", None, bool | None, "--compile/--no-compile", help=COMPILE_HELP),
    _option("backend", "torch", str, "--backend", help="torch, ort (ONNX Runtime, CPU) or ort-int8; exports cached."),
    _option("network", None, str | None, "--network", help="Network name, for a checkpoint file that records none."),
    _option("quiet", False, bool, "--quiet", "-q", help="No progress bars."),
    _option("engine", "local", str, "--engine", help="local, or ray (a Ray Data pipeline; pip install 'roost[ray]')."),
    _option("address", None, str | None, "--address", help="--engine ray: cluster address (default: a local Ray)."),
    _option("num_gpus_per_worker", 0.0, float, "--num-gpus-per-worker", help="--engine ray: GPUs per model actor."),
    _option("concurrency", 1, int, "--concurrency", help="--engine ray: model actors."),
]
FLAGS = {p.name: "--" + p.name.replace("_", "-") for p in RUN_OPTIONS} | {
    "threshold": "--threshold", "topk": "--topk", "output_dir": "--output", "fix": "--fix",
    "backup_suffix": "--no-backup", "network=": "--network", "sidecar": "--sidecar", "xmp": "--xmp",
}  # fmt: skip


@dataclass(frozen=True)
class Run:
    """The shared options of one command line, turned into the library's option objects."""

    values: dict[str, Any]

    def options(self) -> RunOptions:
        v = self.values
        workers = default_workers(check_device(v["device"])) if v["workers"] is None else v["workers"]
        return RunOptions(
            batch_size=v["batch_size"], workers=workers, device=v["device"], dtype=v["dtype"],
            draft=not v["no_draft"], compile={None: Compile.AUTO, True: Compile.ON, False: Compile.OFF}[v["compile"]],
            recursive=v["recursive"], backend=v["backend"], network=v["network"],
        )  # fmt: skip

    def ray(self) -> Any:
        v = self.values
        if v["engine"] not in ("local", "ray"):
            raise JobOptionError(f"engine must be local or ray, got {v['engine']!r}")
        if v["engine"] == "local":
            return None
        from roost.jobs.ray import RayOptions

        gpus = v["num_gpus_per_worker"]
        return RayOptions(address=v["address"], concurrency=v["concurrency"], num_gpus_per_worker=gpus)

    @property
    def quiet(self) -> bool:
        return self.values["quiet"]


def batch_command(fn: Callable[..., None]) -> Callable[..., None]:
    """Add ``RUN_OPTIONS`` to a command; the command receives them as ``run: Run``."""
    own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "run"]
    names = [p.name for p in RUN_OPTIONS]

    @functools.wraps(fn)
    def command(**kwargs: Any) -> None:
        fn(**{k: v for k, v in kwargs.items() if k not in names}, run=Run({k: kwargs[k] for k in names}))

    params = own + RUN_OPTIONS
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def _finish(summary: Summary) -> None:
    STDERR.print(summary.line())
    if summary.errors or summary.earlier_errors:  # the report holds error rows, whichever run wrote them
        raise typer.Exit(EXIT_INPUT_ERRORS)


def _collect(table_rows: list[dict[str, Any]], report: Path | None) -> Callable[[list[dict[str, Any]]], None] | None:
    """Keep the rows to print as a table when there is no report (small runs); None otherwise."""
    return table_rows.extend if report is None else None


def _print_rows(rows: list[dict[str, Any]], columns: list[str], title: str) -> None:
    """A table read by a person: paths below the working directory shown relative to it, no cell cut short."""
    shown = [(_shown_path(row["path"]), row) for row in sorted(rows, key=lambda r: r["path"])]
    table = Table(title=title)
    one_line = max((len(path) for path, _ in shown), default=0) <= 40  # short paths unbroken, long ones fold
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column == "path" and one_line)
    for path, row in shown:
        table.add_row(*(path if c == "path" else _cell(row.get(c)) for c in columns))
    Console(markup=False, highlight=False).print(table)


def _shown_path(path: str) -> str:
    if not os.path.isabs(path):  # a URI (--engine ray)
        return path
    relative = os.path.relpath(path)
    return path if relative.startswith(os.pardir) else relative


def _cell(value: object) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _flags(text: str) -> str:
    """A library message with parameter names turned into the command's flags.

    A name is replaced where it starts the message, or anywhere when it cannot be an ordinary word.
    """
    words = "|".join(re.escape(name) for name in FLAGS if "_" in name or name in _NOT_WORDS)
    text = re.sub(rf"(?<![\w-])({words})(?![\w-])", lambda m: FLAGS[m[1]], text)
    first = text.split(" ", 1)
    return " ".join([FLAGS.get(first[0], first[0]), *first[1:]])


_NOT_WORDS = {"threshold", "topk", "dtype", "network="}


@batch_command
def orient(
    paths: Paths,
    model: ModelOpt = ROTNET,
    report: ReportOpt = None,
    fix: Annotated[
        str | None,
        typer.Option(
            "--fix",
            help="exif: set the EXIF tag; copy: write an upright copy of every image to --output; "
            "inplace: rewrite rotated files (a .orig backup is kept); xmp: write the orientation to "
            "an XMP sidecar (photo untouched).",
        ),
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Folder of the copies (--fix copy).")] = None,
    threshold: Annotated[float, typer.Option("--threshold", help="Fix only at this confidence or above (0-1).")] = 0.5,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what --fix would do; change nothing.")] = False,
    no_backup: Annotated[bool, typer.Option("--no-backup", help="With --fix inplace: keep no backup.")] = False,
    sidecar: SidecarOpt = "append",
    *,
    run: Run,
) -> None:
    """Find photos rotated by 90, 180 or 270 degrees and optionally turn them upright.

    The model sees each image as a viewer shows it (EXIF orientation applied); the report's rotation is
    counter-clockwise from upright. Run with --report first, look, then run the same command with --fix:
    the fixes the report calls for are applied without computing again.

    \b
    Examples:
      roost orient examples/photos
      roost orient photos/ -r --report orient.csv
      roost orient photos/ -r --report orient.csv --fix copy --output upright/
      roost orient photos/ --report orient.parquet --fix exif --threshold 0.9
      roost orient phone/ -r --report orient.csv --fix xmp --sidecar replace
    """
    from roost.jobs.orient import orient_files

    shown: list[dict[str, Any]] = []
    with user_errors(_flags), job_progress(run.quiet) as on_event:
        if fix == "copy" and output is None:
            raise JobOptionError("--fix copy needs --output DIR (the folder the upright copies go to)")
        summary = orient_files(
            paths, model=model, report=report, fix=fix, output_dir=output, threshold=threshold, dry_run=dry_run,
            backup_suffix=None if no_backup else ".orig", sidecar=sidecar, options=run.options(), ray=run.ray(),
            on_event=on_event, on_rows=_collect(shown, report),
        )  # fmt: skip
    if report is None:
        _print_rows(shown, ["path", "rotation", "confidence", "action", "error"], "orientation")
    _finish(summary)


@batch_command
def predict(
    paths: Paths,
    model: ModelOpt,
    report: ReportOpt = None,
    topk: Annotated[int, typer.Option("--topk", "-k", help="Classes per image (>= 1).")] = 5,
    xmp: Annotated[
        bool, typer.Option("--xmp", help="Add the top-k labels as keywords (dc:subject) to each photo's XMP sidecar.")
    ] = False,
    sidecar: SidecarOpt = "append",
    *,
    run: Run,
) -> None:
    """Classify images: the top-k classes of each, with their probabilities.

    \b
    Examples:
      roost predict examples/photos -m rope_vit_reg4_b14_capi-places365 --topk 3
      roost predict photos/ -r -m my_model.pt --report scenes.parquet
      roost predict photos/ -m rope_vit_reg4_b14_capi-places365 --topk 3 --xmp
    """
    from roost.jobs.predict import predict_files

    shown: list[dict[str, Any]] = []
    with user_errors(_flags), job_progress(run.quiet) as on_event:
        summary = predict_files(
            paths, model=model, report=report, topk=topk, xmp=sidecar if xmp else None, options=run.options(),
            ray=run.ray(), on_event=on_event, on_rows=_collect(shown, report),
        )  # fmt: skip
    if report is None:
        _print_rows(shown, ["path", "label_1", "prob_1", "error"], "predictions")
    _finish(summary)


@batch_command
def embed(
    paths: Paths,
    model: ModelOpt,
    report: Annotated[Path, typer.Option("--report", help="Report: .parquet (or .csv/.jsonl); resumes.")],
    npy: Annotated[
        Path | None, typer.Option("--npy", help="Also write an (N, D) float32 .npy and its .index.csv at the end.")
    ] = None,
    *,
    run: Run,
) -> None:
    """Embed images for search and de-duplication: one vector per image.

    \b
    Examples:
      roost embed photos/ -r -m rope_i_vit_reg1_s16_pn_npn_avg_c1_pe-spatial --report embeddings.parquet
      roost embed photos/ -m rope_vit_reg4_b14_capi --report emb.parquet --npy vectors.npy
    """
    from roost.jobs.embed import embed_files, write_npy

    if npy is not None and npy.suffix != ".npy":
        raise typer.BadParameter("--npy must name a .npy file")
    with user_errors(_flags), job_progress(run.quiet) as on_event:
        options = run.options()
        summary = embed_files(paths, model=model, report=report, options=options, ray=run.ray(), on_event=on_event)
        if npy is not None:
            n = write_npy(report, npy, dim=_report_dim(report) or 0)
            STDERR.print(f"wrote {n} embeddings to {npy} (index: {npy.with_name(npy.stem + '.index.csv')})")
    _finish(summary)


def _report_dim(report: Path) -> int | None:
    from roost.jobs.embed import embed_schema
    from roost.jobs.report import read_rows

    for row in read_rows(report, embed_schema(None), ["embedding"]):
        if row["embedding"] is not None:
            return len(row["embedding"])
    return None


def download(
    names: Annotated[list[str], typer.Argument(help="Published weights names (see: roost models --pretrained).")],
    file_format: Annotated[str, typer.Option("--format", help="pt or safetensors (as the weights offer).")] = "pt",
) -> None:
    """Download published weights into the cache (sha256-checked; an interrupted download resumes).

    \b
    Examples:
      roost download rope_vit_reg4_b14_capi-places365
      ROOST_HOME=/data/roost roost download rope_i_vit_reg1_s16_pn_npn_avg_c1_pe-spatial --format safetensors
    """
    from roost.settings import Settings
    from roost.weights.hub import fetch_weights
    from roost.weights.manifest import REGISTRY
    from roost.weights.progress import stderr_download_bars

    with user_errors(), stderr_download_bars() as show:
        settings = Settings.from_env()
        for name in names:
            entry = REGISTRY.get(name, settings)
            entry.check_format(file_format)
            path = fetch_weights(entry, file_format, on_progress=show, settings=settings)
            typer.echo(f"{name}: {path}")
