"""Shared helpers for the image-file tests: a real upright photo, EXIF tagging, decoding, comparisons."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

T = Image.Transpose
# Orientation value -> (transform a viewer applies, its inverse)
DISPLAY = {
    1: None, 2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM,
    5: T.TRANSPOSE, 6: T.ROTATE_270, 7: T.TRANSVERSE, 8: T.ROTATE_90,
}  # fmt: skip
INVERSE = {o: 14 - o if o in (6, 8) else o for o in DISPLAY}
ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
MAKE = 0x010F
ORIENTATION = 0x0112
ROTATIONS = [90, 180, 270]


@pytest.fixture(scope="session")
def upright(shared_dir: Path) -> Image.Image:
    """A real upright photo, cropped to 320x192 (multiples of 16: lossless JPEG transforms are perfect)."""
    with Image.open(shared_dir / "photos" / "aqua.jpg") as image:
        return image.convert("RGB").crop((300, 200, 620, 392))


def opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def pixels(data: bytes, *, transpose_exif: bool = False) -> np.ndarray:
    with opened(data) as image:
        shown = ImageOps.exif_transpose(image) if transpose_exif else image
        return np.asarray(shown.convert("RGB"), dtype=np.int16)


def as_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def stored(image: Image.Image, orientation: int) -> Image.Image:
    """The pixels to store so that a viewer applying ``orientation`` shows ``image``."""
    method = DISPLAY[INVERSE[orientation]]
    return image if method is None else image.transpose(method)


def encode(image: Image.Image, fmt: str, orientation: int | None = 1, **kwargs: Any) -> bytes:
    """``image`` saved as ``fmt`` with ICC and an EXIF Make tag (and ``orientation`` when not 1);
    ``orientation=None`` saves it without any metadata."""
    if orientation is not None:
        exif = Image.Exif()
        exif[MAKE] = "roost-test"
        if orientation != 1:
            exif[ORIENTATION] = orientation
        kwargs |= {"exif": exif.tobytes(), "icc_profile": ICC}
    if fmt == "webp":
        kwargs.setdefault("lossless", True)
    buf = io.BytesIO()
    image.save(buf, format={"jpg": "JPEG", "tif": "TIFF"}.get(fmt, fmt.upper()), **kwargs)
    return buf.getvalue()


def rotated_photo(upright: Image.Image, rotation: int) -> Image.Image:
    """The photo as the model would see it when it is rotated ``rotation`` degrees counter-clockwise."""
    return upright.rotate(rotation, expand=True)


def close(a: np.ndarray, b: np.ndarray, *, mean: float, peak: int) -> bool:
    """Equal up to JPEG decoder rounding; a wrong rotation differs by tens of levels on average."""
    return a.shape == b.shape and bool(np.abs(a - b).mean() < mean) and bool(np.abs(a - b).max() <= peak)


def metadata(data: bytes) -> tuple[bytes | None, object, int]:
    """(ICC profile, EXIF Make, EXIF Orientation or 1) of a file's bytes."""
    with opened(data) as image:
        exif = image.getexif()
        return image.info.get("icc_profile"), exif.get(MAKE), exif.get(ORIENTATION, 1)
