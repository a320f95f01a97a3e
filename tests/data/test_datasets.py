"""The batch input pipeline: worker decoding in input order, bad files as error rows, draft decoding."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from roost.data.datasets import iter_batches
from roost.data.transforms import classification_transform, get_rgb_stats
from tests.conftest import SHARED

PHOTOS = sorted((SHARED / "photos").glob("*.jpg"))[:5]
pytestmark = pytest.mark.skipif(not PHOTOS, reason="shared photos not present")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for photo in PHOTOS:
        shutil.copy(photo, tmp_path / photo.name)
    (tmp_path / "sub").mkdir()
    shutil.copy(PHOTOS[0], tmp_path / "sub" / "nested.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "half.jpg").write_bytes(PHOTOS[1].read_bytes()[:5000])
    return tmp_path


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_keep_order_and_report_bad_files(folder: Path, workers: int) -> None:
    paths = [*sorted(folder.glob("*.jpg")), folder / "notes.txt"]
    transform = classification_transform((64, 64), get_rgb_stats("neutral"))
    batches = list(iter_batches(paths, transform, batch_size=3, workers=workers))
    ok = [i for b in batches for i in b.ok]
    errors = {i: e for b in batches for i, e in b.errors.items()}
    assert sorted(ok + list(errors)) == list(range(len(paths)))
    bad = {paths[i].name for i in errors}
    assert bad == {"empty.jpg", "half.jpg", "notes.txt"}
    assert all("ImageError" in e for e in errors.values())
    first = next(b for b in batches if b.images is not None)
    expected = transform(Image.open(paths[first.ok[0]]).convert("RGB"))
    assert torch.equal(first.images[0], expected)


def test_draft_decodes_smaller_and_stays_close() -> None:
    large = SHARED / "photos" / "large" / "elephants_3840x2160.jpg"
    transform = classification_transform((224, 224), get_rgb_stats("neutral"))
    full = next(iter_batches([large], transform, batch_size=1, workers=0)).images
    draft = next(iter_batches([large], transform, batch_size=1, workers=0, draft=(224, 224))).images
    assert full.shape == draft.shape == (1, 3, 224, 224)
    assert not torch.equal(full, draft)
    assert (full - draft).abs().mean() < 0.02
