"""Build the RotNet experiment's image folders from the Debian wallpaper packages.

Sources are whole pictures (one file per picture: the largest of its sizes); every 4th source, in sorted
order, is held out. Each source gives ``--train-crops`` (or ``--heldout-crops``) random square crops,
upright, saved at ``--px`` pixels, so the held-out *pictures* never appear in training.

    apt-get install -y mate-backgrounds plasma-workspace-wallpapers
    python examples/rotnet_experiment/prep.py --out /tmp/rotexp/imgs
"""

from __future__ import annotations

import argparse
import random
import re
from pathlib import Path

from PIL import Image, ImageOps

SUFFIXES = {".jpg", ".jpeg", ".png"}
DEFAULT_ROOTS = ["/usr/share/backgrounds", "/usr/share/wallpapers"]


def source_key(path: Path) -> str:
    """One key per picture: a plasma wallpaper's folder name, else the file stem without a _WxH suffix."""
    if path.parent.name.startswith("images") and path.parent.parent.name == "contents":
        return path.parents[2].name.lower()
    return re.sub(r"_\d+x\d+$", "", path.stem).lower()


def find_sources(roots: list[str]) -> dict[str, Path]:
    """key -> the largest file of that picture (screenshots skipped)."""
    best: dict[str, Path] = {}
    for root in map(Path, roots):
        files = root.rglob("*") if root.is_dir() else []
        for path in sorted(p for p in files if p.is_file() and p.suffix.lower() in SUFFIXES):
            if path.stem == "screenshot" or "images_dark" in path.parts:
                continue
            key = source_key(path)
            if key not in best or path.stat().st_size > best[key].stat().st_size:
                best[key] = path
    return dict(sorted(best.items()))


def random_square(im: Image.Image, rng: random.Random, px: int, min_side: float) -> Image.Image:
    """A random upright square crop (side min_side..1 × the short side), resized to px × px."""
    side = round(min(im.size) * rng.uniform(min_side, 1.0))
    left, top = rng.randint(0, im.width - side), rng.randint(0, im.height - side)
    return im.resize((px, px), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/tmp/rotexp/imgs")
    parser.add_argument("--roots", nargs="+", default=DEFAULT_ROOTS)
    parser.add_argument("--train-crops", type=int, default=8)
    parser.add_argument("--heldout-crops", type=int, default=4)
    parser.add_argument("--px", type=int, default=128)
    parser.add_argument("--min-side", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng, out = random.Random(args.seed), Path(args.out)
    sources = find_sources(args.roots)
    counts = {"train": 0, "heldout": 0}
    for n, (key, path) in enumerate(sources.items()):
        split = "heldout" if n % 4 == 3 else "train"
        crops = args.heldout_crops if split == "heldout" else args.train_crops
        im = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        (out / split).mkdir(parents=True, exist_ok=True)
        for c in range(crops):
            random_square(im, rng, args.px, args.min_side).save(out / split / f"{key}_{c}.jpg", quality=92)
        counts[split] += crops
        print(f"{split:8s} {key:40s} {path}")
    print(f"{len(sources)} pictures -> {counts['train']} train / {counts['heldout']} held-out crops in {out}")


if __name__ == "__main__":
    main()
