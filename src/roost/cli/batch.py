"""``roost orient``, ``roost predict``, ``roost embed`` and ``roost download``: options in, one library call."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from roost.cli.common import user_errors
from roost.inference import jobs
from roost.inference.predict import DTYPES
from roost.inference.ray_engine import JobSpec, RayOptions, run_files

Paths = Annotated[
    list[str],
    typer.Argument(help="Image files and/or folders (with --engine ray also URIs: s3://, gs://).", show_default=False),
]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", help="Images per forward pass.")]
Workers = Annotated[int, typer.Option("--workers", "-j", help="Decoding processes (0: decode in this process).")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="torch device (default: cuda if available, else cpu).")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="fp32, or bf16/fp16 autocast.")]
Recursive = Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-folders.")]
NoDraft = Annotated[
    bool, typer.Option("--no-draft", help="Decode JPEGs at full size (default: DCT-scaled draft decoding).")
]
Compile = Annotated[bool, typer.Option("--compile", help="torch.compile the model first.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
Backend = Annotated[
    str, typer.Option("--backend", help="torch; ort (ONNX Runtime, CPU, fp32); ort-int8 (ORT with int8 linears).")
]
Engine = Annotated[str, typer.Option("--engine", help="local, or ray: a Ray Data pipeline (pip install 'roost[ray]').")]
Address = Annotated[str | None, typer.Option("--address", help="--engine ray: cluster address (default: local Ray).")]
GpusPerWorker = Annotated[
    float, typer.Option("--num-gpus-per-worker", help="--engine ray: GPUs per model actor (0: CPU).")
]
Concurrency = Annotated[int, typer.Option("--concurrency", help="--engine ray: model actors.")]


def _options(
    batch_size: int, workers: int, device: str | None, dtype: str, recursive: bool, no_draft: bool, compile: bool,
    quiet: bool, backend: str = "torch",
) -> jobs.RunOptions:
    if dtype not in DTYPES:
        raise typer.BadParameter(f"--dtype must be fp32, bf16 or fp16, not {dtype!r}")
    if backend not in ("torch", "ort", "ort-int8"):
        raise typer.BadParameter(f"--backend must be torch, ort or ort-int8, not {backend!r}")
    return jobs.RunOptions(
        batch_size=batch_size, workers=workers, device=device, dtype=dtype, draft=not no_draft,
        compile=compile, recursive=recursive, progress=not quiet, backend=backend,
    )


def _ray_options(engine: str, address: str | None, gpus: float, concurrency: int) -> RayOptions | None:
    """None for the local engine, else the Ray engine's options (ray_engine imports ray only when it runs)."""
    if engine not in ("local", "ray"):
        raise typer.BadParameter(f"--engine must be local or ray, not {engine!r}")
    if engine == "local":
        return None
    return RayOptions(address=address, concurrency=concurrency, num_gpus_per_worker=gpus)


def _run_ray(
    paths: list[str], spec: JobSpec, output: str | None, options: jobs.RunOptions, ray_options: RayOptions,
    fix: jobs.OrientOptions | None = None,
) -> None:
    if output is None:
        raise typer.BadParameter("--engine ray writes a Parquet directory: give the report as *.parquet")
    with user_errors():
        s = run_files(paths, spec, output=output, options=options, ray_options=ray_options, fix=fix)
    summary = f"{s.rows} images, {s.errors} errors, {s.skipped} done before; report: {s.output}"
    Console(stderr=True).print(summary, highlight=False)


def _print_rows(rows: list[dict], columns: list[str], title: str) -> None:
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    Console().print(table)


def _cell(value: object) -> str:
    if value is None:
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def orient(
    paths: Paths,
    model: Annotated[str, typer.Option("--model", "-m", help="Weights name or checkpoint file.")] = jobs.ROTNET,
    report: Annotated[
        str | None, typer.Option("--report", help="Report file: .csv, .jsonl or .parquet (resumes if it exists).")
    ] = None,
    fix: Annotated[
        str | None, typer.Option("--fix", help="exif: set the EXIF tag; copy: write upright copies to --output; "
                                 "inplace: replace files (a .orig backup is kept).")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Folder for --fix copy.")] = None,
    threshold: Annotated[float, typer.Option("--threshold", help="Act only at this confidence or above.")] = 0.5,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would be fixed; change nothing.")] = False,
    no_backup: Annotated[bool, typer.Option("--no-backup", help="With --fix inplace: keep no backup.")] = False,
    recursive: Recursive = False,
    batch_size: BatchSize = 16,
    workers: Workers = 2,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "fp32",
    no_draft: NoDraft = False,
    compile: Compile = False,
    backend: Backend = "torch",
    quiet: Quiet = False,
    engine: Engine = "local",
    address: Address = None,
    num_gpus_per_worker: GpusPerWorker = 0.0,
    concurrency: Concurrency = 1,
) -> None:
    """Find rotated photos (0/90/180/270 degrees counter-clockwise) and optionally turn them upright.

    The model sees each image with its EXIF orientation applied (as viewers show it); `rotation` in the
    report is relative to that view. JPEGs are fixed losslessly where the format allows.

    Examples:

        roost orient photos/ -r --report orient.csv

        roost orient photos/ --report orient.parquet --fix copy --output upright/

        roost orient scan.jpg --fix exif --threshold 0.9
    """
    if fix not in (None, "exif", "copy", "inplace"):
        raise typer.BadParameter(f"--fix must be exif, copy or inplace, not {fix!r}")
    options = _options(batch_size, workers, device, dtype, recursive, no_draft, compile, quiet, backend)
    fix_opts = jobs.OrientOptions(
        fix=fix, output=output, threshold=threshold, dry_run=dry_run, backup_suffix=None if no_backup else ".orig"
    )
    ray_options = _ray_options(engine, address, num_gpus_per_worker, concurrency)
    if ray_options is not None:
        return _run_ray(paths, JobSpec("orient", model, threshold=threshold), report, options, ray_options, fix_opts)
    report = Path(report) if report is not None else None
    with user_errors():
        rows = jobs.orient_files(paths, model=model, report=report, fix=fix_opts, options=options)
    if report is None:
        _print_rows(rows, ["path", "rotation", "confidence", "action", "error"], "orientation")
    _summary(rows, report)


def predict(
    paths: Paths,
    model: Annotated[str, typer.Option("--model", "-m", help="Weights name or checkpoint file.")],
    topk: Annotated[int, typer.Option("--topk", "-k", help="Classes per image.")] = 5,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Report: .csv, .jsonl or .parquet (resumes).")
    ] = None,
    recursive: Recursive = False,
    batch_size: BatchSize = 16,
    workers: Workers = 2,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "fp32",
    no_draft: NoDraft = False,
    compile: Compile = False,
    backend: Backend = "torch",
    quiet: Quiet = False,
    engine: Engine = "local",
    address: Address = None,
    num_gpus_per_worker: GpusPerWorker = 0.0,
    concurrency: Concurrency = 1,
) -> None:
    """Classify images: top-k class names and probabilities per image.

    Examples:

        roost predict photos/ -m rope_vit_reg4_b14_capi-places365 --topk 3

        roost predict photos/ -r -m my_model.pt -o scenes.parquet
    """
    options = _options(batch_size, workers, device, dtype, recursive, no_draft, compile, quiet, backend)
    ray_options = _ray_options(engine, address, num_gpus_per_worker, concurrency)
    if ray_options is not None:
        return _run_ray(paths, JobSpec("predict", model, topk=topk), output, options, ray_options)
    output = Path(output) if output is not None else None
    with user_errors():
        rows = jobs.predict_files(paths, model=model, report=output, topk=topk, options=options)
    if output is None:
        _print_rows(rows, ["path", "label_1", "prob_1", "error"], "predictions")
    _summary(rows, output)


def embed(
    paths: Paths,
    model: Annotated[str, typer.Option("--model", "-m", help="Weights name or checkpoint file.")],
    output: Annotated[
        str, typer.Option("--output", "-o", help=".parquet (path, embedding; resumes) or .npy (+ .index.csv).")
    ],
    recursive: Recursive = False,
    batch_size: BatchSize = 16,
    workers: Workers = 2,
    device: DeviceOpt = None,
    dtype: DtypeOpt = "fp32",
    no_draft: NoDraft = False,
    compile: Compile = False,
    backend: Backend = "torch",
    quiet: Quiet = False,
    engine: Engine = "local",
    address: Address = None,
    num_gpus_per_worker: GpusPerWorker = 0.0,
    concurrency: Concurrency = 1,
) -> None:
    """Embed images for search and de-duplication.

    Examples:

        roost embed photos/ -r -m rope_i_vit_reg1_s16_pn_npn_avg_c1_pe-spatial -o embeddings.parquet

        roost embed photos/ -m rope_vit_reg4_b14_capi -o vectors.npy
    """
    if Path(output).suffix not in (".parquet", ".npy"):
        raise typer.BadParameter("--output must end in .parquet or .npy")
    options = _options(batch_size, workers, device, dtype, recursive, no_draft, compile, quiet, backend)
    ray_options = _ray_options(engine, address, num_gpus_per_worker, concurrency)
    if ray_options is not None:
        return _run_ray(paths, JobSpec("embed", model), output, options, ray_options)
    with user_errors():
        rows = jobs.embed_files(paths, model=model, output=Path(output), options=options)
    _summary(rows, output)


def download(
    names: Annotated[list[str], typer.Argument(help="Pretrained weights names (see `roost models --pretrained`).")],
    file_format: Annotated[str, typer.Option("--format", help="pt or safetensors.")] = "pt",
) -> None:
    """Download published weights into the cache (sha256-checked; resumes an interrupted download).

    Examples:

        roost download rope_vit_reg4_b14_capi-places365

        ROOST_HOME=/data/roost roost download rope_i_vit_reg1_s16_pn_npn_avg_c1_pe-spatial --format safetensors
    """
    from roost.settings import Settings
    from roost.weights.hub import fetch_weights
    from roost.weights.manifest import REGISTRY

    with user_errors():
        settings = Settings.from_env()
        for name in names:
            entry = REGISTRY.get(name, settings)
            entry.check_format(file_format)
            path = fetch_weights(entry, file_format, progress=True, settings=settings)
            typer.echo(f"{name}: {path}")


def _summary(rows: list[dict], report: str | Path | None) -> None:
    failed = sum(1 for r in rows if r.get("error"))
    where = f"; report: {report}" if report else ""
    Console(stderr=True).print(f"{len(rows)} images, {failed} errors{where}", highlight=False)

