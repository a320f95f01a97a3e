"""Peak memory of ``roost embed`` against the number of images: it should stay flat.

    python bench/embed_memory.py                          # 1k, 10k and 100k images, plain and with --npy
    python bench/embed_memory.py --sizes 1000 10000 50000

The images are tiny PNGs (32x32, one colour each, all different files) written once into a temporary
folder, split into one sub-folder per step so that the run over N images names the first folders. Each
run is a fresh ``roost embed`` process (tiny PE checkpoint, Parquet report, decoding in the process,
batch 64) timed by wall clock (so it includes Python start-up and the model load); its peak resident
memory is the kernel's ``ru_maxrss`` of that process. "growth per image" is the peak's increase over the
first row, divided by the images added.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from rich.console import Console
from rich.table import Table

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TINY_PE = SHARED / "fixtures" / "checkpoints" / "rope_i_vit_reg1_s16_pn_npn_avg_c1_tiny-pe.pt"
MB = 1024 * 1024


@dataclass(frozen=True)
class Result:
    images: int
    seconds: float
    peak_rss: int  # bytes
    report_bytes: int
    npy_bytes: int | None


def make_images(root: Path, sizes: list[int]) -> list[list[Path]]:
    """Write ``max(sizes)`` distinct PNGs; for each size, the folders holding exactly that many."""
    folders: list[Path] = []
    written = 0
    for step, size in enumerate(sizes):
        folder = root / f"step{step}"
        folder.mkdir()
        for i in range(written, size):
            colour = (i * 37 % 256, i // 256 * 91 % 256, i // 65536 * 53 % 256)
            Image.new("RGB", (32, 32), colour).save(folder / f"img_{i:06d}.png", compress_level=1)
        written = size
        folders.append(folder)
    return [folders[: k + 1] for k in range(len(sizes))]


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    return f"{names[0] if names else 'unknown CPU'}, {os.cpu_count()} logical CPUs"


def folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_embed(folders: list[Path], out: Path, args: argparse.Namespace, npy: bool) -> Result:
    """One ``roost embed`` process over ``folders``; its wall time and peak RSS (from wait4)."""
    report, vectors = out / "report.parquet", out / "vectors.npy"
    command = [
        sys.executable, "-m", "roost", "embed", *map(str, folders), "-m", str(args.model), "--report", str(report),
        "-b", str(args.batch), "-j", str(args.workers), "--device", "cpu", "-q",
    ]  # fmt: skip
    if npy:
        command += ["--npy", str(vectors)]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert child.stderr is not None
    errors = child.stderr.read()  # read before waiting: a full pipe would block the child
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise RuntimeError(f"roost embed exited with {child.returncode}: {errors.decode(errors='replace')}")
    npy_bytes = folder_bytes(vectors) if npy else None
    images = sum(len(list(f.iterdir())) for f in folders)
    return Result(images, seconds, usage.ru_maxrss * 1024, folder_bytes(report), npy_bytes)


def table(results: list[Result], title: str) -> Table:
    npy = results[0].npy_bytes is not None
    columns = ["images", "seconds", "img/s", "peak RSS MB", "growth per image", "report MB"]
    out = Table(*columns, *(["npy MB"] if npy else []), title=title)
    first = results[0]
    for r in results:
        added = r.images - first.images
        growth = f"{(r.peak_rss - first.peak_rss) / added:.0f} B" if added else "-"
        cells = [f"{r.images:,}", f"{r.seconds:.1f}", f"{r.images / r.seconds:.0f}", f"{r.peak_rss / MB:.0f}", growth]
        cells.append(f"{r.report_bytes / MB:.1f}")
        if r.npy_bytes is not None:
            cells.append(f"{r.npy_bytes / MB:.1f}")
        out.add_row(*cells)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--model", type=Path, default=TINY_PE)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="decoding processes (0: in the embed process)")
    args = parser.parse_args()
    sizes = sorted(set(args.sizes))
    console = Console(width=120)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        inputs = make_images(Path(tmp), sizes)
        console.print(f"wrote {sizes[-1]:,} PNGs in {time.perf_counter() - start:.1f} s")
        for npy, label in ((False, "roost embed --report R.parquet"), (True, "roost embed ... --npy V.npy")):
            results = []
            for folders in inputs:
                with tempfile.TemporaryDirectory(dir=tmp) as out:
                    results.append(run_embed(folders, Path(out), args, npy))
                console.print(f"{label}: {results[-1].images:,} images in {results[-1].seconds:.0f} s", style="dim")
            title = f"{label}, batch {args.batch}, workers {args.workers} ({cpu_model()})"
            console.print(table(results, title))


if __name__ == "__main__":
    main()
