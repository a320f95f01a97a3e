"""``--fix xmp`` and HEIC/AVIF in the orient and predict jobs: each photo judged as a viewer shows it, sidecars
whose orientation makes it upright, originals byte-identical after every fix mode, nothing doubled on a
rerun or after a crash, and predict's labels as keywords."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pillow_heif
import pytest
from PIL import Image, ImageOps

from roost.data.decode import load_image
from roost.errors import OrientFixError
from roost.files.exif import ROTATIONS, display
from roost.files.heif import container_orientation
from roost.files.xmp import Naming, merge_sidecar, read_keywords, read_orientation, sidecar_path
from roost.jobs.base import RunOptions
from roost.jobs.orient import (
    ACTION_FAILED,
    ACTION_REENCODED_COPY,
    ACTION_XMP,
    REPORT_SCHEMA,
    Fix,
    OrientJob,
    file_orientation,
    fixed_bytes,
    journal_path,
    orient_files,
)
from roost.jobs.predict import predict_files, predict_schema
from roost.jobs.report import last_rows
from tests.conftest import SHARED

ROTNET = SHARED / "fixtures" / "checkpoints" / "rope_vit_reg8_so150m_p14_swiglu_rms_ap_tiny-rotnet.pt"
PLACES = SHARED / "fixtures" / "checkpoints" / "rope_vit_reg4_b14_tiny-places.safetensors"
OPTIONS = RunOptions(workers=0, batch_size=4)
pytestmark = pytest.mark.skipif(not ROTNET.exists(), reason="shared fixtures not present")


def photo(name: str = "kite", size: tuple[int, int] = (96, 64)) -> Image.Image:
    return Image.open(SHARED / "photos" / f"{name}.jpg").convert("RGB").resize(size)


def exif(orientation: int) -> bytes:
    tags = Image.Exif()
    tags[0x0112] = orientation
    return tags.tobytes()


def encode(image: Image.Image, fmt: str, orientation: int = 1) -> bytes:
    """``image`` stored with ``orientation``: the EXIF tag (JPEG), the container transform (HEIC, AVIF)."""
    buf = io.BytesIO()
    if fmt == "heic":
        pillow_heif.from_pillow(image).save(buf, quality=95, exif=exif(orientation))
    elif fmt == "avif":
        image.save(buf, format="AVIF", quality=95, subsampling="4:4:4", exif=exif(orientation))
    else:
        image.save(buf, format="JPEG", quality=95, exif=exif(orientation))
    return buf.getvalue()


def make_phone_folder(folder: Path) -> dict[str, Path]:
    """HEIC, AVIF and JPEG photos, pixel-rotated and orientation-tagged, so that some show rotated."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = [("kite", "heic", 90, 6), ("dune", "heic", 0, 3), ("garden", "avif", 270, 1), ("wood", "avif", 0, 8),
             ("storm", "heic", 180, 1), ("path", "jpg", 90, 6)]  # fmt: skip
    out = {}
    for name, fmt, angle, orientation in specs:
        path = folder / f"{name}.{fmt}"
        path.write_bytes(encode(photo(name).rotate(angle, expand=True), fmt, orientation))
        out[name] = path
    return out


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hashes(folder: Path) -> dict[str, str]:
    return {p.name: sha(p) for p in sorted(folder.iterdir()) if p.is_file() and p.suffix != ".xmp"}


def rows(report: Path) -> dict[str, dict[str, Any]]:
    return {Path(k).name: r for k, r in last_rows(report, REPORT_SCHEMA, REPORT_SCHEMA.names).items()}


def orient(*inputs: Path, **kwargs: Any):
    return orient_files(list(inputs), model=ROTNET, **({"threshold": 0.0, "options": OPTIONS} | kwargs))


def upright(view: Image.Image, rotation: int) -> Image.Image:
    """The image the user wants: the view (seen rotated ``rotation`` CCW) turned back clockwise."""
    return view.rotate(-rotation, expand=True)


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and a.tobytes() == b.tobytes()


# ---------------------------------------------------------------------------------- the value written
@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["jpg", "heic", "avif"])
def test_the_sidecar_orientation_shows_the_stored_pixels_upright(fmt: str, orientation: int) -> None:
    """For every current orientation and rotation: the stored pixels shown with the sidecar's value are upright."""
    stored = photo(size=(6, 4))  # shown with ``orientation`` by a viewer: what the model saw
    data = encode(stored, fmt, orientation)
    assert file_orientation(Path(f"x.{fmt}"), data) == orientation
    view = display(stored, orientation)
    for rotation in ROTATIONS:
        sidecar, action = fixed_bytes(Path(f"x.{fmt}"), data, rotation, Fix.XMP)
        value = read_orientation(sidecar)
        assert action == ACTION_XMP and value is not None
        assert same(display(stored, value), upright(view, rotation)), (orientation, rotation, value)
        again, _ = fixed_bytes(Path(f"x.{fmt}"), data, rotation, Fix.XMP, sidecar=sidecar)
        assert again == sidecar  # a second application changes nothing
        older = merge_sidecar(None, orientation=(value % 8) + 1, keywords=["kept"])  # another program's value
        merged, _ = fixed_bytes(Path(f"x.{fmt}"), data, rotation, Fix.XMP, sidecar=older)
        assert read_orientation(merged) == value and read_keywords(merged) == ["kept"]


# ---------------------------------------------------------------------------------- the job
def test_heic_and_avif_are_judged_as_the_same_view_saved_as_png(tmp_path: Path) -> None:
    photos = make_phone_folder(tmp_path / "phone")
    pngs = tmp_path / "png"
    pngs.mkdir()
    for name, path in photos.items():
        data = path.read_bytes()
        if path.suffix == ".heic":
            view = pillow_heif.open_heif(io.BytesIO(data)).to_pillow()  # libheif's rendition: transforms applied
        else:
            view = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
        view.convert("RGB").save(pngs / f"{name}.png")
    orient(tmp_path / "phone", pngs, report=tmp_path / "r.csv")
    found = rows(tmp_path / "r.csv")
    assert len(found) == 2 * len(photos) and all(r["error"] is None for r in found.values())
    for name, path in photos.items():
        got, want = found[path.name], found[f"{name}.png"]
        assert got["rotation"] == want["rotation"]
        assert np.allclose([got[f"p{r}"] for r in ROTATIONS], [want[f"p{r}"] for r in ROTATIONS], atol=1e-5)


def test_fix_xmp_writes_sidecars_and_never_touches_a_photo(tmp_path: Path) -> None:
    photos = make_phone_folder(tmp_path / "phone")
    (tmp_path / "phone" / "kite.heic.xmp").write_bytes(merge_sidecar(None, keywords=["mine"]))
    before = hashes(tmp_path / "phone")
    report = tmp_path / "r.csv"
    summary = orient(tmp_path / "phone", report=report, fix="xmp")
    assert hashes(tmp_path / "phone") == before
    found = rows(report)
    rotated = {n for n, r in found.items() if r["rotation"] != 0}
    assert rotated, "the tiny model should find some photo rotated"
    assert summary.counts["fixed"] == len(rotated)
    for name, path in photos.items():
        row, sidecar = found[path.name], sidecar_path(path)
        if path.name not in rotated:
            assert row["fix"] is None and (name == "kite" or not sidecar.exists())
            continue
        assert (row["action"], row["fix"], row["output"]) == (ACTION_XMP, "xmp", str(sidecar))
        value = read_orientation(sidecar.read_bytes())
        assert value is not None
        if path.suffix == ".avif":  # Pillow decodes the coded pixels: check them shown with the value
            coded = Image.open(path).convert("RGB")
            assert same(display(coded, value), upright(display(coded, container_orientation(path.read_bytes())),
                                                        row["rotation"]))  # fmt: skip
    if "kite.heic" in rotated:
        assert read_keywords((tmp_path / "phone" / "kite.heic.xmp").read_bytes()) == ["mine"]
    sidecars = {p.name: p.read_bytes() for p in (tmp_path / "phone").glob("*.xmp")}
    again = orient(tmp_path / "phone", report=report, fix="xmp")
    assert again.counts.get("fixed", 0) == 0 and again.done_before == len(photos)
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "phone").glob("*.xmp")}
    orient(tmp_path / "phone", report=tmp_path / "fresh.csv", fix="xmp")  # no journal: computed again
    assert {p.name: p.read_bytes() for p in (tmp_path / "phone").glob("*.xmp")} == sidecars
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "phone").glob("*.xmp")} == stamps  # not rewritten
    assert all(r["fix"] == "xmp" for r in rows(tmp_path / "fresh.csv").values() if r["rotation"] != 0)
    assert hashes(tmp_path / "phone") == before


def test_lightroom_naming(tmp_path: Path) -> None:
    make_phone_folder(tmp_path / "phone")
    orient(tmp_path / "phone", report=tmp_path / "r.csv", fix="xmp", sidecar="replace")
    names = sorted(p.name for p in (tmp_path / "phone").glob("*.xmp"))
    assert names and all(n.count(".") == 1 for n in names)


@pytest.mark.parametrize("fix", ["exif", "inplace"])
def test_in_file_fixes_refuse_heic_and_avif_naming_fix_xmp(tmp_path: Path, fix: str) -> None:
    make_phone_folder(tmp_path / "phone")
    phone_only = lambda: {n: h for n, h in hashes(tmp_path / "phone").items() if n.endswith((".heic", ".avif"))}  # noqa: E731
    before = phone_only()
    orient(tmp_path / "phone", report=tmp_path / "r.csv", fix=fix)
    assert phone_only() == before  # no change, and no backup either
    refused = [r for n, r in rows(tmp_path / "r.csv").items() if not n.endswith(".jpg") and r["rotation"] != 0]
    assert refused
    for row in refused:
        assert row["action"] == ACTION_FAILED and "--fix xmp" in row["error"] and "\n" not in row["error"]


def test_copies_of_heic_and_avif_are_upright_reencoded_copies(tmp_path: Path) -> None:
    make_phone_folder(tmp_path / "phone")
    before = hashes(tmp_path / "phone")
    out = tmp_path / "upright"
    orient(tmp_path / "phone", report=tmp_path / "r.csv", fix="copy", output_dir=out)
    assert hashes(tmp_path / "phone") == before
    for name, row in rows(tmp_path / "r.csv").items():
        copy = out / name
        view = load_image(tmp_path / "phone" / name)
        if row["rotation"] == 0:
            assert copy.read_bytes() == (tmp_path / "phone" / name).read_bytes()
            continue
        if not name.endswith(".jpg"):
            assert row["action"] == ACTION_REENCODED_COPY
        want = upright(view, row["rotation"])
        got = load_image(copy)
        assert got.size == want.size
        assert np.abs(np.asarray(got, dtype=float) - np.asarray(want, dtype=float)).mean() < 6


def test_a_crash_after_a_sidecar_write_is_recovered_not_redone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run dies right after writing a sidecar (before its row): the rerun reports it from the journal."""
    make_phone_folder(tmp_path / "phone")
    report = tmp_path / "r.csv"
    import roost.jobs.orient as orient_module

    real = orient_module.atomic_write

    def write_then_die(path: Path, data: bytes, **kwargs: Any) -> None:
        real(path, data, **kwargs)
        raise SystemExit("killed")

    monkeypatch.setattr(orient_module, "atomic_write", write_then_die)
    with pytest.raises(SystemExit):
        orient(tmp_path / "phone", report=report, fix="xmp")
    monkeypatch.setattr(orient_module, "atomic_write", real)
    written = {p: p.read_bytes() for p in (tmp_path / "phone").glob("*.xmp")}
    assert len(written) == 1 and journal_path(report).exists()
    ((sidecar, content),) = written.items()
    stamp = sidecar.stat().st_mtime_ns
    orient(tmp_path / "phone", report=report, fix="xmp")
    assert sidecar.read_bytes() == content and sidecar.stat().st_mtime_ns == stamp  # not written again
    assert rows(report)[sidecar.name[:-4]]["fix"] == "xmp"


KILLER = """
import os, runpy, signal, sys
calls, replace = [0], os.replace
def killing_replace(*args, **kwargs):
    replace(*args, **kwargs)
    calls[0] += 1
    if calls[0] == int(os.environ["KILL_AFTER"]):
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = killing_replace
sys.argv[0] = "roost"
runpy.run_module("roost", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_sigkilled_after_each_sidecar_ends_as_an_uninterrupted_run(tmp_path: Path) -> None:
    make_phone_folder(tmp_path / "ref")
    orient(tmp_path / "ref", report=tmp_path / "ref.csv", fix="xmp", options=RunOptions(workers=0, batch_size=2))
    reference = {p.name: p.read_bytes() for p in (tmp_path / "ref").glob("*.xmp")}
    make_phone_folder(tmp_path / "phone")
    before = hashes(tmp_path / "phone")
    cmd = [sys.executable, "-c", KILLER, "orient", str(tmp_path / "phone"), "--model", str(ROTNET), "-q"]
    cmd += ["--threshold", "0", "--batch-size", "2", "--workers", "0", "--report", str(tmp_path / "r.csv")]
    cmd += ["--fix", "xmp"]
    env = os.environ | {"OMP_NUM_THREADS": "1", "KILL_AFTER": "1"}
    kills = 0
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    while done.returncode == -signal.SIGKILL and kills <= len(reference):
        kills += 1
        assert hashes(tmp_path / "phone") == before
        done = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert kills >= 1 and done.returncode in (0, 1), done.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "phone").glob("*.xmp")} == reference
    assert hashes(tmp_path / "phone") == before
    assert all(r["fix"] == "xmp" for r in rows(tmp_path / "r.csv").values() if r["rotation"] != 0)


# ---------------------------------------------------------------------------------- predict --xmp
def test_predict_adds_the_labels_as_keywords_once(tmp_path: Path) -> None:
    photos = make_phone_folder(tmp_path / "phone")
    kite = sidecar_path(photos["kite"])
    kite.write_bytes(merge_sidecar(None, orientation=6, keywords=["family"]))
    before = hashes(tmp_path / "phone")
    report = tmp_path / "p.csv"
    predict_files([tmp_path / "phone"], model=PLACES, report=report, topk=2, options=OPTIONS, xmp="append")
    assert hashes(tmp_path / "phone") == before
    found = last_rows(report, predict_schema(2), predict_schema(2).names)
    for key, row in found.items():
        words = read_keywords(sidecar_path(key).read_bytes())
        labels = [row["label_1"], row["label_2"]]
        assert words == (["family", *labels] if Path(key) == photos["kite"] else labels)
    assert read_orientation(kite.read_bytes()) == 6
    sidecars = {p.name: p.read_bytes() for p in (tmp_path / "phone").glob("*.xmp")}
    predict_files([tmp_path / "phone"], model=PLACES, report=tmp_path / "q.csv", topk=2, options=OPTIONS, xmp="append")
    assert {p.name: p.read_bytes() for p in (tmp_path / "phone").glob("*.xmp")} == sidecars


def test_predict_xmp_later_tags_what_a_report_already_holds(tmp_path: Path) -> None:
    make_phone_folder(tmp_path / "phone")
    report = tmp_path / "p.csv"
    predict_files([tmp_path / "phone"], model=PLACES, report=report, topk=1, options=OPTIONS)
    assert not list((tmp_path / "phone").glob("*.xmp"))
    summary = predict_files([tmp_path / "phone"], model=PLACES, report=report, topk=1, options=OPTIONS,
                            xmp="replace")  # fmt: skip
    sidecars = sorted((tmp_path / "phone").glob("*.xmp"))
    assert len(sidecars) == 6 and summary.done_before == 0
    assert all(len(read_keywords(p.read_bytes())) == 1 for p in sidecars)
    again = predict_files([tmp_path / "phone"], model=PLACES, report=report, topk=1, options=OPTIONS, xmp="replace")
    assert again.done_before == 6


def test_a_heic_copy_without_an_encoder_is_a_clear_per_file_error(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(photo(), "heic", 6)
    assert fixed_bytes(Path("a.heic"), data, 0, Fix.COPY) == (data, "copied unchanged")  # no encoder needed
    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    with pytest.raises(OrientFixError, match=r"roost\[heic-copy\]"):
        fixed_bytes(Path("a.heic"), data, 90, Fix.COPY)
    avif_copy, _ = fixed_bytes(Path("a.avif"), encode(photo(), "avif", 6), 90, Fix.COPY)  # Pillow's encoder
    assert load_image(avif_copy).size == (96, 64)


def test_an_in_file_fix_after_a_sidecar_never_turns_a_photo_twice(tmp_path: Path) -> None:
    (tmp_path / "phone").mkdir()
    for i, name in enumerate(["kite", "dune", "garden", "wood"]):
        (tmp_path / "phone" / f"{name}.jpg").write_bytes(encode(photo(name).rotate(90 * i, expand=True), "jpg"))
    report = tmp_path / "r.csv"
    orient(tmp_path / "phone", report=report, fix="xmp")
    assert any(r["fix"] == "xmp" for r in rows(report).values())
    before = hashes(tmp_path / "phone")
    sidecars = {p.name: p.read_bytes() for p in (tmp_path / "phone").glob("*.xmp")}
    for fix in ("inplace", "exif"):
        orient(tmp_path / "phone", report=report, fix=fix)
    assert hashes(tmp_path / "phone") == before  # JPEGs that inplace or exif would have changed
    assert {p.name: p.read_bytes() for p in (tmp_path / "phone").glob("*.xmp")} == sidecars
    assert {r["fix"] for r in rows(report).values()} <= {None, "xmp"}


def decided(path: Path, rotation: int) -> dict[str, Any]:
    """A report row as the model would leave it: ``path`` seen rotated by ``rotation``."""
    probs = {f"p{r}": 0.9 if r == rotation else 0.1 / 3 for r in ROTATIONS}
    return {"path": str(path), "rotation": rotation, "confidence": 0.9, **probs, "action": "rotate", "fix": None,
            "output": None, "error": None}  # fmt: skip


def test_one_shared_sidecar_never_gets_two_orientations(tmp_path: Path) -> None:
    """``photo.xmp`` names the sidecar of both photo.jpg and photo.png (a RAW+JPEG pair): the second that
    needs another value is refused; one that agrees is fine."""
    jpg, png, other = tmp_path / "IMG_1.jpg", tmp_path / "IMG_1.png", tmp_path / "IMG_2.jpg"
    jpg.write_bytes(encode(photo(), "jpg"))
    photo().save(png)
    other.write_bytes(encode(photo(), "jpg"))
    job = OrientJob(fix=Fix.XMP, sidecar=Naming.REPLACE)
    rows_ = [decided(jpg, 90), decided(png, 90), decided(other, 180), decided(tmp_path / "IMG_2.png", 90)]
    (tmp_path / "IMG_2.png").write_bytes(png.read_bytes())
    job.after_batch(rows_, [])
    assert [r["fix"] for r in rows_] == ["xmp", "xmp", "xmp", None]
    assert read_orientation((tmp_path / "IMG_1.xmp").read_bytes()) == 6
    assert read_orientation((tmp_path / "IMG_2.xmp").read_bytes()) == 3  # not overwritten by the refused one
    assert "also the sidecar of" in rows_[3]["error"] and "--sidecar append" in rows_[3]["error"]
