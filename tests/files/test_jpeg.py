"""JPEGs turned upright: DCT-domain (lossless) transforms, trimming, re-encoding with the source's tables."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps
from PIL.JpegImagePlugin import JpegImageFile

from roost.errors import OrientFixError
from roost.files import jpeg
from roost.files.rotate import ACTION_LOSSLESS, ACTION_REENCODED, ACTION_TRIMMED, jpeg_backends, upright_bytes
from tests.files.conftest import (
    ICC,
    ROTATIONS,
    as_array,
    close,
    encode,
    metadata,
    opened,
    pixels,
    rotated_photo,
    stored,
)


def backends() -> list[str]:
    return jpeg_backends() or ["missing"]


def require(backend: str) -> None:
    if backend not in jpeg_backends():
        pytest.skip(f"lossless JPEG backend {backend!r} not installed")


@pytest.mark.parametrize("rotation", ROTATIONS)
@pytest.mark.parametrize("backend", backends())
def test_jpeg_is_rotated_losslessly(upright: Image.Image, rotation: int, backend: str) -> None:
    require(backend)
    data = encode(rotated_photo(upright, rotation), "jpg", quality=90)

    fixed, action = upright_bytes(data, rotation, jpeg_backend=backend)  # type: ignore[arg-type]
    assert action == ACTION_LOSSLESS
    # Right direction: the decoded result is the decoded source turned back upright (up to IDCT rounding).
    expected = as_array(opened(data).rotate(-rotation, expand=True))
    assert close(pixels(fixed), expected, mean=0.5, peak=8)
    assert close(pixels(fixed), as_array(upright), mean=3.0, peak=80)
    # DCT-domain, no re-encoding: turning it back gives the very same decoded pixels as the source.
    back, _ = upright_bytes(fixed, 360 - rotation, jpeg_backend=backend)  # type: ignore[arg-type]
    assert np.array_equal(pixels(back), pixels(data))
    assert metadata(fixed) == (ICC, "roost-test", 1)  # metadata kept, orientation reset


@pytest.mark.parametrize(("existing", "rotation"), [(6, 90), (3, 270), (2, 90), (5, 180), (8, 270)])
def test_jpeg_lossless_combines_the_existing_tag(upright: Image.Image, existing: int, rotation: int) -> None:
    require(backends()[0])
    data = encode(stored(rotated_photo(upright, rotation), existing), "jpg", existing, quality=90)
    fixed, action = upright_bytes(data, rotation)
    assert action == ACTION_LOSSLESS
    expected = as_array(ImageOps.exif_transpose(opened(data)).rotate(-rotation, expand=True))
    assert close(pixels(fixed), expected, mean=0.5, peak=8)
    assert close(pixels(fixed, transpose_exif=True), expected, mean=0.5, peak=8)  # tag reset: no double turn


def test_a_wrong_tag_alone_is_reset_without_touching_the_scan(upright: Image.Image) -> None:
    data = encode(upright, "jpg", 8, quality=90)  # upright pixels that a viewer shows turned 90 CCW
    fixed, action = upright_bytes(data, 90)
    assert action == ACTION_LOSSLESS
    assert fixed[fixed.index(b"\xff\xda") :] == data[data.index(b"\xff\xda") :]
    assert metadata(fixed)[2] == 1


def test_jpeg_without_a_backend_is_reencoded(upright: Image.Image) -> None:
    data = encode(rotated_photo(upright, 90), "jpg", quality=90)
    fixed, action = upright_bytes(data, 90, jpeg_backend="pillow")
    assert action == ACTION_REENCODED
    assert close(pixels(fixed), as_array(opened(data).rotate(-90, expand=True)), mean=2.0, peak=64)
    assert metadata(fixed) == (ICC, "roost-test", 1)
    source, result = opened(data), opened(fixed)
    assert isinstance(source, JpegImageFile) and isinstance(result, JpegImageFile)
    transposed = {k: [t[c * 8 + r] for r in range(8) for c in range(8)] for k, t in source.quantization.items()}
    assert {k: list(t) for k, t in result.quantization.items()} == transposed  # the source's tables, turned


@pytest.mark.parametrize("rotation", [90, 270])
def test_imperfect_jpeg_is_reencoded_or_trimmed(upright: Image.Image, rotation: int) -> None:
    require(backends()[0])
    data = encode(rotated_photo(upright, rotation).crop((0, 0, 190, 310)), "jpg", None, quality=90)  # not 16k
    expected = as_array(opened(data).rotate(-rotation, expand=True))

    reencoded, action = upright_bytes(data, rotation)
    assert action == ACTION_REENCODED
    assert close(pixels(reencoded), expected, mean=2.0, peak=64)

    trimmed, action = upright_bytes(data, rotation, imperfect="trim")
    assert action == ACTION_TRIMMED
    shape = pixels(trimmed).shape
    assert shape[0] < expected.shape[0] or shape[1] < expected.shape[1]
    assert max(expected.shape[0] - shape[0], expected.shape[1] - shape[1]) < 16


def test_unavailable_backend_is_an_error(upright: Image.Image, monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(rotated_photo(upright, 90), "jpg")
    monkeypatch.setattr(jpeg.shutil, "which", lambda name: None)
    with pytest.raises(OrientFixError, match="not available"):
        upright_bytes(data, 90, jpeg_backend="jpegtran")


def test_malformed_exif_is_ignored_when_rewriting(upright: Image.Image) -> None:
    data = encode(rotated_photo(upright, 90), "jpg", None, exif=b"Exif\x00\x00garbage, not TIFF", quality=90)
    fixed, action = upright_bytes(data, 90)
    assert action in (ACTION_LOSSLESS, ACTION_REENCODED)
    assert close(pixels(fixed), as_array(upright), mean=3.0, peak=80)
