"""Orientation decisions and fixes on a real photo rotated by known angles (issue 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from roost.errors import OrientFixError
from roost.inference import orient
from roost.inference.orient import (
    ACTION_EXIF,
    ACTION_LOSSLESS,
    ACTION_LOW_CONFIDENCE,
    ACTION_NONE,
    ACTION_REENCODED,
    ACTION_ROTATE,
    ACTION_TRIMMED,
    combine_orientation,
    decide,
    fix_copy,
    fix_exif,
    fix_inplace,
)

ROTATIONS = [90, 180, 270]
T = Image.Transpose
# Orientation value -> (transform a viewer applies, its inverse)
DISPLAY = {
    1: None, 2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM,
    5: T.TRANSPOSE, 6: T.ROTATE_270, 7: T.TRANSVERSE, 8: T.ROTATE_90,
}  # fmt: skip
INVERSE = {o: 14 - o if o in (6, 8) else o for o in DISPLAY}
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
MAKE = 0x010F


@pytest.fixture(scope="module")
def upright(shared_dir: Path) -> Image.Image:
    """A real upright photo, cropped to 320x192 (multiples of 16: lossless JPEG transforms are perfect)."""
    with Image.open(shared_dir / "photos" / "aqua.jpg") as image:
        return image.convert("RGB").crop((300, 200, 620, 392))


def pixels(path: Path, *, transpose_exif: bool = False) -> np.ndarray:
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image) if transpose_exif else image
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def as_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def stored(image: Image.Image, orientation: int) -> Image.Image:
    """The pixels to store so that a viewer applying ``orientation`` shows ``image``."""
    method = DISPLAY[INVERSE[orientation]]
    return image if method is None else image.transpose(method)


def save(image: Image.Image, path: Path, orientation: int = 1, **kwargs) -> Path:
    exif = Image.Exif()
    exif[MAKE] = "roost-test"
    if orientation != 1:
        exif[0x0112] = orientation
    image.save(path, exif=exif.tobytes(), icc_profile=ICC, **kwargs)
    return path


def rotated_photo(upright: Image.Image, rotation: int) -> Image.Image:
    """The photo as the model would see it when it is rotated ``rotation`` degrees counter-clockwise."""
    return upright.rotate(rotation, expand=True)


def close(a: np.ndarray, b: np.ndarray, *, mean: float, peak: int) -> bool:
    """Equal up to JPEG decoder rounding; a wrong rotation differs by tens of levels on average."""
    return a.shape == b.shape and np.abs(a - b).mean() < mean and np.abs(a - b).max() <= peak


# ---------------------------------------------------------------- decisions


@pytest.mark.parametrize(
    ("probs", "threshold", "expected"),
    [
        ([0.9, 0.05, 0.03, 0.02], 0.5, (0, 0.9, ACTION_NONE)),
        ([0.1, 0.8, 0.05, 0.05], 0.5, (90, 0.8, ACTION_ROTATE)),
        ([0.1, 0.05, 0.05, 0.8], 0.5, (270, 0.8, ACTION_ROTATE)),
        ([0.2, 0.1, 0.4, 0.3], 0.5, (180, 0.4, ACTION_LOW_CONFIDENCE)),
    ],
)
def test_decide(probs: list[float], threshold: float, expected: tuple) -> None:
    rotation, confidence, action = decide(np.array(probs, dtype=np.float32), threshold)
    assert (rotation, action) == (expected[0], expected[2])
    assert confidence == pytest.approx(expected[1])


def test_decide_and_fixes_validate_their_input(tmp_path: Path) -> None:
    with pytest.raises(OrientFixError, match="4 probabilities"):
        decide([0.5, 0.5], 0.1)
    with pytest.raises(OrientFixError, match="Rotation must be"):
        fix_exif(tmp_path / "x.png", 45)


@pytest.mark.parametrize(
    ("existing", "rotation", "expected"),
    [(1, 0, 1), (1, 90, 6), (1, 180, 3), (1, 270, 8), (6, 90, 3), (6, 270, 1), (8, 90, 1), (3, 180, 1), (2, 90, 7)],
)
def test_combine_orientation(existing: int, rotation: int, expected: int) -> None:
    assert combine_orientation(existing, rotation) == expected


# ---------------------------------------------------------------- pixel-exact formats


@pytest.mark.parametrize("rotation", ROTATIONS)
@pytest.mark.parametrize("fmt", ["png", "webp", "tiff", "bmp", "gif"])
def test_fix_copy_is_pixel_exact(tmp_path: Path, upright: Image.Image, rotation: int, fmt: str) -> None:
    src = tmp_path / f"rotated.{fmt}"
    if fmt in ("bmp", "gif"):
        rotated_photo(upright, rotation).save(src)
    else:
        save(rotated_photo(upright, rotation), src, **({"lossless": True} if fmt == "webp" else {}))
    original = src.read_bytes()
    dst = tmp_path / "out" / "deep" / f"fixed.{fmt}"

    assert fix_copy(src, dst, rotation) == ACTION_LOSSLESS
    assert np.array_equal(pixels(dst), as_array(Image.open(src).rotate(-rotation, expand=True)))
    if fmt != "gif":  # GIF is palette-quantised on the way in
        assert np.array_equal(pixels(dst), as_array(upright))
    assert src.read_bytes() == original
    if fmt not in ("bmp", "gif"):
        with Image.open(dst) as fixed:
            assert fixed.info.get("icc_profile") == ICC
            assert fixed.getexif().get(MAKE) == "roost-test"
            assert fixed.getexif().get(0x0112, 1) == 1


@pytest.mark.parametrize("fmt", ["png", "tiff"])
@pytest.mark.parametrize(("existing", "rotation"), [(6, 90), (8, 180), (2, 270), (7, 90), (6, 270)])
def test_fix_copy_applies_the_existing_tag(
    tmp_path: Path, upright: Image.Image, existing: int, rotation: int, fmt: str
) -> None:
    src = save(stored(rotated_photo(upright, rotation), existing), tmp_path / f"tagged.{fmt}", existing)
    assert np.array_equal(pixels(src, transpose_exif=True), as_array(rotated_photo(upright, rotation)))
    fix_copy(src, tmp_path / f"fixed.{fmt}", rotation)
    assert np.array_equal(pixels(tmp_path / f"fixed.{fmt}"), as_array(upright))  # upright without any tag


def test_fix_inplace_writes_a_backup_first(tmp_path: Path, upright: Image.Image) -> None:
    src = save(rotated_photo(upright, 90), tmp_path / "photo.png")
    original = src.read_bytes()
    assert fix_inplace(src, 90) == ACTION_LOSSLESS
    assert (tmp_path / "photo.png.orig").read_bytes() == original
    assert np.array_equal(pixels(src), as_array(upright))

    once_fixed = src.read_bytes()
    fix_inplace(src, 180)  # a second fix never overwrites the first backup
    assert (tmp_path / "photo.png.orig").read_bytes() == original
    assert (tmp_path / "photo.png.orig.1").read_bytes() == once_fixed
    assert np.array_equal(pixels(src), as_array(upright.rotate(180)))

    fix_inplace(src, 180, backup_suffix=None)
    assert np.array_equal(pixels(src), as_array(upright))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png", "photo.png.orig", "photo.png.orig.1"]


def test_rotation_zero_changes_nothing(tmp_path: Path, upright: Image.Image) -> None:
    src = save(upright, tmp_path / "photo.png", 6)
    original = src.read_bytes()
    assert fix_inplace(src, 0) == ACTION_NONE
    assert fix_exif(src, 0) == ACTION_NONE
    assert fix_copy(src, tmp_path / "copy" / "photo.png", 0) == ACTION_NONE
    assert (tmp_path / "copy" / "photo.png").read_bytes() == original == src.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "photo.png"]


def test_inplace_through_a_symlink_fixes_the_target(tmp_path: Path, upright: Image.Image) -> None:
    target = save(rotated_photo(upright, 270), tmp_path / "photo.png")
    link = tmp_path / "link.png"
    link.symlink_to(target)
    fix_inplace(link, 270)
    assert link.is_symlink()
    assert np.array_equal(pixels(target), as_array(upright))
    assert (tmp_path / "photo.png.orig").exists()


def test_malformed_exif_is_ignored_when_rewriting(tmp_path: Path, upright: Image.Image) -> None:
    src = tmp_path / "photo.jpg"
    rotated_photo(upright, 90).save(src, exif=b"Exif\x00\x00garbage, not TIFF", quality=90)
    assert fix_copy(src, tmp_path / "fixed.jpg", 90) != ACTION_NONE
    assert close(pixels(tmp_path / "fixed.jpg"), as_array(upright), mean=3.0, peak=80)
    with pytest.raises(OrientFixError, match="TIFF"):
        fix_exif(src, 90)


def test_refusals_leave_the_source_alone(tmp_path: Path, upright: Image.Image) -> None:
    gif = tmp_path / "anim.gif"
    upright.save(gif, save_all=True, append_images=[upright.rotate(180)])
    bmp = tmp_path / "photo.bmp"
    upright.save(bmp)
    before = {p: p.read_bytes() for p in (gif, bmp)}
    with pytest.raises(OrientFixError, match="frames"):
        fix_inplace(gif, 90)
    with pytest.raises(OrientFixError, match="carry an EXIF"):
        fix_exif(bmp, 90)
    with pytest.raises(OrientFixError, match="source itself"):
        fix_copy(bmp, tmp_path / "." / "photo.bmp", 90)
    assert {p: p.read_bytes() for p in (gif, bmp)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anim.gif", "photo.bmp"]  # no temp file left


# ---------------------------------------------------------------- JPEG


def jpeg_backends() -> list[str]:
    return orient.jpeg_backends() or ["missing"]


def require(backend: str) -> None:
    if backend not in orient.jpeg_backends():
        pytest.skip(f"lossless JPEG backend {backend!r} not installed")


@pytest.mark.parametrize("rotation", ROTATIONS)
@pytest.mark.parametrize("backend", jpeg_backends())
def test_jpeg_is_rotated_losslessly(tmp_path: Path, upright: Image.Image, rotation: int, backend: str) -> None:
    require(backend)
    src = save(rotated_photo(upright, rotation), tmp_path / "rotated.jpg", quality=90)
    original = src.read_bytes()
    fixed = tmp_path / "fixed.jpg"

    assert fix_copy(src, fixed, rotation, jpeg_backend=backend) == ACTION_LOSSLESS
    assert src.read_bytes() == original
    # Right direction: the decoded result is the decoded source turned back upright (up to IDCT rounding).
    expected = as_array(Image.open(src).rotate(-rotation, expand=True))
    assert close(pixels(fixed), expected, mean=0.5, peak=8)
    assert close(pixels(fixed), as_array(upright), mean=3.0, peak=80)
    # DCT-domain, no re-encoding: turning it back gives the very same decoded pixels as the source.
    back = tmp_path / "back.jpg"
    fix_copy(fixed, back, 360 - rotation, jpeg_backend=backend)
    assert np.array_equal(pixels(back), pixels(src))
    with Image.open(fixed) as image:  # metadata kept, orientation reset
        assert image.info.get("icc_profile") == ICC
        assert image.getexif().get(MAKE) == "roost-test"
        assert image.getexif().get(0x0112, 1) == 1


@pytest.mark.parametrize(("existing", "rotation"), [(6, 90), (3, 270), (2, 90), (5, 180), (8, 270)])
def test_jpeg_lossless_combines_the_existing_tag(
    tmp_path: Path, upright: Image.Image, existing: int, rotation: int
) -> None:
    require(orient.jpeg_backends()[0] if orient.jpeg_backends() else "missing")
    src = save(stored(rotated_photo(upright, rotation), existing), tmp_path / "tagged.jpg", existing, quality=90)
    fixed = tmp_path / "fixed.jpg"
    assert fix_copy(src, fixed, rotation) == ACTION_LOSSLESS
    expected = as_array(ImageOps.exif_transpose(Image.open(src)).rotate(-rotation, expand=True))
    assert close(pixels(fixed), expected, mean=0.5, peak=8)
    assert close(pixels(fixed, transpose_exif=True), expected, mean=0.5, peak=8)  # tag reset: no double turn


def test_jpeg_inplace_keeps_a_byte_identical_backup(tmp_path: Path, upright: Image.Image) -> None:
    src = save(rotated_photo(upright, 270), tmp_path / "photo.jpg", quality=90)
    original = src.read_bytes()
    action = fix_inplace(src, 270)
    assert action in (ACTION_LOSSLESS, ACTION_REENCODED)
    assert (tmp_path / "photo.jpg.orig").read_bytes() == original
    assert close(pixels(src), as_array(upright), mean=3.0, peak=80)


def test_jpeg_without_a_backend_is_reencoded(tmp_path: Path, upright: Image.Image) -> None:
    src = save(rotated_photo(upright, 90), tmp_path / "rotated.jpg", quality=90)
    fixed = tmp_path / "fixed.jpg"
    assert fix_copy(src, fixed, 90, jpeg_backend="pillow") == ACTION_REENCODED
    assert close(pixels(fixed), as_array(Image.open(src).rotate(-90, expand=True)), mean=2.0, peak=64)
    with Image.open(fixed) as image:
        assert image.info.get("icc_profile") == ICC
        assert image.getexif().get(MAKE) == "roost-test"


@pytest.mark.parametrize("rotation", [90, 270])
def test_imperfect_jpeg_is_reencoded_or_trimmed(tmp_path: Path, upright: Image.Image, rotation: int) -> None:
    require(orient.jpeg_backends()[0] if orient.jpeg_backends() else "missing")
    src = tmp_path / "odd.jpg"
    rotated_photo(upright, rotation).crop((0, 0, 190, 310)).save(src, quality=90)  # not multiples of 16
    expected = as_array(Image.open(src).rotate(-rotation, expand=True))

    assert fix_copy(src, tmp_path / "re.jpg", rotation) == ACTION_REENCODED
    assert close(pixels(tmp_path / "re.jpg"), expected, mean=2.0, peak=64)

    assert fix_copy(src, tmp_path / "trim.jpg", rotation, imperfect="trim") == ACTION_TRIMMED
    trimmed = pixels(tmp_path / "trim.jpg")
    assert trimmed.shape[0] < expected.shape[0] or trimmed.shape[1] < expected.shape[1]
    assert max(expected.shape[0] - trimmed.shape[0], expected.shape[1] - trimmed.shape[1]) < 16


def test_unavailable_backend_is_an_error(tmp_path: Path, upright: Image.Image, monkeypatch) -> None:
    src = save(rotated_photo(upright, 90), tmp_path / "rotated.jpg")
    monkeypatch.setattr(orient.shutil, "which", lambda name: None)
    with pytest.raises(OrientFixError, match="not available"):
        fix_copy(src, tmp_path / "fixed.jpg", 90, jpeg_backend="jpegtran")


# ---------------------------------------------------------------- EXIF only


def _exif_cases() -> list[tuple[str, int, int]]:
    return [(fmt, o, r) for fmt in ("png", "jpg", "webp", "tiff") for o in DISPLAY for r in ROTATIONS]


@pytest.mark.parametrize(("fmt", "existing", "rotation"), _exif_cases())
def test_fix_exif_makes_viewers_show_it_upright(
    tmp_path: Path, upright: Image.Image, fmt: str, existing: int, rotation: int
) -> None:
    small = upright.resize((48, 32))
    src = tmp_path / f"photo.{fmt}"
    image = stored(rotated_photo(small, rotation), existing)
    if existing == 1:  # no EXIF at all: the tag has to be added
        image.save(src, **({"lossless": True} if fmt == "webp" else {}))
    else:
        save(image, src, existing, **({"lossless": True} if fmt == "webp" else {}))
    original = src.read_bytes()
    raw_before = pixels(src)  # Pillow applies a TIFF's orientation itself: raw pixels only for the others
    shown_before = pixels(src, transpose_exif=True)

    assert fix_exif(src, rotation) == ACTION_EXIF
    if fmt == "tiff":  # IFD0 patched in place, or a new IFD0 appended: at most header + one entry differ
        data = src.read_bytes()
        assert sum(a != b for a, b in zip(original, data, strict=False)) <= 16
    else:
        assert np.array_equal(pixels(src), raw_before)  # the pixels are not touched
    shown = pixels(src, transpose_exif=True)
    turned = Image.fromarray(shown_before.astype(np.uint8)).rotate(-rotation, expand=True)
    assert np.array_equal(shown, as_array(turned))
    if fmt != "jpg":  # lossless formats: exactly the upright photo
        assert np.array_equal(shown, as_array(small))


def test_fix_exif_on_jpeg_changes_only_the_exif_segment(tmp_path: Path, upright: Image.Image) -> None:
    src = save(upright.rotate(90, expand=True), tmp_path / "photo.jpg", quality=90)
    original = src.read_bytes()
    fix_exif(src, 90)
    data = src.read_bytes()
    scan = original.index(b"\xff\xda")
    assert data[data.index(b"\xff\xda") :] == original[scan:]  # entropy-coded data byte-identical
    with Image.open(src) as image:
        assert image.getexif()[0x0112] == 6
        assert image.getexif()[MAKE] == "roost-test"
        assert image.info.get("icc_profile") == ICC
    assert fix_exif(src, 270) == ACTION_EXIF  # reversible: back to upright-as-stored
    with Image.open(src) as image:
        assert image.getexif().get(0x0112) == 1
