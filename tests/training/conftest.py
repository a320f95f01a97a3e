"""Tiny networks and generated image folders for the trainer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY = {"num_layers": 2, "hidden_dim": 64, "num_heads": 2, "mlp_dim": 128, "drop_path_rate": 0.0}
COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (40, 60, 200), "yellow": (210, 200, 40)}


def _image(rng: np.random.Generator, colour: tuple[int, int, int], size: int = 40) -> Image.Image:
    base = np.array(colour, dtype=np.float32)
    pixels = base + rng.normal(0, 30, (size, size, 3))
    pixels[: size // 3] = 255 - pixels[: size // 3]  # an asymmetric band: orientation is learnable
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def make_folder(root: Path, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            _image(rng, colour).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("imgs")
    return make_folder(base / "train", 8, 0), make_folder(base / "val", 3, 1)


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every test here runs on one torch thread (see tests/conftest.py)."""
