"""Training data: image folders, Birder-style augmentation (Pillow + torch), a resumable global-batch sampler,
and MixUp / CutMix (training.md §1.7, §2.2, §3.1, §3.2).

Every random choice for a sample comes from a generator seeded by (seed, epoch, index), and every batch-level
choice from one seeded by (seed, step); so the data a run sees does not depend on worker count, world size or
where it resumed.
"""

from __future__ import annotations

import math
import os
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance, ImageFilter, ImageOps
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from roost.data.datasets import IMAGE_SUFFIXES
from roost.data.decode import load_image
from roost.data.transforms import Normalize, PILToTensor, RGBType, ToDtype
from roost.errors import TrainingConfigError

PathLike = str | os.PathLike[str]


def make_generator(*keys: int) -> torch.Generator:
    """A CPU generator seeded from integer keys (seed, epoch, index, ...)."""
    seed = 0
    for key in keys:
        seed = (seed * 1_000_003 + int(key) + 0x9E3779B9) % (2**62)
    return torch.Generator().manual_seed(seed)


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=g).item()


def _randint(g: torch.Generator, low: int, high: int) -> int:
    """Uniform integer in [low, high]."""
    return int(torch.randint(low, high + 1, (), generator=g).item())


# ----------------------------------------------------------------------------------------------- sources


def image_folders(
    roots: Sequence[PathLike], class_to_idx: dict[str, int] | None = None
) -> tuple[list[tuple[Path, int]], dict[str, int]]:
    """(path, label) pairs of ``root/<class>/<images…>`` for every root (recursive inside a class), and class_to_idx.

    The classes are the union of the roots' sub-folder names, sorted, unless ``class_to_idx`` is given; the
    validation roots must then hold the same classes as the training ones.
    """
    folders = [Path(root) for root in roots]
    where = ", ".join(map(str, folders))
    for root in folders:
        if not root.is_dir():
            raise TrainingConfigError(f"{root} is not a folder of class sub-folders")
    found = [(p.name, p) for root in folders for p in sorted(root.iterdir()) if p.is_dir()]
    classes = sorted({name for name, _ in found})
    if class_to_idx is None:
        class_to_idx = {name: i for i, name in enumerate(classes)}
    elif set(classes) != set(class_to_idx):
        raise TrainingConfigError(f"{where}: classes {classes} differ from the training classes {sorted(class_to_idx)}")
    samples = [(p, class_to_idx[name]) for name, folder in found for p in _images(folder)]
    if not samples:
        raise TrainingConfigError(f"{where} hold no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return samples, class_to_idx


def image_files(inputs: Sequence[PathLike]) -> list[tuple[Path, int]]:
    """Unlabelled images (label -1) from files and folders, recursively, sorted (CAPI / RotNet data)."""
    out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            out += _images(item)
        elif item.is_file():
            out.append(item)
        else:
            raise TrainingConfigError(f"no such file or folder: {item}")
    if not out:
        raise TrainingConfigError(f"no images found in {[str(i) for i in inputs]}")
    return [(p, -1) for p in out]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


# ------------------------------------------------------------------------------------------- tar shards

WDS_IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


@dataclass(frozen=True)
class TarMember:
    """One image inside a WebDataset ``.tar`` shard, read by byte offset (no open handle: safe in workers)."""

    shard: Path
    offset: int
    size: int
    name: str

    def read(self) -> bytes:
        with open(self.shard, "rb") as fh:
            fh.seek(self.offset)
            return fh.read(self.size)


def read_class_file(path: PathLike) -> dict[str, int]:
    """class_to_idx from a WebDataset class file: one class name per line, line order = index."""
    names = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if len(set(names)) != len(names) or not names:
        raise TrainingConfigError(f"{path}: class names must be unique and non-empty")
    return {name: i for i, name in enumerate(names)}


def tar_shards(inputs: Sequence[PathLike]) -> list[Path]:
    """``.tar`` files given directly, or found (sorted) in the given folders."""
    shards: list[Path] = []
    for item in map(Path, inputs):
        shards += sorted(item.glob("*.tar")) if item.is_dir() else [item]
    missing = [str(s) for s in shards if not s.is_file()]
    if missing or not shards:
        raise TrainingConfigError(f"no .tar shards at {[str(i) for i in inputs]}" + (f": {missing}" if missing else ""))
    return shards


def wds_samples(inputs: Sequence[PathLike], num_classes: int) -> list[tuple[TarMember, int]]:
    """(image, label) per sample of WebDataset shards: members grouped by key (the name up to the first dot of its
    last component); a sample needs an image (jpg/jpeg/png/webp) and a ``.cls`` holding the class index."""
    out: list[tuple[TarMember, int]] = []
    for shard in tar_shards(inputs):
        images, labels = _shard_members(shard)
        for key in sorted(images.keys() & labels.keys()):
            if not 0 <= labels[key] < num_classes:
                raise TrainingConfigError(f"{shard}: {key} has class {labels[key]}, outside 0..{num_classes - 1}")
            out.append((images[key], labels[key]))
    if not out:
        raise TrainingConfigError(f"no samples with an image and a .cls label in {[str(i) for i in inputs]}")
    return out


def _shard_members(shard: Path) -> tuple[dict[str, TarMember], dict[str, int]]:
    images: dict[str, TarMember] = {}
    labels: dict[str, int] = {}
    with tarfile.open(shard) as tar:
        for member in tar:
            if not member.isfile():
                continue
            folder, _, base = member.name.rpartition("/")
            stem, _, ext = base.partition(".")
            key = f"{folder}/{stem}" if folder else stem
            if ext.lower() in WDS_IMAGE_EXTS:
                images[key] = TarMember(shard, member.offset_data, member.size, member.name)
            elif ext == "cls":
                labels[key] = int(tar.extractfile(member).read().decode().strip())  # type: ignore[union-attr]
    return images, labels


def load_sample(source: Path | TarMember) -> Image.Image:
    return load_image(source.read() if isinstance(source, TarMember) else source)


# ---------------------------------------------------------------------------------------------- augment


@dataclass(frozen=True)
class AugmentConfig:
    """Birder's ``aug-type birder`` levels (0-10), approximated with Pillow where the spec gives no magnitude."""

    level: int = 4
    min_scale: float | None = None  # RRC min scale; default 0.8 - 0.05·level
    re_prob: float | None = None  # random erasing; default max(0.25, -0.15 + 0.05·level) for level ≥ 1
    grayscale: bool = False
    hflip: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.level <= 10:
            raise TrainingConfigError(f"aug level must be in 0..10, got {self.level}")


def _ops(level: int, grayscale: bool) -> list[Callable[[Image.Image, torch.Generator], Image.Image]]:
    """The op pool of a level; magnitudes interpolate the spec's level-1 and level-4 values."""
    rot, bright = 2.25 * level, 0.2 + 0.0125 * level
    contrast, hue = 0.05 + 0.025 * level, 0.025 * max(level - 1, 0) / 3
    ops: list[Callable[[Image.Image, torch.Generator], Image.Image]] = [
        lambda im, g: im,
        lambda im, g: im.rotate(_uniform(g, -rot, rot), Image.Resampling.NEAREST),
        lambda im, g: ImageEnhance.Brightness(im).enhance(_uniform(g, 1 - bright, 1 + bright)),
        lambda im, g: _hue(ImageEnhance.Contrast(im).enhance(_uniform(g, 1 - contrast, 1 + contrast)), g, hue),
    ]
    if level >= 3:
        sat, shift, shear = 0.07 * level, 0.02 * level, 2.5 * level
        sharp, bits = 1 + 0.04 * level, max(4, 8 - level // 4)
        ops += [
            lambda im, g: ImageEnhance.Color(im).enhance(min(2.0, max(0.1, _uniform(g, 1 - sat, 1 + sat)))),
            lambda im, g: _translate(im, _uniform(g, -shift, shift), _uniform(g, -shift, shift)),
            lambda im, g: _shear(im, math.tan(math.radians(_uniform(g, -shear, shear)))),
            lambda im, g: ImageOps.posterize(im, bits),
            lambda im, g: im.filter(ImageFilter.GaussianBlur(_uniform(g, 0.5, 1.2))),
            lambda im, g: ImageOps.autocontrast(im),
            lambda im, g: ImageEnhance.Sharpness(im).enhance(
                min(2.0, max(1.0, _uniform(g, sharp - 0.05 * level, sharp + 0.05 * level)))
            ),
        ]
    if level >= 5:
        threshold = 255 - 12 * level
        ops.append(lambda im, g: ImageOps.solarize(im, int(_uniform(g, 0.7, 1.3) * threshold)))
    if grayscale:
        ops.append(lambda im, g: ImageOps.grayscale(im).convert("RGB"))
    return ops


def _hue(im: Image.Image, g: torch.Generator, amount: float) -> Image.Image:
    if amount <= 0:
        return im
    h, s, v = im.convert("HSV").split()
    shift = round(_uniform(g, -amount, amount) * 255)
    h = h.point([(x + shift) % 256 for x in range(256)])
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def _translate(im: Image.Image, fx: float, fy: float) -> Image.Image:
    return im.transform(im.size, Image.Transform.AFFINE, (1, 0, -fx * im.width, 0, 1, -fy * im.height))


def _shear(im: Image.Image, k: float) -> Image.Image:
    return im.transform(im.size, Image.Transform.AFFINE, (1, k, -k * im.height / 2, 0, 1, 0))


def random_resized_crop_box(
    width: int, height: int, scale: tuple[float, float], g: torch.Generator, ratio: tuple[float, float] = (3 / 4, 4 / 3)
) -> tuple[int, int, int, int]:
    """(left, top, w, h) of a random crop with area in ``scale`` and log-uniform aspect ratio (10 tries)."""
    area = width * height
    for _ in range(10):
        target = area * _uniform(g, *scale)
        ar = math.exp(_uniform(g, math.log(ratio[0]), math.log(ratio[1])))
        w, h = round(math.sqrt(target * ar)), round(math.sqrt(target / ar))
        if 0 < w <= width and 0 < h <= height:
            return _randint(g, 0, width - w), _randint(g, 0, height - h), w, h
    in_ratio = width / height
    w, h = (width, round(width / ratio[0])) if in_ratio < ratio[0] else (width, height)
    if in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    return (width - w) // 2, (height - h) // 2, w, h


class TrainTransform:
    """PIL image + generator -> normalised float (3, H, W): RRC, k ops, random erasing, horizontal flip."""

    def __init__(self, size: int, rgb_stats: RGBType, aug: AugmentConfig) -> None:
        self.size, self.aug = size, aug
        self.ops = _ops(aug.level, aug.grayscale)
        self.min_scale = aug.min_scale if aug.min_scale is not None else 0.8 - 0.05 * aug.level
        default_re = max(0.25, -0.15 + 0.05 * aug.level) if aug.level >= 1 else 0.0
        self.re_prob = aug.re_prob if aug.re_prob is not None else default_re
        self.to_float, self.normalize = ToDtype(), Normalize(rgb_stats["mean"], rgb_stats["std"])

    def __call__(self, img: Image.Image, g: torch.Generator) -> Tensor:
        img = img.convert("RGB")
        if self.aug.level == 0:
            img = img.resize((self.size, self.size), Image.Resampling.BICUBIC)
        else:
            left, top, w, h = random_resized_crop_box(img.width, img.height, (self.min_scale, 1.0), g)
            resample = Image.Resampling.BILINEAR if _randint(g, 0, 1) == 0 else Image.Resampling.BICUBIC
            img = img.resize((self.size, self.size), resample, box=(left, top, left + w, top + h))
            num_ops = _randint(g, 2, max(2, (self.aug.level + 1) // 2))
            for _ in range(num_ops):
                img = self.ops[_randint(g, 0, len(self.ops) - 1)](img, g)
        x = PILToTensor()(img)
        if self.re_prob > 0 and _uniform(g, 0, 1) < self.re_prob:
            x = random_erase(x, g, (0.02, 0.05 + 0.025 * self.aug.level))
        if self.aug.hflip and self.aug.level > 0 and _uniform(g, 0, 1) < 0.5:
            x = x.flip(-1)
        return self.normalize(self.to_float(x))


def random_erase(x: Tensor, g: torch.Generator, scale: tuple[float, float]) -> Tensor:
    """Zero a random rectangle of a uint8 (C, H, W) image (area fraction in ``scale``, ratio 0.3-3.3)."""
    _, height, width = x.shape
    for _ in range(10):
        area = height * width * _uniform(g, *scale)
        ar = math.exp(_uniform(g, math.log(0.3), math.log(3.3)))
        h, w = round(math.sqrt(area * ar)), round(math.sqrt(area / ar))
        if 0 < h < height and 0 < w < width:
            top, left = _randint(g, 0, height - h), _randint(g, 0, width - w)
            x = x.clone()
            x[:, top : top + h, left : left + w] = 0
            return x
    return x


# ---------------------------------------------------------------------------------------------- datasets


class SampleDataset(Dataset):
    """Decodes ``samples[i]`` and applies ``transform(img, generator)``; ``extra(x, label, generator)`` may
    rewrite the pair (rotation labels, masks). The generator is seeded by (seed, epoch, index)."""

    def __init__(
        self,
        samples: Sequence[tuple[Path | TarMember, int]],
        transform: Callable[[Image.Image, torch.Generator], Tensor],
        seed: int,
        extra: Callable[[Tensor, int, torch.Generator], tuple[Any, ...]] | None = None,
    ) -> None:
        self.samples, self.transform, self.seed, self.extra = list(samples), transform, seed, extra
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: tuple[int, int] | int) -> tuple[Any, ...]:
        epoch, index = item if isinstance(item, tuple) else (self.epoch, item)
        g = make_generator(self.seed, epoch, index)
        path, label = self.samples[index]
        x = self.transform(load_sample(path), g)
        return self.extra(x, label, g) if self.extra is not None else (x, label)


class EvalTransform:
    """Adapts a one-argument inference transform to the (img, generator) signature."""

    def __init__(self, transform: Callable[[Image.Image], Tensor]) -> None:
        self.transform = transform

    def __call__(self, img: Image.Image, g: torch.Generator) -> Tensor:
        return self.transform(img)


class GlobalBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields this rank's share of each *global* batch, as (epoch, index) pairs.

    Epoch order is a permutation seeded by (seed, epoch), cut into global batches; rank r takes the r-th
    contiguous slice of each. Unlike ``DistributedSampler`` (which strides the whole epoch), a global batch
    is the same set of images whatever the world size, so a 2-process run reproduces a 1-process run, and
    ``start`` skips batches already trained when resuming.
    """

    def __init__(
        self,
        num_samples: int,
        global_batch: int,
        *,
        rank: int = 0,
        world: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
    ) -> None:
        if global_batch % world:
            raise TrainingConfigError(f"global batch {global_batch} is not divisible by world size {world}")
        if drop_last and num_samples < global_batch:
            raise TrainingConfigError(f"{num_samples} images cannot fill one batch of {global_batch}")
        self.n, self.batch, self.rank, self.world = num_samples, global_batch, rank, world
        self.seed, self.shuffle, self.drop_last = seed, shuffle, drop_last
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.n // self.batch if self.drop_last else math.ceil(self.n / self.batch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = (
            torch.randperm(self.n, generator=make_generator(self.seed, self.epoch)).tolist()
            if self.shuffle
            else list(range(self.n))
        )
        if not self.drop_last and self.n % self.batch:
            order += order[: self.batch - self.n % self.batch]  # pad the last batch, as DistributedSampler does
        per_rank = self.batch // self.world
        for b in range(self.start, len(self)):
            chunk = order[b * self.batch + self.rank * per_rank : b * self.batch + (self.rank + 1) * per_rank]
            yield [(self.epoch, i) for i in chunk]


class EvalSampler(Sampler[list[tuple[int, int]]]):
    """Contiguous, unpadded shards of the validation set per rank (metrics are all-reduced sums)."""

    def __init__(self, num_samples: int, batch_size: int, rank: int = 0, world: int = 1) -> None:
        per = math.ceil(num_samples / world)
        self.indices = list(range(rank * per, min(num_samples, (rank + 1) * per)))
        self.batch = batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for b in range(len(self)):
            yield [(0, i) for i in self.indices[b * self.batch : (b + 1) * self.batch]]


# ---------------------------------------------------------------------------------------- mixup / cutmix


def mix_batch(
    images: Tensor, labels: Tensor, num_classes: int, g: torch.Generator, *, mixup_alpha: float, cutmix: bool
) -> tuple[Tensor, Tensor]:
    """Per batch: identity, MixUp(alpha) or CutMix(1.0), uniformly among those enabled; soft targets (B, C)."""
    targets = F.one_hot(labels, num_classes).float()
    choices = ["none"] + (["mixup"] if mixup_alpha > 0 else []) + (["cutmix"] if cutmix else [])
    choice = choices[_randint(g, 0, len(choices) - 1)]
    if choice == "none":
        return images, targets
    alpha = mixup_alpha if choice == "mixup" else 1.0
    lam = _beta(g, alpha)
    flipped_img, flipped_t = images.flip(0), targets.flip(0)
    if choice == "mixup":
        return images * lam + flipped_img * (1 - lam), targets * lam + flipped_t * (1 - lam)
    height, width = images.shape[-2:]
    cut_h, cut_w = int(height * math.sqrt(1 - lam)), int(width * math.sqrt(1 - lam))
    cy, cx = _randint(g, 0, height - 1), _randint(g, 0, width - 1)
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    mixed = images.clone()
    mixed[..., top:bottom, left:right] = flipped_img[..., top:bottom, left:right]
    lam = 1 - (bottom - top) * (right - left) / (height * width)
    return mixed, targets * lam + flipped_t * (1 - lam)


def _beta(g: torch.Generator, alpha: float) -> float:
    """Beta(alpha, alpha) from two gammas drawn with ``g`` (torch's distributions ignore generators)."""
    a = torch._standard_gamma(  # pyright: ignore[reportPrivateImportUsage]  (the only gamma taking a generator)
        torch.tensor([alpha, alpha], dtype=torch.float64), generator=g
    )
    return float(a[0] / a.sum())
