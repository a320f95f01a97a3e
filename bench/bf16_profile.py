"""Where the bf16-held forward spends its time, and what restructuring it buys, measured in one run.

    python bench/bf16_profile.py --markdown profile.md     # about 6 minutes on 2 AVX512-BF16 cores
    python bench/bf16_profile.py --quick                   # 2-layer networks: checks the script

1. A profile (torch.profiler, CPU) of one bf16-held forward of each seed network at its card size and
   batch, with the deterministic parity-formula weights: the share of self time of each kind of op
   (matmuls, attention, RoPE arithmetic, norms, casts and copies, activations, the rest).
2. A/B in one process, rounds interleaved so that drift hits every variant alike: the batch jobs'
   bf16-held pick as it is (float32 RoPE table and head) against candidate restructurings, each with its
   fidelity against exact fp32 on the real photos at 0/90/180/270 degrees.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.speed import ROTATIONS, SEEDS, Output, Seed, cpu_name, fidelity, photo_tensor  # noqa: E402
from roost.jobs.model import hold_bf16  # noqa: E402
from roost.models.layers import attention  # noqa: E402
from roost.models.registry import create_model  # noqa: E402
from roost.models.rope_vit import RoPEViT  # noqa: E402
from tests.formula import fill_formula  # noqa: E402

KINDS = {
    "matmul": ("addmm", "mm", "bmm", "linear", "matmul", "convolution"),
    "attention": ("scaled_dot_product", "flash_attention"),
    "RoPE arithmetic": ("addcmul", "mul", "cat", "flip"),
    "norms": ("layer_norm", "rms_norm", "native_layer_norm", "pow", "rsqrt", "mean"),
    "casts and copies": ("copy_", "_to_copy", "to", "contiguous", "clone"),
    "activations": ("gelu", "silu", "softmax"),
}


def kind_of(op: str) -> str:
    name = op.removeprefix("aten::")
    for kind, names in KINDS.items():
        if any(name == n or (len(n) > 8 and n in name) for n in names):
            return kind
    return "other"


def network(seed: Seed, quick: bool) -> RoPEViT:
    net = create_model(seed.network, seed.classes, size=seed.size, config=seed.tiny if quick else None)
    fill_formula(net)
    return net.eval().requires_grad_(False)


def forward(net: nn.Module, classes: int) -> Callable[[Tensor], Tensor]:
    def fn(x: Tensor) -> Tensor:
        y = net(x.to(next(net.parameters()).dtype)).float()
        return y.softmax(dim=1) if classes else y

    return fn


def profile_rows(fn: Callable[[Tensor], Tensor], x: Tensor) -> list[list[str]]:
    with torch.inference_mode():
        fn(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn(x)
    shares: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        shares[kind_of(event.key)] += event.self_cpu_time_total
    total = sum(shares.values())
    ordered = sorted(shares.items(), key=lambda kv: -kv[1])
    return [[kind, f"{us / total:.1%}"] for kind, us in ordered]


# ---------------------------------------------------------------------------------- candidates
def bf16_rope_table(net: RoPEViT) -> RoPEViT:
    """bf16-held with the RoPE table in bfloat16 too: q and k rotate in bf16, no float32 temporaries."""
    net.rope.pos_embed = net.rope.pos_embed.to(torch.bfloat16)
    return net


def sliced_rope(x: Tensor, sin: Tensor, cos: Tensor, rotation: str) -> Tensor:
    """apply_rope without the swapped copy: each half (or parity) written in place from views of x."""
    if sin.dim() == 3:
        sin, cos = sin.unsqueeze(1), cos.unsqueeze(1)
    y = torch.empty(x.shape, dtype=torch.promote_types(x.dtype, sin.dtype))
    h = x.shape[-1] // 2
    first, second = (slice(0, h), slice(h, None)) if rotation == "standard" else (slice(0, None, 2), slice(1, None, 2))
    torch.addcmul(x[..., first] * cos[..., first], x[..., second], sin[..., first], out=y[..., first])
    torch.addcmul(x[..., second] * cos[..., second], x[..., first], sin[..., second], out=y[..., second])
    return y


def matmul_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, scale: float = 1.0) -> Tensor:
    """Attention as two bf16 matmuls around a float32 softmax (what SDPA's flash kernel does in one)."""
    scores = torch.matmul(q, k.transpose(-2, -1)).float().mul_(scale)
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    return torch.matmul(scores.softmax(dim=-1).to(v.dtype), v)


class _Functional:
    """torch.nn.functional as the attention layers see it, with another scaled_dot_product_attention."""

    def __init__(self, sdpa: Callable[..., Tensor]) -> None:
        self.scaled_dot_product_attention = sdpa

    def __getattr__(self, name: str) -> object:
        return getattr(torch.nn.functional, name)


Patch = dict[str, object]  # names in roost.models.layers.attention replaced while a variant runs
CANDIDATES: dict[str, tuple[Callable[[RoPEViT], RoPEViT], Patch]] = {
    "bf16 held, float32 RoPE table and head (the default pick)": (lambda net: net, {}),
    "bf16 held, bf16 RoPE table": (bf16_rope_table, {}),
    "bf16 held, RoPE written in halves (no swapped copy)": (lambda net: net, {"apply_rope": sliced_rope}),
    "bf16 held, bf16 RoPE table written in halves": (bf16_rope_table, {"apply_rope": sliced_rope}),
    "bf16 held, attention as matmuls + float32 softmax": (lambda net: net, {"F": _Functional(matmul_attention)}),
}


def patched(fn: Callable[[Tensor], Tensor], patch: Patch) -> Callable[[Tensor], Tensor]:
    """``fn`` with names of the attention module replaced while it runs."""

    def run(x: Tensor) -> Tensor:
        kept = {name: getattr(attention, name) for name in patch}
        for name, value in patch.items():
            setattr(attention, name, value)
        try:
            return fn(x)
        finally:
            for name, value in kept.items():
                setattr(attention, name, value)

    return run


def ab_rows(seed: Seed, net: RoPEViT, x: Tensor, rounds: int) -> list[list[str]]:
    batches = list(x.split(seed.batch))[: max(1, 8 // seed.batch)]
    with torch.inference_mode():
        reference = torch.cat([forward(net, seed.classes)(b) for b in x.split(seed.batch)])
    variants = {name: patched(forward(make(hold_bf16(copy.deepcopy(net))), seed.classes), patch)
                for name, (make, patch) in CANDIDATES.items()}  # fmt: skip
    best: dict[str, float] = {}
    with torch.inference_mode():
        outputs = {name: torch.cat([fn(b) for b in x.split(seed.batch)]) for name, fn in variants.items()}
        for _ in range(rounds):
            for name, fn in variants.items():
                start = time.perf_counter()
                for b in batches:
                    fn(b)
                rate = sum(len(b) for b in batches) / (time.perf_counter() - start)
                best[name] = max(best.get(name, 0.0), rate)
    base = best[next(iter(variants))]
    return [[name, f"{best[name]:.2f}", f"{best[name] / base:.2f}x", *fidelity(reference, outputs[name], seed.classes)]
            for name in variants]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2-layer networks, 2 photos, 1 round")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved A/B rounds (best of them counts)")
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "photos")
    parser.add_argument("--markdown", type=Path, help="also write the tables as markdown here")
    args = parser.parse_args()
    photos = sorted(args.photos.glob("*.jpg"))[: 2 if args.quick else None]
    torch.manual_seed(0)
    out, cpu = Output(), cpu_name()
    for seed in SEEDS:
        net = network(seed, args.quick)
        x = photo_tensor(photos, seed)
        held = forward(hold_bf16(copy.deepcopy(net)), seed.classes)
        out.table(f"Self time of one bf16-held forward: {seed.network} @ {seed.size}, batch {seed.batch}, {cpu}",
                  ["kind of op", "share"], profile_rows(held, x[: seed.batch]))  # fmt: skip
        headers = ["variant", "img/s", "vs default", "top-1 agreement", "max |dprob|", "every flip a near tie"]
        if not seed.classes:
            headers = [*headers[:3], "min cosine", "mean cosine"]
        note = f"{len(x)} inputs ({len(photos)} photos x {len(ROTATIONS)} rotations); fidelity against fp32."
        out.table(f"Restructurings of the bf16-held forward: {seed.network} @ {seed.size}, batch {seed.batch}, {cpu}",
                  headers, ab_rows(seed, net, x, 1 if args.quick else args.rounds), note)  # fmt: skip
    if args.markdown:
        args.markdown.write_text("\n".join(out.markdown))


if __name__ == "__main__":
    main()
