"""Camera RAW files (``.dng``, ``.cr2``, ``.nef``, ``.arw``, …): the embedded preview, through rawpy (LibRaw).

Roost does not develop RAW data; it decodes the JPEG (or bitmap) preview the camera embedded, which is
what a photo library shows before development and plenty for the orientation and scene models. The
preview is turned the way the RAW file says the camera was held (LibRaw's ``flip``). rawpy is optional
(``pip install 'roost[raw]'``); without it each RAW file becomes one clear error row. RAW originals are
never rewritten: only ``--fix xmp`` applies to them.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

from PIL import Image

from roost.errors import ImageError

RAW_SUFFIXES = frozenset(
    {".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2", ".raf", ".pef",
     ".srw", ".x3f", ".3fr", ".iiq", ".erf", ".kdc", ".mrw", ".mos", ".raw", ".rwl"}
)  # fmt: skip
_FLIP_TO_EXIF = {0: 1, 3: 3, 5: 8, 6: 6}  # LibRaw's flip -> the EXIF Orientation that shows the same


def is_raw_name(name: str) -> bool:
    return any(name.lower().endswith(suffix) for suffix in RAW_SUFFIXES)


def _rawpy(name: str) -> Any:
    """rawpy, imported quietly in decoding workers.

    rawpy warns when first imported in a forked process (a forked OpenMP runtime can deadlock). Only
    preview extraction runs here, which uses no OpenMP, and rawpy's runtime is its own bundled copy, not
    the one torch started in the parent, so the warning does not apply to this use.
    """
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="rawpy is being used in a process created by multiprocessing")
            import rawpy
    except ImportError as e:
        raise ImageError(f"{name}: camera RAW files need rawpy: pip install 'roost[raw]'") from e
    return rawpy


def read_raw(data: bytes, name: str) -> tuple[bytes | Image.Image, int]:
    """The embedded preview (JPEG bytes, or a decoded bitmap) and the EXIF orientation that shows it upright."""
    rawpy = _rawpy(name)
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            flip = int(raw.sizes.flip)
            thumb = raw.extract_thumb()
    except rawpy.LibRawNoThumbnailError as e:
        raise ImageError(f"{name}: this RAW file has no embedded preview to decode") from e
    except rawpy.LibRawUnsupportedThumbnailError as e:
        raise ImageError(f"{name}: this RAW file's embedded preview is in a format rawpy cannot read") from e
    except (rawpy.LibRawError, OSError, ValueError) as e:
        raise ImageError(f"{name}: not a camera RAW file LibRaw can read ({type(e).__name__})") from e
    orientation = _FLIP_TO_EXIF.get(flip, 1)
    if thumb.format == rawpy.ThumbFormat.JPEG:
        return bytes(thumb.data), orientation
    return Image.fromarray(thumb.data), orientation


def raw_orientation(data: bytes, name: str) -> int:
    """The EXIF value (1..8) of a RAW file's own orientation, as photo libraries read it."""
    return read_raw(data, name)[1]
