"""A collection of near-duplicate families made from the real photos (built once per test session)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.dedup.families import make_collection


@pytest.fixture(scope="session")
def collection(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str | None]]:
    """(folder, file name -> family): 4 families of 12, 9 more photos (8 distinct), 2 large originals' families."""
    folder = tmp_path_factory.mktemp("collection") / "photos"
    return folder, make_collection(shared_dir / "photos", folder, families=4, distinct=9)


@pytest.fixture(scope="session")
def small_collection(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 families of 12 and 3 distinct photos, no large originals: for the tests that act on files."""
    folder = tmp_path_factory.mktemp("small") / "photos"
    make_collection(shared_dir / "photos", folder, families=2, distinct=3, large=False)
    return folder


@pytest.fixture
def workspace(small_collection: Path, tmp_path: Path) -> Path:
    """A fresh copy of the small collection in ``tmp_path/photos`` (for tests that move files)."""
    shutil.copytree(small_collection, tmp_path / "photos", copy_function=shutil.copy2)
    return tmp_path / "photos"


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder``, by relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
