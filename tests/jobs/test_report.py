"""The report writer and reader: typed round trips, hostile file names, torn tails, durability, refusals."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from roost.errors import ReportError
from roost.jobs.embed import embed_schema
from roost.jobs.inputs import expand
from roost.jobs.orient import REPORT_SCHEMA
from roost.jobs.report import (
    PATH_BYTES,
    ReportFormat,
    check_writable,
    last_rows,
    open_report,
    read_rows,
)

FORMATS = ["csv", "jsonl", "parquet"]
HOSTILE_NAMES = [
    b"caf\xe9.jpg",  # Latin-1: not UTF-8
    b"\xff\xfe.jpg",
    b"\xed\xa0\x80.jpg",  # a UTF-8-encoded surrogate: not UTF-8 either
    "café.jpg".encode(),
    b"\\udce9.jpg",  # the text of an escape, not a byte
    b"new\nline.jpg",
    b"carriage\rreturn.jpg",
    b"crlf\r\n.jpg",
    b"tab\there.jpg",
    b'double"quote.jpg',
    b"single'quote.jpg",
    b"comma,name.jpg",
    b"[bold]red[link=x].jpg",  # rich markup
    b"-leading-dash.jpg",
    b"--report.jpg",
    b" spaces .jpg",
    b"=SUM(A1).jpg",
    b"x" * 251 + b".jpg",  # 255 bytes
    "é".encode() * 125 + b"x.jpg",  # 255 bytes of two-byte characters
]


def _row(key: str, i: int = 0, error: str | None = None) -> dict[str, Any]:
    """An orient row with values float32 holds exactly, so every format gives them back equal."""
    if error is not None:
        return {c: None for c in REPORT_SCHEMA.names} | {"path": key, "error": error}
    probs = {"p0": 0.625, "p90": 0.125, "p180": 0.125, "p270": 0.125}
    return {"path": key, "rotation": [0, 90, 180, 270][i % 4], "confidence": 0.625, **probs,
            "action": "none", "fix": None, "output": None, "error": None}  # fmt: skip


Rows = Sequence[dict[str, Any]]


def _write(path: Path, batches: Sequence[Rows], schema: pa.Schema = REPORT_SCHEMA, **kw: Any) -> None:
    with open_report(path, schema, **kw) as writer:
        for rows in batches:
            writer.write(rows)


def _keys(path: Path, schema: pa.Schema = REPORT_SCHEMA) -> list[str]:
    return [r["path"] for r in read_rows(path, schema, ["path"])]


def _hostile_folder(root: Path) -> list[str]:
    """Create a file for each hostile name under ``root``; their keys (the str form of the bytes path)."""
    folder = os.fsencode(root)
    for name in HOSTILE_NAMES:
        with open(folder + b"/" + name, "wb") as f:
            f.write(b"not decoded here")
    return sorted(os.fsdecode(folder + b"/" + name) for name in HOSTILE_NAMES)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_typed_by_the_schema(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"report.{fmt}"
    rows = [_row(f"/photos/ä {i}.jpg", i) for i in range(5)]
    rows.append(_row("/photos/bad.jpg", error='cannot decode: truncated,\n"bad" file'))
    _write(path, [rows[:2], rows[2:]])
    back = list(read_rows(path, REPORT_SCHEMA))
    assert back == rows
    assert all(type(r["rotation"]) is int and type(r["confidence"]) is float for r in back[:5])
    assert back[5]["rotation"] is None and back[5]["p0"] is None and back[5]["action"] is None
    assert list(read_rows(path, REPORT_SCHEMA, ["path", "error"])) == [
        {"path": r["path"], "error": r["error"]} for r in rows
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_embedding_round_trip(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"emb.{fmt}"
    schema = embed_schema(4)
    rows = [
        {"path": "/a.jpg", "embedding": [0.5, -1.25, 3.0, 0.125], "error": None},
        {"path": "/b.jpg", "embedding": None, "error": "ImageError: truncated"},
        {"path": "/c.jpg", "embedding": [1e-3, 2.5e6, -0.0, 7.0], "error": None},
    ]
    _write(path, [rows], schema)
    back = list(read_rows(path, schema))
    assert [r["path"] for r in back] == ["/a.jpg", "/b.jpg", "/c.jpg"]
    assert back[0]["embedding"] == [0.5, -1.25, 3.0, 0.125]
    assert back[1] == rows[1]
    assert back[2]["embedding"] == pytest.approx(rows[2]["embedding"], rel=1e-7)
    if fmt == "parquet":
        assert pq.read_table(path).schema.field("embedding").type == pa.list_(pa.float32(), 4)


def test_format_from_the_suffix(tmp_path: Path) -> None:
    assert ReportFormat.of("a/B.CSV") is ReportFormat.CSV
    assert ReportFormat.of("x.jsonl") is ReportFormat.JSONL
    assert ReportFormat.of("x.parquet") is ReportFormat.PARQUET
    with pytest.raises(ReportError, match=r"unknown report format 'report.xlsx'"):
        open_report(tmp_path / "report.xlsx", REPORT_SCHEMA)
    assert not (tmp_path / "report.xlsx").exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_reopening_appends_and_the_last_row_of_a_key_is_current(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"report.{fmt}"
    assert list(read_rows(path, REPORT_SCHEMA)) == []  # no report yet
    _write(path, [[_row("/a.jpg"), _row("/b.jpg", error="corrupt")]])
    _write(path, [[_row("/b.jpg", 2), _row("/c.jpg")]])  # a second run appends; /b.jpg retried
    assert _keys(path) == ["/a.jpg", "/b.jpg", "/b.jpg", "/c.jpg"]
    state = last_rows(path, REPORT_SCHEMA, ["path", "rotation", "error"])
    assert state == {
        "/a.jpg": {"path": "/a.jpg", "rotation": 0, "error": None},
        "/b.jpg": {"path": "/b.jpg", "rotation": 180, "error": None},
        "/c.jpg": {"path": "/c.jpg", "rotation": 0, "error": None},
    }


def test_parquet_is_a_folder_other_tools_read_as_one_table(tmp_path: Path) -> None:
    path = tmp_path / "report.parquet"
    keys = [f"/p/{i}.jpg" for i in range(5)]
    _write(path, [[_row(k) for k in keys[:3]], [_row(k) for k in keys[3:]]], part_rows=2)
    assert sorted(p.name for p in path.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    table = pq.read_table(path)
    assert table.column("path").to_pylist() == keys
    assert table.column_names == ["path", PATH_BYTES, *REPORT_SCHEMA.names[1:]]
    assert table.schema.field("confidence").type == pa.float32()


# ---------------------------------------------------------------- hostile file names


@pytest.mark.parametrize("fmt", FORMATS)
def test_any_file_name_round_trips(tmp_path: Path, fmt: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    keys = _hostile_folder(folder)
    assert [item.key for item in expand([folder])] == keys  # expand lists every one, sorted
    assert all(item.problem is None for item in expand([folder]))
    path = tmp_path / f"report.{fmt}"
    rows = [_row(k, i) for i, k in enumerate(keys)]
    latin = os.fsdecode(os.fsencode(folder) + b"/caf\xe9.jpg")
    rows.append(_row(keys[0], error=f"same file as {latin} (processed once)"))  # a name in another column
    _write(path, [rows[:5], rows[5:]])
    back = list(read_rows(path, REPORT_SCHEMA))
    assert [r["path"] for r in back] == [r["path"] for r in rows]
    assert all(os.path.exists(r["path"]) for r in back)  # the key opens the very file
    if fmt != "parquet":
        assert back == rows
        return
    # Parquet strings must be UTF-8: other tools see the raw name in path_bytes, a readable one in path
    table = pq.read_table(path)
    readable = {os.fsencode(k): os.fsencode(k).decode("utf-8", "replace") for k in keys}
    raw = table.column(PATH_BYTES).to_pylist()
    for key, shown, stored in zip(keys, table.column("path").to_pylist(), raw, strict=False):
        assert shown == readable[os.fsencode(key)]
        assert stored == (None if shown == key else os.fsencode(key))
    assert "\ufffd" in back[-1]["error"]  # a non-UTF-8 name in an error is shown readably, not refused


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_hostile_report_name(tmp_path: Path, fmt: str) -> None:
    path = Path(os.fsdecode(os.fsencode(tmp_path) + b"/r\xe9 [x],\n." + fmt.encode()))
    _write(path, [[_row("/a.jpg")]])
    _write(path, [[_row("/b.jpg")]])
    assert _keys(path) == ["/a.jpg", "/b.jpg"]


# ---------------------------------------------------------------- torn tails and crashes


@pytest.mark.parametrize(
    ("fmt", "torn"),
    [
        ("jsonl", b'{"path": "/photos/torn.jpg", "rotat'),
        ("csv", b"/photos/torn.jpg,90,0.9,0.1"),
        ("csv", b'/photos/torn.jpg,,,,,,,,,,"decode failed:\n'),  # cut right after a newline inside quotes
        ("csv", b'"/photos/torn\xe9\n'),  # inside a quoted non-UTF-8 name
    ],
)
def test_torn_last_record_is_ignored_then_cut_on_reopen(tmp_path: Path, fmt: str, torn: bytes) -> None:
    path = tmp_path / f"report.{fmt}"
    _write(path, [[_row("/a.jpg"), _row("/b.jpg", error='multi\nline "error"')]])
    whole = path.read_bytes()
    with open(path, "ab") as f:  # what a crash in the middle of a write leaves
        f.write(torn)
    assert _keys(path) == ["/a.jpg", "/b.jpg"]
    assert path.read_bytes() == whole + torn  # reading never modifies the report
    with open_report(path, REPORT_SCHEMA) as writer:
        assert path.read_bytes() == whole  # the torn record is dropped first
        writer.write([_row("/c.jpg")])
    assert list(read_rows(path, REPORT_SCHEMA)) == [
        _row("/a.jpg"), _row("/b.jpg", error='multi\nline "error"'), _row("/c.jpg"),
    ]  # fmt: skip


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_report_cut_inside_its_first_record_starts_again(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"report.{fmt}"
    path.write_bytes(b"path,rotat" if fmt == "csv" else b'{"path": "/a.j')
    assert list(read_rows(path, REPORT_SCHEMA)) == []
    _write(path, [[_row("/b.jpg")]])
    assert list(read_rows(path, REPORT_SCHEMA)) == [_row("/b.jpg")]


def _crash(path: Path, batches: list[list[str]], part_rows: int) -> None:
    """Write ``batches`` of keys to ``path`` in another process that is then killed (no close)."""
    script = f"""
        import os
        from roost.jobs.orient import REPORT_SCHEMA
        from roost.jobs.report import open_report
        writer = open_report({str(path)!r}, REPORT_SCHEMA, part_rows={part_rows})
        for keys in {batches!r}:
            writer.write([{{"path": k, "action": "none"}} for k in keys])
        os._exit(3)
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], check=False, timeout=120)
    assert result.returncode == 3


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_killed_writer_loses_no_written_batch(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"report.{fmt}"
    _crash(path, [["a", "b"], ["c"]], part_rows=2)
    assert _keys(path) == ["a", "b", "c"]  # Parquet: a part of a, b and c in the pending stream
    _write(path, [[_row("d")]])  # and the run resumes cleanly
    assert _keys(path) == ["a", "b", "c", "d"]
    if fmt == "parquet":
        parts = ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]  # [a, b], [c], [d]
        assert sorted(p.name for p in path.iterdir()) == parts
        assert pq.read_table(path).column("path").to_pylist() == ["a", "b", "c", "d"]


def test_a_pending_stream_cut_mid_batch_keeps_its_complete_batches(tmp_path: Path) -> None:
    path = tmp_path / "report.parquet"
    _crash(path, [["a"], ["b", "c"], ["d" * 2000]], part_rows=100)
    pending = path / ".pending-00000.arrows"
    assert sorted(p.name for p in path.iterdir()) == [pending.name]
    os.truncate(pending, pending.stat().st_size - 1000)  # inside the last batch's data
    assert _keys(path) == ["a", "b", "c"]
    _write(path, [[_row("e")]])
    assert sorted(p.name for p in path.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    assert pq.read_table(path).column("path").to_pylist() == ["a", "b", "c", "e"]


def test_a_pending_stream_whose_part_exists_is_dropped(tmp_path: Path) -> None:
    """Killed after writing a part but before deleting its pending stream: the rows are not doubled."""
    path = tmp_path / "report.parquet"
    _crash(path, [["a"], ["b"]], part_rows=100)
    pending = path / ".pending-00000.arrows"
    kept = tmp_path / "pending-copy"
    shutil.copy(pending, kept)
    _write(path, [])  # recovers the stream into part 0
    assert sorted(p.name for p in path.iterdir()) == ["part-00000.parquet"]
    shutil.copy(kept, pending)
    _write(path, [[_row("c")]])
    assert not pending.exists()
    assert _keys(path) == ["a", "b", "c"]
    assert pq.read_table(path).column("path").to_pylist() == ["a", "b", "c"]


def test_stale_temps_are_ignored_then_removed(tmp_path: Path) -> None:
    path = tmp_path / "report.parquet"
    _write(path, [[_row("/a.jpg")]])
    temp_dir = path / ".part-00001.parquet.0123abcd.roost-tmp"  # killed while writing part 1
    temp_dir.mkdir()
    (temp_dir / "part-00001.parquet").write_bytes(b"PAR1 half a part")
    (path / ".part-00001.parquet.89abcdef.roost-tmp").write_bytes(b"PAR1")
    assert _keys(path) == ["/a.jpg"]
    assert pq.read_table(path).num_rows == 1
    _write(path, [[_row("/b.jpg")]])
    assert sorted(p.name for p in path.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    assert _keys(path) == ["/a.jpg", "/b.jpg"]


# ---------------------------------------------------------------- every write reaches the disk


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_write_is_readable_at_once(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"report.{fmt}"
    written: list[str] = []
    with open_report(path, REPORT_SCHEMA, part_rows=3) as writer:
        for batch in (["a", "b"], ["c"], ["d"], ["e", "f", "g"], ["h"]):
            writer.write([_row(k) for k in batch])
            written += batch
            assert _keys(path) == written  # read from the disk, not from the writer
    assert _keys(path) == written


def test_parquet_rows_are_compacted_into_parts_at_part_rows(tmp_path: Path) -> None:
    path = tmp_path / "report.parquet"

    def files() -> list[str]:
        return sorted(p.name for p in path.iterdir())

    with open_report(path, REPORT_SCHEMA, part_rows=3) as writer:
        writer.write([_row("a"), _row("b")])
        assert files() == [".pending-00000.arrows"]
        writer.write([_row("c")])  # 3 rows: a part
        assert files() == ["part-00000.parquet"]
        writer.write([_row("d"), _row("e"), _row("f"), _row("g")])  # a batch is never split
        assert files() == ["part-00000.parquet", "part-00001.parquet"]
        writer.write([_row("h")])
        assert files() == [".pending-00002.arrows", "part-00000.parquet", "part-00001.parquet"]
    assert files() == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    counts = [pq.read_metadata(path / f"part-0000{i}.parquet").num_rows for i in range(3)]
    assert counts == [3, 4, 1]


def test_part_rows_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="part_rows"):
        open_report(tmp_path / "r.parquet", REPORT_SCHEMA, part_rows=0)


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_report_of_another_job_is_refused_unchanged(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"report.{fmt}"
    _write(path, [[_row("/a.jpg")]])
    before = sorted(path.iterdir()) if fmt == "parquet" else path.read_bytes()
    with pytest.raises(ReportError, match=r"written by another job.*give a new report file"):
        open_report(path, embed_schema(8))
    assert (sorted(path.iterdir()) if fmt == "parquet" else path.read_bytes()) == before
    assert _keys(path) == ["/a.jpg"]


def test_a_csv_or_jsonl_report_that_is_a_folder(tmp_path: Path) -> None:
    for name in ("report.csv", "report.jsonl"):
        (tmp_path / name).mkdir()
        with pytest.raises(ReportError, match="is a folder"):
            check_writable(tmp_path / name)


def test_a_parquet_report_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "report.parquet"
    pq.write_table(pa.table({"path": ["a"]}), path)
    with pytest.raises(ReportError, match="is a file"):
        open_report(path, REPORT_SCHEMA)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_report_under_a_file_is_not_writable(tmp_path: Path, fmt: str) -> None:
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    path = tmp_path / "notes.txt" / "sub" / f"report.{fmt}"
    with pytest.raises(ReportError, match="not a writable folder"):
        open_report(path, REPORT_SCHEMA)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits, so a folder cannot be read-only")
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_report_in_a_read_only_folder(tmp_path: Path, fmt: str) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(ReportError, match="not a writable folder"):
            check_writable(folder / f"report.{fmt}")
    finally:
        folder.chmod(0o755)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits, so a file cannot be read-only")
def test_a_read_only_report_file(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    _write(path, [[_row("/a.jpg")]])
    path.chmod(0o444)
    with pytest.raises(ReportError, match="read-only"):
        check_writable(path)


def test_missing_folders_of_a_new_report_are_created(tmp_path: Path) -> None:
    for fmt in FORMATS:
        path = tmp_path / "a" / fmt / f"report.{fmt}"
        check_writable(path)
        _write(path, [[_row("/x.jpg")]])
        assert _keys(path) == ["/x.jpg"]
