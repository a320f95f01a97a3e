"""Metadata surgery on image containers: JPEG segments, PNG chunks and RIFF (WebP) chunks.

Reading and replacing the EXIF payload (a TIFF structure) of JPEG, PNG, WebP and TIFF files without
touching anything else, and carrying a JPEG's metadata segments over to a re-encoded or transformed copy.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable

from PIL import Image, UnidentifiedImageError

from roost.errors import ImageError, OrientFixError
from roost.files.exif import EXIF_PREFIX, exif_orientation, set_tiff_orientation, strip_prefix

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def open_image(data: bytes, *, load: bool = True) -> Image.Image:
    """Pillow's image of ``data`` (decoded unless ``load`` is false); ``ImageError`` when it cannot be read."""
    try:
        image = Image.open(io.BytesIO(data))
        if load:
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ImageError(f"Cannot decode image: {e}") from e
    return image


def container(data: bytes) -> str | None:
    """The format of ``data`` when it is one that carries EXIF (JPEG, PNG, WEBP, TIFF), else None."""
    if data[:2] == b"\xff\xd8":
        return "JPEG"
    if data.startswith(PNG_SIGNATURE):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return "TIFF" if data[:4] in (b"II*\x00", b"MM\x00*") else None


def format_name(data: bytes) -> str:
    """The format of ``data`` for messages: Pillow's name, or ``unrecognised``."""
    try:
        return container(data) or open_image(data, load=False).format or "unrecognised"
    except ImageError:
        return "unrecognised"


def read_exif(data: bytes) -> bytes | None:
    """The EXIF TIFF structure of a JPEG, PNG, WebP or TIFF file; None when it has none."""
    return _READERS[exif_format(data)](data)


def write_exif(data: bytes, tiff: bytes) -> bytes:
    """``data`` with its EXIF TIFF structure replaced by (or added as) ``tiff``; all else unchanged."""
    return _WRITERS[exif_format(data)](data, tiff)


def exif_format(data: bytes) -> str:
    """The format of ``data``; ``OrientFixError`` naming it when it is one without EXIF."""
    fmt = container(data)
    if fmt is None:
        raise OrientFixError(
            f"{format_name(data)} files carry no EXIF orientation tag; only JPEG, PNG, WebP and TIFF do"
        )
    return fmt


# ---------------------------------------------------------------- JPEG segments


def jpeg_segments(data: bytes) -> tuple[list[tuple[int, int, int]], int]:
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
    return data[start + 1] == 0xE1 and data[start + 4 : start + 10] == EXIF_PREFIX


def _is_metadata(data: bytes, marker: int, start: int) -> bool:
    """APP1..APP15 and COM, except APP14 (Adobe colour transform, tied to the encoding) and MPF."""
    if marker == 0xE2 and data[start + 4 : start + 8] == b"MPF\x00":
        return False
    return (0xE1 <= marker <= 0xEF and marker != 0xEE) or marker == 0xFE


def _jpeg_read_exif(data: bytes) -> bytes | None:
    segments, _ = jpeg_segments(data)
    return next((data[s + 10 : e] for _, s, e in segments if _is_exif(data, s)), None)


def _exif_segment(tiff: bytes) -> bytes:
    payload = EXIF_PREFIX + tiff
    if len(payload) > 0xFFFF - 2:
        raise OrientFixError("EXIF data too large for a JPEG APP1 segment")
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def _jpeg_write_exif(data: bytes, tiff: bytes) -> bytes:
    segments, _ = jpeg_segments(data)
    for _, start, end in segments:
        if _is_exif(data, start):
            return data[:start] + _exif_segment(tiff) + data[end:]
    at = segments[0][2] if segments and segments[0][0] == 0xE0 else 2  # after JFIF APP0
    return data[:at] + _exif_segment(tiff) + data[at:]


def splice_jpeg_metadata(src: bytes, out: bytes) -> bytes:
    """``out`` with its own metadata replaced by ``src``'s, EXIF Orientation reset to 1."""
    src_segments, _ = jpeg_segments(src)
    out_segments, scan = jpeg_segments(out)
    meta = []
    for marker, start, end in src_segments:
        if _is_exif(src, start) and exif_orientation(src[start + 10 : end]) != 1:
            meta.append(_exif_segment(set_tiff_orientation(src[start + 10 : end], 1)))
        elif _is_metadata(src, marker, start):
            meta.append(src[start:end])
    app0 = [out[s:e] for m, s, e in out_segments if m == 0xE0]
    rest = [out[s:e] for m, s, e in out_segments if m != 0xE0 and not _is_metadata(out, m, s)]
    return b"".join([b"\xff\xd8", *app0, *meta, *rest, out[scan:]])


# ---------------------------------------------------------------- PNG chunks


def _png_chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    chunks, i = [], len(PNG_SIGNATURE)
    while i + 8 <= len(data):
        length = int.from_bytes(data[i : i + 4], "big")
        chunks.append((data[i + 4 : i + 8], i, i + 12 + length))
        i += 12 + length
    return chunks


def _png_read_exif(data: bytes) -> bytes | None:
    return next((strip_prefix(data[s + 8 : e - 4]) for t, s, e in _png_chunks(data) if t == b"eXIf"), None)


def _png_write_exif(data: bytes, tiff: bytes) -> bytes:
    chunk = len(tiff).to_bytes(4, "big") + b"eXIf" + tiff + zlib.crc32(b"eXIf" + tiff).to_bytes(4, "big")
    kept = [(t, data[s:e]) for t, s, e in _png_chunks(data) if t != b"eXIf"]
    at = next((i for i, (t, _) in enumerate(kept) if t == b"IDAT"), None)  # Pillow reads eXIf before the pixels
    if at is None:
        raise ImageError("Corrupt PNG: no IDAT chunk")
    return PNG_SIGNATURE + b"".join(c for _, c in kept[:at]) + chunk + b"".join(c for _, c in kept[at:])


# ---------------------------------------------------------------- RIFF (WebP) chunks


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
    return next((strip_prefix(p) for f, p in _riff_chunks(data) if f == b"EXIF"), None)


def _webp_write_exif(data: bytes, tiff: bytes) -> bytes:
    """Replace or add the EXIF chunk (before XMP, after the image), turning a simple WebP into VP8X."""
    chunks = [(f, p) for f, p in _riff_chunks(data) if f != b"EXIF"]
    if not chunks:
        raise ImageError("Corrupt WebP: no chunks")
    if chunks[0][0] != b"VP8X":
        chunks.insert(0, (b"VP8X", _vp8x_header(data)))
    header = chunks[0][1]
    chunks[0] = (b"VP8X", bytes([header[0] | 0x08]) + header[1:])
    at = next((i for i, (f, _) in enumerate(chunks) if f == b"XMP "), len(chunks))
    chunks.insert(at, (b"EXIF", tiff))
    body = b"WEBP" + b"".join(_riff_chunk(f, p) for f, p in chunks)
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def _vp8x_header(data: bytes) -> bytes:
    image = open_image(data)
    width, height = image.size
    flags = 0x10 if "A" in image.mode else 0
    return bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")


def _tiff_read_exif(data: bytes) -> bytes:
    return data


def _tiff_write_exif(data: bytes, tiff: bytes) -> bytes:
    return tiff


_READERS: dict[str, Callable[[bytes], bytes | None]] = {
    "JPEG": _jpeg_read_exif, "PNG": _png_read_exif, "WEBP": _webp_read_exif, "TIFF": _tiff_read_exif,
}  # fmt: skip
_WRITERS: dict[str, Callable[[bytes, bytes], bytes]] = {
    "JPEG": _jpeg_write_exif, "PNG": _png_write_exif, "WEBP": _webp_write_exif, "TIFF": _tiff_write_exif,
}  # fmt: skip
