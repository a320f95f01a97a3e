"""``build_index`` / ``search_index``: each indexed query finds itself first, incremental builds, refusals."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pytest
from PIL import Image

import roost.index as index_module
from roost.errors import SearchIndexError
from roost.index import build_index, load_index, search_index, vector_index
from roost.jobs.base import Dtype, RunOptions
from roost.jobs.embed import EMBED_SCHEMA_ANY
from roost.jobs.report import read_rows
from tests.conftest import SHARED

CHECKPOINTS = SHARED / "fixtures" / "checkpoints"
PE = CHECKPOINTS / "rope_i_vit_reg1_s16_pn_npn_avg_c1_tiny-pe.pt"
PLACES = CHECKPOINTS / "rope_vit_reg4_b14_tiny-places.pt"
RUN = RunOptions(workers=0, batch_size=4, dtype=Dtype.FP32)
pytestmark = pytest.mark.skipif(not PE.exists(), reason="shared fixtures not present")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small real photos in one folder, three more in another (to extend the index with)."""
    root = tmp_path_factory.mktemp("photos")
    for i, photo in enumerate(sorted((SHARED / "photos").glob("*.jpg"))[:9]):
        folder = root / ("first" if i < 6 else "more")
        folder.mkdir(exist_ok=True)
        Image.open(photo).convert("RGB").resize((160, 100)).save(folder / photo.name, quality=90)
    return root


def test_indexed_queries_find_themselves_first_and_the_index_extends(photos: Path, tmp_path: Path, one_thread) -> None:
    out = tmp_path / "photos.index"
    first = build_index([photos / "first"], model=PE, output=out, options=RUN)
    assert first.counts["indexed"] == 6 and first.done_before == 0
    grown = build_index([photos / "first", photos / "more"], model=PE, output=out, options=RUN)
    assert (grown.done_before, grown.processed, grown.counts["indexed"]) == (6, 3, 9)  # only the new ones
    queries = sorted((photos / "first").iterdir()) + sorted((photos / "more").iterdir())
    rows = search_index(out, queries, k=3)
    for query in queries:
        hits = [r for r in rows if r["query"] == str(query)]
        assert [r["rank"] for r in hits] == [1, 2, 3]
        assert (hits[0]["path"], hits[0]["similarity"]) == (str(query), 1.0)
        assert all(0.0 <= r["similarity"] <= 1.0 for r in hits) and len({r["path"] for r in hits}) == 3


def test_a_query_outside_the_index_is_embedded_with_its_model(photos: Path, tmp_path: Path, one_thread) -> None:
    out = tmp_path / "photos.index"
    build_index([photos / "first"], model=PE, output=out, options=RUN)
    original = sorted((photos / "first").iterdir())[0]
    copy = tmp_path / "copy.png"
    Image.open(original).save(copy)  # the same pixels, not indexed
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    rows = search_index(out, [copy, bad], k=2, options=RUN)
    hit = next(r for r in rows if r["query"] == str(copy))
    assert hit["rank"] == 1 and hit["path"] == str(original) and hit["similarity"] > 0.999
    failed = next(r for r in rows if r["query"] == str(bad))
    assert failed["rank"] is None and "bad.jpg" in failed["error"]


def test_another_model_and_a_half_written_index_are_refused(photos: Path, tmp_path: Path, one_thread) -> None:
    out = tmp_path / "photos.index"
    build_index([photos / "first"], model=PE, output=out, options=RUN)
    report = out / "embeddings.parquet"
    parts = sorted(p.name for p in report.iterdir())
    with pytest.raises(SearchIndexError, match="made with"):
        build_index([photos / "more"], model=PLACES, output=out, options=RUN)
    assert sorted(p.name for p in report.iterdir()) == parts  # refused before embedding anything
    renamed = tmp_path / "rope_i_vit_reg1_s16_pn_npn_avg_c1_copy.pt"
    shutil.copyfile(PE, renamed)  # the same weights under another name are the same model
    assert build_index([photos / "first"], model=renamed, output=out, options=RUN).done_before == 6
    np.save(out / "vectors.npy", np.load(out / "vectors.npy")[:5])  # as if killed between two files
    with pytest.raises(SearchIndexError, match="run roost index again"):
        load_index(out)
    (out / "meta.json").unlink()
    with pytest.raises(SearchIndexError, match="not a finished"):
        search_index(out, [next((photos / "first").iterdir())])


def test_large_collections_get_an_approximate_index_with_high_recall(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(50, 64)).astype(np.float32)
    vectors = centres[rng.integers(0, 50, 5000)] + 0.3 * rng.normal(size=(5000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    exact, kind = vector_index(vectors)
    assert kind == "exact"
    monkeypatch.setattr(index_module, "APPROX_FROM", 1000)
    approx, kind = vector_index(vectors)
    assert kind.startswith("approximate")
    queries = vectors[:200]
    truth = exact.search(queries, 10)[1]  # type: ignore[call-arg]
    found = approx.search(queries, 10)[1]  # type: ignore[call-arg]
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=True)])
    assert recall >= 0.9


def test_an_approximate_index_is_extended_in_place(photos: Path, tmp_path: Path, monkeypatch, one_thread) -> None:
    monkeypatch.setattr(index_module, "APPROX_FROM", 5)
    out = tmp_path / "photos.index"
    build_index([photos / "first"], model=PE, output=out, options=RUN)
    first = load_index(out)
    assert isinstance(first.faiss_index, faiss.IndexHNSWFlat) and first.faiss_index.ntotal == 6
    build_index([photos / "first", photos / "more"], model=PE, output=out, options=RUN)
    grown = load_index(out)
    assert isinstance(grown.faiss_index, faiss.IndexHNSWFlat) and grown.faiss_index.ntotal == 9
    labels = grown.faiss_index.search(grown.vectors, 1)[1]  # type: ignore[call-arg]
    assert labels[:, 0].tolist() == list(range(9))  # the added vectors are found at their own rows


@pytest.mark.slow
def test_a_killed_build_resumes(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "photos.index"
    command = [sys.executable, "-m", "roost", "index", str(photos), "-r", "-m", str(PE), "-o", str(out), "-b", "1",
               "-j", "0", "-q", "--dtype", "fp32"]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report, deadline = out / "embeddings.parquet", time.monotonic() + 120
    while sum(1 for _ in read_rows(report, EMBED_SCHEMA_ANY, ["path"])) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = sum(1 for _ in read_rows(report, EMBED_SCHEMA_ANY, ["path"]))
    assert 2 <= done < 9 and not (out / "meta.json").exists()
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert resumed.returncode == 0 and f"{done} done before" in resumed.stderr, resumed.stderr
    assert len(load_index(out).paths) == 9
