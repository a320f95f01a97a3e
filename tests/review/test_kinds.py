"""A report's kind is read from its columns, in every report format; its current rows come back typed."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from roost.errors import ReportError
from roost.jobs.embed import embed_schema
from roost.jobs.orient import REPORT_SCHEMA
from roost.jobs.predict import predict_schema
from roost.jobs.report import open_report
from roost.review.kinds import DEDUP_SCHEMA, Kind, read_report

ROWS = {
    Kind.ORIENT: (REPORT_SCHEMA, {"path": "/p/a.jpg", "rotation": 90, "confidence": 0.75, "p0": 0.125, "p90": 0.75,
                                  "p180": 0.0625, "p270": 0.0625, "action": "rotate", "fix": None, "output": None,
                                  "error": None}),
    Kind.PREDICT: (predict_schema(2), {"path": "/p/a.jpg", "label_1": "beach", "prob_1": 0.5, "label_2": "dune",
                                       "prob_2": 0.25, "error": None}),
    Kind.DEDUP: (DEDUP_SCHEMA, {"path": "/p/a.jpg", "group": 3, "keeper": "true", "match": "near",
                                "similarity": 0.5, "error": None}),
    Kind.EMBED: (embed_schema(3), {"path": "/p/a.jpg", "embedding": [0.5, 0.25, -1.0], "error": None}),
}  # fmt: skip


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
@pytest.mark.parametrize("kind", list(Kind))
def test_kind_and_rows_round_trip(tmp_path: Path, kind: Kind, suffix: str) -> None:
    schema, row = ROWS[kind]
    path = tmp_path / f"r.{suffix}"
    later = row | {"error": "ImageError: later run"}
    with open_report(path, schema) as writer:
        writer.write([row, row | {"path": "/p/b.jpg"}])
        writer.write([later])  # a re-run: the last row of a path is the current one
    report = read_report(path)
    assert report.kind is kind
    assert [r["path"] for r in report.rows] == ["/p/a.jpg", "/p/b.jpg"]
    expected = later | ({"keeper": True} if kind is Kind.DEDUP else {})
    assert report.rows[0] == {name: expected.get(name) for name in report.schema.names}


def test_dedup_keeper_given_as_a_path(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    rows = [{"path": p, "group": 0, "keeper": "/p/b.jpg", "match": "exact", "similarity": 1.0, "error": None}
            for p in ("/p/a.jpg", "/p/b.jpg")]  # fmt: skip
    with open_report(path, DEDUP_SCHEMA) as writer:
        writer.write(rows)
    assert [r["keeper"] for r in read_report(path).rows] == [False, True]


def test_unknown_columns_and_missing_report(tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    with open_report(other, pa.schema([("path", pa.string()), ("score", pa.float32()), ("error", pa.string())])) as w:
        w.write([{"path": "/a", "score": 1.0, "error": None}])
    with pytest.raises(ReportError, match=r"not an orient, predict, dedup or embed report.*score"):
        read_report(other)
    with pytest.raises(FileNotFoundError):
        read_report(tmp_path / "missing.csv")
    with pytest.raises(ReportError, match="unknown report format"):
        (tmp_path / "r.txt").write_text("path\n")
        read_report(tmp_path / "r.txt")


def test_parquet_report_of_a_run_still_going(tmp_path: Path) -> None:
    """Before its first part is written, a Parquet report's rows wait in a pending stream: they are read."""
    schema, row = ROWS[Kind.ORIENT]
    writer = open_report(tmp_path / "r.parquet", schema)
    writer.write([row])
    assert not list((tmp_path / "r.parquet").glob("part-*"))
    assert read_report(tmp_path / "r.parquet").rows == [row]
    writer.close()
