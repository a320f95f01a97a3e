"""Orientation fixes as pure functions on a file's bytes, for the orient job (issue 4).

* :func:`upright_bytes` rewrites the pixels upright with Orientation reset to 1 (or absent). JPEGs are
  turned in the DCT domain (see :mod:`roost.files.jpeg`); PNG, WebP (saved lossless), TIFF, BMP and GIF
  are rotated pixel-exactly with Pillow, keeping ICC, EXIF (TIFF: the descriptive IFD0 tags) and PNG
  text; multi-frame files are refused rather than cut down to their first frame. Not updated: an EXIF
  thumbnail and the EXIF pixel dimensions (as with ``jpegtran -copy all``).
* :func:`exif_bytes` only changes the EXIF Orientation tag (JPEG, PNG, WebP, TIFF), combined with the
  tag already there, so that a viewer shows the image upright; pixels and every other byte stay.

A rotation is the model's answer: the image as displayed (tag applied) is turned that many degrees
counter-clockwise, so a fix turns it back clockwise. Nothing here writes a file except
:func:`write_backup`; the caller writes the results (with :func:`roost.files.atomic.atomic_write`).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, get_args

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from roost.errors import OrientFixError
from roost.files.atomic import atomic_write
from roost.files.containers import container, exif_format, open_image, read_exif, write_exif
from roost.files.exif import (
    EMPTY_TIFF,
    EXIF_PREFIX,
    ORIENTATION_TAG,
    ROTATIONS,
    Rotation,
    check_rotation,
    combine_orientation,
    display,
    exif_orientation,
    set_tiff_orientation,
    strip_prefix,
)
from roost.files.jpeg import (
    ACTION_LOSSLESS,
    ACTION_REENCODED,
    ACTION_TRIMMED,
    JPEG_BACKENDS,
    Imperfect,
    JpegBackend,
    jpeg_backends,
    upright_jpeg,
)

__all__ = [
    "ACTION_EXIF",
    "ACTION_LOSSLESS",
    "ACTION_REENCODED",
    "ACTION_TRIMMED",
    "ACTION_UNCHANGED",
    "ROTATIONS",
    "Imperfect",
    "JpegBackend",
    "Rotation",
    "combine_orientation",
    "exif_bytes",
    "exif_orientation",
    "jpeg_backends",
    "read_exif_orientation",
    "upright_bytes",
    "write_backup",
]

ACTION_UNCHANGED = "unchanged"
ACTION_EXIF = "exif orientation set"

_PILLOW_FORMATS = {"PNG", "WEBP", "TIFF", "BMP", "GIF"}
# IFD0 tags copied to a rotated TIFF: the descriptive ones (Pillow writes the layout tags itself).
_TIFF_KEEP = {270, 271, 272, 282, 283, 296, 305, 306, 315, 33432}
_MAX_BACKUPS = 100


def upright_bytes(
    data: bytes, rotation: int, *, imperfect: Imperfect = "reencode", jpeg_backend: JpegBackend = "auto"
) -> tuple[bytes, str]:
    """The file ``data`` turned upright, and the action taken (``ACTION_*``); rotation 0 returns ``data``."""
    check_rotation(rotation)
    if imperfect not in get_args(Imperfect):
        raise OrientFixError(f"imperfect must be 'reencode' or 'trim', got {imperfect!r}")
    if jpeg_backend not in JPEG_BACKENDS:
        raise OrientFixError(f"jpeg_backend must be one of {', '.join(JPEG_BACKENDS)}; got {jpeg_backend!r}")
    if rotation == 0:
        return data, ACTION_UNCHANGED
    if container(data) == "JPEG":
        return upright_jpeg(data, rotation, imperfect, jpeg_backend)
    return _upright_pillow(data, rotation), ACTION_LOSSLESS


def exif_bytes(data: bytes, rotation: int) -> bytes:
    """The file ``data`` with only its EXIF Orientation set so that viewers show it upright.

    The model saw the image with its current tag applied, so the new tag is that tag followed by a
    clockwise rotation. Formats without EXIF (anything but JPEG, PNG, WebP, TIFF) raise ``OrientFixError``.
    """
    check_rotation(rotation)
    exif_format(data)
    if rotation == 0:
        return data
    tiff = read_exif(data)
    orientation = combine_orientation(exif_orientation(tiff), rotation)
    return write_exif(data, set_tiff_orientation(tiff or EMPTY_TIFF, orientation))


def read_exif_orientation(data: bytes) -> int:
    """The EXIF Orientation (1..8) of a file's bytes; 1 when absent, invalid, or the format has no EXIF.

    A JPEG whose segments are corrupt raises ``ImageError``.
    """
    return exif_orientation(read_exif(data)) if container(data) is not None else 1


def write_backup(src: Path, data: bytes, suffix: str = ".orig") -> Path:
    """Save ``data`` (the original bytes of ``src``) as ``<name><suffix>`` beside the file ``src`` points to.

    An earlier backup is never overwritten: an identical one is reused, otherwise the next free numbered
    name (``<name><suffix>.1`` …) is taken. Written atomically with ``src``'s mode and times.
    """
    if not suffix or os.sep in suffix or (os.altsep and os.altsep in suffix):
        raise OrientFixError(f"A backup suffix must be non-empty and hold no path separator; got {suffix!r}")
    src = Path(os.path.realpath(src))
    names = [src.name + suffix] + [f"{src.name}{suffix}.{i}" for i in range(1, _MAX_BACKUPS)]
    for backup in map(src.with_name, names):
        if not backup.exists():
            atomic_write(backup, data, mode_from=src, keep_times=True)
            return backup
        if backup.read_bytes() == data:
            return backup
    raise OrientFixError(f"Too many backups of {src} already exist ({_MAX_BACKUPS})")


# ---------------------------------------------------------------- formats Pillow rotates exactly


def _upright_pillow(data: bytes, rotation: int) -> bytes:
    image = open_image(data)
    if image.format not in _PILLOW_FORMATS:
        supported = ", ".join(["JPEG", *sorted(_PILLOW_FORMATS)])
        raise OrientFixError(f"Cannot rewrite {image.format} files; supported: {supported}")
    frames = getattr(image, "n_frames", 1)
    if frames > 1:
        raise OrientFixError(f"{image.format} file has {frames} frames; only single images are rotated")
    exif = image.getexif()
    transform = combine_orientation(exif.get(ORIENTATION_TAG, 1), rotation)
    buf = io.BytesIO()
    display(image, transform).save(buf, format=image.format, **_save_options(image, exif))
    return buf.getvalue()


def _save_options(image: Image.Image, exif: Image.Exif) -> dict[str, Any]:
    """Pillow save options that keep metadata and make the result pixel-exact, per format."""
    info = image.info
    options: dict[str, Any] = {k: info[k] for k in ("icc_profile", "dpi", "transparency") if info.get(k) is not None}
    if image.format == "TIFF":
        kept = Image.Exif()
        for tag in _TIFF_KEEP & set(exif):
            kept[tag] = exif[tag]
        compression = info.get("compression")
        return options | {"exif": kept, "compression": "tiff_adobe_deflate" if compression == "jpeg" else compression}
    if "exif" in info:
        options["exif"] = EXIF_PREFIX + set_tiff_orientation(strip_prefix(info["exif"]), 1)
    elif exif:  # e.g. PNG's legacy text-chunk EXIF
        exif.pop(ORIENTATION_TAG, None)
        options["exif"] = exif
    if image.format == "WEBP":
        options |= {"lossless": True, "exact": True}
    text: dict[str, str] = getattr(image, "text", None) or {}
    if image.format == "PNG" and text:
        pnginfo = PngInfo()
        for key, value in text.items():
            if key.lower() != "raw profile type exif":  # legacy EXIF, written as eXIf below
                pnginfo.add_itxt(key, value)
        options["pnginfo"] = pnginfo
    return options
