"""Batch jobs over image files: ``orient``, ``predict`` and ``embed`` (what the CLI commands call).

Each job loads a model once, expands its inputs, skips what an existing report already holds (resume),
decodes in worker processes (``data/datasets.py``), runs the model in batches and appends one row per
input to the report as it goes. Bad files become rows with ``error`` set; the run continues.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from roost.data.datasets import Batch, collect_paths, iter_batches
from roost.data.transforms import classification_transform
from roost.errors import RoostError
from roost.inference import orient
from roost.inference.predict import Output, run_model
from roost.inference.sinks import finished_keys, open_sink
from roost.weights.checkpoint import get_size_from_signature
from roost.weights.load import load_pretrained_model

ROTNET = "rope_vit_reg8_so150m_p14_swiglu_rms_ap_rotnet-capi"
FixMode = Literal["exif", "copy", "inplace"]
Row = dict[str, Any]


@dataclass(frozen=True)
class RunOptions:
    """How a job runs: batching, decoding workers, device, precision and JPEG draft decoding."""

    batch_size: int = 16
    workers: int = 2
    device: str | None = None  # None: CUDA when available, else CPU
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    draft: bool = True
    compile: bool = False
    recursive: bool = False
    progress: bool = True
    backend: Literal["torch", "ort", "ort-int8"] = "torch"  # ort: ONNX Runtime on the CPU, fp32 inputs

    def torch_device(self) -> torch.device:
        return torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))


@dataclass
class Runner:
    """A loaded model with its transform, ready to run over files."""

    net: torch.nn.Module
    class_names: list[str]
    transform: Callable
    size: tuple[int, int]
    options: RunOptions

    @classmethod
    def load(cls, model: str | os.PathLike[str], options: RunOptions) -> Runner:
        net, info = load_pretrained_model(model, inference=True, device=options.torch_device())
        if options.compile:  # the jobs call embedding() and classify(), not forward()
            net.embedding = torch.compile(net.embedding)
        size = get_size_from_signature(info.signature)
        if options.backend != "torch":
            from roost.inference.ort import OrtBackend

            net = OrtBackend.from_network(net, size, quantize=options.backend == "ort-int8")
        names = [name for name, _ in sorted(info.class_to_idx.items(), key=lambda kv: kv[1])]
        return cls(net, names, classification_transform(size, info.rgb_stats), size, options)

    def run(self, paths: Sequence[Path], outputs: tuple[Output, ...]) -> Iterator[tuple[Batch, dict[str, np.ndarray]]]:
        o = self.options
        batches = iter_batches(
            paths, self.transform, batch_size=o.batch_size, workers=o.workers,
            draft=(self.size[1], self.size[0]) if o.draft else None,
            pin_memory=o.torch_device().type == "cuda",
        )
        yield from run_model(self.net, batches, dtype=o.dtype, outputs=outputs)


def pending(inputs: Sequence[str | os.PathLike[str]], report: Path | None, options: RunOptions) -> list[Path]:
    """The input files not yet finished in ``report`` (all of them when there is none)."""
    paths = collect_paths(inputs, recursive=options.recursive)
    done = finished_keys(report) if report is not None else set()
    return [p for p in paths if str(p) not in done]


@contextmanager
def progress_bar(total: int, enabled: bool, label: str) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda n: None
        return
    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _rows(
    paths: Sequence[Path], batch: Batch, array: np.ndarray | None, values: Callable[[np.ndarray], Row], empty: Row
) -> list[Row]:
    """One row per input of the batch, in input order: ``values(array[k])`` for decoded images, else errors."""
    rows = {i: {"path": str(paths[i]), **values(array[k]), "error": None} for k, i in enumerate(batch.ok)}
    rows |= {i: {"path": str(paths[i]), **empty, "error": e} for i, e in batch.errors.items()}
    return [rows[i] for i in sorted(rows)]


# ---------------------------------------------------------------------------------- orient
@dataclass(frozen=True)
class OrientOptions:
    fix: FixMode | None = None
    output: Path | None = None  # for fix="copy"
    threshold: float = 0.0
    dry_run: bool = False
    backup_suffix: str | None = ".orig"


def orient_files(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    model: str | os.PathLike[str] = ROTNET,
    report: Path | None = None,
    fix: OrientOptions | None = None,
    options: RunOptions | None = None,
) -> list[Row]:
    """Predict each image's rotation, write the report and (optionally) fix the rotated ones.

    Returns the rows written in this run (the report also holds earlier runs' rows when resuming).
    """
    fix, options = fix or OrientOptions(), options or RunOptions()
    if fix.fix == "copy" and fix.output is None:
        raise RoostError("--fix copy needs --output DIR")
    runner = Runner.load(model, options)
    if len(runner.class_names) != 4:
        raise RoostError(f"{model} has {len(runner.class_names)} classes; an orientation model has 4")
    roots = [Path(p) for p in inputs]
    empty = {"rotation": None, "confidence": None, **{f"p{r}": None for r in orient.ROTATIONS}, "action": None}

    def apply_fixes(rows: list[Row]) -> None:  # before the batch's rows are written, as a resume expects
        for row in rows:
            if row["error"] is None and row["action"] == orient.ACTION_ROTATE:
                _apply_fix(row, fix, roots)

    values = lambda p: _orient_values(p, fix.threshold)  # noqa: E731
    return _simple_job(runner, inputs, report, orient.REPORT_SCHEMA, "probs", values, empty, "orient", apply_fixes)


def _orient_values(probs: np.ndarray, threshold: float) -> Row:
    rotation, confidence, action = orient.decide(probs, threshold)
    per_class = {f"p{r}": float(p) for r, p in zip(orient.ROTATIONS, probs, strict=True)}
    return {"rotation": rotation, "confidence": confidence, **per_class, "action": action}


def _apply_fix(row: Row, fix: OrientOptions, roots: Sequence[Path]) -> None:
    """Run the chosen fix for one row, recording what happened (or why it failed) in the row."""
    if fix.fix is None or fix.dry_run:
        row["action"] = orient.ACTION_ROTATE if fix.fix is None else f"would fix ({fix.fix})"
        return
    src = Path(row["path"])
    try:
        if fix.fix == "exif":
            row["action"] = orient.fix_exif(src, row["rotation"])
        elif fix.fix == "inplace":
            row["action"] = orient.fix_inplace(src, row["rotation"], fix.backup_suffix)
        else:
            row["action"] = orient.fix_copy(src, fix.output / relative_to_inputs(src, roots), row["rotation"])
    except (RoostError, OSError) as err:
        row["action"], row["error"] = "fix failed", f"{type(err).__name__}: {err}"


def relative_to_inputs(path: Path, roots: Sequence[Path]) -> Path:
    """``path`` relative to the input folder it was found in (its bare name for files given directly)."""
    for root in roots:
        if root.is_dir() and path.is_relative_to(root):
            return path.relative_to(root)
    return Path(path.name)


# --------------------------------------------------------------------------------- predict
def predict_files(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    model: str | os.PathLike[str],
    report: Path | None = None,
    topk: int = 5,
    options: RunOptions | None = None,
) -> list[Row]:
    """Top-k class names and probabilities per image: columns path, label_1, prob_1, …, error."""
    options = options or RunOptions()
    runner = Runner.load(model, options)
    if not runner.class_names:
        raise RoostError(f"{model} has no classifier (0 classes); use `roost embed` for its embeddings")
    k = min(topk, len(runner.class_names))
    schema = predict_schema(k)
    empty = {name: None for name in schema.names[1:-1]}
    return _simple_job(runner, inputs, report, schema, "probs", topk_values(runner.class_names, k), empty, "predict")


def predict_schema(k: int) -> pa.Schema:
    """Columns of the predict report: path, label_1, prob_1, …, label_k, prob_k, error."""
    columns = [("path", pa.string())]
    for j in range(1, k + 1):
        columns += [(f"label_{j}", pa.string()), (f"prob_{j}", pa.float32())]
    return pa.schema([*columns, ("error", pa.string())])


def topk_values(class_names: Sequence[str], k: int) -> Callable[[np.ndarray], Row]:
    """The label/prob columns of one image from its class probabilities (ties keep class order)."""

    def values(probs: np.ndarray) -> Row:
        top = np.argsort(-probs, kind="stable")[:k]
        row: Row = {}
        for j, c in enumerate(top, start=1):
            row[f"label_{j}"], row[f"prob_{j}"] = class_names[c], float(probs[c])
        return row

    return values


def _simple_job(
    runner: Runner,
    inputs: Sequence[str | os.PathLike[str]],
    report: Path | None,
    schema: pa.Schema,
    output: Output,
    values: Callable[[np.ndarray], Row],
    empty: Row,
    label: str,
    after: Callable[[list[Row]], None] | None = None,
) -> list[Row]:
    """Run the model over the pending inputs; each batch's rows go through ``after``, then to the report."""
    paths = pending(inputs, report, runner.options)
    written: list[Row] = []
    sink = open_sink(report, schema) if report is not None else nullcontext()
    with sink as out, progress_bar(len(paths), runner.options.progress, label) as advance:
        for batch, result in runner.run(paths, (output,)):
            rows = _rows(paths, batch, result.get(output), values, empty)
            if after is not None:
                after(rows)
            if out is not None:
                out.write(rows)
            written += rows
            advance(len(rows))
    return written


# ----------------------------------------------------------------------------------- embed
def embed_files(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    model: str | os.PathLike[str],
    output: Path,
    options: RunOptions | None = None,
) -> list[Row]:
    """Embeddings per image: Parquet (path, embedding list<float32>, error; resumable) or NumPy.

    ``.npy`` writes an (N, D) float32 array of the decoded images plus ``<stem>.index.csv`` (path,
    row, error; row is empty for failed files), both atomically at the end; it does not resume.
    """
    options = options or RunOptions()
    runner = Runner.load(model, options)
    dim = getattr(runner.net, "embedding_size", None)
    if output.suffix == ".npy":
        return _embed_npy(runner, inputs, output)
    schema, empty = embed_schema(dim), {"embedding": None}
    return _simple_job(runner, inputs, output, schema, "embedding", embedding_values, empty, "embed")


def embed_schema(dim: int | None) -> pa.Schema:
    """Columns of the Parquet embed report: path, embedding (float32, fixed size when ``dim`` is known), error."""
    vector = pa.list_(pa.float32(), dim or -1)
    return pa.schema([("path", pa.string()), ("embedding", vector), ("error", pa.string())])


def embedding_values(embedding: np.ndarray) -> Row:
    return {"embedding": embedding.tolist()}


def _embed_npy(runner: Runner, inputs: Sequence[str | os.PathLike[str]], output: Path) -> list[Row]:
    keep = lambda e: {"embedding": e}  # noqa: E731
    rows = _simple_job(runner, inputs, None, pa.schema([]), "embedding", keep, {"embedding": None}, "embed")
    vectors = [r["embedding"] for r in rows if r["error"] is None]
    matrix = np.stack(vectors) if vectors else np.zeros((0, runner.net.embedding_size), np.float32)
    index_rows, n = [], 0
    for r in rows:
        index_rows.append({"path": r["path"], "row": n if r["error"] is None else None, "error": r["error"]})
        n += r["error"] is None
    _atomic_save(output, lambda f: np.save(f, matrix.astype(np.float32)))
    index = output.with_name(output.stem + ".index.csv")
    with open_sink(index, ["path", "row", "error"], mode="overwrite") as sink:
        sink.write(index_rows)
    return [{**r, "embedding": None} for r in rows]


def _atomic_save(path: Path, write: Callable[[Any], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)
