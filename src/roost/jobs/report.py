"""The one report writer and reader of the batch jobs: CSV, JSON lines or Parquet, chosen by the extension.

Every :meth:`ReportWriter.write` (one batch of rows) reaches the disk before it returns (flushed and
fsynced), in every format, so a killed run loses at most the batch it was computing:

* **CSV and JSON lines** are one file appended record by record. A crash mid-write leaves a torn last
  record; readers ignore it and reopening truncates the file back to its last whole record (in CSV a
  newline ends a record only outside quotes).
* **Parquet** is a directory (``report.parquet/``, which pyarrow, pandas, polars and Spark read as one
  table) of ``part-NNNNN.parquet`` files, each written whole (temp file, fsync, rename). Rows not yet in a
  part wait in a hidden Arrow stream (``.pending-NNNNN.arrows``) that every batch is appended to; at
  ``part_rows`` rows, and on close, it becomes part NNNNN. Reopening after a crash turns the complete
  batches of a pending stream into its part (or drops the stream if that part was already written).
  Readers of :func:`read_rows` see the pending rows too; other tools see them once the run ends.

File names that are not valid UTF-8 round-trip: CSV and JSON lines keep them byte for byte
(``surrogateescape`` / ``\\udcXX`` escapes); Parquet stores them in a ``path_bytes`` column beside a
readable ``path``.

A key may have several rows (a retried fix, a re-run); the last one is the current one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pyarrow as pa
import pyarrow.parquet as pq

from roost.errors import ReportError
from roost.files.atomic import atomic_target, remove_stale_temps

Row = dict[str, Any]
PATH_BYTES = "path_bytes"
DEFAULT_PART_ROWS = 4096
_ENCODING: dict[str, Any] = {"encoding": "utf-8", "errors": "surrogateescape"}
_PART = re.compile(r"part-(\d+)\.parquet")
_PENDING = re.compile(r"\.pending-(\d+)\.arrows")


class ReportFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"
    PARQUET = "parquet"

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> ReportFormat:
        suffix = Path(path).suffix.lower().lstrip(".")
        try:
            return cls(suffix)
        except ValueError:
            name = Path(path).name
            raise ReportError(f"unknown report format {name!r}: name it *.csv, *.jsonl or *.parquet") from None


def check_writable(path: Path) -> None:
    """Fail now, with one line, when ``path`` cannot hold a report (before any work is done)."""
    fmt = ReportFormat.of(path)
    if fmt is ReportFormat.PARQUET and path.is_file():
        raise ReportError(f"{path} is a file; a Parquet report is a folder of part files (remove it or rename)")
    if fmt is not ReportFormat.PARQUET and path.is_dir():
        raise ReportError(f"report {path} is a folder; give a file name ending in .{fmt.value}")
    folder = path if fmt is ReportFormat.PARQUET and path.is_dir() else path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise ReportError(f"cannot write the report {path}: {folder} is not a writable folder")
    if path.is_file() and not os.access(path, os.W_OK):
        raise ReportError(f"cannot write the report {path}: the file is read-only")


def open_report(path: str | os.PathLike[str], schema: pa.Schema, *, part_rows: int = DEFAULT_PART_ROWS) -> ReportWriter:
    """Open a report for appending (created if absent); its columns must match ``schema``'s names."""
    path = Path(path)
    check_writable(path)
    if ReportFormat.of(path) is ReportFormat.PARQUET:
        return ParquetWriter(path, schema, part_rows=part_rows)
    return _LineWriter(path, schema)


class ReportWriter:
    """A report being appended to, one batch of rows at a time; close it (or use ``with``)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self.columns = list(schema.names)

    def write(self, rows: Sequence[Row]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _check_columns(self, found: Sequence[str]) -> None:
        if list(found) != self.columns:
            raise ReportError(
                f"{self.path} was written by another job or version (columns {list(found)}); "
                f"give a new report file (expected columns {self.columns})"
            )


# ---------------------------------------------------------------- CSV and JSON lines


class _LineWriter(ReportWriter):
    def __init__(self, path: Path, schema: pa.Schema) -> None:
        super().__init__(path, schema)
        self.csv = ReportFormat.of(path) is ReportFormat.CSV
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            data = path.read_bytes()
            _truncate(path, _csv_complete(data) if self.csv else data.rfind(b"\n") + 1)
            header = _first_columns(path, self.csv)
            if header is not None:
                self._check_columns(header)
        self._file = open(path, "a", newline="", **_ENCODING)  # noqa: SIM115 (held across batches)
        if self._file.tell() == 0 and self.csv:
            self._append(_csv_line(self.columns))

    def write(self, rows: Sequence[Row]) -> None:
        if rows:
            self._append("".join(map(self._encode, rows)))

    def close(self) -> None:
        self._file.close()

    def _append(self, text: str) -> None:
        self._file.write(text)
        self._file.flush()
        os.fsync(self._file.fileno())

    def _encode(self, row: Row) -> str:
        if self.csv:
            return _csv_line(["" if row.get(c) is None else _csv_value(row[c]) for c in self.columns])
        return json.dumps({c: row.get(c) for c in self.columns}) + "\n"


def _csv_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list) else value


def _csv_line(values: Sequence[Any]) -> str:
    buf = io.StringIO()
    # csv quotes a field holding the terminator "\n" but not a lone "\r", which its reader takes as a line end
    lone_cr = any(isinstance(v, str) and "\r" in v for v in values)
    csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL if lone_cr else csv.QUOTE_MINIMAL).writerow(values)
    return buf.getvalue()


def _csv_complete(data: bytes) -> int:
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


def _first_columns(path: Path, is_csv: bool) -> list[str] | None:
    with open(path, newline="", **_ENCODING) as f:
        if is_csv:
            return next(csv.reader(f), None)
        line = f.readline()
    return list(json.loads(line)) if line.strip() else None


# ---------------------------------------------------------------- Parquet


class ParquetWriter(ReportWriter):
    """A folder of whole Parquet parts plus one pending Arrow stream that every batch is appended to."""

    def __init__(self, path: Path, schema: pa.Schema, *, part_rows: int) -> None:
        super().__init__(path, schema)
        if part_rows < 1:
            raise ReportError(f"part_rows must be >= 1, got {part_rows}")
        self.file_schema = _with_path_bytes(schema)
        self.part_rows = part_rows
        path.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path, older_than_s=0)
        for pending in _pendings(path):
            self._recover(pending)
        parts = _parts(path)
        if parts:
            self._check_columns([c for c in _part_schema(parts[-1]).names if c != PATH_BYTES])
        self._index = _index(parts[-1], _PART) + 1 if parts else 0
        self._rows = 0
        self._stream: Any = None
        self._sink: Any = None

    def write(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        batch = pa.RecordBatch.from_pylist([_parquet_row(r, self.columns) for r in rows], schema=self.file_schema)
        if self._stream is None:
            self._sink = open(self.path / f".pending-{self._index:05d}.arrows", "wb")  # noqa: SIM115
            self._stream = pa.ipc.new_stream(self._sink, self.file_schema)
        self._stream.write_batch(batch)
        self._sink.flush()
        os.fsync(self._sink.fileno())
        self._rows += batch.num_rows
        if self._rows >= self.part_rows:
            self._flush()

    def close(self) -> None:
        self._flush()

    def _flush(self) -> None:
        """Turn the pending stream into its part, read back from the disk.

        The batches are not kept in memory until then: each one's small Arrow objects, held for a whole part,
        would each pin a fresh stretch of the C heap between the model's large temporary tensors, and the
        process would grow by megabytes a batch (BENCHMARKS.md, memory of embed).
        """
        if self._stream is None:
            return
        self._stream.close()
        self._sink.close()
        pending = self.path / f".pending-{self._index:05d}.arrows"
        with open(pending, "rb") as f, pa.ipc.open_stream(f) as reader:
            _write_part(self.path, self._index, reader.read_all())
        pending.unlink()
        self._index += 1
        self._rows, self._stream, self._sink = 0, None, None

    def _recover(self, pending: Path) -> None:
        index = _index(pending, _PENDING)
        if not (self.path / f"part-{index:05d}.parquet").exists():
            batches = list(_stream_batches(pending))
            if batches:
                _write_part(self.path, index, pa.Table.from_batches(batches))
        pending.unlink()


def _with_path_bytes(schema: pa.Schema) -> pa.Schema:
    return schema.insert(1, pa.field(PATH_BYTES, pa.binary())) if "path" in schema.names else schema


def _parquet_row(row: Row, columns: list[str]) -> Row:
    out = {c: row.get(c) for c in columns}
    for column, value in list(out.items()):
        if isinstance(value, str) and not _is_utf8(value):  # holds a file name that is not UTF-8
            if column == "path":  # the key: keep its bytes
                out[PATH_BYTES] = os.fsencode(value)
            out[column] = os.fsencode(value).decode("utf-8", "replace")  # shown readably (errors, outputs too)
    return out


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _write_part(folder: Path, index: int, table: pa.Table) -> None:
    # pyarrow is given file objects, never names: it cannot encode a name that is not UTF-8
    with atomic_target(folder / f"part-{index:05d}.parquet") as tmp, open(tmp, "wb") as f:
        pq.write_table(table, f)


def _part_schema(path: Path) -> pa.Schema:
    with open(path, "rb") as f:
        return pq.read_schema(f)


def _read_part(path: Path, columns: list[str]) -> pa.Table:
    with open(path, "rb") as f:
        names = pq.read_schema(f).names
        return pq.read_table(f, columns=[c for c in [*columns, PATH_BYTES] if c in names])


def _stream_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """The complete batches of an Arrow stream that a killed writer may have left torn."""
    with contextlib.suppress(pa.ArrowInvalid, OSError), open(path, "rb") as f, pa.ipc.open_stream(f) as reader:
        while True:
            try:
                yield reader.read_next_batch()
            except StopIteration:
                return


def _parts(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if _PART.fullmatch(p.name)), key=lambda p: _index(p, _PART))


def _pendings(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if _PENDING.fullmatch(p.name)), key=lambda p: _index(p, _PENDING))


def _index(path: Path, pattern: re.Pattern[str]) -> int:
    match = pattern.fullmatch(path.name)
    if match is None:
        raise ReportError(f"{path} is not a report part")
    return int(match[1])


# ---------------------------------------------------------------- reading back


def read_rows(path: str | os.PathLike[str], schema: pa.Schema, columns: Sequence[str] | None = None) -> Iterator[Row]:
    """The whole rows of a report in write order, typed by ``schema`` (CSV's strings are parsed back).

    ``columns`` limits what is read (Parquet reads only those). A missing report has no rows.
    """
    path = Path(path)
    if not path.exists():
        return iter(())
    wanted = list(columns) if columns is not None else list(schema.names)
    fmt = ReportFormat.of(path)
    if fmt is ReportFormat.PARQUET:
        return _parquet_rows(path, wanted)
    if fmt is ReportFormat.JSONL:
        return ({c: row.get(c) for c in wanted} for row in _jsonl_rows(path))
    return _csv_rows(path, schema, wanted)


def _parquet_rows(path: Path, columns: list[str]) -> Iterator[Row]:
    files = _parquet_files(path) if path.is_dir() else [path]
    for file in files:
        if file.suffix == ".arrows":
            tables = [pa.Table.from_batches([b]) for b in _stream_batches(file)]
        else:
            tables = [_read_part(file, columns)]
        for table in tables:
            for row in table.to_pylist():
                raw = row.pop(PATH_BYTES, None)
                if raw is not None and "path" in row:
                    row["path"] = os.fsdecode(raw)
                yield {c: row.get(c) for c in columns}


def _parquet_files(folder: Path) -> list[Path]:
    """The parts, then the pending streams not yet turned into their part (a writer killed between writing
    the part and removing its stream leaves both: the part holds the rows)."""
    parts = _parts(folder)
    written = {_index(p, _PART) for p in parts}
    return [*parts, *(p for p in _pendings(folder) if _index(p, _PENDING) not in written)]


def _jsonl_rows(path: Path) -> Iterator[Row]:
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                return  # a torn last record
            if line.strip():
                yield json.loads(line)


def _csv_rows(path: Path, schema: pa.Schema, columns: list[str]) -> Iterator[Row]:
    with open(path, "rb") as f:
        data = f.read()
    text = data[: _csv_complete(data)].decode(**_ENCODING)
    types = {field.name: field.type for field in schema}
    for record in csv.DictReader(io.StringIO(text, newline="")):
        yield {c: _parse(record.get(c), types.get(c)) for c in columns}


def _parse(text: str | None, kind: pa.DataType | None) -> Any:
    if text is None or text == "":
        return None
    if kind is None or pa.types.is_string(kind):
        return text
    if pa.types.is_floating(kind):
        return float(text)
    if pa.types.is_integer(kind):
        return int(text)
    if pa.types.is_boolean(kind):
        return text == "True"
    return json.loads(text)  # lists (embeddings)


def last_rows(path: str | os.PathLike[str], schema: pa.Schema, columns: Sequence[str]) -> dict[str, Row]:
    """The current (last) row of each key in a report, with only ``columns`` (which must include ``path``)."""
    state: dict[str, Row] = {}
    for row in read_rows(path, schema, columns):
        state[row["path"]] = row
    return state
