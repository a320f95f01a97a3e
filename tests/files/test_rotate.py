"""upright_bytes and write_backup on a real photo rotated by known angles (PNG, WebP, TIFF, BMP, GIF)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from roost.errors import ImageError, OrientFixError
from roost.files.rotate import ACTION_LOSSLESS, ACTION_UNCHANGED, read_exif_orientation, upright_bytes, write_backup
from tests.files.conftest import (
    ICC,
    ROTATIONS,
    as_array,
    encode,
    metadata,
    opened,
    pixels,
    rotated_photo,
    stored,
)


@pytest.mark.parametrize("rotation", ROTATIONS)
@pytest.mark.parametrize("fmt", ["png", "webp", "tiff", "bmp", "gif"])
def test_upright_is_pixel_exact(upright: Image.Image, rotation: int, fmt: str) -> None:
    bare = fmt in ("bmp", "gif")
    data = encode(rotated_photo(upright, rotation), fmt, None if bare else 1)

    out, action = upright_bytes(data, rotation)
    assert action == ACTION_LOSSLESS
    assert opened(out).format == opened(data).format
    assert np.array_equal(pixels(out), as_array(opened(data).rotate(-rotation, expand=True)))
    if fmt != "gif":  # GIF is palette-quantised on the way in
        assert np.array_equal(pixels(out), as_array(upright))
    if not bare:
        assert metadata(out) == (ICC, "roost-test", 1)


@pytest.mark.parametrize("fmt", ["png", "tiff"])
@pytest.mark.parametrize(("existing", "rotation"), [(6, 90), (8, 180), (2, 270), (7, 90), (6, 270)])
def test_upright_applies_the_existing_tag(upright: Image.Image, existing: int, rotation: int, fmt: str) -> None:
    data = encode(stored(rotated_photo(upright, rotation), existing), fmt, existing)
    assert np.array_equal(pixels(data, transpose_exif=True), as_array(rotated_photo(upright, rotation)))
    assert read_exif_orientation(data) == existing
    out, _ = upright_bytes(data, rotation)
    assert read_exif_orientation(out) == 1
    assert np.array_equal(pixels(out), as_array(upright))  # upright without any tag


def test_rotation_zero_returns_the_bytes_unchanged(upright: Image.Image) -> None:
    data = encode(upright, "png", 6)
    assert upright_bytes(data, 0) == (data, ACTION_UNCHANGED)
    bmp = encode(upright, "bmp", None)
    assert upright_bytes(bmp, 0) == (bmp, ACTION_UNCHANGED)


def test_options_are_validated(upright: Image.Image) -> None:
    data = encode(upright, "png")
    with pytest.raises(OrientFixError, match="Rotation must be"):
        upright_bytes(data, 45)
    with pytest.raises(OrientFixError, match="imperfect"):
        upright_bytes(data, 90, imperfect="crop")  # type: ignore[arg-type]
    with pytest.raises(OrientFixError, match="jpeg_backend"):
        upright_bytes(data, 90, jpeg_backend="libjpeg")  # type: ignore[arg-type]


def test_refusals(upright: Image.Image) -> None:
    animated = encode(upright, "gif", None, save_all=True, append_images=[upright.rotate(180)])
    with pytest.raises(OrientFixError, match="2 frames"):
        upright_bytes(animated, 90)
    with pytest.raises(OrientFixError, match="Cannot rewrite ICO files"):
        upright_bytes(encode(upright.resize((32, 32)), "ico", None), 90)
    with pytest.raises(ImageError, match="Cannot decode"):
        upright_bytes(b"not an image at all", 90)


def test_read_exif_orientation(upright: Image.Image) -> None:
    assert read_exif_orientation(encode(upright, "webp", 8)) == 8
    assert read_exif_orientation(encode(upright, "jpg", 3)) == 3
    assert read_exif_orientation(encode(upright, "png", None)) == 1
    assert read_exif_orientation(encode(upright, "bmp", None)) == 1
    assert read_exif_orientation(encode(upright, "jpg", None, exif=b"Exif\x00\x00garbage")) == 1


# ---------------------------------------------------------------- backups


def test_backup_never_overwrites_an_earlier_one(tmp_path: Path) -> None:
    src = tmp_path / "photo.png"
    src.write_bytes(b"current")
    os.chmod(src, 0o640)
    os.utime(src, ns=(1_000_000_000_000_000_000, 1_200_000_000_123_456_789))

    first = write_backup(src, b"original")
    assert first == tmp_path / "photo.png.orig"
    assert first.read_bytes() == b"original"
    assert first.stat().st_mode & 0o777 == 0o640
    assert first.stat().st_mtime_ns == src.stat().st_mtime_ns  # times of the file it backs up
    assert write_backup(src, b"original") == first  # identical: reused
    second = write_backup(src, b"fixed once")
    assert second == tmp_path / "photo.png.orig.1"
    assert (first.read_bytes(), second.read_bytes()) == (b"original", b"fixed once")
    assert write_backup(src, b"fixed twice", ".bak") == tmp_path / "photo.png.bak"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png", "photo.png.bak", "photo.png.orig",
                                                         "photo.png.orig.1"]  # fmt: skip


def test_backup_through_a_symlink_is_beside_the_target(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "photo.png"
    target.write_bytes(b"original")
    link = tmp_path / "link.png"
    link.symlink_to(target)
    assert write_backup(link, b"original") == tmp_path / "real" / "photo.png.orig"
    assert not (tmp_path / "link.png.orig").exists()


def test_backup_suffix_is_checked(tmp_path: Path) -> None:
    src = tmp_path / "photo.png"
    src.write_bytes(b"x")
    for suffix in ("", "/../x"):
        with pytest.raises(OrientFixError, match="suffix"):
            write_backup(src, b"x", suffix)
    assert [p.name for p in tmp_path.iterdir()] == ["photo.png"]


def test_upright_then_exif_transposed_agree(upright: Image.Image) -> None:
    """What a viewer shows before the fix, turned clockwise, is what the fixed file stores."""
    data = encode(stored(rotated_photo(upright, 90), 5), "webp", 5)
    out, _ = upright_bytes(data, 90)
    shown = ImageOps.exif_transpose(opened(data)).rotate(-90, expand=True)
    assert np.array_equal(pixels(out), as_array(shown))
