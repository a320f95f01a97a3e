"""Per-file fingerprints for ``roost dedup``, computed by a resumable job on the local or the Ray engine.

One fingerprint per readable image, each part cheap before the next:

* **bytes**: size and a BLAKE2b-128 of the file's bytes (byte-identical copies);
* **pixels**: a BLAKE2b-128 of the decoded 8-bit RGB pixels as a viewer shows them (EXIF orientation
  applied), the smallest digest over the four 90° rotations, so a PNG saved from a JPEG's pixels, a copy
  with its pixels turned losslessly, or one whose EXIF tag does the turning all share it;
* **perceptual**: 64-bit DCT hashes (``imagehash.phash``) of the histogram-equalised grayscale image at
  the four rotations (resizing, recompression, format, grayscale and brightness barely move them), plus
  hashes of centred crops of the upright image (95 %, 90 %, 85 %, 80 %), so that a copy cropped at its
  borders meets the original's crop of the same extent. A difference hash (``imagehash.dhash``) of each
  of these views checks each phash match: at a million images random 64-bit hashes collide within 10
  bits by the thousand, two independent hashes rarely do.

The fingerprints are the rows of a cache report (``<report>.fingerprints.parquet``): a repeated or
resumed run computes only the files that are new or whose size or modification time changed.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import imagehash
import numpy as np
import pyarrow as pa
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset

from roost.data.decode import load_image
from roost.errors import ImageError
from roost.jobs.base import Computed, Job, ModelFacts, Row, RunOptions, Source
from roost.jobs.inputs import Item

ROTATIONS = (0, 90, 180, 270)
CROPS = (0.95, 0.9, 0.85, 0.8)
HASHES = len(ROTATIONS) + len(CROPS)  # views 0-3: the rotations; 4-7: the crops of the upright image
KINDS = 2  # phash (matched), then dhash (checks each match, see groups.py)
HASH_BYTES = 8
_KINDS = (imagehash.phash, imagehash.dhash)
THUMBNAIL = 256  # the perceptual hashes are computed on a copy at most this large
_HEAD = struct.Struct("<qqqq16s16s")  # size, mtime_ns, width, height, bytes digest, pixels digest
PACKED = _HEAD.size + KINDS * HASHES * HASH_BYTES

FINGERPRINT_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("size", pa.int64()),
        ("mtime_ns", pa.int64()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("bytes_hash", pa.string()),
        ("pixels_hash", pa.string()),
        ("hashes", pa.string()),  # KINDS x HASHES hashes of 16 hex digits, concatenated
        ("error", pa.string()),
    ]
)


def blake2b_file(path: str | os.PathLike[str]) -> str:
    """The BLAKE2b-128 hex digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def pixels_digest(image: Image.Image) -> bytes:
    """A BLAKE2b-128 of the RGB pixels (shape included) that is the same for all four 90° rotations.

    The image is hashed turned so that its brightest quadrant is top left (quadrant sums rotate exactly
    with the pixels); when two quadrants tie, the smallest digest of the four rotations is taken.
    """
    pixels = np.asarray(image)
    h, w = pixels.shape[0] // 2, pixels.shape[1] // 2
    clockwise = [pixels[:h, :w], pixels[:h, -w:], pixels[-h:, -w:], pixels[-h:, :w]] if h and w else []
    sums = [int(q.sum(dtype=np.int64)) for q in clockwise]
    if sums and sums.count(max(sums)) == 1:
        return _digest(image, sums.index(max(sums)))
    return min(_digest(image, k) for k in range(4))


_TURNS = {1: Image.Transpose.ROTATE_90, 2: Image.Transpose.ROTATE_180, 3: Image.Transpose.ROTATE_270}


def _digest(image: Image.Image, turns: int) -> bytes:
    """The digest of ``image`` turned ``turns`` times 90° counter-clockwise."""
    turned = image.transpose(_TURNS[turns]) if turns else image
    shape = struct.pack("<qq", turned.height, turned.width)
    return hashlib.blake2b(shape + turned.tobytes(), digest_size=16).digest()


def perceptual_hashes(image: Image.Image) -> np.ndarray:
    """(KINDS, HASHES, 8) uint8: phashes then dhashes of the rotations and the centred crops."""
    gray = image.convert("L")
    gray.thumbnail((THUMBNAIL, THUMBNAIL))
    gray = ImageOps.equalize(gray)
    views = [gray.rotate(angle, expand=True) for angle in ROTATIONS] + [_centre(gray, s) for s in CROPS]
    return np.stack([[np.packbits(kind(view).hash.flatten()) for view in views] for kind in _KINDS])


def _centre(image: Image.Image, scale: float) -> Image.Image:
    w, h = image.size
    dx, dy = w * (1 - scale) / 2, h * (1 - scale) / 2
    return image.crop((round(dx), round(dy), round(w - dx), round(h - dy)))


def fingerprint(path: str) -> np.ndarray:
    """The packed fingerprint (PACKED uint8) of one image file; ImageError or OSError when unreadable."""
    stat = os.stat(path)
    digest = bytes.fromhex(blake2b_file(path))
    image = load_image(path)
    head = _HEAD.pack(stat.st_size, stat.st_mtime_ns, image.width, image.height, digest, pixels_digest(image))
    return np.concatenate([np.frombuffer(head, np.uint8), perceptual_hashes(image).reshape(-1)])


def unpack(packed: np.ndarray) -> Row:
    """The report values of a packed fingerprint."""
    size, mtime_ns, width, height, digest, pixels = _HEAD.unpack(packed[: _HEAD.size].tobytes())
    hashes = packed[_HEAD.size :].tobytes().hex()
    return {"size": size, "mtime_ns": mtime_ns, "width": width, "height": height,
            "bytes_hash": digest.hex(), "pixels_hash": pixels.hex(), "hashes": hashes}  # fmt: skip


def hash_array(rows: Sequence[Row]) -> np.ndarray:
    """(N, KINDS, HASHES, 8) uint8 perceptual hashes of fingerprint rows."""
    data = bytes.fromhex("".join(row["hashes"] for row in rows))
    return np.frombuffer(data, np.uint8).reshape(len(rows), KINDS, HASHES, HASH_BYTES)


def _one(path: str) -> tuple[np.ndarray | None, str | None]:
    try:
        return fingerprint(path), None
    except (ImageError, OSError) as err:
        return None, f"{type(err).__name__}: {err}"


@dataclass
class FingerprintJob(Job):
    """The fingerprint cache's rows; a row is current while its file keeps its size and modification time."""

    name: str = "fingerprint"
    output = "embedding"  # unused: fingerprints come from their own sources, not a model

    def __post_init__(self) -> None:
        self.schema = FINGERPRINT_SCHEMA

    def bind(self, model: ModelFacts) -> pa.Schema:
        return self.schema

    def values(self, output: np.ndarray) -> Row:
        return unpack(output)

    def state_columns(self) -> Sequence[str]:
        return ("path", "size", "mtime_ns", "error")

    def resume(self, row: Row) -> Literal["done", "rerun", "effect"]:
        if row.get("error"):
            return "rerun"  # a file fixed since is picked up; a still broken one costs little
        try:
            stat = os.stat(row["path"])
        except OSError:
            return "rerun"
        return "done" if (stat.st_size, stat.st_mtime_ns) == (row["size"], row["mtime_ns"]) else "rerun"


class _Files(Dataset):
    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = list(keys)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> tuple[np.ndarray | None, str | None]:
        return _one(self.keys[index])


def local_fingerprints(options: RunOptions) -> Source:
    """Fingerprint in ``options.workers`` processes (0: here), ``options.batch_size`` files a batch, in order."""

    def source(items: list[Item]) -> Iterator[Computed]:
        loader = DataLoader(
            _Files([i.key for i in items]), batch_size=options.batch_size, num_workers=options.workers,
            collate_fn=list, prefetch_factor=4 if options.workers else None,
        )  # fmt: skip
        start = 0
        for batch in loader:
            yield _computed(items[start : start + len(batch)], batch)
            start += len(batch)

    return source


def _computed(items: Sequence[Item], results: Sequence[tuple[np.ndarray | None, str | None]]) -> Computed:
    outputs = {k: packed for k, (packed, _) in enumerate(results) if packed is not None}
    errors = {k: error or "not computed" for k, (packed, error) in enumerate(results) if packed is None}
    return Computed(list(items), outputs, errors)


def fingerprint_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A Ray Data task: key in; packed fingerprint (zeros on error) and error ('' when ok) out."""
    results = [_one(str(key)) for key in batch["key"]]
    packed = np.zeros((len(results), PACKED), np.uint8)
    for k, (fp, _) in enumerate(results):
        if fp is not None:
            packed[k] = fp
    errors = np.array([error or "" for _, error in results], dtype=object)
    return {"key": batch["key"], "packed": packed, "error": errors}


def ray_fingerprints(options: RunOptions, address: str | None, local_cpus: int = 2) -> Source:
    """Fingerprint in Ray Data CPU tasks (local paths must be readable on every node)."""
    from roost.jobs.ray import RayOptions, _connect

    def source(items: list[Item]) -> Iterator[Computed]:
        import ray
        import ray.data

        started = _connect(RayOptions(address=address, local_cpus=local_cpus))
        try:
            ray.data.DataContext.get_current().enable_progress_bars = False
            by_key = {item.key: item for item in items}
            ds = ray.data.from_items([{"key": item.key} for item in items])
            mapped = ds.map_batches(fingerprint_batch, batch_size=options.batch_size, batch_format="numpy")  # type: ignore[arg-type]
            for batch in mapped.iter_batches(batch_format="numpy", batch_size=None):  # type: ignore[misc]
                keys = [str(k) for k in batch["key"]]
                results = [
                    (p, None) if not e else (None, str(e)) for p, e in zip(batch["packed"], batch["error"], strict=True)
                ]
                yield _computed([by_key[k] for k in keys], results)
        finally:
            if started:
                ray.shutdown()

    return source
