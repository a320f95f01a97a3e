"""Precision and speed of the batch jobs, measured in one run: what each precision gains and costs on this CPU.

    python bench/speed.py --markdown speed.md      # everything: 11 minutes on 2 AVX512-BF16 cores
    python bench/speed.py --quick                  # 2-layer networks, 2 photos: checks the script

1. Forward-only img/s of the three seed networks at their card sizes and batch (4; 8 for b14), carrying the
   deterministic parity-formula weights (tests/formula.py; the published weights cannot be downloaded here):
   exact fp32, bf16 autocast, bf16 held (weights and activations bf16), bf16 held + torch.compile (rotnet:
   also compiled again from a warm inductor cache), int8
   (torch.ao dynamic; ONNX Runtime dynamic) and the batch jobs' default pick (``JobModel`` with
   ``Dtype.AUTO``, n/a where roost has none). Each is timed over one pass over the real photos at
   0/90/180/270 degrees (repeated until ``--seconds``), after one warm-up batch; "one-off s" is the warm-up
   batch less a steady one, plus any conversion before it (compile, ONNX export and quantization, model
   load). Fidelity against fp32 on the same inputs: top-1 agreement, max |dprob| and whether every
   disagreement is a near tie (fp32 top-2 margin < 0.02); for the embedding network, cosine similarity.
2. ``roost orient`` end to end in a subprocess (start-up, model load, decoding, report), its default against
   ``--dtype fp32``, on the photos at 4 rotations and on the large photos repeated, next to the model-only
   img/s of the same pick at the command's default batch.
3. Share of the machine's peak: FLOPs per image counted with FlopCounterMode on one forward (attention
   included), times img/s, over the FLOP/s of a large matmul in the variant's precision measured in this
   run, and over the nominal peak cores x GHz x FLOP/cycle/core.
"""

from __future__ import annotations

import argparse
import copy
import csv
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.formula: the parity weights

from roost.cli.batch import RUN_OPTIONS  # noqa: E402
from roost.convert.quantize import quantize_linear_int8  # noqa: E402
from roost.data.datasets import Batch  # noqa: E402
from roost.data.decode import load_image  # noqa: E402
from roost.data.transforms import classification_transform, get_rgb_stats  # noqa: E402
from roost.inference.ort import OrtBackend  # noqa: E402
from roost.jobs.base import Dtype, Event, Note, RunOptions  # noqa: E402
from roost.jobs.model import JobModel  # noqa: E402
from roost.models.registry import create_model  # noqa: E402
from roost.models.rope_vit import RoPEViT  # noqa: E402
from roost.weights.load import save_model  # noqa: E402
from tests.formula import fill_formula  # noqa: E402

NEAR_TIE = 0.02  # fp32 top-2 probability margin under which a changed top-1 counts as a near tie
ROTATIONS = (0, 90, 180, 270)
AUTO: Dtype | None = getattr(Dtype, "AUTO", None)
CLI_DEFAULTS = {p.name: p.default for p in RUN_OPTIONS}
WARM = " Warm cache: compiled again in the same process after torch._dynamo.reset(), one batch timed."


@dataclass(frozen=True)
class Seed:
    network: str
    classes: int
    size: int
    batch: int
    rgb: str
    tiny: dict[str, int]  # --quick: the config of the matching 2-layer test checkpoint
    class_to_idx: dict[str, int] = field(default_factory=dict)


ROTNET = Seed("rope_vit_reg8_so150m_p14_swiglu_rms_ap", 4, 252, 4, "centered",
              {"num_layers": 2, "hidden_dim": 128, "num_heads": 2, "mlp_dim": 352},
              {"0": 0, "90": 1, "180": 2, "270": 3})  # fmt: skip
SEEDS = (
    ROTNET,
    Seed("rope_vit_reg4_b14", 365, 224, 8, "birder", {"num_layers": 2, "hidden_dim": 192, "num_heads": 3,
         "mlp_dim": 768}, {f"class_{i:03d}": i for i in range(365)}),
    Seed("rope_i_vit_reg1_s16_pn_npn_avg_c1", 0, 512, 4, "clip",
         {"num_layers": 2, "hidden_dim": 96, "num_heads": 2, "mlp_dim": 384}),
)  # fmt: skip


@dataclass
class Variant:
    name: str
    precision: str  # fp32 | bf16 | fp16 | int8: which peak it is measured against
    fn: Callable[[Tensor], Tensor] | None  # (B, 3, H, W) -> probabilities or embeddings, float32
    setup_s: float = 0.0
    full: bool = True  # False: only the one-off time (one warm-up and one timed batch, no fidelity)


class Output:
    """Tables printed with rich as they come, and collected as markdown for ``--markdown``."""

    def __init__(self) -> None:
        self.console = Console(width=200)
        self.markdown: list[str] = []

    def table(self, title: str, headers: list[str], rows: list[list[str]], note: str = "") -> None:
        table = Table(*headers, title=title, caption=note or None)
        for row in rows:
            table.add_row(*row)
        self.console.print(table)
        lines = [f"**{title}**", "", _markdown_row(headers), "|" + "---|" * len(headers)]
        lines += [_markdown_row(row) for row in rows]
        self.markdown += [*lines, *(["", note] if note else []), ""]


def _markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


# ---------------------------------------------------------------------------------- machine
def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def cpu_facts() -> tuple[float, set[str]]:
    """(GHz as /proc/cpuinfo reports it, the CPU flags)."""
    mhz, flags = 0.0, set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "cpu MHz" and not mhz:
            mhz = float(value)
        if key.strip() == "flags" and not flags:
            flags = set(value.split())
    return mhz / 1000, flags


def flop_per_cycle(flags: set[str]) -> dict[str, int]:
    """Nominal FLOP (int8: OP) per cycle and core: two FMA pipes of the widest vector unit the flags show."""
    if {"amx_bf16", "amx_int8"} <= flags:  # AMX tiles: 1024 bf16 / 2048 int8 per cycle
        return {"fp32": 64, "bf16": 1024, "int8": 2048}
    if "avx512f" in flags:  # 2 x 512-bit: 16 fp32 FMA, 32 bf16 pairs (VDPBF16PS), 64 int8 pairs (VPDPBUSD)
        return (
            {"fp32": 64}
            | ({"bf16": 128} if "avx512_bf16" in flags else {})
            | ({"int8": 256} if "avx512_vnni" in flags else {})
        )
    return {"fp32": 32} | ({"int8": 128} if "avx_vnni" in flags else {})  # 2 x 256-bit


def matmul_rate(precision: str, n: int, seconds: float) -> float:
    """FLOP/s of an (n, n) @ (n, n) product on this process's threads."""
    if precision == "int8":
        a, mm = torch.randint(-64, 64, (n, n), dtype=torch.int8), torch.ops.aten._int_mm
    else:
        a, mm = torch.randn(n, n, dtype=getattr(torch, {"fp32": "float32", "bf16": "bfloat16"}[precision])), torch.mm
    b = a.clone()
    mm(a, b)
    count, start = 0, time.perf_counter()
    while count < 3 or time.perf_counter() - start < seconds:
        mm(a, b)
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start)


def peaks(out: Output, n: int, seconds: float, title: str) -> tuple[dict[str, float], dict[str, float]]:
    ghz, flags = cpu_facts()
    cores = torch.get_num_threads()
    per_cycle = flop_per_cycle(flags)
    measured = {p: matmul_rate(p, n, seconds) for p in ("fp32", "bf16", "int8")}
    nominal = {p: cores * ghz * 1e9 * f for p, f in per_cycle.items()}
    rows = [[p, f"{measured[p] / 1e9:.0f}",
             f"{cores} x {ghz:.2f} x {per_cycle[p]} = {nominal[p] / 1e9:.0f}" if p in nominal else "-",
             f"{measured[p] / nominal[p]:.0%}" if p in nominal else "-"] for p in measured]  # fmt: skip
    out.table(
        f"Peak GFLOP/s (int8: GOP/s), {title}", ["precision", f"matmul {n}x{n} measured",
        "nominal: cores x GHz x FLOP/cycle", "measured / nominal"], rows,
        "Nominal FLOP/cycle/core assumes two FMA pipes of full vector width (AVX-512: 16 fp32 FMA, VDPBF16PS "
        "32 bf16 pairs, VPDPBUSD 64 int8 pairs); a core that splits 512-bit operations into two halves has half "
        "of it. GHz is the clock /proc/cpuinfo reports, often the base clock: a core running faster exceeds this "
        "nominal figure. int8 is torch.ops.aten._int_mm.",
    )  # fmt: skip
    return measured, nominal


def _sdpa_flops(q: Any, k: Any, v: Any, *_: Any, **__: Any) -> int:
    b, h, lq, d = q
    return 2 * b * h * lq * k[-2] * (d + v[-1])  # QK^T and (softmax)V; FlopCounterMode has no CPU SDPA


def flops_per_image(net: nn.Module, size: int) -> int:
    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops}
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        net(torch.zeros(1, 3, size, size))
    return counter.get_total_flops()


# ---------------------------------------------------------------------------------- inputs
def photo_tensor(paths: list[Path], seed: Seed) -> Tensor:
    """(4N, 3, H, W): each photo at 0/90/180/270 degrees, as the network's transform prepares it."""
    transform = classification_transform((seed.size, seed.size), get_rgb_stats(seed.rgb))
    images = [transform(load_image(p)) for p in paths]
    return torch.stack([torch.rot90(x, k, dims=(1, 2)) for x in images for k in range(len(ROTATIONS))])


def chunks(x: Tensor, batch: int) -> list[Tensor]:
    """Batches of exactly ``batch`` rows (the last padded with the first rows), so shapes never change."""
    pad = -len(x) % batch
    full = torch.cat([x, x[:pad]]) if pad else x
    return list(full.split(batch))


def timed(fn: Callable[[Tensor], Tensor], batches: list[Tensor], seconds: float) -> tuple[list[Tensor], float, float]:
    """The output of every batch, steady img/s, and the first call's extra time over a steady batch."""
    with torch.inference_mode():
        start = time.perf_counter()
        outputs = [fn(batches[0])]
        first = time.perf_counter() - start
        calls, start = 0, time.perf_counter()
        while calls < max(len(batches) - 1, 1) or time.perf_counter() - start < seconds:
            y = fn(batches[(calls + 1) % len(batches)])
            calls += 1
            if len(outputs) < len(batches):
                outputs.append(y)
        elapsed = time.perf_counter() - start
    return outputs, calls * len(batches[0]) / elapsed, max(first - elapsed / calls, 0.0)


# ---------------------------------------------------------------------------------- variants
def output_of(
    net: Callable[[Tensor], Tensor], classes: int, dtype: torch.dtype | None = None, amp: bool = False
) -> Callable:
    def fn(x: Tensor) -> Tensor:
        with torch.autocast("cpu", torch.bfloat16) if amp else nullcontext():
            y = net(x.to(dtype) if dtype else x).float()
        return y.softmax(dim=1) if classes else y

    return fn


def job_variant(checkpoint: Path, batch: int, dtype: Dtype | str, classes: int, label: str) -> Variant:
    """The batch jobs' own model (``JobModel.run``) with ``dtype``, on ready tensors."""
    notes: list[str] = []

    def on_event(event: Event) -> None:
        if isinstance(event, Note):
            notes.append(event.text)

    start = time.perf_counter()
    model = JobModel.load(
        checkpoint, RunOptions(batch_size=batch, workers=0, device="cpu", dtype=Dtype(dtype)), on_event
    )
    load_s = time.perf_counter() - start
    output = "probs" if classes else "embedding"

    def fn(x: Tensor) -> Tensor:
        ((_, result),) = model.run([Batch(list(range(len(x))), x, {})], output)
        return torch.from_numpy(result)

    picks = [n.split(":", 1)[1].split("(", 1)[0].strip() for n in notes if n.startswith("precision:")]
    return Variant(f"{label} ({picks[0]})" if picks else label, precision_of(model), fn, load_s)


def precision_of(model: JobModel) -> str:
    """The arithmetic of the matrix products: bf16 (autocast or held), fp16 or fp32."""
    dtype = getattr(model, "dtype", model.options.dtype)  # the resolved precision, where JobModel has one
    return "fp16" if dtype == "fp16" else "bf16" if str(dtype).startswith("bf16") else "fp32"


def variants(net: RoPEViT, seed: Seed, checkpoint: Path, folder: Path) -> Iterator[Variant]:
    """Built one at a time, so only the one being measured (and fp32) is in memory."""
    c = seed.classes
    yield Variant("fp32 (exact)", "fp32", output_of(net, c))
    yield Variant("bf16 autocast", "bf16", output_of(net, c, amp=True))
    held = copy.deepcopy(net).to(torch.bfloat16)
    yield Variant("bf16 held", "bf16", output_of(held, c, torch.bfloat16))
    yield Variant("bf16 held + torch.compile", "bf16", output_of(torch.compile(held), c, torch.bfloat16))
    if seed is ROTNET:  # compile again (one network, to keep the run short): inductor finds its cache
        torch._dynamo.reset()
        warm = output_of(torch.compile(held), c, torch.bfloat16)
        yield Variant("bf16 held + torch.compile, warm cache", "bf16", warm, full=False)
        del warm
    del held
    start = time.perf_counter()
    int8 = quantize_linear_int8(net)
    yield Variant("int8 dynamic (torch.ao)", "int8", output_of(int8, c), time.perf_counter() - start)
    del int8
    start = time.perf_counter()
    ort = OrtBackend.from_network(net, (seed.size, seed.size), quantize=True, cache_dir=folder, key=seed.network)
    yield Variant("int8 dynamic (ONNX Runtime)", "int8", output_of(ort, c), time.perf_counter() - start)
    del ort
    if AUTO is None:
        yield Variant("default pick (Dtype.AUTO)", "-", None)
    else:
        yield job_variant(checkpoint, seed.batch, AUTO, c, "default pick")


def fidelity(ref: Tensor, out: Tensor, classes: int) -> list[str]:
    if not classes:
        cos = F.cosine_similarity(ref, out, dim=1)
        return [f"{cos.min().item():.5f}", f"{cos.mean().item():.6f}"]
    flips = ref.argmax(dim=1) != out.argmax(dim=1)
    top2 = ref.topk(2, dim=1).values
    wide = int((top2[:, 0] - top2[:, 1] >= NEAR_TIE)[flips].sum())
    ties = "-" if not flips.any() else ("yes" if not wide else f"no: {wide} of {int(flips.sum())} not")
    agree = f"{len(ref) - int(flips.sum())}/{len(ref)}"
    return [agree, f"{(out - ref).abs().max().item():.2g}", ties]


# ---------------------------------------------------------------------------------- part 1
@dataclass
class Context:
    out: Output
    cpu: str
    photos: list[Path]
    seconds: float
    quick: bool
    folder: Path
    measured: dict[str, float]
    nominal: dict[str, float]
    runs: int = 1  # orient runs per input set and dtype (the fastest counts)


def build(seed: Seed, ctx: Context) -> tuple[RoPEViT, Path]:
    net = create_model(seed.network, seed.classes, size=seed.size, config=seed.tiny if ctx.quick else None)
    fill_formula(net)
    net.eval().requires_grad_(False)
    checkpoint = save_model(ctx.folder / f"{seed.network}_formula.pt", net, class_to_idx=seed.class_to_idx,
                            rgb_stats=get_rgb_stats(seed.rgb))  # fmt: skip
    return net, checkpoint


def share(rate: float, flops: int, peak: float | None) -> str:
    return f"{rate * flops / peak:.1%}" if peak else "-"


def model_table(seed: Seed, ctx: Context) -> None:
    net, checkpoint = build(seed, ctx)
    flops = flops_per_image(net, seed.size)
    x = photo_tensor(ctx.photos, seed)
    batches = chunks(x, seed.batch)
    ref, base, rows = None, 1.0, []
    blank = ["-"] * (3 if seed.classes else 2)
    for v in variants(net, seed, checkpoint, ctx.folder):
        if v.fn is None:
            rows.append([v.name, "-", "n/a", *["-"] * 5, *blank])
            continue
        outputs, rate, first = timed(v.fn, batches if v.full else batches[:2], ctx.seconds if v.full else 0.0)
        result = torch.cat(outputs)[: len(x)]
        ref, base = (result, rate) if ref is None else (ref, base)
        speed = [f"{rate:.2f}", f"{rate / base:.2f}x", f"{v.setup_s + first:.1f}", f"{rate * flops / 1e9:.0f}"]
        peak = [share(rate, flops, ctx.measured.get(v.precision)), share(rate, flops, ctx.nominal.get(v.precision))]
        quality = fidelity(ref, result, seed.classes) if v.full else blank
        rows.append([v.name, v.precision, *speed, *peak, *quality])
        print(f"  {seed.network} {v.name}: {rate:.2f} img/s", file=sys.stderr, flush=True)
    quality = (["top-1 agreement", "max |dprob|", "every flip a near tie"] if seed.classes
               else ["min cosine", "mean cosine"])  # fmt: skip
    headers = ["variant", "precision", "img/s", "vs fp32", "one-off s", "GFLOP/s", "of matmul peak",
               "of nominal peak", *quality]  # fmt: skip
    what = f"{seed.classes} classes" if seed.classes else "embedding"
    out = "probabilities" if seed.classes else "embeddings"
    ctx.out.table(
        f"{seed.network} @ {seed.size} ({what}), batch {seed.batch}, {flops / 1e9:.1f} GFLOP/image, {ctx.cpu}",
        headers, rows, f"{len(x)} inputs ({len(ctx.photos)} photos x 4 rotations); fidelity of the {out} "
        f"against fp32; a near tie: fp32 top-2 margin < {NEAR_TIE}. int8 rows count every FLOP as int8 "
        f"(attention and norms stay fp32).{WARM if seed is ROTNET else ''}",
    )  # fmt: skip


# ---------------------------------------------------------------------------------- part 2
def write_inputs(folder: Path, small: list[Path], large: list[Path], repeat: int) -> dict[str, Path]:
    """The photos at 4 rotations (JPEG, quality 95) and the large ones copied ``repeat`` times."""
    sets = {"small": folder / "small", "large": folder / "large"}
    for path in sets.values():
        path.mkdir()
    for p in small:
        image = ImageOps.exif_transpose(Image.open(p)).convert("RGB")
        for angle in ROTATIONS:
            image.rotate(angle, expand=True).save(sets["small"] / f"{p.stem}_{angle}.jpg", quality=95)
    for i in range(repeat):
        for p in large:
            shutil.copy(p, sets["large"] / f"{i}_{p.name}")
    return sets


def orient_cli(images: Path, checkpoint: Path, report: Path, extra: list[str]) -> tuple[float, dict[str, str]]:
    """Wall-clock seconds of one ``roost orient`` process, and its rotation per file name."""
    cmd = [sys.executable, "-m", "roost", "orient", str(images), "-m", str(checkpoint), "--report", str(report),
           "-q", *extra]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
    with report.open(newline="") as f:
        return elapsed, {Path(r["path"]).name: r["rotation"] for r in csv.DictReader(f)}


def best_run(images: Path, checkpoint: Path, stem: Path, extra: list[str], runs: int) -> tuple[float, dict[str, str]]:
    """The fastest of ``runs`` fresh runs (each with a new report: a reused one would resume)."""
    return min(orient_cli(images, checkpoint, stem.with_name(f"{stem.name}-run{r}.csv"), extra) for r in range(runs))


def orient_table(checkpoint: Path, ctx: Context, large: list[Path], repeat: int) -> None:
    batch, workers = CLI_DEFAULTS["batch_size"], RunOptions(device="cpu").workers
    extra = {"default": [], "--dtype fp32": ["--dtype", "fp32"]}
    x = photo_tensor(ctx.photos, ROTNET)
    ready = chunks(torch.cat([x] * -(-2 * batch // len(x))), batch)[:2]
    model_only = {}
    for label, dtype in (("default", CLI_DEFAULTS["dtype"]), ("--dtype fp32", "fp32")):
        v = job_variant(checkpoint, batch, dtype, ROTNET.classes, label)
        model_only[label] = (v.name, timed(v.fn, ready, ctx.seconds)[1])  # type: ignore[arg-type]  # fn is set
    sets = write_inputs(ctx.folder, ctx.photos, large, repeat)
    one = sets["one"] = ctx.folder / "one"
    one.mkdir()
    shutil.copy(min(sets["small"].iterdir()), one)
    runs = {(name, label): best_run(images, checkpoint, ctx.folder / f"{name}-{i}", flags, ctx.runs)
            for name, images in sets.items() for i, (label, flags) in enumerate(extra.items())}  # fmt: skip
    rows = []
    for name in ("small", "large"):
        n = len(list(sets[name].iterdir()))
        fp32 = runs[name, "--dtype fp32"][1]
        for label, (pick, rate) in model_only.items():
            seconds, rotations = runs[name, label]
            steady = (n - 1) / (seconds - runs["one", label][0])
            same = sum(rotations[k] == fp32[k] for k in fp32)
            rows.append([f"{name} ({n} inputs)", pick, f"{seconds:.1f}", f"{runs['one', label][0]:.1f}",
                         f"{n / seconds:.2f}", f"{steady:.2f}", f"{rate:.2f}", f"{n / seconds / rate:.2f}",
                         f"{steady / rate:.2f}", f"{same}/{len(fp32)}"])  # fmt: skip
    headers = ["input", "dtype", "wall s", "1-image run s", "end-to-end img/s", "less the 1-image run img/s",
               "model-only img/s", "ratio", "ratio less the 1-image run", "same rotation as fp32"]  # fmt: skip
    ctx.out.table(
        f"roost orient end to end, batch {batch}, {ctx.cpu}", headers, rows,
        f"One process per run, the fastest of {ctx.runs}: `roost orient DIR -m ROTNET.pt --report R.csv -q` "
        f"(+ `--dtype fp32`), wall clock "
        f"including Python start-up, model load, decoding ({workers} decoding worker process"
        f"{'es' if workers != 1 else ''}) and the report. The 1-image run (one of the photos) is start-up, load "
        f"and one batch; (n - 1) / (wall - its wall) is the rate once running. Model-only: `JobModel.run` on "
        f"ready tensors, batch {batch}, same options.",
    )  # fmt: skip


# ---------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, help="minimum seconds per measurement (default 10; --quick 1)")
    parser.add_argument("--quick", action="store_true", help="2-layer networks, 2 photos, small matmuls")
    parser.add_argument("--parts", nargs="+", choices=["models", "orient"], default=["models", "orient"])
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "photos")
    parser.add_argument("--repeat-large", type=int, help="copies of each large photo (default 6; --quick 1)")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this markdown file")
    parser.add_argument("--runs", type=int, default=3, help="orient runs per input set and dtype; the fastest counts")
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 10.0)
    photos = sorted(args.photos.glob("*.jpg"))[: 2 if args.quick else None]
    large = sorted((args.photos / "large").glob("*.jpg"))
    repeat = args.repeat_large or (1 if args.quick else 6)
    out = Output()
    cpu = f"{cpu_name()}, {torch.get_num_threads()} threads"
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out.console.print(f"{cpu}, torch {torch.__version__}, {when}, command: {' '.join(sys.argv)}")
    start = time.perf_counter()
    measured, nominal = peaks(out, 1024 if args.quick else 4096, seconds, cpu)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(tmp, "inductor")  # compile times from a cold cache
        ctx = Context(out, cpu, photos, seconds, args.quick, Path(tmp), measured, nominal, args.runs)
        for seed in SEEDS if "models" in args.parts else ():
            model_table(seed, ctx)
        if "orient" in args.parts:
            checkpoint = ctx.folder / f"{ROTNET.network}_formula.pt"
            orient_table(checkpoint if checkpoint.exists() else build(ROTNET, ctx)[1], ctx, large, repeat)
    out.console.print(f"total {time.perf_counter() - start:.0f} s")
    if args.markdown:
        args.markdown.write_text("\n".join(out.markdown))


if __name__ == "__main__":
    main()
