"""What a report is: its kind, read from its columns, and its current rows, typed.

* **orient**: ``path, rotation, confidence, p0, p90, p180, p270, action, fix, output, error``
* **predict**: ``path, label_1, prob_1, …, label_k, prob_k, error``
* **dedup**: ``path, group, keeper, match, similarity, error``
* **embed**: ``path, embedding, error`` (also read from the folder of a ``roost index``)

The current row of a path is its last one (a retried fix, a re-run), as for the batch jobs.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from roost.errors import ReportError
from roost.jobs.embed import EMBED_SCHEMA_ANY
from roost.jobs.orient import REPORT_SCHEMA as ORIENT_SCHEMA
from roost.jobs.predict import predict_schema
from roost.jobs.report import PATH_BYTES, ReportFormat, last_rows

Row = dict[str, Any]
INDEX_IDENTITY, INDEX_EMBEDDINGS = "identity.json", "embeddings.parquet"  # in the folder of a roost index


class Kind(StrEnum):
    ORIENT = "orient"
    PREDICT = "predict"
    DEDUP = "dedup"
    EMBED = "embed"


DEDUP_SCHEMA = pa.schema(
    [("path", pa.string()), ("group", pa.int64()), ("keeper", pa.string()), ("match", pa.string()),
     ("similarity", pa.float32()), ("error", pa.string())]
)  # fmt: skip
"""The dedup report's columns as the review reads them (``keeper``: a flag or the keeper's path)."""


@dataclass(frozen=True)
class Report:
    """A report's kind, its schema (as read) and its current rows in first-seen order."""

    path: Path
    kind: Kind
    schema: pa.Schema
    rows: list[Row]


def read_report(path: str | os.PathLike[str]) -> Report:
    """The kind and current rows of the report at ``path`` (CSV, JSON lines, a Parquet folder, or the folder
    of a ``roost index``, whose embed report it reads)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(2, "No such file or directory", os.fspath(path))
    if path.is_dir() and (path / INDEX_IDENTITY).is_file():
        path = path / INDEX_EMBEDDINGS
    ReportFormat.of(path)  # a clear error for an unknown extension
    kind, schema = detect(report_columns(path), path)
    rows = list(last_rows(path, schema, schema.names).values())
    if kind is Kind.DEDUP:
        rows = [row | {"keeper": _is_keeper(row)} for row in rows]
    return Report(path, kind, schema, rows)


def detect(columns: list[str], path: Path) -> tuple[Kind, pa.Schema]:
    """The kind of a report with these columns, and the schema that reads it back; ``ReportError`` if none."""
    names = set(columns)
    if set(ORIENT_SCHEMA.names) <= names:
        return Kind.ORIENT, ORIENT_SCHEMA
    if set(DEDUP_SCHEMA.names) <= names:
        return Kind.DEDUP, DEDUP_SCHEMA
    if set(EMBED_SCHEMA_ANY.names) <= names:
        return Kind.EMBED, EMBED_SCHEMA_ANY
    k = sum(1 for c in columns if c.startswith("label_"))
    if k and set(predict_schema(k).names) <= names:
        return Kind.PREDICT, predict_schema(k)
    raise ReportError(
        f"{path} is not an orient, predict, dedup or embed report (its columns: {', '.join(columns) or 'none'})"
    )


def report_columns(path: Path) -> list[str]:
    """The column names of a report, from its header, first record or Parquet schema (empty: none)."""
    fmt = ReportFormat.of(path)
    if fmt is ReportFormat.PARQUET:
        files = sorted(path.glob("part-*.parquet")) if path.is_dir() else [path]
        pending = sorted(path.glob(".pending-*.arrows")) if path.is_dir() else []  # a run still going, or killed
        if files:
            names = pq.read_schema(files[0]).names
        else:
            names = pa.ipc.open_stream(pending[0]).schema.names if pending else []
        return [n for n in names if n != PATH_BYTES]
    with open(path, "rb") as f:
        first = f.readline().decode("utf-8", errors="surrogateescape")
    if not first.strip():
        return []
    if fmt is ReportFormat.JSONL:
        try:
            return list(json.loads(first))
        except ValueError:
            raise ReportError(f"{path}: the first line is not a JSON record") from None
    return next(csv.reader(io.StringIO(first)), [])


def _is_keeper(row: Row) -> bool:
    value = row.get("keeper")
    if value is None:
        return False
    text = str(value).strip()
    return text.lower() in ("true", "1", "yes", "keeper") or text == row["path"]
