"""The Ray engine against the local engine on real photos, on a local loopback Ray with 2 CPUs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from roost.inference import jobs, ray_engine
from roost.inference.ray_engine import JobSpec, RayOptions, read_output, run_files
from tests.conftest import SHARED

ray = pytest.importorskip("ray")

ROTNET = SHARED / "fixtures" / "checkpoints" / "rope_vit_reg8_so150m_p14_swiglu_rms_ap_tiny-rotnet.pt"
OPTIONS = jobs.RunOptions(batch_size=8, workers=0, progress=False)
RAY = RayOptions(concurrency=1, decode_batch_size=8)
pytestmark = pytest.mark.skipif(not ROTNET.exists(), reason="shared fixtures not present")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """38 inputs: 18 photos each rotated twice (JPEG and PNG) plus an empty and a truncated file."""
    folder = tmp_path_factory.mktemp("photos")
    for i, src in enumerate(sorted((SHARED / "photos").glob("*.jpg"))):
        image = Image.open(src).convert("RGB").reduce(2)
        for angle, suffix in ((90 * (i % 4), ".jpg"), (90 * ((i + 1) % 4), ".png")):
            image.rotate(angle, expand=True).save(folder / f"{src.stem}_{angle}{suffix}")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes((SHARED / "photos" / "kite.jpg").read_bytes()[:3000])
    return folder


def assert_same_rows(got: list[dict], expected: list[dict]) -> None:
    got, expected = sorted(got, key=lambda r: r["path"]), sorted(expected, key=lambda r: r["path"])
    assert [r["path"] for r in got] == [r["path"] for r in expected]
    for g, e in zip(got, expected, strict=True):
        assert g.keys() == e.keys()
        for key, value in e.items():
            if isinstance(value, float | list):  # raw embeddings (|x| up to ~3): fp32 batch-composition noise
                rtol = 1e-5 if key == "embedding" else 0
                np.testing.assert_allclose(g[key], value, rtol=rtol, atol=1e-6, err_msg=f"{e['path']} {key}")
            else:
                assert g[key] == value, (e["path"], key)


def test_orient_with_fix_matches_local_and_resumes(photos: Path, tmp_path: Path) -> None:
    fix = jobs.OrientOptions(fix="copy", output=tmp_path / "upright-local")
    local = jobs.orient_files([photos], model=str(ROTNET), fix=fix, options=OPTIONS)
    assert any(r["action"] == "rotated (lossless)" for r in local)

    fix = jobs.OrientOptions(fix="copy", output=tmp_path / "upright-ray")
    out = tmp_path / "orient.parquet"
    summary = run_files([photos], JobSpec("orient", str(ROTNET)), output=out, options=OPTIONS, ray_options=RAY, fix=fix)
    assert (summary.rows, summary.errors, summary.skipped) == (len(local), 2, 0)
    assert_same_rows(read_output(out), local)
    local_copies = {p.name: p.read_bytes() for p in (tmp_path / "upright-local").iterdir()}
    assert {p.name: p.read_bytes() for p in (tmp_path / "upright-ray").iterdir()} == local_copies

    # A re-run skips everything; with one shard lost it redoes exactly that shard's paths.
    shards = sorted(out.glob("shard-*.parquet"))
    again = run_files([photos], JobSpec("orient", str(ROTNET)), output=out, options=OPTIONS, ray_options=RAY, fix=fix)
    assert (again.rows, again.skipped) == (0, len(local))
    lost = len(ray_engine.pq.read_table(shards[0]))
    shards[0].unlink()
    again = run_files([photos], JobSpec("orient", str(ROTNET)), output=out, options=OPTIONS, ray_options=RAY, fix=fix)
    assert (again.rows, again.skipped) == (lost, len(local) - lost)
    assert_same_rows(read_output(out), local)


def test_predict_matches_local(photos: Path, tmp_path: Path) -> None:
    local = jobs.predict_files([photos], model=str(ROTNET), topk=3, options=OPTIONS)
    out = tmp_path / "predict.parquet"
    run_files([photos], JobSpec("predict", str(ROTNET), topk=3), output=out, options=OPTIONS, ray_options=RAY)
    assert_same_rows(read_output(out), local)


def test_embed_from_uris_matches_local(photos: Path, tmp_path: Path) -> None:
    """``file://`` URIs go through ``read_binary_files`` (bytes), like S3 or GCS would."""
    local = jobs.embed_files([photos], model=str(ROTNET), output=tmp_path / "local.parquet", options=OPTIONS)
    for row in local:
        row["path"] = Path(row["path"]).as_uri()
        row["error"] = row["error"] and row["error"].split(":")[0]  # the message names bytes, not the path
    out = tmp_path / "embed.parquet"
    run_files([photos.as_uri()], JobSpec("embed", str(ROTNET)), output=out, options=OPTIONS, ray_options=RAY)
    got = read_output(out)
    for row in got:
        row["error"] = row["error"] and row["error"].split(":")[0]
    assert_same_rows(got, local)


def flaky_actor(marker: Path) -> type[ray_engine.ModelActor]:
    """A model actor whose process dies on its first batch, once (the marker file remembers)."""

    class FlakyActor(ray_engine.ModelActor):
        def __call__(self, batch):
            if not marker.exists():
                marker.touch()
                os._exit(1)
            return super().__call__(batch)

    return FlakyActor


def test_a_killed_actor_loses_and_duplicates_nothing(photos: Path, tmp_path: Path) -> None:
    marker, out = tmp_path / "died", tmp_path / "orient.parquet"
    actor = flaky_actor(marker)
    summary = run_files([photos], JobSpec("orient", str(ROTNET)), output=out, options=OPTIONS, ray_options=RAY,
                        actor=actor)  # fmt: skip
    assert marker.exists(), "the actor should have died once"
    rows = read_output(out)
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)) == summary.rows == len(list(photos.iterdir()))
    assert_same_rows(rows, jobs.orient_files([photos], model=str(ROTNET), options=OPTIONS))


def test_cli_engine_ray(photos: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from roost.cli.app import app

    report = tmp_path / "report.parquet"
    args = ["orient", str(photos), "-m", str(ROTNET), "--report", str(report), "--engine", "ray", "--quiet", "-b", "8"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert sorted(r["path"] for r in read_output(report)) == sorted(str(p) for p in photos.iterdir())
    result = CliRunner().invoke(app, [*args[:4], str(tmp_path / "report.csv"), *args[5:]])
    assert result.exit_code == 2 and "Parquet" in result.output
