"""load_image: colour modes, EXIF orientation, draft decoding and the per-file errors."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from roost.data.decode import load_image, to_rgb
from roost.errors import ImageError
from tests.conftest import SHARED

PHOTOS = SHARED / "photos"
needs_photos = pytest.mark.skipif(not PHOTOS.is_dir(), reason=f"shared photos not found at {PHOTOS}")


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A small real photo (RGB, 256 x 160)."""
    if not PHOTOS.is_dir():
        pytest.skip(f"shared photos not found at {PHOTOS}")
    return Image.open(PHOTOS / "ladybird.jpg").convert("RGB").resize((256, 160))


def _save(img: Image.Image, path: Path, **params: object) -> Path:
    img.save(path, **params)
    return path


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img).astype(np.int32)


@needs_photos
def test_rgb_jpeg_matches_plain_pillow() -> None:
    path = PHOTOS / "kite.jpg"
    img = load_image(path)
    assert img.mode == "RGB"
    assert np.array_equal(np.asarray(img), np.asarray(Image.open(path).convert("RGB")))
    assert np.array_equal(np.asarray(load_image(str(path))), np.asarray(load_image(path.read_bytes())))


def test_grayscale(photo: Image.Image, tmp_path: Path) -> None:
    gray = photo.convert("L")
    img = load_image(_save(gray, tmp_path / "g.png"))
    assert img.mode == "RGB" and img.size == gray.size
    for channel in range(3):
        assert np.array_equal(np.asarray(img)[..., channel], np.asarray(gray))


def test_palette_with_transparency_goes_on_white(tmp_path: Path) -> None:
    pal = Image.new("P", (8, 4), 0)
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * (256 * 3 - 6))
    pal.paste(1, (4, 0, 8, 4))
    pal.info["transparency"] = 0
    img = load_image(_save(pal, tmp_path / "p.png", transparency=0))
    arr = np.asarray(img)
    assert (arr[:, :4] == 255).all()
    assert (arr[:, 4:] == (200, 100, 50)).all()


def test_rgba_composited_on_white(photo: Image.Image, tmp_path: Path) -> None:
    rgba = photo.convert("RGBA")
    alpha = np.full(photo.size[::-1], 255, dtype=np.uint8)
    alpha[:, :64] = 0
    alpha[:, 64:128] = 128
    rgba.putalpha(Image.fromarray(alpha))
    arr = _pixels(load_image(_save(rgba, tmp_path / "a.png")))
    src = _pixels(photo)
    assert (arr[:, :64] == 255).all()
    assert np.abs(arr[:, 64:128] - (src[:, 64:128] * 128 + 255 * 127) / 255).max() <= 1
    assert np.array_equal(arr[:, 128:], src[:, 128:])


def test_la_composited_on_white() -> None:
    la = Image.merge("LA", (Image.new("L", (4, 4), 40), Image.new("L", (4, 4), 0)))
    assert (np.asarray(to_rgb(la)) == 255).all()


def test_cmyk_jpeg(photo: Image.Image, tmp_path: Path) -> None:
    path = _save(photo.convert("CMYK"), tmp_path / "c.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    img = load_image(path)
    assert img.mode == "RGB"
    assert np.abs(_pixels(img) - _pixels(photo)).mean() < 6  # JPEG loss only; an inverted read would be ~128


def test_16bit_png_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.linspace(0, 65535, 64 * 32).astype(np.uint16).reshape(32, 64)
    path = _save(Image.fromarray(values), tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I")
    arr = np.asarray(load_image(path))
    assert arr.dtype == np.uint8
    assert np.array_equal(arr[..., 0], np.rint(values / 257).astype(np.uint8))
    assert arr[..., 0].min() == 0 and arr[..., 0].max() == 255 and len(np.unique(arr)) > 200


def test_int_and_float_modes() -> None:
    as_int = Image.fromarray(np.array([[0, 257, 65535, 70000]], dtype=np.int32))
    assert as_int.mode == "I"
    assert np.asarray(to_rgb(as_int))[0, :, 0].tolist() == [0, 1, 255, 255]
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert np.asarray(to_rgb(unit))[0, :, 1].tolist() == [0, 128, 255]
    wide = Image.fromarray(np.array([[0.0, 100.0, 300.0]], dtype=np.float32))
    assert np.asarray(to_rgb(wide))[0, :, 2].tolist() == [0, 100, 255]


def test_exif_orientation_6(photo: Image.Image, tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(photo, tmp_path / "rot.jpg", exif=exif, quality=95)
    stored = load_image(path, exif_transpose=False)
    upright = load_image(path)
    assert stored.size == (256, 160)
    assert upright.size == (160, 256)
    assert np.array_equal(np.asarray(upright), np.asarray(stored.transpose(Image.Transpose.ROTATE_270)))


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.jpg.*empty file"):
        load_image(path)
    with pytest.raises(ImageError, match="empty file"):
        load_image(b"")


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.jpg"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ImageError, match=r"noise\.jpg.*not a recognised image"):
        load_image(path)


def test_truncated_jpeg(photo: Image.Image, tmp_path: Path) -> None:
    buf = io.BytesIO()
    photo.save(buf, format="JPEG")
    data = buf.getvalue()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg.*truncated"):
        load_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.jpg")


def test_decompression_bomb_guard(photo: Image.Image, tmp_path: Path) -> None:
    before = Image.MAX_IMAGE_PIXELS
    path = _save(photo, tmp_path / "big.png")
    with pytest.raises(ImageError, match=r"big\.png.*256x160 = 40960 pixels exceeds the limit of 40000"):
        load_image(path, max_pixels=40_000)
    assert load_image(path, max_pixels=40_960).size == (256, 160)
    assert load_image(path, max_pixels=None).size == (256, 160)
    assert before == Image.MAX_IMAGE_PIXELS


@needs_photos
def test_draft_decodes_large_jpeg_smaller() -> None:
    path = PHOTOS / "large" / "elephants_3840x2160.jpg"
    img = load_image(path, draft=(500, 300))
    assert img.mode == "RGB"
    assert img.size == (960, 540)  # the 1/4 DCT scale: the smallest that stays >= 500 x 300
    assert load_image(PHOTOS / "kite.jpg", draft=(600, 400)).size == (1024, 640)  # 1/2 would be too small


def test_draft_respects_exif_orientation(photo: Image.Image, tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(photo.resize((1024, 640)), tmp_path / "rot.jpg", exif=exif)
    img = load_image(path, draft=(300, 500))  # upright request; stored as 500 x 300
    assert img.size == (320, 512)


def test_draft_ignored_for_png(photo: Image.Image, tmp_path: Path) -> None:
    path = _save(photo, tmp_path / "x.png")
    assert load_image(path, draft=(32, 32)).size == (256, 160)
