"""Regenerate the sample photos of ``roost orient examples/photos`` from the project's shared photos.

Each sample is a shared photo scaled to 384 px on the long side (both sides multiples of 16, so a JPEG
fix is lossless) and re-encoded at quality 85. Rotations are counter-clockwise, as ``roost orient``
reports them: three samples are upright, three have their pixels rotated, and one keeps upright pixels
but carries an EXIF Orientation tag, so a viewer (and the model) shows it turned.

    python examples/photos/make.py                   # reads ../shared/photos beside the checkout
    python examples/photos/make.py /path/to/photos   # or another folder holding the same file names
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[2] / "shared" / "photos"
LONG_SIDE = 384
QUALITY = 85
ORIENTATION = 0x0112  # EXIF tag
TURN = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}

# file -> (rotation of the pixels, EXIF Orientation tag or None)
SAMPLES: dict[str, tuple[int, int | None]] = {
    "path.jpg": (0, None),
    "garden.jpg": (0, None),
    "autumn.jpg": (0, None),
    "dune.jpg": (90, None),
    "storm.jpg": (180, None),
    "bythewater.jpg": (270, None),
    "greenmeadow.jpg": (0, 6),  # 6: "turn 90° clockwise to view", so it is shown rotated by 270
}


def scaled(image: Image.Image) -> Image.Image:
    """``image`` with its long side at ``LONG_SIDE`` and both sides rounded to multiples of 16."""
    w, h = image.size
    scale = LONG_SIDE / max(w, h)
    size = (max(16, round(w * scale / 16) * 16), max(16, round(h * scale / 16) * 16))
    return image.resize(size, Image.Resampling.LANCZOS)


def make(name: str, rotation: int, tag: int | None, source: Path, out: Path) -> Path:
    image = scaled(Image.open(source / name).convert("RGB"))
    if rotation:
        image = image.transpose(TURN[rotation])
    exif = Image.Exif()
    if tag is not None:
        exif[ORIENTATION] = tag
    image.save(out / name, quality=QUALITY, optimize=True, exif=exif.tobytes() if tag is not None else b"")
    return out / name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE, help="folder of the shared photos")
    args = parser.parse_args()
    for name, (rotation, tag) in SAMPLES.items():
        path = make(name, rotation, tag, args.source, HERE)
        print(f"{path.name}: {path.stat().st_size // 1024} KB, rotation {rotation}, EXIF orientation {tag or 1}")


if __name__ == "__main__":
    main()
