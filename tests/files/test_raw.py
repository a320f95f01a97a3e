"""Camera RAW through rawpy: a minimal DNG made here (a CFA raw image and a JPEG preview of a real photo)
decodes to its preview turned as the camera was held; RAW originals are never rewritten, only sidecars."""

from __future__ import annotations

import hashlib
import io
import struct
from pathlib import Path

import pytest
from PIL import Image

from roost.data.decode import load_image
from roost.errors import OrientFixError
from roost.files.exif import display
from roost.files.raw import raw_orientation
from roost.files.xmp import read_orientation
from roost.jobs.orient import Fix, file_orientation, fixed_bytes
from tests.conftest import SHARED

PHOTO = SHARED / "photos" / "kite.jpg"
pytestmark = [
    pytest.mark.skipif(not PHOTO.exists(), reason="shared fixtures not present"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),
]
rawpy = pytest.importorskip("rawpy")

Entry = tuple[int, int, int, bytes]  # tag, TIFF type, count, value bytes
SHORT, LONG, ASCII, BYTE = 3, 4, 2, 1


def _ifd(entries: list[Entry], at: int) -> bytes:
    """A little-endian TIFF IFD placed at offset ``at``, values over 4 bytes right after it."""
    size = 2 + 12 * len(entries) + 4
    head, extra = struct.pack("<H", len(entries)), b""
    for tag, kind, count, value in sorted(entries):
        if len(value) <= 4:
            head += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\x00")
        else:
            head += struct.pack("<HHII", tag, kind, count, at + size + len(extra))
            extra += value + b"\x00" * (len(value) % 2)
    return head + struct.pack("<I", 0) + extra


def _u16(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}H", *values)


def _u32(*values: int) -> bytes:
    return struct.pack(f"<{len(values)}I", *values)


def make_dng(preview: Image.Image, orientation: int) -> bytes:
    """IFD0: the JPEG preview and the camera's Orientation; a SubIFD: a 64x48 16-bit CFA raw image."""
    buf = io.BytesIO()
    preview.save(buf, format="JPEG", quality=95)
    jpeg, raw = buf.getvalue(), b"\x00\x10" * (64 * 48)

    def layout(sub: int, jpeg_at: int, raw_at: int) -> tuple[bytes, bytes]:
        ifd0 = [(254, LONG, 1, _u32(1)), (256, LONG, 1, _u32(preview.width)), (257, LONG, 1, _u32(preview.height)),
                (258, SHORT, 3, _u16(8, 8, 8)), (259, SHORT, 1, _u16(7)), (262, SHORT, 1, _u16(6)),
                (271, ASCII, 6, b"Canon\x00"), (272, ASCII, 10, b"Canon EOS\x00"), (273, LONG, 1, _u32(jpeg_at)),
                (274, SHORT, 1, _u16(orientation)), (277, SHORT, 1, _u16(3)), (278, LONG, 1, _u32(preview.height)),
                (279, LONG, 1, _u32(len(jpeg))), (330, LONG, 1, _u32(sub)), (50706, BYTE, 4, bytes([1, 4, 0, 0])),
                (50708, ASCII, 10, b"Canon EOS\x00")]  # fmt: skip
        cfa = [(254, LONG, 1, _u32(0)), (256, LONG, 1, _u32(64)), (257, LONG, 1, _u32(48)), (258, SHORT, 1, _u16(16)),
               (259, SHORT, 1, _u16(1)), (262, SHORT, 1, _u16(32803)), (273, LONG, 1, _u32(raw_at)),
               (277, SHORT, 1, _u16(1)), (278, LONG, 1, _u32(48)), (279, LONG, 1, _u32(len(raw))),
               (33421, SHORT, 2, _u16(2, 2)), (33422, BYTE, 4, bytes([0, 1, 1, 2])),
               (50717, LONG, 1, _u32(4095))]  # fmt: skip
        return _ifd(ifd0, 8), _ifd(cfa, sub)

    first, _ = layout(0, 0, 0)
    sub = 8 + len(first)
    _, second = layout(sub, 0, 0)
    jpeg_at = sub + len(second)
    raw_at = jpeg_at + len(jpeg) + len(jpeg) % 2
    first, second = layout(sub, jpeg_at, raw_at)
    return b"II*\x00" + _u32(8) + first + second + jpeg + b"\x00" * (len(jpeg) % 2) + raw


def photo() -> Image.Image:
    return Image.open(PHOTO).convert("RGB").resize((96, 64))


def close(a: Image.Image, b: Image.Image) -> bool:
    diff = [abs(x - y) for x, y in zip(a.tobytes(), b.tobytes(), strict=True)]
    return a.size == b.size and sum(diff) / len(diff) < 4


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_the_preview_is_turned_as_the_camera_was_held(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / "IMG_0001.dng"
    path.write_bytes(make_dng(photo(), orientation))
    assert raw_orientation(path.read_bytes(), str(path)) == orientation
    assert close(load_image(path), display(photo(), orientation))
    assert load_image(path, exif_transpose=False).size == (96, 64)
    assert load_image(path, draft=(24, 24)).size in ((48, 32), (32, 48))  # the preview JPEG, DCT-scaled


def test_raw_originals_get_sidecars_and_refusals_only(tmp_path: Path) -> None:
    path = tmp_path / "IMG_0001.nef"
    data = make_dng(photo(), 6)
    path.write_bytes(data)
    assert file_orientation(path, data) == 6
    sidecar, _ = fixed_bytes(path, data, 90, Fix.XMP)
    value = read_orientation(sidecar)
    assert value is not None and close(display(photo(), value), display(photo(), 6).rotate(-90, expand=True))
    for fix in (Fix.EXIF, Fix.INPLACE, Fix.COPY):
        with pytest.raises(OrientFixError, match="--fix xmp"):
            fixed_bytes(path, data, 90, fix)
    assert fixed_bytes(path, data, 0, Fix.COPY)[0] == data  # an upright RAW is copied byte for byte
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()
