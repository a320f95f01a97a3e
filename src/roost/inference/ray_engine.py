"""The optional Ray Data engine for ``roost orient / predict / embed --engine ray`` (issue 7).

Same rows as the local engine (``jobs.py``), computed by the same code on a cluster:

* **decode** (CPU tasks, ``map_batches`` with a function): ``ImageFiles`` + ``collate`` from
  ``data/datasets.py``, so a path or the raw bytes go through ``load_image`` and the model's transform
  exactly as locally; a file that fails becomes an error carried along with its row.
* **model** (a pool of actors, :class:`ModelActor`): each actor loads the model once with
  ``jobs.Runner.load`` (on its GPU when it has one), runs ``run_model`` and builds the rows with the
  local engine's ``_rows`` and value functions, so columns, types and numbers are the local report's.
* **write** (CPU tasks): every block of rows becomes one Parquet shard named by a hash of its paths and
  written atomically, so a retried task (a worker killed mid-run) rewrites the same file instead of
  adding rows. Ray Data gives actor pools ``max_restarts=-1`` and ``max_task_retries=-1`` (Ray 2.60
  warns when they are passed explicitly), so a dead actor is replaced and its batch re-run; tasks keep
  Ray's default of 3 retries.
  A re-run over the same output reads the paths the shards already hold and skips them.

Orientation fixes never run inside Ray: a retried task would rotate a file twice (``exif`` and
``inplace`` are not idempotent) and remote inputs (S3, GCS) cannot be fixed in place. With ``fix`` set,
the driver applies them after the run, shard by shard, with the local engine's ``_apply_fix``, and
rewrites each shard marked as fixed, so a re-run never fixes a shard twice.

``ray`` is an optional extra (``pip install 'roost[ray]'``); it is imported inside functions only.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch

from roost.data.datasets import IMAGE_SUFFIXES, Batch, ImageFiles, collate
from roost.errors import EngineError, RoostError
from roost.inference import jobs, orient
from roost.inference.predict import Output, run_model

if TYPE_CHECKING:
    import ray.data

Job = Literal["orient", "predict", "embed"]
Row = dict[str, Any]
FIXED_KEY = b"roost.fixed"  # Parquet metadata of a shard whose orientation fixes have been applied


@dataclass(frozen=True)
class JobSpec:
    """What to compute: the job, the model (weights name or checkpoint path) and the job's own options."""

    job: Job
    model: str
    topk: int = 5  # predict
    threshold: float = 0.0  # orient


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run: the cluster and the model actor pool."""

    address: str | None = None  # None: a local Ray on loopback (or the one this process already started)
    concurrency: int = 1  # model actors
    num_gpus_per_worker: float = 0.0  # per model actor; 0 runs the model on CPU
    num_cpus_per_worker: float = 1.0  # per model actor
    decode_batch_size: int = 32  # images per decode task call
    local_cpus: int = 2  # logical CPUs of the local Ray when address is None


@dataclass(frozen=True)
class RunSummary:
    rows: int  # rows written in this run (finished inputs skipped)
    errors: int
    skipped: int  # inputs already in the output
    output: str


# ---------------------------------------------------------------------------------- rows
def _row_builder(spec: JobSpec, runner: jobs.Runner) -> tuple[Output, pa.Schema, Callable[[np.ndarray], Row]]:
    """The model output a job needs, its report schema and its per-image values (the local engine's)."""
    names = runner.class_names
    if spec.job == "orient":
        if len(names) != 4:
            raise RoostError(f"{spec.model} has {len(names)} classes; an orientation model has 4")
        return "probs", orient.REPORT_SCHEMA, lambda p: jobs._orient_values(p, spec.threshold)
    if spec.job == "predict":
        if not names:
            raise RoostError(f"{spec.model} has no classifier (0 classes); use `roost embed` for its embeddings")
        k = min(spec.topk, len(names))
        return "probs", jobs.predict_schema(k), jobs.topk_values(names, k)
    dim = getattr(runner.net, "embedding_size", None)
    return "embedding", jobs.embed_schema(dim), jobs.embedding_values


def _empty(schema: pa.Schema) -> Row:
    return {name: None for name in schema.names[1:-1]}  # between path and error


def decode_batch(
    batch: dict[str, np.ndarray], *, transform: Callable, size: tuple[int, int], draft: tuple[int, int] | None
) -> dict[str, np.ndarray]:
    """Decode and transform one batch (CPU task): columns path, image (n, 3, H, W) float32, error ('' when ok)."""
    sources = list(batch["bytes"]) if "bytes" in batch else [Path(p) for p in batch["path"]]
    decoded = collate([ImageFiles(sources, transform, draft=draft)[i] for i in range(len(sources))])
    images = np.zeros((len(sources), 3, *size), np.float32)
    if decoded.images is not None:
        images[decoded.ok] = decoded.images.numpy()
    errors = np.array([decoded.errors.get(i, "") for i in range(len(sources))], dtype=object)
    return {"path": np.asarray(batch["path"], dtype=object), "image": images, "error": errors}


class ModelActor:
    """One model per actor (GPU when Ray gave it one); a decoded batch in, the report's rows out."""

    def __init__(self, spec: JobSpec, options: jobs.RunOptions) -> None:
        self.runner = jobs.Runner.load(spec.model, options)
        self.output, self.schema, self.values = _row_builder(spec, self.runner)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        paths = [str(p) for p in batch["path"]]
        errors = {i: str(e) for i, e in enumerate(batch["error"]) if e}
        ok = [i for i in range(len(paths)) if i not in errors]
        images = torch.from_numpy(np.ascontiguousarray(batch["image"][ok])) if ok else None
        decoded = Batch(ok, images, errors)
        _, result = next(run_model(self.runner.net, [decoded], dtype=self.runner.options.dtype, outputs=(self.output,)))
        rows = jobs._rows(paths, decoded, result.get(self.output), self.values, _empty(self.schema))
        return pa.Table.from_pylist(rows, schema=self.schema)


def infer_dataset(
    ds: ray.data.Dataset,
    spec: JobSpec,
    *,
    options: jobs.RunOptions | None = None,
    ray_options: RayOptions | None = None,
    actor: type[ModelActor] = ModelActor,
) -> ray.data.Dataset:
    """Rows with the local report's columns for a Dataset of ``path`` (and optionally ``bytes``) rows.

    Lazy, like every Ray Dataset. Without a ``bytes`` column each path is opened by the decode task (so
    it must be readable on every node). ``actor`` is the model class (a subclass for tests or hooks).
    """
    import ray.data

    options, ray_options = options or jobs.RunOptions(), ray_options or RayOptions()
    probe = jobs.Runner.load(spec.model, replace(options, device="cpu", compile=False))  # transform, checks
    _row_builder(spec, probe)
    draft = (probe.size[1], probe.size[0]) if options.draft else None
    decoded = ds.map_batches(
        decode_batch, batch_size=ray_options.decode_batch_size, batch_format="numpy",
        fn_kwargs={"transform": probe.transform, "size": probe.size, "draft": draft},
    )  # fmt: skip
    return decoded.map_batches(
        actor, batch_size=options.batch_size, batch_format="numpy",
        fn_constructor_kwargs={"spec": spec, "options": options},
        compute=ray.data.ActorPoolStrategy(size=ray_options.concurrency),
        num_gpus=ray_options.num_gpus_per_worker or None, num_cpus=ray_options.num_cpus_per_worker,
    )  # fmt: skip


# -------------------------------------------------------------------------------- shards
def shard_name(paths: Sequence[str]) -> str:
    """A name that depends only on the set of paths, so a retried block rewrites its own shard."""
    digest = hashlib.sha256("\n".join(sorted(paths)).encode("utf-8", "surrogateescape")).hexdigest()
    return f"shard-{digest[:32]}.parquet"


def write_table(table: pa.Table, output: str, name: str) -> None:
    """Write one shard whole or not at all: temp file + rename locally; object stores publish on close."""
    fs, root = pafs.FileSystem.from_uri(_as_uri(output))
    if not isinstance(fs, pafs.LocalFileSystem):
        pq.write_table(table, f"{root}/{name}", filesystem=fs)
        return
    fd, tmp = tempfile.mkstemp(prefix=".shard-", suffix=".tmp", dir=root)
    try:
        with os.fdopen(fd, "wb") as f:
            pq.write_table(table, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(root, name))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_shard(table: pa.Table, *, output: str) -> pa.Table:
    """Write a block of rows as one shard (CPU task); return a one-row summary."""
    paths = table.column("path").to_pylist()
    name = shard_name(paths)
    if paths:
        write_table(table, output, name)
    errors = table.num_rows - table.column("error").null_count
    return pa.table({"shard": [name], "rows": [table.num_rows], "errors": [errors]})


def shard_files(output: str) -> list[str]:
    """The finished shards (and local ``part-*`` files) of an output directory, by name."""
    fs, root = pafs.FileSystem.from_uri(_as_uri(output))
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return []
    infos = fs.get_file_info(pafs.FileSelector(root))
    return sorted(i.path for i in infos if i.is_file and i.base_name.endswith(".parquet") and i.base_name[0] != ".")


def finished_paths(output: str) -> set[str]:
    """Every input path the output already holds a row for."""
    fs, _ = pafs.FileSystem.from_uri(_as_uri(output))
    done: set[str] = set()
    for file in shard_files(output):
        done.update(pq.read_table(file, columns=["path"], filesystem=fs).column("path").to_pylist())
    return done


def read_output(output: str | os.PathLike[str]) -> list[Row]:
    """All rows of an output directory (small outputs and tests; use ``ray.data.read_parquet`` for big ones)."""
    fs, _ = pafs.FileSystem.from_uri(_as_uri(os.fspath(output)))
    return [row for f in shard_files(os.fspath(output)) for row in pq.read_table(f, filesystem=fs).to_pylist()]


# --------------------------------------------------------------------------------- inputs
def is_uri(path: str | os.PathLike[str]) -> bool:
    return "://" in os.fspath(path)


def _as_uri(path: str) -> str:
    return path if is_uri(path) else Path(path).absolute().as_uri()


def list_uris(inputs: Sequence[str], *, recursive: bool) -> list[str]:
    """Image files under URIs (``s3://``, ``gs://``, ``file://`` …): folders expanded and sorted, like local ones."""
    out: list[str] = []
    for uri in inputs:
        fs, root = pafs.FileSystem.from_uri(uri)
        scheme = uri[: uri.index("://") + 3]
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"no such file or folder: {uri}")
        if info.type == pafs.FileType.File:
            out.append(uri)
            continue
        found = fs.get_file_info(pafs.FileSelector(root, recursive=recursive))
        images = (i.path for i in found if i.is_file and Path(i.base_name).suffix.lower() in IMAGE_SUFFIXES)
        out += [_join(scheme, p) for p in sorted(images)]
    return out


def _join(scheme: str, path: str) -> str:
    return scheme + path.lstrip("/") if scheme != "file://" else scheme + path


def _input_dataset(
    inputs: Sequence[str | os.PathLike[str]], done: set[str], options: jobs.RunOptions
) -> tuple[ray.data.Dataset, int]:
    """A Dataset of the pending inputs: local paths as ``path`` rows, URIs read as ``bytes`` + ``path``."""
    import ray.data

    uris = [os.fspath(p) for p in inputs if is_uri(p)]
    if uris and len(uris) != len(inputs):
        raise EngineError("Give either local paths or URIs, not both")
    if not uris:
        paths = [str(p) for p in jobs.pending(inputs, None, options) if str(p) not in done]
        return ray.data.from_items([{"path": p} for p in paths]), len(paths)
    pending = [u for u in list_uris(uris, recursive=options.recursive) if u not in done]
    if not pending:
        return ray.data.from_items([]), 0
    scheme = pending[0][: pending[0].index("://") + 3]
    read = ray.data.read_binary_files(pending, include_paths=True)
    return read.map_batches(_restore_scheme, fn_kwargs={"scheme": scheme}, batch_format="numpy"), len(pending)


def _restore_scheme(batch: dict[str, np.ndarray], *, scheme: str) -> dict[str, np.ndarray]:
    """Ray reports ``bucket/key``; rows carry the URI as given (``s3://bucket/key``)."""
    paths = [p if is_uri(p) else _join(scheme, p) for p in batch["path"]]
    return {"path": np.array(paths, dtype=object), "bytes": batch["bytes"]}


# ------------------------------------------------------------------------------------ run
def run_files(
    inputs: Sequence[str | os.PathLike[str]],
    spec: JobSpec,
    *,
    output: str | os.PathLike[str],
    options: jobs.RunOptions | None = None,
    ray_options: RayOptions | None = None,
    fix: jobs.OrientOptions | None = None,
    actor: type[ModelActor] = ModelActor,
) -> RunSummary:
    """Run a job over local files or URIs on Ray, writing ``output`` (a ``.parquet`` directory of shards).

    Inputs the output already holds are skipped. Orientation fixes (``fix``) run on the driver afterwards.
    """
    options, ray_options = options or jobs.RunOptions(), ray_options or RayOptions()
    output = os.fspath(output)
    _check_run(inputs, output, fix)
    started = _connect(ray_options)
    try:
        _prepare_output(output)
        done = finished_paths(output)
        ds, count = _input_dataset(inputs, done, options)
        rows = infer_dataset(ds, spec, options=options, ray_options=ray_options, actor=actor) if count else None
        written, errors = _write(rows, output, options.progress)
    finally:
        if started:
            import ray

            ray.shutdown()
    if fix is not None and fix.fix is not None:
        apply_fixes(output, fix, [Path(p) for p in inputs])
    return RunSummary(written, errors, len(done), output)


def _write(rows: ray.data.Dataset | None, output: str, progress: bool) -> tuple[int, int]:
    """Run the pipeline, writing one shard per block; (rows, errors) written."""
    if rows is None:
        return 0, 0
    _quiet_progress(progress)
    summary = rows.map_batches(write_shard, batch_size=None, batch_format="pyarrow", fn_kwargs={"output": output})
    written, errors = 0, 0
    for batch in summary.iter_batches(batch_format="numpy", batch_size=None):
        written, errors = written + int(batch["rows"].sum()), errors + int(batch["errors"].sum())
    return written, errors


def _check_run(inputs: Sequence[str | os.PathLike[str]], output: str, fix: jobs.OrientOptions | None) -> None:
    if not output.endswith(".parquet"):
        raise EngineError(f"--engine ray writes a Parquet directory of shards; name the output *.parquet, not {output}")
    if fix is not None and fix.fix is not None and any(is_uri(p) for p in inputs):
        raise EngineError("Orientation fixes need local files; run without --fix on URIs")
    if fix is not None and fix.fix == "copy" and fix.output is None:
        raise RoostError("--fix copy needs --output DIR")


def _connect(ray_options: RayOptions) -> bool:
    """Join the cluster (or start a local Ray on loopback); True when this call started it."""
    try:
        import ray
    except ImportError as err:
        raise EngineError("--engine ray needs Ray: pip install 'roost[ray]'") from err
    if ray.is_initialized():
        return False
    if ray_options.address is not None:
        ray.init(address=ray_options.address)
    else:
        ray.init(num_cpus=ray_options.local_cpus, include_dashboard=False, _node_ip_address="127.0.0.1")
    return True


def _prepare_output(output: str) -> None:
    fs, root = pafs.FileSystem.from_uri(_as_uri(output))
    if fs.get_file_info(root).type == pafs.FileType.File:
        raise EngineError(f"{output} is a file; the Ray engine writes a directory of Parquet shards")
    fs.create_dir(root, recursive=True)


def _quiet_progress(progress: bool) -> None:
    import ray.data

    if not progress:
        ray.data.DataContext.get_current().enable_progress_bars = False


# ----------------------------------------------------------------------------------- fixes
def apply_fixes(output: str, fix: jobs.OrientOptions, roots: Sequence[Path]) -> int:
    """Apply orientation fixes to the rows of every shard not yet fixed (driver side); the number of fixes."""
    count = 0
    for shard in shard_files(output):
        schema = pq.read_schema(shard)
        if FIXED_KEY in (schema.metadata or {}):
            continue
        rows = pq.read_table(shard).to_pylist()
        todo = [r for r in rows if r["error"] is None and r["action"] == orient.ACTION_ROTATE]
        for row in todo:
            jobs._apply_fix(row, fix, roots)
        fixed = orient.REPORT_SCHEMA.with_metadata({FIXED_KEY: (fix.fix or "").encode()})
        write_table(pa.Table.from_pylist(rows, schema=fixed), output, Path(shard).name)
        count += len(todo)
    return count
