"""Input-pipeline and end-to-end throughput of ``roost orient`` (issue 4), measured in one run.

    python bench/pipeline.py                       # all three tables, ~10 minutes on 2 cores
    python bench/pipeline.py --only decode         # just the decode table

1. decode + transform img/s on the full-size photos (shared/photos/large) and the smaller photos,
   JPEG draft decoding on/off, 1 and 2 worker processes;
2. what draft decoding changes: mean |pixel| difference of the model input and the change in the
   orientation probabilities of a real-size rotnet network (random weights, so agreement is a lower bound);
3. end-to-end ``orient_files`` img/s against model-only forward img/s, same model, batch and device.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

import roost
from roost.data.datasets import iter_batches
from roost.data.transforms import classification_transform, get_rgb_stats
from roost.jobs.base import RunOptions
from roost.jobs.model import JobModel
from roost.jobs.orient import orient_files

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "photos"
ROTNET = "rope_vit_reg8_so150m_p14_swiglu_rms_ap"
SIZE = 252


def photo_sets(repeat_large: int) -> dict[str, list[Path]]:
    small = sorted(SHARED.glob("*.jpg"))
    large = sorted((SHARED / "large").glob("*.jpg")) * repeat_large
    return {f"small ({len(small)} photos, ~1 MP)": small, f"large ({len(large)}: 15 and 8 MP)": large}


def decode_rate(paths: list[Path], workers: int, draft: bool) -> float:
    transform = classification_transform((SIZE, SIZE), get_rgb_stats("birder"))
    start = time.perf_counter()
    n = sum(b.images.shape[0] for b in iter_batches(paths, transform, batch_size=4, workers=workers,
                                                     draft=(SIZE, SIZE) if draft else None))
    return n / (time.perf_counter() - start)


def decode_table(repeat_large: int) -> Table:
    table = Table("photos", "workers", "full decode img/s", "draft img/s", "draft speed-up", title="decode + transform")
    for label, paths in photo_sets(repeat_large).items():
        for workers in (1, 2):
            full, draft = decode_rate(paths, workers, False), decode_rate(paths, workers, True)
            table.add_row(label, str(workers), f"{full:.1f}", f"{draft:.1f}", f"{draft / full:.2f}x")
    return table


def draft_effect_table(net: torch.nn.Module) -> Table:
    transform = classification_transform((SIZE, SIZE), get_rgb_stats("birder"))
    table = Table("photos", "mean |input diff| (0-255)", "max |prob diff|", "top-1 agreement", title="draft vs full")
    for label, paths in photo_sets(1).items():
        full = next(iter_batches(paths, transform, batch_size=len(paths), workers=0)).images
        draft = next(iter_batches(paths, transform, batch_size=len(paths), workers=0, draft=(SIZE, SIZE))).images
        with torch.inference_mode():
            pf, pd = net(full).softmax(1), net(draft).softmax(1)
        pixel = ((full - draft) * torch.tensor([0.2316, 0.2304, 0.2588]).view(1, 3, 1, 1) * 255).abs().mean()
        agree = (pf.argmax(1) == pd.argmax(1)).float().mean()
        table.add_row(label, f"{pixel:.2f}", f"{(pf - pd).abs().max():.4f}", f"{agree:.0%}")
    return table


def end_to_end_table(checkpoint: Path, batch: int, seconds: float) -> Table:
    net, _ = roost.load_pretrained_model(checkpoint, inference=True)
    x = torch.randn(batch, 3, SIZE, SIZE)
    with torch.inference_mode():
        net.embedding(x)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            net.classify(net.embedding(x))
            done += batch
    model_only = done / (time.perf_counter() - start)
    options = RunOptions(batch_size=batch, workers=1)
    start = time.perf_counter()
    JobModel.load(checkpoint, options)
    load_s = time.perf_counter() - start
    table = Table(
        "input", "model-only img/s", "orient end-to-end img/s", "ratio", "ratio without the one-off model load",
        title=f"orient, batch {batch} (model load {load_s:.1f} s)",
    )
    for label, paths in photo_sets(4).items():
        folder = Path(tempfile.mkdtemp())
        for i, p in enumerate(paths):
            shutil.copy(p, folder / f"{i:03d}_{p.name}")
        start = time.perf_counter()
        done = orient_files([folder], model=checkpoint, options=options).processed
        elapsed = time.perf_counter() - start
        rate, steady = done / elapsed, done / (elapsed - load_s)
        ratios = f"{rate / model_only:.2f}", f"{steady / model_only:.2f}"
        table.add_row(label, f"{model_only:.2f}", f"{rate:.2f}", *ratios)
        shutil.rmtree(folder)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["decode", "draft", "e2e"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeat-large", type=int, default=6)
    args = parser.parse_args()
    console = Console(width=140)
    console.print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.only in (None, "decode"):
        console.print(decode_table(args.repeat_large))
    if args.only in (None, "draft", "e2e"):
        torch.manual_seed(0)
        net = roost.create_model(ROTNET, 4, size=SIZE).eval()
        with torch.no_grad():
            net.classifier.weight.normal_(std=0.05)  # a zero head would make every prediction a tie
        if args.only in (None, "draft"):
            console.print(draft_effect_table(net))
        if args.only in (None, "e2e"):
            with tempfile.TemporaryDirectory() as tmp:
                checkpoint = roost.save_model(Path(tmp) / f"{ROTNET}_bench.pt", net, class_to_idx={
                    "0": 0, "90": 1, "180": 2, "270": 3}, rgb_stats=get_rgb_stats("birder"))
                console.print(end_to_end_table(checkpoint, args.batch, args.seconds))


if __name__ == "__main__":
    main()
