"""Forward throughput of the three seed networks at their card sizes (eval, random weights).

    python bench/forward.py                 # CPU, all threads, ~20 s per row
    python bench/forward.py --seconds 5     # quicker, noisier
    python bench/forward.py --device cuda   # on a GPU

Rows: fp32 and bf16 autocast, batch 1 and a larger batch. The "reference" column is Birder 0.8.4 on this
kind of machine (shared/spec/reference_speed.md, measured on the same CPU type), so the ratio is a rough
guide; "sdpa/manual" compares roost's fused attention with a plain softmax(QK^T)V in the same run.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

import roost

SEEDS = [
    ("rope_vit_reg8_so150m_p14_swiglu_rms_ap", 4, 252, 4, {"fp32": 1.02, "bf16": 1.69}),
    ("rope_vit_reg4_b14", 365, 224, 8, {"fp32": 2.49, "bf16": 4.16}),
    ("rope_i_vit_reg1_s16_pn_npn_avg_c1", 0, 512, 4, {"fp32": 1.96, "bf16": 1.58}),
]


def throughput(net: torch.nn.Module, batch: int, size: int, dtype: str, device: str, seconds: float) -> float:
    x = torch.randn(batch, 3, size, size, device=device)
    amp = torch.autocast(device, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()
    with torch.inference_mode(), amp:
        net(x)  # warm-up
        if device == "cuda":
            torch.cuda.synchronize()
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            net(x)
            done += batch
        if device == "cuda":
            torch.cuda.synchronize()
        return done / (time.perf_counter() - start)


def manual_sdpa(q, k, v, attn_mask=None, scale=None, **_):  # the baseline path: unfused attention
    attn = (q @ k.transpose(-2, -1)) * scale
    if attn_mask is not None:
        attn = attn + attn_mask
    return attn.softmax(dim=-1) @ v


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = args.device
    threads = torch.get_num_threads()
    table = Table(title=f"roost forward img/s on {device} ({threads} threads, torch {torch.__version__})")
    columns = ("network @ size", "batch", "dtype", "roost", "manual attn", "sdpa/manual", "reference", "roost/ref")
    for col in columns:
        table.add_column(col)
    for name, classes, size, big, ref in SEEDS:
        net = roost.create_model(name, classes, size=size).eval().to(device)
        for batch in (1, big):
            for dtype in ("fp32", "bf16"):
                fast = throughput(net, batch, size, dtype, device, args.seconds)
                original = F.scaled_dot_product_attention
                F.scaled_dot_product_attention = manual_sdpa
                try:
                    slow = throughput(net, batch, size, dtype, device, args.seconds)
                finally:
                    F.scaled_dot_product_attention = original
                r = ref[dtype] if batch == big and device == "cpu" else None
                table.add_row(
                    f"{name} @ {size}", str(batch), dtype, f"{fast:.2f}", f"{slow:.2f}", f"{fast / slow:.2f}",
                    f"{r:.2f}" if r else "-", f"{fast / r:.2f}" if r else "-",
                )
        del net
    Console().print(table)


if __name__ == "__main__":
    main()
