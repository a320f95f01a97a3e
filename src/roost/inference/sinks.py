"""Report writers for batch jobs (``roost orient``, ``roost predict``): CSV, JSON lines or Parquet, with resume.

The format follows the report path's extension: ``.csv``, ``.jsonl`` or ``.parquet``. A job appends one
batch of rows at a time with :meth:`Sink.write`; after a crash or Ctrl-C it reopens the same path and asks
:func:`finished_keys` which inputs are already done.

Crash safety, by design:

* **CSV and JSON lines** are appended to one file and flushed after every batch, so a killed process
  loses at most the batch it was writing. A crash mid-write leaves a torn last record; readers ignore it
  and reopening the sink (append mode) truncates the file back to the end of the last whole record. In
  CSV a newline ends a record only outside quotes, i.e. where the count of ``"`` before it is even, so a
  torn record that stops after a newline inside a quoted field is still recognised as torn.
* **Parquet** is a directory (``report.parquet/``, the Spark / Hive convention that ``pyarrow``,
  pandas and polars read as one table) of ``part-NNNNN.parquet`` files. Rows are buffered and every
  ``flush_rows`` rows, and on close, a part is written to a hidden temp file in that directory, fsynced
  and renamed into place with ``os.replace``: a part is either whole or absent, never torn. A crash loses
  only the rows not yet flushed; resume adds new parts after the existing ones and deletes stale temps.

A key may appear more than once after retries; the last row for a key is the current one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import pyarrow as pa
import pyarrow.parquet as pq

from roost.errors import ReportError

ReportFormat = Literal["csv", "jsonl", "parquet"]
Mode = Literal["append", "overwrite"]
Row = dict[str, Any]

_SUFFIXES: dict[str, ReportFormat] = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
_PART = re.compile(r"part-(\d+)\.parquet")
_ENCODING = {"encoding": "utf-8", "errors": "surrogateescape"}  # undecodable file names round-trip
DEFAULT_FLUSH_ROWS = 4096


def report_format(path: str | os.PathLike[str]) -> ReportFormat:
    """The report format named by the path's extension (case-insensitive)."""
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ReportError(f"Unknown report format {suffix or '(none)'!r} for {path}; use .csv, .jsonl or .parquet")
    return _SUFFIXES[suffix]


class Sink:
    """A report being written; use it as a context manager so that buffered rows are flushed on exit."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path = path
        self.columns = columns
        self._known = set(columns)

    def write(self, rows: Sequence[Row]) -> None:
        """Append one batch of rows (dicts keyed by column; a missing column is written as empty)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()  # on Ctrl-C too: the buffered rows are complete results

    def _check(self, rows: Sequence[Row]) -> None:
        for row in rows:
            unknown = row.keys() - self._known
            if unknown:
                raise ReportError(f"Row has columns {sorted(unknown)} that the report {self.path} does not have")


def open_sink(
    path: str | os.PathLike[str],
    columns: Sequence[str] | pa.Schema,
    *,
    mode: Mode = "append",
    flush_rows: int = DEFAULT_FLUSH_ROWS,
) -> Sink:
    """Open a report for writing, its format chosen by the extension.

    ``columns`` are the column names in order, or a ``pyarrow.Schema`` (its names are used for CSV and
    JSON lines; Parquet uses its types, or infers them from the first batch when only names are given).
    ``mode="append"`` keeps what a previous run wrote (after repairing a torn tail) and checks that its
    columns match; ``"overwrite"`` starts an empty report. ``flush_rows`` applies to Parquet only: CSV
    and JSON lines are flushed after every :meth:`Sink.write`.
    """
    path = Path(path)
    schema = columns if isinstance(columns, pa.Schema) else None
    names = list(columns.names) if isinstance(columns, pa.Schema) else list(columns)
    if not names or len(set(names)) != len(names):
        raise ReportError(f"Report columns must be distinct and non-empty, got {names}")
    if mode not in ("append", "overwrite"):
        raise ReportError(f"Unknown sink mode {mode!r}; use 'append' or 'overwrite'")
    if flush_rows < 1:
        raise ReportError(f"flush_rows must be >= 1, got {flush_rows}")
    fmt = report_format(path)
    if fmt == "parquet":
        return ParquetSink(path, names, schema, mode=mode, flush_rows=flush_rows)
    return (CsvSink if fmt == "csv" else JsonlSink)(path, names, mode=mode)


# ---------------------------------------------------------------- CSV and JSON lines


class _LineSink(Sink):
    """A text report appended record by record; subclasses encode rows and find the last whole record."""

    def __init__(self, path: Path, columns: list[str], *, mode: Mode) -> None:
        super().__init__(path, columns)
        path.parent.mkdir(parents=True, exist_ok=True)
        if mode == "append" and path.exists():
            _truncate(path, self._complete_length(path.read_bytes()))
            self._check_existing()
        else:
            path.write_bytes(b"")
        self._file = open(path, "a", newline="", **_ENCODING)  # noqa: SIM115 (held open across batches)
        if self._file.tell() == 0:
            self._file.write(self._header())
            self._file.flush()

    def write(self, rows: Sequence[Row]) -> None:
        self._check(rows)
        if rows:
            self._file.write("".join(self._encode(row) for row in rows))
            self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def _header(self) -> str:
        return ""

    def _check_existing(self) -> None:
        pass

    def _encode(self, row: Row) -> str:
        raise NotImplementedError

    @staticmethod
    def _complete_length(data: bytes) -> int:
        raise NotImplementedError


class CsvSink(_LineSink):
    """CSV with a header line; ``None`` is written as an empty field."""

    def _header(self) -> str:
        return _csv_line(self.columns)

    def _check_existing(self) -> None:
        with open(self.path, newline="", **_ENCODING) as f:
            header = next(csv.reader(f), None)
        if header is not None and header != self.columns:
            raise ReportError(f"{self.path} has columns {header}, expected {self.columns}")

    def _encode(self, row: Row) -> str:
        return _csv_line(["" if row.get(c) is None else row[c] for c in self.columns])

    @staticmethod
    def _complete_length(data: bytes) -> int:
        return _csv_complete_length(data)


class JsonlSink(_LineSink):
    """One JSON object per line, ASCII-escaped so that the file is valid UTF-8 whatever the paths hold."""

    def _check_existing(self) -> None:
        first = next(_jsonl_rows(self.path), None)
        if first is not None and list(first) != self.columns:
            raise ReportError(f"{self.path} has columns {list(first)}, expected {self.columns}")

    def _encode(self, row: Row) -> str:
        return json.dumps({c: row.get(c) for c in self.columns}) + "\n"

    @staticmethod
    def _complete_length(data: bytes) -> int:
        return data.rfind(b"\n") + 1


def _csv_line(values: Sequence[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


def _csv_complete_length(data: bytes) -> int:
    """Length of the prefix made of whole CSV records: up to the last newline outside quotes."""
    end, quotes, start = 0, 0, 0
    while (nl := data.find(b"\n", start)) != -1:
        quotes += data.count(b'"', start, nl)
        if quotes % 2 == 0:
            end = nl + 1
        start = nl + 1
    return end


def _truncate(path: Path, length: int) -> None:
    if length < path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(length)
            os.fsync(f.fileno())


def _jsonl_rows(path: Path) -> Iterator[Row]:
    data = path.read_bytes()
    for line in data[: data.rfind(b"\n") + 1].splitlines():
        if line.strip():
            yield json.loads(line)


def _csv_rows(path: Path) -> Iterator[Row]:
    data = path.read_bytes()
    text = data[: _csv_complete_length(data)].decode(**_ENCODING)
    yield from csv.DictReader(io.StringIO(text, newline=""))


# ---------------------------------------------------------------- Parquet


class ParquetSink(Sink):
    """A directory of Parquet part files, each written whole (temp file + ``os.replace``)."""

    def __init__(
        self, path: Path, columns: list[str], schema: pa.Schema | None, *, mode: Mode, flush_rows: int
    ) -> None:
        super().__init__(path, columns)
        if path.is_file():
            raise ReportError(f"{path} is a single Parquet file; roost writes Parquet reports as a directory")
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob(".part-*"):
            stale.unlink()
        parts = _parts(path)
        if mode == "overwrite":
            for part in parts:
                part.unlink()
            parts = []
        self.schema = schema
        if parts:
            self.schema = self._check_existing(pq.read_schema(parts[-1]))
        self._next = _part_index(parts[-1]) + 1 if parts else 0
        self._flush_rows = flush_rows
        self._buffer: list[Row] = []

    def write(self, rows: Sequence[Row]) -> None:
        self._check(rows)
        self._buffer.extend(rows)
        if len(self._buffer) >= self._flush_rows:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as one new part file (atomically)."""
        if not self._buffer:
            return
        rows = [{c: row.get(c) for c in self.columns} for row in self._buffer]
        table = pa.Table.from_pylist(rows, schema=self.schema or _infer_schema(rows, self.columns))
        self.schema = table.schema
        target = self.path / f"part-{self._next:05d}.parquet"
        fd, tmp = tempfile.mkstemp(prefix=".part-", suffix=".tmp", dir=self.path)
        try:
            with os.fdopen(fd, "wb") as f:
                pq.write_table(table, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._next += 1
        self._buffer.clear()

    def close(self) -> None:
        self.flush()

    def _check_existing(self, existing: pa.Schema) -> pa.Schema:
        if existing.names != self.columns:
            raise ReportError(f"{self.path} has columns {existing.names}, expected {self.columns}")
        if self.schema is not None and not existing.equals(self.schema):
            raise ReportError(f"{self.path} has schema {existing}, expected {self.schema}")
        return existing


def _parts(path: Path) -> list[Path]:
    return sorted((p for p in path.iterdir() if _PART.fullmatch(p.name)), key=_part_index)


def _part_index(part: Path) -> int:
    match = _PART.fullmatch(part.name)
    if match is None:
        raise ReportError(f"{part} is not a report part file")
    return int(match[1])


def _infer_schema(rows: list[Row], columns: list[str]) -> pa.Schema:
    """Types from the first batch; a column that is all null there becomes a string column."""
    inferred = pa.Table.from_pylist(rows).schema
    return pa.schema(
        [pa.field(c, pa.string() if pa.types.is_null(t) else t) for c, t in zip(columns, inferred.types, strict=True)]
    )


def _parquet_rows(path: Path, columns: list[str] | None) -> Iterator[Row]:
    files = _parts(path) if path.is_dir() else [path]
    for file in files:
        names = pq.read_schema(file).names
        wanted = None if columns is None else [c for c in columns if c in names]
        yield from pq.read_table(file, columns=wanted).to_pylist()


# ---------------------------------------------------------------- reading back


def read_rows(path: str | os.PathLike[str], columns: Sequence[str] | None = None) -> Iterator[Row]:
    """The whole records of a report, in write order; a torn last CSV / JSON-lines record is skipped.

    CSV values come back as strings (empty for ``None``); ``columns`` limits what Parquet reads.
    """
    path = Path(path)
    if not path.exists():
        return iter(())
    fmt = report_format(path)
    if fmt == "parquet":
        return _parquet_rows(path, None if columns is None else list(columns))
    return _csv_rows(path) if fmt == "csv" else _jsonl_rows(path)


def finished_keys(
    path: str | os.PathLike[str], key: str = "path", *, retry_errors: bool = False, error_column: str = "error"
) -> set[str]:
    """Keys (input paths) that a previous run of a report already finished; empty when there is no report.

    A row whose ``error_column`` is set counts as finished too, so that unreadable inputs are not retried
    on every resume, unless ``retry_errors``: then a key is finished only once a row for it has no error.
    """
    done: set[str] = set()
    failed: set[str] = set()
    for row in read_rows(path, [key, error_column]):
        if key not in row:
            raise ReportError(f"Report {path} has no {key!r} column")
        (failed if row.get(error_column) else done).add(str(row[key]))
    return done if retry_errors else done | failed
