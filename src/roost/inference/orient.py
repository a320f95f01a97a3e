"""Orientation decisions and fixes for ``roost orient`` (issue 4).

The orientation model has four classes: the image *as displayed* (EXIF orientation applied) is rotated by
0, 90, 180 or 270 degrees counter-clockwise. A fix rotates it back by the same angle clockwise and
returns the action it performed, for the report's ``action`` column.

* :func:`fix_exif` only changes the EXIF Orientation tag (JPEG, PNG, WebP, TIFF), combined with the tag
  already there, so that a viewer shows the image upright; pixels and every other byte stay as they were.
* :func:`fix_copy` and :func:`fix_inplace` rewrite the pixels upright with Orientation reset to 1 (or
  absent). JPEGs are rotated in the DCT domain, without re-encoding, by libjpeg-turbo's transform:
  the ``jpegtran-cffi-wheels`` wheel (bundles libjpeg-turbo) or else a ``jpegtran`` binary on PATH.
  Like ``jpegtran -perfect``, an image whose edge blocks would move to the top or left (a width or
  height that is not a multiple of the MCU size, 8 or 16 px) is not transformed losslessly: by default
  it is re-encoded with Pillow using the source's quantisation tables and subsampling (action
  ``rotated (re-encoded)``); ``imperfect="trim"`` instead drops those partial edge blocks like
  ``jpegtran -trim`` (action ``rotated (lossless, trimmed)``). All of a JPEG's metadata segments
  (EXIF, XMP, ICC, IPTC, comments) are carried over. PNG, WebP (saved lossless), TIFF, BMP and GIF are
  rotated pixel-exactly with Pillow, keeping ICC, EXIF (TIFF: the descriptive IFD0 tags) and PNG text;
  multi-frame files are refused rather than cut down to their first frame. Not updated: an EXIF
  thumbnail and the EXIF pixel dimensions (as with ``jpegtran -copy all``).

Every file is written atomically (temp file in the same folder, then ``os.replace``); sources are never
modified except by ``fix_inplace`` and ``fix_exif``, and ``fix_inplace`` writes a backup first.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from PIL import Image, JpegImagePlugin, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from roost.errors import ImageError, OrientFixError

Rotation = Literal[0, 90, 180, 270]
Imperfect = Literal["reencode", "trim"]
JpegBackend = Literal["auto", "jpegtran-cffi", "jpegtran", "pillow"]
ROTATIONS: tuple[Rotation, ...] = (0, 90, 180, 270)

ACTION_NONE = "none"
ACTION_LOW_CONFIDENCE = "skipped (low confidence)"
ACTION_ROTATE = "rotate"  # decided, not yet fixed (report-only runs)
ACTION_LOSSLESS = "rotated (lossless)"
ACTION_TRIMMED = "rotated (lossless, trimmed)"
ACTION_REENCODED = "rotated (re-encoded)"
ACTION_EXIF = "exif orientation set"

REPORT_SCHEMA = pa.schema(
    [("path", pa.string()), ("rotation", pa.int16()), ("confidence", pa.float32())]
    + [(f"p{r}", pa.float32()) for r in ROTATIONS]
    + [("action", pa.string()), ("error", pa.string())]
)
"""Columns of the ``roost orient`` report, one row per input."""

_T = Image.Transpose
_DISPLAY: dict[int, _T | None] = {
    1: None, 2: _T.FLIP_LEFT_RIGHT, 3: _T.ROTATE_180, 4: _T.FLIP_TOP_BOTTOM,
    5: _T.TRANSPOSE, 6: _T.ROTATE_270, 7: _T.TRANSVERSE, 8: _T.ROTATE_90,
}  # fmt: skip
"""EXIF Orientation value -> the transform a viewer applies to the stored pixels (Pillow's are CCW)."""
_CLOCKWISE = {0: 1, 90: 6, 180: 3, 270: 8}  # rotating by r clockwise == displaying with this orientation
_TJ_OPS = {2: 1, 3: 6, 4: 2, 5: 3, 6: 5, 7: 4, 8: 7}  # orientation -> TJXOP_* (libjpeg-turbo)
_JPEGTRAN_ARGS = {
    2: ["-flip", "horizontal"], 3: ["-rotate", "180"], 4: ["-flip", "vertical"], 5: ["-transpose"],
    6: ["-rotate", "90"], 7: ["-transverse"], 8: ["-rotate", "270"],
}  # fmt: skip
_ORIENTATION_TAG = 0x0112
_EXIF_PREFIX = b"Exif\x00\x00"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PILLOW_FORMATS = {"PNG", "WEBP", "TIFF", "BMP", "GIF"}
# IFD0 tags copied to a rotated TIFF: the descriptive ones (Pillow writes the layout tags itself).
_TIFF_KEEP = {270, 271, 272, 282, 283, 296, 305, 306, 315, 33432}


class _ImperfectError(Exception):
    """A lossless JPEG transform that would move partial edge blocks (``jpegtran -perfect`` fails)."""


# ---------------------------------------------------------------- decisions


def decide(probs: Sequence[float], threshold: float) -> tuple[Rotation, float, str]:
    """``(rotation, confidence, action)`` from the four class probabilities (0, 90, 180, 270 CCW).

    The action is ``skipped (low confidence)`` below ``threshold``, ``none`` for an upright image and
    ``rotate`` otherwise (the fix that runs later reports what it did instead).
    """
    values = [float(p) for p in probs]
    if len(values) != len(ROTATIONS):
        raise OrientFixError(f"Expected {len(ROTATIONS)} probabilities (0/90/180/270), got {len(values)}")
    best = max(range(len(values)), key=values.__getitem__)
    rotation, confidence = ROTATIONS[best], values[best]
    if confidence < threshold:
        return rotation, confidence, ACTION_LOW_CONFIDENCE
    return rotation, confidence, ACTION_NONE if rotation == 0 else ACTION_ROTATE


@functools.cache
def combine_orientation(orientation: int, rotation: int) -> int:
    """The EXIF orientation that shows upright an image displayed with ``orientation`` and seen rotated
    by ``rotation`` CCW: the tag's transform followed by a clockwise rotation, as one of the eight values."""
    _check_rotation(rotation)
    probe = Image.frombytes("L", (3, 2), bytes(range(6)))
    target = _signature(_display(_display(probe, orientation if orientation in _DISPLAY else 1), _CLOCKWISE[rotation]))
    return next(o for o in _DISPLAY if _signature(_display(probe, o)) == target)


def _display(image: Image.Image, orientation: int) -> Image.Image:
    method = _DISPLAY[orientation]
    return image if method is None else image.transpose(method)


def _signature(image: Image.Image) -> tuple[tuple[int, int], bytes]:
    return image.size, image.tobytes()


def _check_rotation(rotation: int) -> None:
    if rotation not in _CLOCKWISE:
        raise OrientFixError(f"Rotation must be one of 0, 90, 180, 270; got {rotation!r}")


# ---------------------------------------------------------------- the three fixes


def fix_copy(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    rotation: int,
    *,
    imperfect: Imperfect = "reencode",
    jpeg_backend: JpegBackend = "auto",
) -> str:
    """Write the upright image to ``dst`` (folders created); ``src`` is left untouched.

    With rotation 0 the file is copied unchanged (so that an output folder holds every input).
    """
    src, dst = Path(src), Path(dst)
    _check_rotation(rotation)
    if dst.exists() and os.path.samefile(src, dst):
        raise OrientFixError(f"Destination {dst} is the source itself; use fix_inplace")
    data = src.read_bytes()
    out, action = (data, ACTION_NONE) if rotation == 0 else _upright(data, rotation, imperfect, jpeg_backend)
    dst.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(dst, out, mode_from=src)
    return action


def fix_inplace(
    src: str | os.PathLike[str],
    rotation: int,
    backup_suffix: str | None = ".orig",
    *,
    imperfect: Imperfect = "reencode",
    jpeg_backend: JpegBackend = "auto",
) -> str:
    """Replace ``src`` by its upright version, atomically, after writing a backup beside it.

    The backup is ``<name><backup_suffix>``; an existing backup (an earlier original) is never
    overwritten: a numbered name is used instead. ``backup_suffix=None`` disables the backup.
    """
    src = Path(os.path.realpath(src))  # a symlink stays a link to the fixed file
    _check_rotation(rotation)
    if rotation == 0:
        return ACTION_NONE
    data = src.read_bytes()
    out, action = _upright(data, rotation, imperfect, jpeg_backend)
    if backup_suffix is not None:
        _write_backup(src, data, backup_suffix)
    _atomic_write(src, out, mode_from=src)
    return action


def fix_exif(src: str | os.PathLike[str], rotation: int) -> str:
    """Set the EXIF Orientation tag so that viewers show ``src`` upright; nothing else in the file changes.

    The model saw the image with its current tag applied, so the new tag is that tag followed by a
    clockwise rotation. Only JPEG, PNG, WebP and TIFF carry EXIF; other formats raise ``OrientFixError``.
    """
    src = Path(os.path.realpath(src))  # a symlink stays a link to the fixed file
    _check_rotation(rotation)
    data = src.read_bytes()
    fmt = _container(data)
    if fmt is None:
        raise OrientFixError(f"{src}: only JPEG, PNG, WebP and TIFF files carry an EXIF orientation tag")
    if rotation == 0:
        return ACTION_NONE
    tiff = _READ_EXIF[fmt](data)
    orientation = combine_orientation(exif_orientation(tiff), rotation)
    new_tiff = _set_tiff_orientation(tiff or _EMPTY_TIFF, orientation)
    _atomic_write(src, _WRITE_EXIF[fmt](data, new_tiff), mode_from=src)
    return ACTION_EXIF


# ---------------------------------------------------------------- files


def _atomic_write(path: Path, data: bytes, *, mode_from: Path, keep_times: bool = False) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        (shutil.copystat if keep_times else shutil.copymode)(mode_from, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_backup(src: Path, data: bytes, suffix: str) -> Path:
    names = [src.name + suffix] + [f"{src.name}{suffix}.{i}" for i in range(1, 100)]
    for backup in map(src.with_name, names):
        if not backup.exists():
            _atomic_write(backup, data, mode_from=src, keep_times=True)
            return backup
        if backup.read_bytes() == data:
            return backup
    raise OrientFixError(f"Too many backups of {src} already exist")


# ---------------------------------------------------------------- rewriting pixels


def _upright(data: bytes, rotation: int, imperfect: Imperfect, backend: JpegBackend) -> tuple[bytes, str]:
    if imperfect not in ("reencode", "trim"):
        raise OrientFixError(f"imperfect must be 'reencode' or 'trim', got {imperfect!r}")
    if data[:2] == b"\xff\xd8":
        return _upright_jpeg(data, rotation, imperfect, backend)
    return _upright_pillow(data, rotation), ACTION_LOSSLESS


def _upright_jpeg(data: bytes, rotation: int, imperfect: Imperfect, backend: JpegBackend) -> tuple[bytes, str]:
    transform = combine_orientation(exif_orientation(_jpeg_read_exif(data)), rotation)
    if transform == 1:  # the tag alone was wrong: reset it, pixels stay
        return _splice_jpeg_metadata(data, data), ACTION_LOSSLESS
    out, action = None, ACTION_LOSSLESS
    if backend != "pillow":
        try:
            out = _lossless_jpeg(data, transform, trim=False, backend=backend)
        except _ImperfectError:
            if imperfect == "trim":
                out, action = _lossless_jpeg(data, transform, trim=True, backend=backend), ACTION_TRIMMED
    if out is None:
        out, action = _reencode_jpeg(data, transform), ACTION_REENCODED
    return _splice_jpeg_metadata(data, out), action


def _open(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ImageError(f"Cannot decode image: {e}") from e
    return image


def _reencode_jpeg(data: bytes, transform: int) -> bytes:
    """Re-encode with the source's quantisation tables (transposed with the image) and subsampling."""
    image = _open(data)
    swap = transform >= 5
    tables = {k: _transpose_table(t) if swap else list(t) for k, t in image.quantization.items()}
    sampling = JpegImagePlugin.get_sampling(image)
    buf = io.BytesIO()
    _display(image, transform).save(
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


def _upright_pillow(data: bytes, rotation: int) -> bytes:
    image = _open(data)
    if image.format not in _PILLOW_FORMATS:
        supported = ", ".join(["JPEG", *sorted(_PILLOW_FORMATS)])
        raise OrientFixError(f"Cannot rewrite {image.format} files; supported: {supported}")
    if getattr(image, "n_frames", 1) > 1:
        raise OrientFixError(f"{image.format} file has {image.n_frames} frames; only single images are rotated")
    exif = image.getexif()
    transform = combine_orientation(exif.get(_ORIENTATION_TAG, 1), rotation)
    buf = io.BytesIO()
    _display(image, transform).save(buf, format=image.format, **_save_options(image, exif))
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
        options["exif"] = _EXIF_PREFIX + _set_tiff_orientation(_strip_prefix(info["exif"]), 1)
    elif exif:  # e.g. PNG's legacy text-chunk EXIF
        exif.pop(_ORIENTATION_TAG, None)
        options["exif"] = exif
    if image.format == "WEBP":
        options |= {"lossless": True, "exact": True}
    if image.format == "PNG" and getattr(image, "text", None):
        pnginfo = PngInfo()
        for key, value in image.text.items():
            if key.lower() != "raw profile type exif":  # legacy EXIF, written as eXIf below
                pnginfo.add_itxt(key, value)
        options["pnginfo"] = pnginfo
    return options


# ---------------------------------------------------------------- lossless JPEG backends


def jpeg_backends() -> list[str]:
    """The lossless JPEG backends available here, in the order ``jpeg_backend="auto"`` tries them."""
    found = ["jpegtran-cffi"] if _tj_lib() is not None else []
    return found + (["jpegtran"] if shutil.which("jpegtran") else [])


def _lossless_jpeg(data: bytes, transform: int, *, trim: bool, backend: JpegBackend) -> bytes | None:
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


# ---------------------------------------------------------------- EXIF (TIFF structure) orientation


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


def _find_orientation(tiff: bytes) -> tuple[str, int, int | None]:
    """(endianness, IFD0 offset, offset of IFD0's Orientation entry or None)."""
    endian = {b"II*\x00": "<", b"MM\x00*": ">"}.get(tiff[:4])
    if endian is None:
        raise OrientFixError("EXIF data is not a (classic) TIFF structure")
    try:
        ifd = struct.unpack_from(endian + "I", tiff, 4)[0]
        count = struct.unpack_from(endian + "H", tiff, ifd)[0]
        for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
            if struct.unpack_from(endian + "H", tiff, entry)[0] == _ORIENTATION_TAG:
                return endian, ifd, entry
    except struct.error as e:
        raise OrientFixError(f"EXIF data is truncated: {e}") from e
    return endian, ifd, None


def _set_tiff_orientation(tiff: bytes, value: int) -> bytes:
    """Set Orientation in IFD0: in place when present, else by appending a copy of IFD0 with it added."""
    endian, ifd, entry = _find_orientation(tiff)
    new_entry = struct.pack(endian + "HHIH2x", _ORIENTATION_TAG, 3, 1, value)
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


_EMPTY_TIFF = b"II*\x00" + struct.pack("<IH", 8, 0) + b"\x00" * 4


def _strip_prefix(exif: bytes) -> bytes:
    return exif[len(_EXIF_PREFIX) :] if exif.startswith(_EXIF_PREFIX) else exif


def _container(data: bytes) -> str | None:
    if data[:2] == b"\xff\xd8":
        return "JPEG"
    if data.startswith(_PNG_SIGNATURE):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return "TIFF" if data[:4] in (b"II*\x00", b"MM\x00*") else None


# ---------------------------------------------------------------- JPEG segments


def _jpeg_segments(data: bytes) -> tuple[list[tuple[int, int, int]], int]:
    """The header segments as (marker, start, end) and the offset of the first scan (SOS)."""
    segments, i = [], 2
    while True:
        if i + 4 > len(data) or data[i] != 0xFF:
            raise ImageError("Corrupt JPEG: bad marker before the first scan")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:
            return segments, i
        end = i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        segments.append((marker, i, end))
        i = end


def _is_exif(data: bytes, start: int) -> bool:
    return data[start + 1] == 0xE1 and data[start + 4 : start + 10] == _EXIF_PREFIX


def _is_metadata(data: bytes, marker: int, start: int) -> bool:
    """APP1..APP15 and COM, except APP14 (Adobe colour transform, tied to the encoding) and MPF."""
    if marker == 0xE2 and data[start + 4 : start + 8] == b"MPF\x00":
        return False
    return (0xE1 <= marker <= 0xEF and marker != 0xEE) or marker == 0xFE


def _jpeg_read_exif(data: bytes) -> bytes | None:
    segments, _ = _jpeg_segments(data)
    return next((data[s + 10 : e] for _, s, e in segments if _is_exif(data, s)), None)


def _exif_segment(tiff: bytes) -> bytes:
    payload = _EXIF_PREFIX + tiff
    if len(payload) > 0xFFFF - 2:
        raise OrientFixError("EXIF data too large for a JPEG APP1 segment")
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def _jpeg_write_exif(data: bytes, tiff: bytes) -> bytes:
    segments, _ = _jpeg_segments(data)
    for _, start, end in segments:
        if _is_exif(data, start):
            return data[:start] + _exif_segment(tiff) + data[end:]
    at = segments[0][2] if segments and segments[0][0] == 0xE0 else 2  # after JFIF APP0
    return data[:at] + _exif_segment(tiff) + data[at:]


def _splice_jpeg_metadata(src: bytes, out: bytes) -> bytes:
    """``out`` with its own metadata replaced by ``src``'s, EXIF Orientation reset to 1."""
    src_segments, _ = _jpeg_segments(src)
    out_segments, scan = _jpeg_segments(out)
    meta = []
    for marker, start, end in src_segments:
        if _is_exif(src, start) and exif_orientation(src[start + 10 : end]) != 1:
            meta.append(_exif_segment(_set_tiff_orientation(src[start + 10 : end], 1)))
        elif _is_metadata(src, marker, start):
            meta.append(src[start:end])
    app0 = [out[s:e] for m, s, e in out_segments if m == 0xE0]
    rest = [out[s:e] for m, s, e in out_segments if m != 0xE0 and not _is_metadata(out, m, s)]
    return b"".join([b"\xff\xd8", *app0, *meta, *rest, out[scan:]])


# ---------------------------------------------------------------- PNG and WebP containers


def _png_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    chunks, i = [], len(_PNG_SIGNATURE)
    while i + 8 <= len(data):
        length = int.from_bytes(data[i : i + 4], "big")
        chunks.append((data[i + 4 : i + 8], i, i + 12 + length))
        i += 12 + length
    return chunks


def _png_read_exif(data: bytes) -> bytes | None:
    return next((_strip_prefix(data[s + 8 : e - 4]) for t, s, e in _png_chunks(data) if t == b"eXIf"), None)


def _png_write_exif(data: bytes, tiff: bytes) -> bytes:
    chunk = len(tiff).to_bytes(4, "big") + b"eXIf" + tiff + zlib.crc32(b"eXIf" + tiff).to_bytes(4, "big")
    kept = [(t, data[s:e]) for t, s, e in _png_chunks(data) if t != b"eXIf"]
    at = next(i for i, (t, _) in enumerate(kept) if t == b"IDAT")  # Pillow reads eXIf before the pixels
    return _PNG_SIGNATURE + b"".join(c for _, c in kept[:at]) + chunk + b"".join(c for _, c in kept[at:])


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, i = [], 12
    while i + 8 <= len(data):
        size = int.from_bytes(data[i + 4 : i + 8], "little")
        chunks.append((data[i : i + 4], data[i + 8 : i + 8 + size]))
        i += 8 + size + size % 2
    return chunks


def _riff_chunk(fourcc: bytes, payload: bytes) -> bytes:
    return fourcc + len(payload).to_bytes(4, "little") + payload + b"\x00" * (len(payload) % 2)


def _webp_read_exif(data: bytes) -> bytes | None:
    return next((_strip_prefix(p) for f, p in _riff_chunks(data) if f == b"EXIF"), None)


def _webp_write_exif(data: bytes, tiff: bytes) -> bytes:
    """Replace or add the EXIF chunk (before XMP, after the image), turning a simple WebP into VP8X."""
    chunks = [(f, p) for f, p in _riff_chunks(data) if f != b"EXIF"]
    if chunks[0][0] != b"VP8X":
        chunks.insert(0, (b"VP8X", _vp8x_header(data)))
    header = chunks[0][1]
    chunks[0] = (b"VP8X", bytes([header[0] | 0x08]) + header[1:])
    at = next((i for i, (f, _) in enumerate(chunks) if f == b"XMP "), len(chunks))
    chunks.insert(at, (b"EXIF", tiff))
    body = b"WEBP" + b"".join(_riff_chunk(f, p) for f, p in chunks)
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def _vp8x_header(data: bytes) -> bytes:
    image = _open(data)
    width, height = image.size
    flags = 0x10 if "A" in image.mode else 0
    return bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")


_READ_EXIF = {"JPEG": _jpeg_read_exif, "PNG": _png_read_exif, "WEBP": _webp_read_exif, "TIFF": lambda d: d}
_WRITE_EXIF = {"JPEG": _jpeg_write_exif, "PNG": _png_write_exif, "WEBP": _webp_write_exif, "TIFF": lambda d, t: t}
