"""The Ray engine against the local engine on real photos, on a local loopback Ray with 2 CPUs: the same rows
in the same report, resume, fixes applied once by the driver, and a killed actor losing nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from roost.jobs.base import RunOptions
from roost.jobs.embed import EMBED_SCHEMA_ANY, embed_files
from roost.jobs.orient import REPORT_SCHEMA, orient_files
from roost.jobs.predict import predict_files, predict_schema
from roost.jobs.ray import ModelActor, RayOptions
from roost.jobs.report import read_rows
from tests.conftest import SHARED

ray = pytest.importorskip("ray")

ROTNET = SHARED / "fixtures" / "checkpoints" / "rope_vit_reg8_so150m_p14_swiglu_rms_ap_tiny-rotnet.pt"
OPTIONS = RunOptions(batch_size=8, workers=0)
RAY = RayOptions(concurrency=1, decode_batch_size=8)
pytestmark = [pytest.mark.skipif(not ROTNET.exists(), reason="shared fixtures not present"), pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """22 inputs: 10 photos each rotated twice (JPEG and PNG) plus an empty and a truncated file."""
    folder = tmp_path_factory.mktemp("photos")
    for i, src in enumerate(sorted((SHARED / "photos").glob("*.jpg"))[:10]):
        image = Image.open(src).convert("RGB").reduce(4)
        for angle, suffix in ((90 * (i % 4), ".jpg"), (90 * ((i + 1) % 4), ".png")):
            image.rotate(angle, expand=True).save(folder / f"{src.stem}_{angle}{suffix}")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes((SHARED / "photos" / "kite.jpg").read_bytes()[:3000])
    return folder


def rows_of(report: Path, schema: Any) -> list[dict]:
    return sorted(read_rows(report, schema), key=lambda r: r["path"])


def assert_same_rows(got: list[dict], expected: list[dict]) -> None:
    assert [r["path"] for r in got] == [r["path"] for r in expected]
    for g, e in zip(got, expected, strict=True):
        for key, value in e.items():
            if isinstance(value, float | list):  # fp32 batch-composition noise
                np.testing.assert_allclose(g[key], value, rtol=1e-5, atol=1e-6, err_msg=f"{e['path']} {key}")
            elif key == "output" and value is not None:
                assert Path(g[key]).name == Path(value).name
            else:
                assert g[key] == value, (e["path"], key)


def test_orient_with_fix_matches_local_and_resumes(photos: Path, tmp_path: Path) -> None:
    local, remote = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    orient_files([photos], model=ROTNET, report=local, fix="copy", output_dir=tmp_path / "up-local",
                 threshold=0.0, options=OPTIONS)  # fmt: skip
    summary = orient_files([photos], model=ROTNET, report=remote, fix="copy", output_dir=tmp_path / "up-ray",
                           threshold=0.0, options=OPTIONS, ray=RAY)  # fmt: skip
    assert (summary.processed, summary.errors) == (len(list(photos.iterdir())), 2)
    assert_same_rows(rows_of(remote, REPORT_SCHEMA), rows_of(local, REPORT_SCHEMA))
    copies = {p.name: p.read_bytes() for p in (tmp_path / "up-local").iterdir()}
    assert {p.name: p.read_bytes() for p in (tmp_path / "up-ray").iterdir()} == copies
    again = orient_files([photos], model=ROTNET, report=remote, fix="copy", output_dir=tmp_path / "up-ray",
                         threshold=0.0, options=OPTIONS, ray=RAY)  # fmt: skip
    assert (again.processed, again.done_before) == (0, summary.processed)


def test_predict_and_embed_from_uris_match_local(photos: Path, tmp_path: Path) -> None:
    predict_files([photos], model=ROTNET, topk=3, report=tmp_path / "l.csv", options=OPTIONS)
    predict_files([photos], model=ROTNET, topk=3, report=tmp_path / "r.csv", options=OPTIONS, ray=RAY)
    assert_same_rows(rows_of(tmp_path / "r.csv", predict_schema(3)), rows_of(tmp_path / "l.csv", predict_schema(3)))
    embed_files([photos], model=ROTNET, report=tmp_path / "l.parquet", options=OPTIONS)
    embed_files([photos.as_uri()], model=ROTNET, report=tmp_path / "r.parquet", options=OPTIONS, ray=RAY)
    local = rows_of(tmp_path / "l.parquet", EMBED_SCHEMA_ANY)
    for row in local:  # URIs read as bytes: the key is the URI, the message names the bytes
        row["path"], row["error"] = Path(row["path"]).as_uri(), row["error"] and row["error"].split(":")[0]
    got = rows_of(tmp_path / "r.parquet", EMBED_SCHEMA_ANY)
    for row in got:
        row["error"] = row["error"] and row["error"].split(":")[0]
    assert_same_rows(got, local)


def flaky_actor(marker: Path) -> type[ModelActor]:
    """A model actor whose process dies on its first batch, once (the marker file remembers)."""

    class FlakyActor(ModelActor):
        def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            if not marker.exists():
                marker.touch()
                os._exit(1)
            return super().__call__(batch)

    return FlakyActor


def test_a_killed_actor_loses_and_duplicates_nothing(photos: Path, tmp_path: Path) -> None:
    marker = tmp_path / "died"
    options = RayOptions(concurrency=1, decode_batch_size=8, actor=flaky_actor(marker))
    orient_files([photos], model=ROTNET, report=tmp_path / "r.csv", options=OPTIONS, ray=options)
    assert marker.exists(), "the actor should have died once"
    rows = list(read_rows(tmp_path / "r.csv", REPORT_SCHEMA))
    assert len(rows) == len({r["path"] for r in rows}) == len(list(photos.iterdir()))
    orient_files([photos], model=ROTNET, report=tmp_path / "l.csv", options=OPTIONS)
    assert_same_rows(sorted(rows, key=lambda r: r["path"]), rows_of(tmp_path / "l.csv", REPORT_SCHEMA))


def test_cli_engine_ray(photos: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from roost.cli.app import app

    report = tmp_path / "report.csv"
    args = ["orient", str(photos), "-m", str(ROTNET), "--report", str(report), "--engine", "ray", "-q", "-b", "8"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output + repr(result.exception)  # the empty and truncated files
    assert sorted(r["path"] for r in read_rows(report, REPORT_SCHEMA)) == sorted(str(p) for p in photos.iterdir())
