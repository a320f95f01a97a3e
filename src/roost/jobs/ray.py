"""The Ray Data engine (``--engine ray``): the same jobs, rows and report as the local engine, on a cluster.

Only the computing moves: **decode** runs in CPU tasks (the local engine's ``load_image`` and transform; a
file that fails becomes an error carried with its key), the **model** in a pool of actors (one model each,
on its GPU when Ray gives it one). Computed batches stream back to the driver, which runs the shared loop
of ``engine.py``: the same resume, the same fixes (never inside Ray, where a retried task could apply one
twice), the same report writer. Ray Data gives actor pools unlimited restarts and task retries, so a killed
actor's batch is computed again; a batch reaches the report once, when it arrives at the driver.

Inputs may be local paths (read by the decode tasks: they must be readable on every node) or URIs
(``s3://``, ``gs://``, ``file://``, read with pyarrow's filesystems). ``ray`` is an optional extra
(``pip install 'roost[ray]'``), imported only when this engine runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import torch

from roost.data.datasets import IMAGE_SUFFIXES, Batch, ImageFiles, collate
from roost.errors import EngineError
from roost.jobs.base import Computed, Job, OnEvent, RunOptions, Source
from roost.jobs.inputs import Item
from roost.jobs.model import JobModel


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run: the cluster and the model actor pool."""

    address: str | None = None  # None: a local Ray on loopback (or the one this process already started)
    concurrency: int = 1  # model actors
    num_gpus_per_worker: float = 0.0  # per model actor; 0 runs the model on CPU
    num_cpus_per_worker: float = 1.0  # per model actor
    decode_batch_size: int = 32  # images per decode task call
    local_cpus: int = 2  # logical CPUs of the local Ray when address is None
    actor: type[ModelActor] | None = None  # the model actor class (a subclass, for hooks); None: ModelActor

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.decode_batch_size < 1 or self.local_cpus < 1:
            raise EngineError("concurrency, decode_batch_size and local_cpus must be >= 1")
        if self.num_gpus_per_worker < 0 or self.num_cpus_per_worker <= 0:
            raise EngineError("num_gpus_per_worker must be >= 0 and num_cpus_per_worker > 0")


def is_uri(path: str | os.PathLike[str]) -> bool:
    return "://" in os.fspath(path)


def list_uris(inputs: Sequence[str], *, recursive: bool) -> list[Item]:
    """Image files under URIs, as items keyed by URI: folders expanded and sorted, like local ones."""
    items: list[Item] = []
    for uri in inputs:
        fs, root = pafs.FileSystem.from_uri(uri)
        scheme = uri[: uri.index("://") + 3]
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"no such file or folder: {uri}")
        if info.type == pafs.FileType.File:
            items.append(Item(uri))
            continue
        found = fs.get_file_info(pafs.FileSelector(root, recursive=recursive))
        images = sorted(i.path for i in found if i.is_file and Path(i.base_name).suffix.lower() in IMAGE_SUFFIXES)
        items += [Item(scheme + p.lstrip("/") if scheme != "file://" else scheme + p) for p in images]
    return items


@dataclass(frozen=True)
class Decoder:
    """What a decode task needs of the model (not its weights): the transform, draft size and input size."""

    transform: Any
    draft: tuple[int, int] | None
    size: tuple[int, int]


def decode_batch(batch: dict[str, np.ndarray], *, decoder: Decoder) -> dict[str, np.ndarray]:
    """Decode one batch (CPU task): key, image (n, 3, H, W) uint8 (normalised by the actor), error ('' when ok)."""
    keys = [str(k) for k in batch["key"]]
    sources: list[Any] = [_read(k) for k in keys]
    decoded = collate([ImageFiles(sources, decoder.transform.pixels, draft=decoder.draft)[i] for i in range(len(keys))])
    images = np.zeros((len(keys), 3, *decoder.size), np.uint8)
    if decoded.images is not None:
        images[decoded.ok] = decoded.images.numpy()
    errors = np.array([decoded.errors.get(i, "") for i in range(len(keys))], dtype=object)
    return {"key": np.asarray(keys, dtype=object), "image": images, "error": errors}


def _read(key: str) -> Path | bytes:
    if not is_uri(key):
        return Path(key)
    fs, path = pafs.FileSystem.from_uri(key)
    with fs.open_input_stream(path) as f:
        return f.read()


class ModelActor:
    """One model per actor (on its GPU when Ray gave it one): decoded images in, the job's outputs out."""

    def __init__(self, model: str, options: RunOptions, output: str) -> None:
        self.model = JobModel.load(model, options)
        self.output = output

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        errors = {i: str(e) for i, e in enumerate(batch["error"]) if e}
        ok = [i for i in range(len(batch["key"])) if i not in errors]
        images = torch.from_numpy(np.ascontiguousarray(batch["image"][ok])) if ok else None
        _, array = next(self.model.run([Batch(ok, images, errors)], self.output))  # type: ignore[arg-type]
        width = array.shape[1] if array is not None else 1
        outputs = np.zeros((len(batch["key"]), width), np.float32)
        if array is not None:
            outputs[ok] = array
        return {"key": batch["key"], "output": outputs, "error": batch["error"]}


def ray_source(
    job: Job, model: str | os.PathLike[str], options: RunOptions, ray_options: RayOptions, on_event: OnEvent
) -> Source:
    """Bind ``job`` (with a CPU probe of the model) and return a source that computes on Ray."""
    probe = JobModel.load(model, replace(options, device="cpu", compile=False), on_event)
    job.bind(probe.facts)
    decoder = Decoder(probe.transform, probe.draft, probe.size)
    del probe

    def source(items: list[Item]) -> Iterator[Computed]:
        by_key = {item.key: item for item in items}
        started = _connect(ray_options)
        try:
            for batch in _pipeline(items, decoder, os.fspath(model), options, ray_options, job.output):
                keys = [str(k) for k in batch["key"]]
                errors = {i: str(e) for i, e in enumerate(batch["error"]) if e}
                outputs = {i: batch["output"][i] for i in range(len(keys)) if i not in errors}
                yield Computed([by_key[k] for k in keys], outputs, errors)
        finally:
            if started:
                import ray as ray_module

                ray_module.shutdown()

    return source


def _pipeline(
    items: list[Item], decoder: Decoder, model: str, options: RunOptions, ray_options: RayOptions, output: str
) -> Iterator[dict[str, np.ndarray]]:
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False  # the driver reports progress itself
    ds = ray.data.from_items([{"key": item.key} for item in items])
    decoded = ds.map_batches(
        decode_batch,  # type: ignore[arg-type]  # numpy batches, as batch_format says batch_size=ray_options.decode_batch_size, batch_format="numpy",
        fn_kwargs={"decoder": decoder},
    )  # fmt: skip
    computed = decoded.map_batches(
        ray_options.actor or ModelActor, batch_size=options.batch_size, batch_format="numpy",
        fn_constructor_kwargs={"model": model, "options": options, "output": output},
        compute=ray.data.ActorPoolStrategy(size=ray_options.concurrency),
        num_gpus=ray_options.num_gpus_per_worker or None, num_cpus=ray_options.num_cpus_per_worker,
    )  # fmt: skip
    yield from computed.iter_batches(batch_format="numpy", batch_size=None)  # type: ignore[misc]


def _connect(options: RayOptions) -> bool:
    """Join the cluster (or start a local Ray on loopback); True when this call started it."""
    try:
        import ray
    except ImportError as err:
        raise EngineError("the Ray engine needs Ray: pip install 'roost[ray]'") from err
    if ray.is_initialized():
        return False
    if options.address is not None:
        ray.init(address=options.address)
    else:
        ray.init(num_cpus=options.local_cpus, include_dashboard=False, _node_ip_address="127.0.0.1")
    return True
