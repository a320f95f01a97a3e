"""Turning a JPEG upright: in the DCT domain when possible, else re-encoded with the source's tables.

Lossless transforms use libjpeg-turbo's ``tjTransform``, through the ``_jpegtran`` module that the
``jpegtran-cffi-wheels`` wheel ships (it bundles libjpeg-turbo), or else a ``jpegtran`` binary on PATH.
Like ``jpegtran -perfect``, an image whose partial edge blocks would move to the top or left (a width or
height that is not a multiple of the MCU size, 8 or 16 px) is not transformed losslessly: by default it
is re-encoded with Pillow using the source's quantisation tables and subsampling; ``imperfect="trim"``
drops those edge blocks instead, like ``jpegtran -trim``. The source's metadata segments (EXIF with
Orientation reset to 1, XMP, ICC, IPTC, comments) are carried over either way.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any, Literal

from PIL import JpegImagePlugin

from roost.errors import ImageError, OrientFixError
from roost.files.containers import open_image, read_exif, splice_jpeg_metadata
from roost.files.exif import combine_orientation, display, exif_orientation

Imperfect = Literal["reencode", "trim"]
JpegBackend = Literal["auto", "jpegtran-cffi", "jpegtran", "pillow"]
JPEG_BACKENDS: tuple[JpegBackend, ...] = ("auto", "jpegtran-cffi", "jpegtran", "pillow")

ACTION_LOSSLESS = "rotated (lossless)"
ACTION_TRIMMED = "rotated (lossless, trimmed)"
ACTION_REENCODED = "rotated (re-encoded)"

_TJ_OPS = {2: 1, 3: 6, 4: 2, 5: 3, 6: 5, 7: 4, 8: 7}  # orientation -> TJXOP_* (libjpeg-turbo)
_JPEGTRAN_ARGS = {
    2: ["-flip", "horizontal"], 3: ["-rotate", "180"], 4: ["-flip", "vertical"], 5: ["-transpose"],
    6: ["-rotate", "90"], 7: ["-transverse"], 8: ["-rotate", "270"],
}  # fmt: skip


class _ImperfectError(Exception):
    """A lossless JPEG transform that would move partial edge blocks (``jpegtran -perfect`` fails)."""


def upright_jpeg(data: bytes, rotation: int, imperfect: Imperfect, backend: JpegBackend) -> tuple[bytes, str]:
    """The JPEG ``data`` (seen rotated ``rotation`` CCW with its tag applied) turned upright, and the action."""
    transform = combine_orientation(exif_orientation(read_exif(data)), rotation)
    if transform == 1:  # the tag alone was wrong: reset it, pixels stay
        return splice_jpeg_metadata(data, data), ACTION_LOSSLESS
    out, action = None, ACTION_LOSSLESS
    if backend != "pillow":
        try:
            out = _lossless(data, transform, trim=False, backend=backend)
        except _ImperfectError:
            if imperfect == "trim":
                out, action = _lossless(data, transform, trim=True, backend=backend), ACTION_TRIMMED
    if out is None:
        out, action = _reencode(data, transform), ACTION_REENCODED
    return splice_jpeg_metadata(data, out), action


def jpeg_backends() -> list[str]:
    """The lossless JPEG backends available here, in the order ``jpeg_backend="auto"`` tries them."""
    found = ["jpegtran-cffi"] if _tj_lib() is not None else []
    return found + (["jpegtran"] if shutil.which("jpegtran") else [])


def _reencode(data: bytes, transform: int) -> bytes:
    """Re-encode with the source's quantisation tables (transposed with the image) and subsampling."""
    image = open_image(data)
    if not isinstance(image, JpegImagePlugin.JpegImageFile):
        raise ImageError(f"Cannot re-encode: Pillow reads this file as {image.format}, not JPEG")
    swap = transform >= 5
    tables = {k: _transpose_table(t) if swap else list(t) for k, t in image.quantization.items()}
    sampling = JpegImagePlugin.get_sampling(image)
    buf = io.BytesIO()
    display(image, transform).save(
        buf,
        format="JPEG",
        qtables=tables,
        subsampling=0 if swap and sampling == 1 else sampling,  # 4:2:2 turned sideways: keep full chroma
        progressive=bool(image.info.get("progressive")),
        **({"dpi": image.info["dpi"]} if "dpi" in image.info else {}),
    )
    return buf.getvalue()


def _transpose_table(table: Sequence[int]) -> list[int]:
    return [table[col * 8 + row] for row in range(8) for col in range(8)]


def _lossless(data: bytes, transform: int, *, trim: bool, backend: JpegBackend) -> bytes | None:
    """DCT-domain transform by the orientation value ``transform``; None when no backend could do it."""
    if backend in ("auto", "jpegtran-cffi") and _tj_lib() is not None:
        return _tj_transform(data, transform, trim)
    if backend in ("auto", "jpegtran") and shutil.which("jpegtran"):
        return _jpegtran_transform(data, transform, trim)
    if backend != "auto":
        raise OrientFixError(f"JPEG backend {backend!r} is not available here; available: {jpeg_backends()}")
    return None


@functools.cache
def _tj_lib() -> Any:
    try:
        import _jpegtran  # the libjpeg-turbo binding that jpegtran-cffi-wheels ships
    except ImportError:
        return None
    return _jpegtran


def _tj_transform(data: bytes, transform: int, trim: bool) -> bytes | None:
    ffi, lib = _tj_lib().ffi, _tj_lib().lib
    options = ffi.new("tjtransform*")
    options.op = _TJ_OPS[transform]
    options.options = lib.TJXOPT_TRIM if trim else lib.TJXOPT_PERFECT
    out, size = ffi.new("unsigned char**"), ffi.new("unsigned long*")
    handle = lib.tjInitTransform()
    try:
        if lib.tjTransform(handle, ffi.from_buffer("unsigned char[]", data), len(data), 1, out, size, options, 0) == 0:
            return bytes(ffi.buffer(out[0], size[0]))
        if b"not perfect" in ffi.string(lib.tjGetErrorStr()):
            raise _ImperfectError
        return None  # unsupported or corrupt: the Pillow path decides
    finally:
        if out[0] != ffi.NULL:
            lib.tjFree(out[0])
        lib.tjDestroy(handle)


def _jpegtran_transform(data: bytes, transform: int, trim: bool) -> bytes | None:
    args = ["jpegtran", "-copy", "none", "-trim" if trim else "-perfect", *_JPEGTRAN_ARGS[transform]]
    result = subprocess.run(args, input=data, capture_output=True, check=False)
    if result.returncode == 0:
        return result.stdout
    if b"not perfect" in result.stderr:
        raise _ImperfectError
    return None
