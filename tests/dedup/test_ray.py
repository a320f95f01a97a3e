"""``roost dedup --engine ray``: fingerprints computed in Ray Data tasks give the local engine's report."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from roost.dedup import dedup_files
from roost.dedup.groups import REPORT_SCHEMA
from roost.jobs.base import RunOptions
from roost.jobs.report import read_rows

pytest.importorskip("ray")


@pytest.mark.slow
def test_the_ray_engine_gives_the_local_report(workspace: Path, tmp_path: Path) -> None:
    from roost.jobs.ray import RayOptions

    (workspace / "broken.jpg").write_bytes(b"\xff\xd8\xff broken")
    run = RunOptions(workers=0, batch_size=4)
    local = dedup_files([workspace], report=tmp_path / "local.csv", run=run)
    remote = dedup_files([workspace], report=tmp_path / "ray.csv", run=run, ray=RayOptions(local_cpus=2))
    assert (remote.processed, remote.errors, remote.counts) == (local.processed, local.errors, local.counts) == (
        remote.processed, 1, {"groups": 2, "duplicates": 22})  # fmt: skip

    def rows(name: str) -> list[dict]:
        return [r | {"path": os.path.relpath(r["path"], workspace)} for r in read_rows(tmp_path / name, REPORT_SCHEMA)]

    assert rows("ray.csv") == rows("local.csv")
