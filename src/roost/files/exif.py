"""The EXIF Orientation tag: its eight values, how they combine with a rotation, and reading and setting
it in a TIFF structure (the payload of a JPEG APP1 ``Exif`` segment, a PNG ``eXIf`` chunk, a WebP ``EXIF``
chunk, or a whole TIFF file).

A rotation here is what the orientation model reports: the image *as displayed* (tag applied) is turned
0, 90, 180 or 270 degrees counter-clockwise, so the fix turns it back clockwise.
"""

from __future__ import annotations

import functools
import struct
from typing import Literal

from PIL import Image

from roost.errors import OrientFixError

Rotation = Literal[0, 90, 180, 270]
ROTATIONS: tuple[Rotation, ...] = (0, 90, 180, 270)

ORIENTATION_TAG = 0x0112
EXIF_PREFIX = b"Exif\x00\x00"
EMPTY_TIFF = b"II*\x00" + struct.pack("<IH", 8, 0) + b"\x00" * 4
"""A little-endian TIFF structure whose IFD0 has no entries."""

_T = Image.Transpose
_DISPLAY: dict[int, _T | None] = {
    1: None, 2: _T.FLIP_LEFT_RIGHT, 3: _T.ROTATE_180, 4: _T.FLIP_TOP_BOTTOM,
    5: _T.TRANSPOSE, 6: _T.ROTATE_270, 7: _T.TRANSVERSE, 8: _T.ROTATE_90,
}  # fmt: skip
"""EXIF Orientation value -> the transform a viewer applies to the stored pixels (Pillow's are CCW)."""
_CLOCKWISE = {0: 1, 90: 6, 180: 3, 270: 8}  # rotating by r clockwise == displaying with this orientation


def check_rotation(rotation: int) -> None:
    if rotation not in _CLOCKWISE:
        raise OrientFixError(f"Rotation must be one of 0, 90, 180, 270; got {rotation!r}")


def display(image: Image.Image, orientation: int) -> Image.Image:
    """``image`` as a viewer shows it when its tag is ``orientation`` (1..8)."""
    method = _DISPLAY[orientation]
    return image if method is None else image.transpose(method)


@functools.cache
def combine_orientation(orientation: int, rotation: int) -> int:
    """The EXIF orientation that shows upright an image displayed with ``orientation`` and seen rotated
    by ``rotation`` CCW: the tag's transform followed by a clockwise rotation, as one of the eight values."""
    check_rotation(rotation)
    probe = Image.frombytes("L", (3, 2), bytes(range(6)))
    start = orientation if orientation in _DISPLAY else 1
    target = _signature(display(display(probe, start), _CLOCKWISE[rotation]))
    return next(o for o in _DISPLAY if _signature(display(probe, o)) == target)


def _signature(image: Image.Image) -> tuple[tuple[int, int], bytes]:
    return image.size, image.tobytes()


def exif_orientation(tiff: bytes | None) -> int:
    """The Orientation value (1..8) in a TIFF / EXIF structure; 1 when absent or invalid."""
    if not tiff:
        return 1
    try:
        endian, _, entry = _find_orientation(tiff)
        if entry is None:
            return 1
        kind, value = struct.unpack_from(endian + "H4xH", tiff, entry + 2)
    except (OrientFixError, struct.error):
        return 1  # malformed EXIF: viewers ignore it too
    return value if kind == 3 and value in _DISPLAY else 1


def set_tiff_orientation(tiff: bytes, value: int) -> bytes:
    """Set Orientation in IFD0: in place when present, else by appending a copy of IFD0 with it added.

    Raises ``OrientFixError`` when ``tiff`` is not a classic TIFF structure or is truncated.
    """
    endian, ifd, entry = _find_orientation(tiff)
    new_entry = struct.pack(endian + "HHIH2x", ORIENTATION_TAG, 3, 1, value)
    if entry is not None:
        return tiff[:entry] + new_entry + tiff[entry + 12 :]
    if value == 1:
        return tiff  # absent means 1
    count = struct.unpack_from(endian + "H", tiff, ifd)[0]
    entries = [tiff[e : e + 12] for e in range(ifd + 2, ifd + 2 + 12 * count, 12)] + [new_entry]
    entries.sort(key=lambda e: struct.unpack_from(endian + "H", e)[0])
    next_ifd = tiff[ifd + 2 + 12 * count : ifd + 6 + 12 * count]
    body = tiff + b"\x00" * (len(tiff) % 2)
    new_ifd = struct.pack(endian + "H", count + 1) + b"".join(entries) + next_ifd
    return body[:4] + struct.pack(endian + "I", len(body)) + body[8:] + new_ifd


def _find_orientation(tiff: bytes) -> tuple[str, int, int | None]:
    """(endianness, IFD0 offset, offset of IFD0's Orientation entry or None)."""
    endian = {b"II*\x00": "<", b"MM\x00*": ">"}.get(tiff[:4])
    if endian is None:
        raise OrientFixError("EXIF data is not a (classic) TIFF structure")
    try:
        ifd = struct.unpack_from(endian + "I", tiff, 4)[0]
        count = struct.unpack_from(endian + "H", tiff, ifd)[0]
        for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
            if struct.unpack_from(endian + "H", tiff, entry)[0] == ORIENTATION_TAG:
                return endian, ifd, entry
    except struct.error as e:
        raise OrientFixError(f"EXIF data is truncated: {e}") from e
    return endian, ifd, None


def strip_prefix(exif: bytes) -> bytes:
    """The TIFF structure of an EXIF payload, without the ``Exif\\0\\0`` prefix some writers add."""
    return exif[len(EXIF_PREFIX) :] if exif.startswith(EXIF_PREFIX) else exif
