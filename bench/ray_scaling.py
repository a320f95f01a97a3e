"""Throughput of the Ray engine (issue 7) with 1 and 2 CPU model actors, against the local engine.

    python bench/ray_scaling.py                     # tiny fixture rotnet: decode-bound, ~1 minute
    python bench/ray_scaling.py --real --photos 6   # a real-size so150m rotnet (random weights): compute-bound

Inputs are the photos in ../shared/photos (1024x640 JPEGs), each saved at 0/90/180/270 degrees. Each row is
one ``orient`` run from scratch into a fresh output (wall clock, so it includes Ray's pipeline start and
each actor's model load). Ray runs locally on loopback with 2 logical CPUs; every model actor takes 0.5
CPU so that decode tasks keep one CPU in both rows (Ray then gives each actor 1 torch thread).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import ray
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from roost.data.transforms import get_rgb_stats
from roost.jobs.base import RunOptions
from roost.jobs.orient import orient_files
from roost.jobs.ray import RayOptions
from roost.models.registry import create_model
from roost.weights.load import save_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TINY = SHARED / "fixtures" / "checkpoints" / "rope_vit_reg8_so150m_p14_swiglu_rms_ap_tiny-rotnet.pt"
REAL = "rope_vit_reg8_so150m_p14_swiglu_rms_ap"


def make_inputs(folder: Path, count: int) -> int:
    for src in sorted((SHARED / "photos").glob("*.jpg"))[:count]:
        image = Image.open(src).convert("RGB")
        for angle in (0, 90, 180, 270):
            image.rotate(angle, expand=True).save(folder / f"{src.stem}_{angle}.jpg", quality=90)
    return len(list(folder.iterdir()))


def real_checkpoint(folder: Path) -> Path:
    torch.manual_seed(0)
    net = create_model(REAL, 4, size=252).eval()
    with torch.no_grad():
        net.classifier.weight.normal_(std=0.05)
    classes = {"0": 0, "90": 1, "180": 2, "270": 3}
    return save_model(folder / f"{REAL}_bench.pt", net, class_to_idx=classes, rgb_stats=get_rgb_stats("birder"))


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=18, help="photos to use (x4 rotations)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--real", action="store_true", help="real-size so150m at 252 px instead of the tiny fixture")
    args = parser.parse_args()
    options = RunOptions(batch_size=args.batch, workers=1)
    table = Table("engine", "model actors", "images", "seconds", "img/s", title="roost orient throughput (2 CPUs)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_dir = Path(tmp)
        (tmp_dir / "in").mkdir()
        n = make_inputs(tmp_dir / "in", args.photos)
        model = str(real_checkpoint(tmp_dir) if args.real else TINY)
        seconds = timed(orient_files, [tmp_dir / "in"], model=model, options=options)
        table.add_row("local (1 decode worker)", "-", str(n), f"{seconds:.1f}", f"{n / seconds:.1f}")
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
        try:
            for actors in (1, 2):
                ray_options = RayOptions(concurrency=actors, num_cpus_per_worker=0.5, decode_batch_size=args.batch)
                out = tmp_dir / f"out{actors}.parquet"
                inputs = [tmp_dir / "in"]
                seconds = timed(orient_files, inputs, model=model, report=out, options=options, ray=ray_options)
                table.add_row("ray", str(actors), str(n), f"{seconds:.1f}", f"{n / seconds:.1f}")
        finally:
            ray.shutdown()
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
