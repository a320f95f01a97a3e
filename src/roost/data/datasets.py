"""The batch input pipeline shared by ``roost predict``, ``embed`` and ``orient``.

Files are decoded and transformed in DataLoader worker processes, so decoding overlaps with the model;
a file that cannot be decoded becomes an error row instead of stopping the run. With ``draft`` on, JPEGs
are decoded by the DCT at the smallest 1/2, 1/4 or 1/8 scale that is still at least as large as the
resize target (BENCHMARKS.md measures the speed-up and the change in the model's outputs).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from roost.data.decode import load_image
from roost.errors import ImageError
from roost.files.heif import heif_kind
from roost.files.raw import RAW_SUFFIXES

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif", ".heic", ".heif", ".hif", ".avif"}
)
"""Suffixes of the formats every folder scan lists (training folders too). Camera RAW files are listed by
the batch jobs' scans only (:func:`is_image_file`): cameras often write a JPEG beside each RAW file, which
would be the same training sample twice."""
_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"GIF87a", b"GIF89a", b"BM")


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether a batch job's folder scan lists this file: an image or camera RAW suffix, or no suffix and
    image content.

    Files without a suffix (what some phone exports and downloads leave) are recognised by their first
    bytes (JPEG, PNG, WebP, TIFF, GIF, BMP, HEIF, AVIF); a file with another suffix (``.xmp``, ``.txt``,
    a backup) is never opened. A file listed by suffix whose content is another format decodes as that.
    """
    name = os.path.basename(os.fspath(path))
    suffix = os.path.splitext(name)[1].lower()
    if suffix:
        return suffix in IMAGE_SUFFIXES or suffix in RAW_SUFFIXES
    if not os.path.isfile(path):  # never open a FIFO or device (it could block)
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(32)
    except OSError:
        return False
    riff = head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    return riff or head.startswith(_SIGNATURES) or heif_kind(head) is not None


@dataclass
class Batch:
    """Decoded images of one batch: ``images`` (n_ok, 3, H, W) for ``ok`` indices; errors by index."""

    ok: list[int]
    images: Tensor | None
    errors: dict[int, str]


class ImageFiles(Dataset):
    """(index, tensor or None, error or None) for each path: decode, then transform."""

    def __init__(
        self, paths: Sequence[str | Path | bytes], transform: Callable, *, draft: tuple[int, int] | None = None
    ) -> None:
        self.paths = list(paths)
        self.transform = transform
        self.draft = draft

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, Tensor | None, str | None]:
        path = self.paths[index]
        try:
            return index, self.transform(load_image(path, draft=self.draft)), None
        except (ImageError, OSError) as err:
            return index, None, f"{type(err).__name__}: {err}"


def collate(items: list[tuple[int, Tensor | None, str | None]]) -> Batch:
    good = [(i, t) for i, t, _ in items if t is not None]
    images = torch.stack([t for _, t in good]) if good else None
    return Batch([i for i, _ in good], images, {i: e for i, _, e in items if e is not None})


def iter_batches(
    paths: Sequence[str | Path | bytes],
    transform: Callable,
    *,
    batch_size: int = 16,
    workers: int = 2,
    draft: tuple[int, int] | None = None,
    pin_memory: bool = False,
) -> Iterator[Batch]:
    """Decoded batches in input order; ``workers`` processes decode ahead of the consumer."""
    loader = DataLoader(
        ImageFiles(paths, transform, draft=draft),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )
    yield from loader
