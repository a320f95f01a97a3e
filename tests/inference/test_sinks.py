"""Report sinks: round trips, resume, torn-tail repair and crash safety (issue 4)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from roost.errors import ReportError
from roost.inference.orient import REPORT_SCHEMA
from roost.inference.sinks import finished_keys, open_sink, read_rows, report_format

FORMATS = ["csv", "jsonl", "parquet"]
COLUMNS = REPORT_SCHEMA.names


def _row(i: int, error: str | None = None) -> dict:
    probs = [0.7, 0.1, 0.1, 0.1] if i % 2 else [0.1, 0.1, 0.1, 0.7]
    return {
        "path": f"/photos/ä {i}.jpg",
        "rotation": None if error else (0 if i % 2 else 270),
        "confidence": None if error else 0.7,
        **({f"p{r}": None if error else p for r, p in zip((0, 90, 180, 270), probs, strict=True)}),
        "action": None if error else "none",
        "error": error,
    }


def _normalise(row: dict, fmt: str) -> dict:
    """What a row reads back as: CSV gives strings (empty for None), Parquet float32 values."""
    if fmt == "csv":
        return {k: "" if v is None else str(v) for k, v in row.items()}
    if fmt == "parquet":
        return {k: pytest.approx(v) if isinstance(v, float) else v for k, v in row.items()}
    return row


def _write(path: Path, batches: list[list[dict]], **kwargs) -> None:
    with open_sink(path, REPORT_SCHEMA, **kwargs) as sink:
        for rows in batches:
            sink.write(rows)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"report.{fmt}"
    rows = [_row(i) for i in range(5)] + [_row(5, error='cannot decode: truncated,\n"bad" file')]
    _write(path, [rows[:2], rows[2:]])
    assert list(read_rows(path)) == [_normalise(r, fmt) for r in rows]
    assert finished_keys(path) == {r["path"] for r in rows}


def test_format_from_extension(tmp_path: Path) -> None:
    assert report_format("a/B.CSV") == "csv"
    assert report_format("x.jsonl") == "jsonl"
    assert report_format("x.parquet") == "parquet"
    with pytest.raises(ReportError, match="Unknown report format"):
        open_sink(tmp_path / "report.xlsx", COLUMNS)


@pytest.mark.parametrize("fmt", FORMATS)
def test_resume_appends_and_reads_finished_keys(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"report.{fmt}"
    assert finished_keys(path) == set()  # no report yet
    _write(path, [[_row(0), _row(1)]])
    assert finished_keys(path) == {_row(0)["path"], _row(1)["path"]}
    _write(path, [[_row(2)]])  # a second run appends
    assert [r["path"] for r in read_rows(path)] == [_row(i)["path"] for i in range(3)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_error_rows_count_as_finished_unless_retried(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"report.{fmt}"
    _write(path, [[_row(0), _row(1, error="corrupt"), _row(2, error="corrupt")]])
    _write(path, [[_row(2)]])  # a retry of input 2 succeeded
    paths = {i: _row(i)["path"] for i in range(3)}
    assert finished_keys(path) == set(paths.values())
    assert finished_keys(path, retry_errors=True) == {paths[0], paths[2]}


@pytest.mark.parametrize("fmt", FORMATS)
def test_overwrite_starts_empty(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"report.{fmt}"
    _write(path, [[_row(0), _row(1)]])
    _write(path, [[_row(2)]], mode="overwrite")
    assert [r["path"] for r in read_rows(path)] == [_row(2)["path"]]


@pytest.mark.parametrize("fmt", FORMATS)
def test_mismatched_columns_are_refused(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"report.{fmt}"
    _write(path, [[_row(0)]])
    with pytest.raises(ReportError, match="columns"):
        open_sink(path, ["path", "label", "error"])
    with open_sink(path, REPORT_SCHEMA) as sink, pytest.raises(ReportError, match="typo"):
        sink.write([{"path": "x", "typo": 1}])


@pytest.mark.parametrize(
    ("fmt", "torn"),
    [
        ("jsonl", '{"path": "/photos/torn.jpg", "rotat'),
        ("csv", "/photos/torn.jpg,90,0.9,0.1"),
        # stops right after a newline inside a quoted field: still a torn record
        ("csv", '/photos/torn.jpg,,,,,,,,"decode failed:\n'),
    ],
)
def test_torn_last_record_is_ignored_then_truncated(tmp_path: Path, fmt: str, torn: str) -> None:
    path = tmp_path / f"report.{fmt}"
    _write(path, [[_row(0), _row(1, error="multi\nline error")]])
    whole = path.read_bytes()
    with open(path, "a", encoding="utf-8") as f:  # what a crash in the middle of a write leaves
        f.write(torn)
    assert finished_keys(path) == {_row(0)["path"], _row(1)["path"]}
    assert path.read_bytes().endswith(torn.encode())  # reading never modifies the report

    with open_sink(path, REPORT_SCHEMA) as sink:  # resume: the torn tail is cut off first
        assert path.read_bytes() == whole
        sink.write([_row(2)])
    assert [r["path"] for r in read_rows(path)] == [_row(i)["path"] for i in range(3)]


def test_parquet_is_a_directory_of_whole_parts(tmp_path: Path) -> None:
    path = tmp_path / "report.parquet"
    _write(path, [[_row(0), _row(1)], [_row(2)], [_row(3)]], flush_rows=2)
    parts = sorted(p.name for p in path.iterdir())
    assert parts == ["part-00000.parquet", "part-00001.parquet"]
    table = pq.read_table(path)  # the directory reads as one table
    assert table.num_rows == 4
    assert table.schema.equals(REPORT_SCHEMA)


def test_parquet_stale_temp_part_is_ignored_and_removed(tmp_path: Path) -> None:
    path = tmp_path / "report.parquet"
    _write(path, [[_row(0)]])
    (path / ".part-123.tmp").write_bytes(b"PAR1 half a part")  # killed while writing a part
    assert finished_keys(path) == {_row(0)["path"]}
    assert pq.read_table(path).num_rows == 1
    _write(path, [[_row(1)]])
    assert sorted(p.name for p in path.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]


def test_parquet_infers_types_from_column_names(tmp_path: Path) -> None:
    path = tmp_path / "report.parquet"
    with open_sink(path, ["path", "score", "error"]) as sink:
        sink.write([{"path": "a", "score": 0.5}])  # error all null in the first batch
        sink.flush()
        sink.write([{"path": "b", "score": 0.25, "error": "bad"}])
    table = pq.read_table(path)
    assert table.schema.field("error").type == pa.string()
    assert table.column("error").to_pylist() == [None, "bad"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_crash_between_flushes_leaves_a_readable_report(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"report.{fmt}"
    script = f"""
        import os
        from roost.inference.orient import REPORT_SCHEMA
        from roost.inference.sinks import open_sink
        sink = open_sink({str(path)!r}, REPORT_SCHEMA, flush_rows=2)
        sink.write([{{"path": "a"}}, {{"path": "b"}}])
        sink.write([{{"path": "c"}}])
        os._exit(3)  # killed: no close, nothing else flushed
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], check=False)
    assert result.returncode == 3
    expected = {"a", "b"} if fmt == "parquet" else {"a", "b", "c"}  # Parquet loses only the unflushed rows
    assert finished_keys(path) == expected
    _write(path, [[{"path": "d"}]])  # and the run resumes cleanly
    assert finished_keys(path) == expected | {"d"}
