"""Families of near-duplicates made from real photos, beside distinct photos, for the dedup tests and bench.

Each family is one photo and its copies: a byte copy, a half-size copy, a recompressed one, a PNG of its
pixels, pixel rotations by 90/180/270, a copy turned by its EXIF tag, a centred crop, a brighter and a
grayscale copy. A full-size camera original forms a family with its downscaled copies (and with the small
photo of the same name, itself a downscaled copy). ``family`` maps each file name to its family (None for
a distinct photo).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

Variant = Callable[[Image.Image], Image.Image]
VARIANTS: dict[str, tuple[Variant, str, dict]] = {
    "half": (lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS), "jpg", {"quality": 90}),
    "recompressed": (lambda im: im, "jpg", {"quality": 40}),
    "pixels": (lambda im: im, "png", {}),
    "rot90": (lambda im: im.rotate(90, expand=True), "jpg", {"quality": 92}),
    "rot180": (lambda im: im.rotate(180), "png", {}),
    "rot270": (lambda im: im.rotate(270, expand=True), "webp", {"quality": 90}),
    "cropped": (lambda im: im.crop((im.width // 20, im.height // 20, im.width * 19 // 20, im.height * 19 // 20)),
                "jpg", {"quality": 90}),
    "brighter": (lambda im: ImageEnhance.Brightness(im).enhance(1.2), "jpg", {"quality": 90}),
    "grayscale": (lambda im: ImageOps.grayscale(im), "jpg", {"quality": 90}),
}  # fmt: skip
ORIENTATION = 0x0112


def make_family(photo: Path, folder: Path, family: dict[str, str | None]) -> None:
    """The photo (its own bytes), a byte copy, the VARIANTS and an EXIF-turned copy, all of one family."""
    stem = photo.stem
    shutil.copyfile(photo, folder / f"{stem}.jpg")
    shutil.copyfile(photo, folder / f"{stem}_copy.jpg")
    image = Image.open(photo).convert("RGB")
    for name, (make, suffix, params) in VARIANTS.items():
        make(image).save(folder / f"{stem}_{name}.{suffix}", **params)
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # shown turned 90° clockwise: the stored pixels are the photo turned back
    image.rotate(90, expand=True).save(folder / f"{stem}_exif6.jpg", quality=90, exif=exif)
    for path in folder.glob(f"{stem}*"):
        family[path.name] = stem


def make_large_family(photo: Path, folder: Path, family: dict[str, str | None]) -> None:
    """A full-size original and two downscaled copies of it."""
    shutil.copyfile(photo, folder / photo.name)
    image = Image.open(photo)
    for width in (1920, 800):
        small = ImageOps.exif_transpose(image).convert("RGB")
        small.thumbnail((width, width))
        small.save(folder / f"{photo.stem}_{width}.jpg", quality=85)
    base = photo.stem.split("_")[0]  # elephants.jpg (and its family) is a downscaled copy of elephants_3840x2160
    for path in folder.glob(f"{base}*"):
        family[path.name] = base


def make_collection(
    photos: Path, folder: Path, *, families: int = 6, distinct: int = 6, large: bool = True
) -> dict[str, str | None]:
    """Build the collection in ``folder``; returns file name -> family (None for distinct photos)."""
    folder.mkdir(parents=True, exist_ok=True)
    family: dict[str, str | None] = {}
    small = sorted(photos.glob("*.jpg"))
    for photo in small[:families]:
        make_family(photo, folder, family)
    for photo in small[families : families + distinct]:
        shutil.copyfile(photo, folder / photo.name)
        family[photo.name] = None
    if large:
        for photo in sorted((photos / "large").glob("*.jpg")):
            make_large_family(photo, folder, family)
    return family


def pairwise(groups: dict[str, int | None], family: dict[str, str | None]) -> tuple[float, float]:
    """Pairwise precision and recall of a grouping (file name -> group) against the families."""
    names = sorted(family)
    predicted = truth = both = 0
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            same_group = groups.get(a) is not None and groups.get(a) == groups.get(b)
            same_family = family[a] is not None and family[a] == family[b]
            predicted += same_group
            truth += same_family
            both += same_group and same_family
    return (both / predicted if predicted else 1.0), (both / truth if truth else 1.0)
