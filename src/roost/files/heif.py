"""HEIF (HEIC) and AVIF containers: recognising them, their own rotation and mirror, upright copies.

Both are ISO base media files (``ftyp`` brands tell them apart). Their orientation is not the EXIF tag
but the ``irot`` (rotation, counter-clockwise in quarter turns) and ``imir`` (mirror) properties of the
primary item, applied in the order the item lists them; viewers apply them and, as the HEIF standard
asks, ignore the EXIF tag. :func:`container_orientation` expresses that transform as the EXIF value
(1..8) that shows the stored pixels the same way, which is what photo libraries compare an XMP
``tiff:Orientation`` with.

HEIF is decoded by pi-heif (libheif and libde265 only: LGPL wheels, a few MB; a dependency of roost), or
by pillow-heif where that is installed (it also decodes embedded thumbnails for ``draft``); both apply
the transform and reset the EXIF tag to 1. Pillow
decodes AVIF as coded and reports the transform as the EXIF tag, so ``ImageOps.exif_transpose`` finishes
the job. Neither container is rewritten in place here: an upright *copy* is re-encoded
(:func:`upright_copy`), which for HEIC needs pillow-heif's encoder (``pip install 'roost[heic-copy]'``;
its wheels bundle x265 and are GPL-licensed, which is why roost does not require it).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Literal

from PIL import Image

from roost.errors import ImageError, OrientFixError
from roost.files.exif import ORIENTATION_TAG, check_rotation, combine_orientation, display

HeifKind = Literal["HEIF", "AVIF"]

_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"heif"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_COPY_QUALITY = 92  # upright copies: visually lossless for photos, far smaller than lossless
_T = Image.Transpose
_IROT = {1: _T.ROTATE_90, 2: _T.ROTATE_180, 3: _T.ROTATE_270}  # quarter turns counter-clockwise
_IMIR = {0: _T.FLIP_TOP_BOTTOM, 1: _T.FLIP_LEFT_RIGHT}  # as libheif and libavif read the mirror bit


def heif_kind(head: bytes) -> HeifKind | None:
    """``HEIF`` or ``AVIF`` when the first bytes of a file are such an ``ftyp`` box, else None."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return None
    size = min(int.from_bytes(head[:4], "big"), len(head))
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, size - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "AVIF"
    return "HEIF" if brands & _HEIF_BRANDS else None


def open_heif(fh: io.BufferedIOBase | io.BytesIO, name: str) -> Image.Image:
    """The primary image of a HEIF file (transform applied, 10/12-bit read as 8-bit); lazy like ``Image.open``."""
    try:
        from pillow_heif.as_plugin import HeifImageFile  # a superset of pi-heif: also embedded thumbnails
    except ImportError:
        try:
            from pi_heif.as_plugin import HeifImageFile
        except ImportError as e:
            raise ImageError(f"{name}: HEIC/HEIF decoding needs pi-heif (pip install pi-heif)") from e
    try:
        return HeifImageFile(fh)
    except (ValueError, OSError, SyntaxError, EOFError) as e:
        raise ImageError(f"{name}: corrupt or truncated HEIF file ({_first_line(e)})") from e


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


# ---------------------------------------------------------------- the container's orientation


def container_orientation(data: bytes) -> int:
    """The EXIF value (1..8) equivalent to the primary item's ``irot``/``imir``; 1 when it has none.

    Raises ``ImageError`` when the box structure up to the metadata is corrupt.
    """
    meta = _find(data, 0, len(data), b"meta")
    if meta is None:
        return 1
    start, end = meta[0] + 4, meta[1]  # a full box: version and flags first
    pitm, iprp = _find(data, start, end, b"pitm"), _find(data, start, end, b"iprp")
    if pitm is None or iprp is None:
        return 1
    ipco, ipma = _find(data, *iprp, b"ipco"), _find(data, *iprp, b"ipma")
    if ipco is None or ipma is None:
        return 1
    primary = _read_uint(data, pitm[0] + 4, 2 if _read_uint(data, pitm[0], 1) == 0 else 4)
    properties = list(_boxes(data, *ipco))
    probe = Image.frombytes("L", (3, 2), bytes(range(6)))
    shown = probe
    for index in _associations(data, ipma, primary):
        if not 1 <= index <= len(properties):
            continue
        kind, payload, _ = properties[index - 1]
        if kind == b"irot" and _read_uint(data, payload, 1) & 3:
            shown = shown.transpose(_IROT[_read_uint(data, payload, 1) & 3])
        elif kind == b"imir":
            shown = shown.transpose(_IMIR[_read_uint(data, payload, 1) & 1])
    return next(o for o in range(1, 9) if _same(display(probe, o), shown))


def _same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and a.tobytes() == b.tobytes()


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of the boxes between ``start`` and ``end``."""
    i = start
    while i + 8 <= end:
        size, kind, header = int.from_bytes(data[i : i + 4], "big"), data[i + 4 : i + 8], 8
        if size == 1:
            size, header = int.from_bytes(data[i + 8 : i + 16], "big"), 16
        elif size == 0:
            size = end - i
        if size < header:
            raise ImageError(f"corrupt HEIF/AVIF box {kind!r} (size {size})")
        yield kind, i + header, min(i + size, end)
        i += size


def _find(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    return next(((s, e) for k, s, e in _boxes(data, start, end) if k == kind), None)


def _read_uint(data: bytes, at: int, size: int) -> int:
    if at + size > len(data):
        raise ImageError("corrupt HEIF/AVIF metadata (truncated box)")
    return int.from_bytes(data[at : at + size], "big")


def _associations(data: bytes, ipma: tuple[int, int], item: int) -> list[int]:
    """The property indices (1-based, in order) that the ``ipma`` box associates with ``item``."""
    at = ipma[0]
    version, flags = _read_uint(data, at, 1), _read_uint(data, at + 1, 3)
    id_size, index_size = (2 if version < 1 else 4), (2 if flags & 1 else 1)
    count, at = _read_uint(data, at + 4, 4), at + 8
    for _ in range(count):
        entry, n = _read_uint(data, at, id_size), _read_uint(data, at + id_size, 1)
        at += id_size + 1
        indices = [_read_uint(data, at + k * index_size, index_size) for k in range(n)]
        at += n * index_size
        if entry == item:
            return [i & (0x7FFF if index_size == 2 else 0x7F) for i in indices]  # the top bit: "essential"
    return []


# ---------------------------------------------------------------- fixes


def refusal(kind: str, fix: str) -> OrientFixError:
    """The per-file error of a fix that would have to rewrite the coded image of a HEIF, AVIF or RAW original."""
    other = "--fix xmp (a sidecar)" + (" or --fix copy (an upright copy)" if kind in ("HEIF", "AVIF") else "")
    return OrientFixError(
        f"--fix {fix} does not change {kind} originals (their orientation is part of the container, and "
        f"roost never re-encodes an original); use {other} instead"
    )


def upright_copy(data: bytes, kind: HeifKind, rotation: int) -> bytes:
    """A new file of the same format showing the image upright: re-encoded (quality 92), ICC kept,
    EXIF kept with Orientation 1, no container transform. For copies only, never for an original."""
    check_rotation(rotation)
    image = open_heif(io.BytesIO(data), "image") if kind == "HEIF" else Image.open(io.BytesIO(data))
    exif = image.getexif()
    transform = combine_orientation(int(exif.get(ORIENTATION_TAG, 1)), rotation)
    image.load()
    upright = display(image, transform)
    exif[ORIENTATION_TAG] = 1
    options = {"quality": _COPY_QUALITY, "exif": exif.tobytes()}
    if image.info.get("icc_profile"):
        options["icc_profile"] = image.info["icc_profile"]
    buf = io.BytesIO()
    if kind == "HEIF":
        try:
            from pillow_heif import from_pillow
        except ImportError as e:
            raise OrientFixError(
                "an upright HEIC copy needs an HEIC encoder: pip install 'roost[heic-copy]' (pillow-heif)"
            ) from e
        from_pillow(upright).save(buf, **options)
    else:
        upright.save(buf, format="AVIF", **options)
    return buf.getvalue()
