"""The batch input pipeline shared by ``roost predict``, ``embed`` and ``orient``.

Files are decoded and transformed in DataLoader worker processes, so decoding overlaps with the model;
a file that cannot be decoded becomes an error row instead of stopping the run. With ``draft`` on, JPEGs
are decoded by the DCT at the smallest 1/2, 1/4 or 1/8 scale that is still at least as large as the
resize target (BENCHMARKS.md measures the speed-up and the change in the model's outputs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from roost.data.decode import load_image
from roost.errors import ImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif"})


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
