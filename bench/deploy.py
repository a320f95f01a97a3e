"""CPU deployment speed: fp32 eager vs int8 eager vs ONNX Runtime fp32 vs ONNX Runtime int8, in one run.

    python bench/deploy.py                          # the rotnet network (so150m p14, 252 px, 4 classes)
    python bench/deploy.py --network rope_vit_reg4_b14 --num-classes 365 --size 224

The published weights cannot be downloaded here, so the network carries the deterministic parity-formula
weights (tests/formula.py; the head is non-zero). Inputs are the real photos in ../shared/photos, each at
0/90/180/270 degrees. "agreement" is the top-1 agreement with fp32 eager on those inputs; "max |dlogit|"
the largest logit difference. img/s is one timed pass over all inputs (after a warm-up batch).
int8 = dynamic quantization of the Linear layers (weights int8, activations per batch).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.formula: the parity weights

from roost.convert.quantize import quantize_linear_int8, top1_agreement  # noqa: E402
from roost.data.decode import load_image  # noqa: E402
from roost.data.transforms import classification_transform, get_rgb_stats  # noqa: E402
from roost.inference.ort import OrtBackend  # noqa: E402
from roost.models.registry import create_model  # noqa: E402
from tests.formula import fill_formula  # noqa: E402


def photos(folder: Path, size: int) -> torch.Tensor:
    transform = classification_transform(size, get_rgb_stats("centered"))
    images = [transform(load_image(p)) for p in sorted(folder.glob("*.jpg"))]
    return torch.stack([torch.rot90(x, k, dims=(1, 2)) for x in images for k in range(4)])


def run(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int) -> tuple[torch.Tensor, float]:
    with torch.inference_mode():
        fn(x[:batch])  # warm-up
        start = time.perf_counter()
        out = torch.cat([fn(x[i : i + batch]) for i in range(0, len(x), batch)])
        return out.float(), len(x) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="rope_vit_reg8_so150m_p14_swiglu_rms_ap")
    parser.add_argument("--num-classes", type=int, default=4)
    parser.add_argument("--size", type=int, default=252)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "photos")
    args = parser.parse_args()

    net = create_model(args.network, args.num_classes, size=args.size)
    fill_formula(net)
    net.eval().requires_grad_(False)
    x = photos(args.photos, args.size)
    console = Console()
    console.print(f"{args.network} @ {args.size}px, {args.num_classes} classes, {len(x)} inputs, batch {args.batch}, "
                  f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        variants = {
            "fp32 eager": net,
            "int8 eager (torch.ao dynamic)": quantize_linear_int8(net),
            "ORT fp32": OrtBackend.from_network(
                net, (args.size, args.size), quantize=False, cache_dir=Path(tmp), key="fp32"
            ),
            "ORT int8 (dynamic, per-channel)": OrtBackend.from_network(
                net, (args.size, args.size), quantize=True, cache_dir=Path(tmp), key="int8"
            ),
        }
        table = Table("variant", "img/s", "speed-up", "top-1 agreement", "max |dlogit|")
        ref, base = None, None
        for name, model in variants.items():
            logits, speed = run(model, x, args.batch)
            ref, base = (logits, speed) if ref is None else (ref, base)
            agree = top1_agreement(ref, logits)
            table.add_row(name, f"{speed:.2f}", f"{speed / base:.2f}x", f"{agree:.3f}",
                          f"{(logits - ref).abs().max().item():.3g}")
    console.print(table)


if __name__ == "__main__":
    main()
