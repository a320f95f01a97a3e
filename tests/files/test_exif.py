"""EXIF Orientation: the combine table, and exif_bytes on JPEG, PNG, WebP and TIFF (containers.py surgery)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from PIL import Image

from roost.errors import OrientFixError
from roost.files.exif import EMPTY_TIFF, exif_orientation, set_tiff_orientation
from roost.files.rotate import combine_orientation, exif_bytes, read_exif_orientation
from tests.files.conftest import DISPLAY, ICC, ROTATIONS, as_array, encode, metadata, pixels, rotated_photo, stored


@pytest.mark.parametrize(
    ("existing", "rotation", "expected"),
    [(1, 0, 1), (1, 90, 6), (1, 180, 3), (1, 270, 8), (6, 90, 3), (6, 270, 1), (8, 90, 1), (3, 180, 1), (2, 90, 7)],
)
def test_combine_orientation(existing: int, rotation: int, expected: int) -> None:
    assert combine_orientation(existing, rotation) == expected


def test_combine_orientation_rejects_other_angles() -> None:
    with pytest.raises(OrientFixError, match="Rotation must be"):
        combine_orientation(1, 45)


@pytest.mark.parametrize("endian", ["<", ">"])
def test_tiff_orientation_set_in_place_or_added(endian: str) -> None:
    magic = b"II*\x00" if endian == "<" else b"MM\x00*"
    make = struct.pack(endian + "HHI", 0x010F, 2, 4) + b"abc\x00"  # one ASCII entry, value inline
    tiff = magic + struct.pack(endian + "IH", 8, 1) + make + b"\x00" * 4
    assert exif_orientation(tiff) == 1
    added = set_tiff_orientation(tiff, 6)
    assert exif_orientation(added) == 6
    assert added[: len(tiff)][8:] == tiff[8:]  # the old IFD0 stays; a copy with the tag is appended
    assert len(set_tiff_orientation(added, 3)) == len(added)  # present: patched in place
    assert exif_orientation(set_tiff_orientation(added, 3)) == 3
    assert set_tiff_orientation(tiff, 1) == tiff  # absent already means 1
    assert exif_orientation(set_tiff_orientation(EMPTY_TIFF, 8)) == 8


def test_malformed_tiff_structures() -> None:
    assert exif_orientation(b"garbage") == exif_orientation(None) == exif_orientation(b"II*\x00\xff") == 1
    with pytest.raises(OrientFixError, match="not a \\(classic\\) TIFF"):
        set_tiff_orientation(b"garbage", 6)
    with pytest.raises(OrientFixError, match="truncated"):
        set_tiff_orientation(b"II*\x00\x00\x01\x00\x00", 6)


def _exif_cases() -> list[tuple[str, int, int]]:
    return [(fmt, o, r) for fmt in ("png", "jpg", "webp", "tiff") for o in DISPLAY for r in ROTATIONS]


@pytest.mark.parametrize(("fmt", "existing", "rotation"), _exif_cases())
def test_exif_bytes_makes_viewers_show_it_upright(upright: Image.Image, fmt: str, existing: int, rotation: int) -> None:
    small = upright.resize((48, 32))
    image = stored(rotated_photo(small, rotation), existing)
    data = encode(image, fmt, None if existing == 1 else existing)  # 1: no EXIF at all, the tag is added
    raw_before = pixels(data)  # Pillow applies a TIFF's orientation itself: raw pixels only for the others
    shown_before = pixels(data, transpose_exif=True)

    out = exif_bytes(data, rotation)
    assert read_exif_orientation(out) == combine_orientation(existing, rotation)
    if fmt == "tiff":  # IFD0 patched in place, or a new IFD0 appended: at most header + one entry differ
        assert sum(a != b for a, b in zip(data, out, strict=False)) <= 16
    else:
        assert np.array_equal(pixels(out), raw_before)  # the pixels are not touched
    shown = pixels(out, transpose_exif=True)
    turned = Image.fromarray(shown_before.astype(np.uint8)).rotate(-rotation, expand=True)
    assert np.array_equal(shown, as_array(turned))
    if fmt != "jpg":  # lossless formats: exactly the upright photo
        assert np.array_equal(shown, as_array(small))


def test_exif_bytes_on_jpeg_changes_only_the_exif_segment(upright: Image.Image) -> None:
    data = encode(upright.rotate(90, expand=True), "jpg", quality=90)
    out = exif_bytes(data, 90)
    assert out[out.index(b"\xff\xda") :] == data[data.index(b"\xff\xda") :]  # entropy-coded data identical
    assert metadata(out) == (ICC, "roost-test", 6)
    back = exif_bytes(out, 270)  # reversible: back to upright-as-stored
    assert metadata(back) == (ICC, "roost-test", 1)


def test_exif_bytes_refusals(upright: Image.Image) -> None:
    png = encode(upright, "png", 6)
    assert exif_bytes(png, 0) == png
    with pytest.raises(OrientFixError, match="Rotation must be"):
        exif_bytes(png, 45)
    for fmt in ("bmp", "gif"):
        with pytest.raises(OrientFixError, match=f"^{fmt.upper()} files carry no EXIF orientation tag"):
            exif_bytes(encode(upright, fmt, None), 0)
    with pytest.raises(OrientFixError, match=r"^unrecognised files"):
        exif_bytes(b"hello", 90)
    malformed = encode(upright, "jpg", None, exif=b"Exif\x00\x00garbage, not TIFF")
    with pytest.raises(OrientFixError, match="TIFF"):
        exif_bytes(malformed, 90)
