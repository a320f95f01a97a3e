"""``roost dedup``: throughput of each fingerprint stage, end-to-end time and memory, and a peer comparison.

    python bench/dedup.py                                  # stages, 1000 generated images, the peer
    python bench/dedup.py --images 100000                  # the end-to-end run of BENCHMARKS.md
    python bench/dedup.py --peer-python /tmp/peer/bin/python   # imagededup installed in its own venv

* **stages**: each fingerprint part timed alone over the real photos (19 small ones and the two full-size
  originals), one process: bytes (BLAKE2b of the file), decode (Pillow, EXIF applied), pixels (the
  rotation-invariant pixel digest), perceptual (8 phashes and 8 dhashes); img/s per stage and for the whole.
* **end to end**: N small generated images (96x64 crops of the photos, a third of them resized or
  recompressed copies of another), one ``roost dedup`` process (report, fingerprint cache, grouping),
  wall time (Python start-up included) and peak resident memory (``ru_maxrss``).
* **peer**: the same families of near-duplicates as the tests (every small photo: byte copy, resize,
  recompression, PNG, rotations, EXIF turn, crop, brightness, grayscale; the full-size originals and
  their downscaled copies) grouped by roost's default stages and by imagededup's PHash (its default
  threshold of 10 bits, run in ``--peer-python``): pairwise precision, recall, img/s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.dedup.families: the test families

from roost.data.decode import load_image
from roost.dedup.signatures import blake2b_file, perceptual_hashes, pixels_digest
from tests.dedup.families import make_collection, pairwise

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PHOTOS = SHARED / "photos"
PEER = """
import json, sys, time, types
for name, attr in (("imagededup.methods.cnn", "CNN"), ("imagededup.utils.models", "CustomModel")):
    sys.modules[name] = types.SimpleNamespace(**{attr: None})  # the CNN parts need torchvision; unused here
from imagededup.methods import PHash
t = time.perf_counter()
found = PHash(verbose=False).find_duplicates(image_dir=sys.argv[1], max_distance_threshold=10)
print(json.dumps({"seconds": time.perf_counter() - t, "duplicates": found}))
"""


def stages(console: Console) -> None:
    files = sorted(PHOTOS.glob("*.jpg")) + sorted((PHOTOS / "large").glob("*.jpg"))
    images = [load_image(f) for f in files]
    timings: dict[str, Callable[[], object]] = {
        "bytes (BLAKE2b)": lambda: [blake2b_file(f) for f in files],
        "decode (Pillow, EXIF)": lambda: [load_image(f) for f in files],
        "pixels (digest)": lambda: [pixels_digest(im) for im in images],
        "perceptual (8 phash + 8 dhash)": lambda: [perceptual_hashes(im) for im in images],
    }
    table = Table("stage", "seconds", "img/s", title=f"fingerprint stages over {len(files)} real photos")
    total = 0.0
    for name, work in timings.items():
        start = time.perf_counter()
        work()
        seconds = time.perf_counter() - start
        total += seconds
        table.add_row(name, f"{seconds:.3f}", f"{len(files) / seconds:.0f}")
    table.add_row("whole fingerprint", f"{total:.3f}", f"{len(files) / total:.0f}")
    console.print(table)


def generate(folder: Path, count: int) -> None:
    """``count`` small images: crops of the photos, a third of them copies (resized or recompressed)."""
    rng = np.random.default_rng(0)
    sources = [np.asarray(Image.open(p).convert("RGB").resize((512, 320))) for p in sorted(PHOTOS.glob("*.jpg"))]
    for i in range(count):
        sub = folder / f"{i // 1000:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        if i % 3 == 2:
            base = Image.open(folder / f"{(i - 1) // 1000:04d}" / f"{i - 1:07d}.jpg")
            base.resize((72, 48)).save(sub / f"{i:07d}.jpg", quality=70)
            continue
        src = sources[rng.integers(len(sources))]
        y, x = rng.integers(0, 320 - 64), rng.integers(0, 512 - 96)
        Image.fromarray(src[y : y + 64, x : x + 96]).save(sub / f"{i:07d}.jpg", quality=90)


def end_to_end(console: Console, count: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        start = time.perf_counter()
        generate(folder, count)
        made = time.perf_counter() - start
        command = [sys.executable, "-m", "roost", "dedup", str(folder), "-r", "--report", str(Path(tmp) / "r.csv"),
                   "-q", "-j", str(workers), "-b", "64"]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    table = Table("images", "workers", "seconds", "img/s", "peak RSS (MB)", "summary", title="dedup end to end")
    last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
    table.add_row(str(count), str(workers), f"{seconds:.1f}", f"{count / seconds:.0f}", f"{peak / 2**20:.0f}", last)
    console.print(table)
    console.print(f"(generating the images took {made:.1f} s)")


def peer(console: Console, peer_python: str | None) -> None:
    from roost.dedup import dedup_files
    from roost.dedup.groups import REPORT_SCHEMA
    from roost.jobs.base import RunOptions
    from roost.jobs.report import read_rows

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        family = make_collection(PHOTOS, folder, families=12, distinct=7)
        start = time.perf_counter()
        dedup_files([folder], report=Path(tmp) / "r.jsonl", run=RunOptions(workers=1, batch_size=16))
        seconds = time.perf_counter() - start
        groups = {Path(r["path"]).name: r["group"] for r in read_rows(Path(tmp) / "r.jsonl", REPORT_SCHEMA)}
        table = Table("method", "images", "precision", "recall", "img/s", title="near-duplicate families, pairwise")
        table.add_row("roost dedup (default stages)", str(len(family)), *_scores(groups, family, seconds))
        result = _peer(peer_python, folder) if peer_python else None
        if result is not None:
            table.add_row("imagededup PHash (10 bits)", str(len(family)),
                          *_scores(_components(result["duplicates"]), family, result["seconds"]))  # fmt: skip
        console.print(table)


def _scores(groups: dict[str, int | None], family: dict[str, str | None], seconds: float) -> list[str]:
    precision, recall = pairwise(groups, family)
    return [f"{precision:.3f}", f"{recall:.3f}", f"{len(family) / seconds:.0f}"]


def _peer(python: str, folder: Path) -> dict | None:
    done = subprocess.run([python, "-c", PEER, str(folder)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"peer failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def _components(duplicates: dict[str, list]) -> dict[str, int | None]:
    """Groups (connected components) of a peer's name -> duplicate names answer."""
    parent = {name: name for name in duplicates}

    def find(x: str) -> str:
        while parent[x] != x:
            x = parent[x]
        return x

    for name, dups in duplicates.items():
        for dup in dups:
            parent[find(dup if isinstance(dup, str) else dup[0])] = find(name)
    roots = {name: find(name) for name in duplicates}
    sizes: dict[str, int] = {}
    for root in roots.values():
        sizes[root] = sizes.get(root, 0) + 1
    number = {root: i for i, root in enumerate(sorted(r for r, n in sizes.items() if n > 1))}
    return {name: number.get(root) for name, root in roots.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="generated images for the end-to-end run")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--peer-python", default="/tmp/peer/bin/python" if Path("/tmp/peer/bin/python").exists()
                        else None, help="a Python with imagededup installed")  # fmt: skip
    parser.add_argument("--skip", nargs="*", default=[], choices=["stages", "end-to-end", "peer"])
    args = parser.parse_args()
    console = Console()
    if "stages" not in args.skip:
        stages(console)
    if "end-to-end" not in args.skip:
        end_to_end(console, args.images, args.workers)
    if "peer" not in args.skip:
        peer(console, args.peer_python)


if __name__ == "__main__":
    main()
