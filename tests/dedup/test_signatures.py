"""Fingerprints: which copies share bytes, pixels or perceptual hashes; the fingerprint cache resumes."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from roost.dedup.groups import hash_distance
from roost.dedup.signatures import FINGERPRINT_SCHEMA, FingerprintJob, fingerprint, local_fingerprints, unpack
from roost.jobs.base import RunOptions
from roost.jobs.engine import run
from roost.jobs.inputs import expand
from roost.jobs.report import last_rows
from tests.dedup.families import ORIENTATION


@pytest.fixture(scope="module")
def photo(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photo")
    image = Image.open(shared_dir / "photos" / "kite.jpg").convert("RGB").resize((320, 200))
    image.save(folder / "kite.png")
    return folder / "kite.png"


def values(path: Path) -> dict:
    return unpack(fingerprint(os.fspath(path)))


def test_png_of_a_jpegs_pixels_shares_the_pixel_hash_not_the_bytes(shared_dir: Path, tmp_path: Path) -> None:
    jpeg = shared_dir / "photos" / "kite.jpg"
    Image.open(jpeg).save(tmp_path / "kite.png")
    a, b = values(jpeg), values(tmp_path / "kite.png")
    assert a["pixels_hash"] == b["pixels_hash"] and a["bytes_hash"] != b["bytes_hash"]
    assert (a["width"], a["height"]) == (1024, 640) and a["size"] == jpeg.stat().st_size


def test_lossless_rotation_and_exif_turn_share_the_pixel_hash(photo: Path, tmp_path: Path) -> None:
    image = Image.open(photo)
    image.rotate(90, expand=True).save(tmp_path / "turned.png")
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # displayed turned 90° clockwise
    image.rotate(90, expand=True).save(tmp_path / "tagged.png", exif=exif)
    pixels = {values(p)["pixels_hash"] for p in (photo, tmp_path / "turned.png", tmp_path / "tagged.png")}
    assert len(pixels) == 1
    brighter = Image.eval(image, lambda v: min(255, v + 1))
    brighter.save(tmp_path / "brighter.png")
    assert values(tmp_path / "brighter.png")["pixels_hash"] not in pixels  # one grey level differs


def test_perceptual_hashes_see_rotations_and_tell_photos_apart(shared_dir: Path, photo: Path, tmp_path: Path) -> None:
    image = Image.open(photo)
    image.rotate(270, expand=True).convert("L").save(tmp_path / "gray_turned.jpg", quality=60)
    other = shared_dir / "photos" / "storm.jpg"
    files = (photo, tmp_path / "gray_turned.jpg", other)
    hashes = {p.name: fingerprint(os.fspath(p))[-128:-64].reshape(8, 8) for p in files}  # the phashes
    assert hash_distance(hashes["kite.png"], hashes["gray_turned.jpg"]) <= 4
    assert hash_distance(hashes["kite.png"], hashes["storm.jpg"]) >= 14


def test_bad_files_become_error_rows_and_the_cache_resumes(photo: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copyfile(photo, folder / "a.png")
    shutil.copyfile(photo, folder / "b.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    cache = tmp_path / "cache.parquet"
    items = expand([folder])
    first = run(FingerprintJob(), items, local_fingerprints(RunOptions(workers=0, batch_size=2)), report=cache)
    assert (first.processed, first.errors) == (3, 1)
    rows = last_rows(cache, FINGERPRINT_SCHEMA, FINGERPRINT_SCHEMA.names)
    assert "broken.jpg" in rows[str(folder / "broken.jpg")]["error"]
    again = run(FingerprintJob(), items, local_fingerprints(RunOptions(workers=0)), report=cache)
    assert (again.done_before, again.processed) == (2, 1)  # the bad file is tried again, the others are not
    os.utime(folder / "b.png", ns=(0, 0))  # changed since: fingerprinted again
    third = run(FingerprintJob(), items, local_fingerprints(RunOptions(workers=0)), report=cache)
    assert third.done_before == 1 and third.processed == 2


def test_the_packed_layout_round_trips(photo: Path) -> None:
    packed = fingerprint(os.fspath(photo))
    row = unpack(packed)
    assert len(row["hashes"]) == 2 * 8 * 16 and np.frombuffer(bytes.fromhex(row["hashes"]), np.uint8).size == 128
