"""``roost embed``: one embedding vector per image, for search and de-duplication.

The report is Parquet (``path, embedding, error``; ``embedding`` a fixed-size list of float32), CSV or
JSON lines (the vector as a JSON list), all resumable. :func:`write_npy` turns a report into an ``(N, D)``
float32 NumPy array with a ``.index.csv`` beside it (``roost embed --npy``).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from roost.files.atomic import atomic_target
from roost.jobs.base import Job, ModelFacts, OnEvent, Row, RunOptions, Summary, ignore
from roost.jobs.engine import OnRows, execute
from roost.jobs.report import read_rows

if TYPE_CHECKING:
    from roost.jobs.ray import RayOptions


@dataclass
class EmbedJob(Job):
    name: str = "embed"
    output = "embedding"

    def bind(self, model: ModelFacts) -> pa.Schema:
        self.schema = embed_schema(model.embedding_size)
        return self.schema

    def values(self, output: np.ndarray) -> Row:
        return {"embedding": output.astype(np.float32).tolist()}


def embed_schema(dim: int | None) -> pa.Schema:
    """Columns of the embed report: path, embedding (float32, fixed size when ``dim`` is known), error."""
    vector = pa.list_(pa.float32(), dim or -1)
    return pa.schema([("path", pa.string()), ("embedding", vector), ("error", pa.string())])


EMBED_SCHEMA_ANY = embed_schema(None)
"""The embed report's columns for reading back any report, whatever the vector size."""


def write_npy(report: str | os.PathLike[str], output: str | os.PathLike[str], dim: int) -> int:
    """Write a report's embeddings as an (N, dim) float32 ``.npy`` plus ``<stem>.index.csv`` (path, row, error).

    Reads the report's keys and errors once (one index entry per image is kept) and streams its vectors
    once; the current row of each key counts; both files are written atomically. Returns N.
    """
    output = Path(output)
    schema = embed_schema(dim)
    keys = list(read_rows(report, schema, ["path", "error"]))
    last = {row["path"]: i for i, row in enumerate(keys)}
    index: list[tuple[str, int | None, str | None]] = []
    wanted: set[int] = set()
    for i, row in enumerate(keys):
        if last[row["path"]] == i:
            ok = row["error"] is None
            index.append((row["path"], len(wanted) if ok else None, row["error"]))
            wanted |= {i} if ok else set()
    with atomic_target(output) as tmp, open(tmp, "wb") as out:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False}
        np.lib.format.write_array_header_1_0(out, header | {"shape": (len(wanted), dim)})
        for i, row in enumerate(read_rows(report, schema, ["embedding"])):
            if i in wanted:
                out.write(np.asarray(row["embedding"], np.float32).tobytes())
    index_path = output.with_name(output.stem + ".index.csv")
    with atomic_target(index_path) as tmp, open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["path", "row", "error"])
        writer.writerows(("" if v is None else v for v in entry) for entry in index)
    return len(wanted)


def embed_files(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    model: str | os.PathLike[str],
    report: str | os.PathLike[str] | None = None,
    options: RunOptions | None = None,
    ray: RayOptions | None = None,
    on_event: OnEvent = ignore,
    on_rows: OnRows | None = None,
) -> Summary:
    """Embed each image; one row per input appended to ``report`` (and passed to ``on_rows``)."""
    return execute(EmbedJob(), inputs, model=model, report=report, options=options or RunOptions(), ray=ray,
                   on_event=on_event, on_rows=on_rows)  # fmt: skip
