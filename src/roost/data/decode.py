"""Image decoding: one file (or bytes) in, one upright 8-bit RGB ``PIL.Image`` out, or an ``ImageError``.

The reference opens images with a bare ``PIL.Image.open`` and leaves the mode alone (spec api.md §1.7),
so RGBA, 16-bit or CMYK files fail or come out wrong further down. ``load_image`` is the robust
replacement used by ``infer_image`` and the batch pipeline:

* EXIF orientation is applied (``ImageOps.exif_transpose``): the model sees the image the way a viewer
  displays it, which is how a person would label it.
* Every mode becomes 8-bit RGB (``to_rgb``): transparency is composited on a white background (what lies
  under fully transparent pixels is often garbage, and white is what most cut-outs are drawn for);
  16-bit data is scaled by 1/257 rather than clipped; CMYK goes through Pillow's conversion (Pillow
  already reads inverted Adobe CMYK JPEGs correctly). ICC profiles are not applied, as in the reference.
* Every decode failure is an ``ImageError`` naming the file and the reason: empty file, not an image,
  truncated or corrupt data, or more pixels than ``max_pixels``. Pillow's global state
  (``LOAD_TRUNCATED_IMAGES``, ``MAX_IMAGE_PIXELS``) is never changed; the pixel limit is checked per call
  from the header, before any pixel is decoded. Pillow's own global limit still applies on top of it.
* HEIC/HEIF goes through pillow-heif, which applies the container's rotation and mirror (``irot``/``imir``)
  and reads 10/12-bit images as 8-bit; AVIF through Pillow, whose container transform arrives as the EXIF
  tag (see ``roost.files.heif``). Both are recognised by content, whatever the suffix. With pillow-heif
  installed, HEIF files with an embedded thumbnail large enough for ``draft`` decode that instead.
* Camera RAW files (by suffix) decode their embedded preview through rawpy, turned as the camera was held
  (``roost.files.raw``); without rawpy each is one clear error.
* A missing file raises ``FileNotFoundError`` as usual.
"""

from __future__ import annotations

import io
import os
import zlib
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from roost.errors import ImageError
from roost.files.exif import display
from roost.files.heif import heif_kind, open_heif
from roost.files.raw import is_raw_name, read_raw

PathOrBytes = str | os.PathLike[str] | bytes

DEFAULT_MAX_PIXELS = 178_956_970
"""Pillow's default error threshold (twice ``Image.MAX_IMAGE_PIXELS``), as a per-call default."""

BACKGROUND = (255, 255, 255)
"""The colour transparent pixels are composited on."""

_ORIENTATION_TAG = 0x0112
_SWAPPED_ORIENTATIONS = frozenset({5, 6, 7, 8})  # orientations that rotate by 90 or 270 degrees
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error, Image.DecompressionBombError)


def load_image(
    source: PathOrBytes,
    *,
    exif_transpose: bool = True,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    draft: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode a path or raw bytes to an upright 8-bit RGB image.

    Args:
        max_pixels: refuse images with more pixels than this (read from the header); None for no
            limit of roost's own.
        draft: a (width, height) the caller will resize to; JPEGs are then decoded by the DCT at the
            smallest 1/2, 1/4 or 1/8 scale that stays at least this large (much faster for photos far
            bigger than the model input). Off by default: the pixels differ from a full decode.
    """
    name = _display_name(source)
    if isinstance(source, bytes):
        return _decode(io.BytesIO(source), name, len(source), exif_transpose, max_pixels, draft)
    size = os.stat(source).st_size
    with open(source, "rb") as fh:
        return _decode(fh, name, size, exif_transpose, max_pixels, draft)


def _display_name(source: PathOrBytes) -> str:
    return f"<{len(source)} bytes>" if isinstance(source, bytes) else os.fspath(source)


def _decode(
    fh: BinaryIO,
    name: str,
    num_bytes: int,
    exif_transpose: bool,
    max_pixels: int | None,
    draft: tuple[int, int] | None,
) -> Image.Image:
    if num_bytes == 0:
        raise ImageError(f"{name}: empty file (0 bytes)")
    if is_raw_name(name):
        return _decode_raw(fh.read(), name, exif_transpose, max_pixels, draft)
    img = _open(fh, name)
    width, height = img.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(f"{name}: {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}")
    if draft is not None and img.format in ("JPEG", "HEIF"):
        _apply_draft(img, draft)
    try:
        img.load()
    except _DECODE_ERRORS as e:
        raise ImageError(f"{name}: truncated or corrupt image data ({e})") from e
    if exif_transpose:
        img = _transpose(img)
    return to_rgb(img, name=name)


def _decode_raw(
    data: bytes, name: str, exif_transpose: bool, max_pixels: int | None, draft: tuple[int, int] | None
) -> Image.Image:
    """A camera RAW file's embedded preview, turned as the camera was held (``exif_transpose``)."""
    preview, orientation = read_raw(data, name)
    if isinstance(preview, bytes):
        if orientation in _SWAPPED_ORIENTATIONS and draft is not None:
            draft = (draft[1], draft[0])
        preview = _decode(io.BytesIO(preview), f"{name} (embedded preview)", len(preview), False, max_pixels, draft)
    return to_rgb(display(preview, orientation) if exif_transpose else preview, name=name)


def _open(fh: BinaryIO, name: str) -> Image.Image:
    kind = heif_kind(fh.read(64))
    fh.seek(0)
    if kind == "HEIF":
        return open_heif(fh, name)  # type: ignore[arg-type]
    try:
        return Image.open(fh)
    except UnidentifiedImageError as e:
        if kind is not None:
            raise ImageError(f"{name}: corrupt or truncated {kind} file") from e
        raise ImageError(f"{name}: not a recognised image format") from e
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name}: too many pixels ({e})") from e
    except _DECODE_ERRORS as e:
        raise ImageError(f"{name}: unreadable image header ({e})") from e


def _apply_draft(img: Image.Image, size: tuple[int, int]) -> None:
    """Ask the JPEG decoder for a DCT-scaled decode no smaller than ``size`` (given upright)."""
    if _orientation(img) in _SWAPPED_ORIENTATIONS:
        size = (size[1], size[0])
    img.draft(img.mode, (max(1, size[0]), max(1, size[1])))


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_ORIENTATION_TAG, 1))
    except _DECODE_ERRORS:
        return 1


def _transpose(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation in place (no copy when upright); malformed EXIF leaves the image as stored."""
    try:
        ImageOps.exif_transpose(img, in_place=True)
    except (*_DECODE_ERRORS, KeyError, TypeError):
        pass
    return img


def to_rgb(img: Image.Image, *, name: str = "image") -> Image.Image:
    """Convert an image of any Pillow mode to 8-bit RGB (see the module docstring for the rules)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        return img if img.mode == "RGB" else _composite(img)
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_high_depth_to_uint8(img)).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        return _composite(img.convert("RGBA"))
    try:
        return img.convert("RGB")
    except ValueError as e:
        raise ImageError(f"{name}: cannot convert mode {mode!r} to RGB ({e})") from e


def _composite(rgba: Image.Image) -> Image.Image:
    background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _high_depth_to_uint8(img: Image.Image) -> np.ndarray:
    """Scale one-channel 16-bit, 32-bit integer or float data to 0..255.

    ``I;16*`` and ``I`` are read as 16-bit samples (0..65535, as 16-bit PNG and TIFF decode) and divided
    by 257, so 65535 maps to 255 exactly. ``F`` is taken as 0..1 when its maximum is at most 1, else as
    0..255.
    """
    data = np.asarray(img)
    if img.mode == "F":
        values = data.astype(np.float64)
        scale = 255.0 if values.size and np.nanmax(values) <= 1.0 else 1.0
        return np.clip(np.rint(np.nan_to_num(values) * scale), 0, 255).astype(np.uint8)
    values = np.clip(data.astype(np.int64), 0, 65535)
    return ((values * 2 + 257) // 514).astype(np.uint8)  # round(v / 257) in integers
