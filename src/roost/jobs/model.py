"""The model of a batch job: loaded once, with its transform, on the chosen device, precision and backend.

Precision (``Dtype``): fp32 is exact (the reference's numbers); bf16 and fp16 autocast the float32 model;
bf16-held converts the weights to bfloat16 once, so the encoder runs in bfloat16 end to end without a cast
per operation, while the head (final norm, pooling, classifier) and the RoPE table stay float32. ``auto``
picks per device (:func:`resolve_dtype`) and says what it picked in a :class:`Note`.

Compiling (``Compile``): the embedding runs under ``torch.compile`` (inductor) at one batch shape, a short
last batch padded, so that it compiles once; inductor caches its code under ``ROOST_HOME/inductor``, keyed by
torch's own cache keys (graph, shapes, torch version), so another model, size or torch compiles afresh. A
compile that fails falls back to eager with a note. ``auto`` compiles only where a run has enough images
to repay the compile (:data:`COMPILE_MIN_IMAGES`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from roost.data.datasets import Batch
from roost.data.transforms import ClassificationTransform, classification_transform
from roost.errors import JobModelError
from roost.jobs.base import Backend, Compile, Downloading, Dtype, ModelFacts, Note, OnEvent, Output, RunOptions, ignore
from roost.models.rope_vit import RoPEViT
from roost.settings import Settings
from roost.weights.checkpoint import ModelInfo, get_size_from_signature
from roost.weights.load import load_pretrained_model

_AUTOCAST = {Dtype.BF16: torch.bfloat16, Dtype.FP16: torch.float16}
_EXPORTED = {".pt2": "a torch.export program", ".pts": "a TorchScript program", ".onnx": "an ONNX graph"}
_HEAD = ("norm", "attn_pool", "embedding_norm", "classifier")  # after the encoder, in order: float32 when held

COMPILE_MIN_IMAGES: dict[str, int] = {"cuda": 20000}
"""Images a run must have before ``compile=auto`` compiles, by device type; a type not listed never does.

CPU is not listed: on a 2-core AVX512-BF16 EPYC, bf16-held, the benchmark (BENCHMARKS.md, one run each)
measured compiled against eager at +9% (so150m @ 252), -8% (b14 @ 224) and 0% (PE @ 512), for 14-19 s of
cold compile; inductor fuses only the element-wise share (~15%), and matrix products and attention run
the same oneDNN kernels either way. ``--compile`` still turns it on. CUDA is an estimate, not measured: a
cold compile takes about a minute and saves well under a millisecond per image, so it pays on large runs."""


@dataclass
class JobModel:
    """A loaded network with what the jobs need around it."""

    net: nn.Module
    facts: ModelFacts
    transform: ClassificationTransform  # decoding workers run .pixels; run() the rest
    size: tuple[int, int]  # (height, width)
    options: RunOptions
    dtype: Dtype = Dtype.FP32  # the precision it runs in (auto resolved)
    on_event: OnEvent = ignore
    _compiled: CompiledEmbedding | None = field(default=None, init=False, repr=False)

    @classmethod
    def load(cls, model: str | os.PathLike[str], options: RunOptions, on_event: OnEvent = ignore) -> JobModel:
        check_model_file(model)
        device = options.torch_device()
        net, info = load_pretrained_model(
            model, inference=True, device=device, network=options.network,
            on_progress=lambda p: on_event(Downloading(p.name, p.done, p.total)),
        )  # fmt: skip
        size = get_size_from_signature(info.signature)
        dtype = _precision(options, device, on_event)
        if options.backend is not Backend.TORCH:
            net = _ort(net, info, size, model, options, on_event)
        elif dtype is Dtype.BF16_HELD:
            hold_bf16(net)
        names = [name for name, _ in sorted(info.class_to_idx.items(), key=lambda kv: kv[1])]
        facts = ModelFacts(os.fspath(model), names, getattr(net, "embedding_size", None))
        transform = classification_transform(size, info.rgb_stats)  # type: ignore[arg-type]  # checked on load
        return cls(net, facts, transform, size, options, dtype, on_event)

    @property
    def draft(self) -> tuple[int, int] | None:
        """The (width, height) JPEGs may be DCT-decoded down to, or None for full decodes."""
        return (self.size[1], self.size[0]) if self.options.draft else None

    def run(
        self, batches: Iterable[Batch], output: Output, total: int | None = None
    ) -> Iterator[tuple[Batch, np.ndarray | None]]:
        """Each batch with the job's output for its decoded images (float32, one row each).

        ``total``, the number of images the batches hold, lets ``compile=auto`` decide; None: unknown.
        """
        device = next(self.net.parameters()).device
        embedding = self._embedding(device, total)
        autocast = _AUTOCAST.get(self.dtype)
        held = self.dtype is Dtype.BF16_HELD
        for batch in batches:
            if batch.images is None:
                yield batch, None
                continue
            x = self._finish(batch.images.to(device, non_blocking=True))
            x = x.to(torch.bfloat16) if held else x
            with torch.inference_mode(), torch.autocast(device.type, autocast, enabled=autocast is not None):
                result = embedding(x)
                if output == "probs":
                    result = self.net.classify(result).float().softmax(dim=1)  # type: ignore[operator]
            yield batch, result.float().cpu().numpy()

    def _finish(self, x: Tensor) -> Tensor:
        """The rest of the transform (scale, normalise) on a batch, where the model runs; float32 passes."""
        return self.transform.finish(x) if x.dtype == torch.uint8 else x

    def _embedding(self, device: torch.device, total: int | None) -> Callable[[Tensor], Tensor]:
        """The embedding function of this run: compiled (once per model) or eager."""
        if self._compiled is None and self._compiles(device, total):
            self._compiled = CompiledEmbedding(self.net.embedding, self.options.batch_size, self.on_event)  # type: ignore[arg-type]
        return self._compiled or self.net.embedding  # type: ignore[return-value]  # RoPEViT or OrtBackend

    def _compiles(self, device: torch.device, total: int | None) -> bool:
        mode = self.options.compile
        if mode is Compile.AUTO:
            least = COMPILE_MIN_IMAGES.get(device.type)
            return self.options.backend is Backend.TORCH and least is not None and (total or 0) >= least
        return mode is Compile.ON


# ---------------------------------------------------------------------------------- precision
def resolve_dtype(device: torch.device | str) -> tuple[Dtype, str]:
    """The precision ``auto`` picks on ``device``, and why (the text of the note).

    CUDA: bfloat16 autocast (float16 on GPUs without bfloat16). A CPU with AMX-BF16 or AVX512-BF16: weights
    held in bfloat16 (bf16 matrix products in hardware; autocast would re-cast the weights every batch).
    Any other device: exact fp32 (bfloat16 emulated in software is slower than float32).
    """
    device = torch.device(device)
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return Dtype.BF16, "bfloat16 autocast on CUDA"
        return Dtype.FP16, "float16 autocast; this GPU has no bfloat16"
    if device.type == "cpu":
        feature = cpu_bf16_feature()
        if feature is not None:
            return Dtype.BF16_HELD, f"weights held in bfloat16; this CPU has {feature}"
        return Dtype.FP32, "exact; this CPU has neither AMX-BF16 nor AVX512-BF16, so bfloat16 would be slower"
    return Dtype.FP32, f"exact; no reduced precision is picked on {device.type}"


_CPU_FEATURES = (  # name, torch's probe, the /proc/cpuinfo flag
    ("AMX-BF16", "_is_amx_tile_supported", "amx_bf16"),
    ("AVX512-BF16", "_is_avx512_bf16_supported", "avx512_bf16"),
)


def cpu_bf16_feature(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The CPU's hardware bfloat16 support ("AMX-BF16", "AVX512-BF16"), or None.

    Asks torch's private CPU probes (``torch.cpu._is_*_supported``, older torch: ``torch._C._cpu``), which
    may move between releases; where a probe is missing or fails, the flags of ``cpuinfo`` decide.
    """
    flags: set[str] | None = None
    for name, probe, flag in _CPU_FEATURES:
        found = _torch_probe(probe)
        if found is None:
            flags = _cpuinfo_flags(cpuinfo) if flags is None else flags
            found = flag in flags
        if found:
            return name
    return None


def _torch_probe(name: str) -> bool | None:
    for module in (getattr(torch, "cpu", None), getattr(torch._C, "_cpu", None)):
        probe = getattr(module, name, None)
        if callable(probe):
            try:
                return bool(probe())
            except RuntimeError:
                return None
    return None


def _cpuinfo_flags(cpuinfo: Path) -> set[str]:
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.partition(":")[2].split()}


def _precision(options: RunOptions, device: torch.device, on_event: OnEvent) -> Dtype:
    """The precision to run in: the one asked for, or auto's pick (told in a note)."""
    if options.dtype is not Dtype.AUTO:
        return options.dtype
    if options.backend is not Backend.TORCH:
        dtype, reason = Dtype.FP32, f"the {options.backend.value} backend runs float32"
    else:
        dtype, reason = resolve_dtype(device)
    on_event(Note(f"precision: {dtype.value} ({reason})"))
    return dtype


def hold_bf16(net: RoPEViT) -> RoPEViT:
    """Make a RoPEViT bf16-held, in place: bfloat16 weights and activations, float32 head and RoPE table.

    The head (final norm, attention pool, embedding norm, classifier) converts its input to float32: the
    probabilities and embeddings come from float32 arithmetic on the encoder's bfloat16 tokens. The RoPE
    table keeps its float32 angles, so queries and keys are rotated in float32 and then rounded once.
    """
    table = net.rope.pos_embed
    net.to(torch.bfloat16)
    net.rope.pos_embed = table
    for name in _HEAD:
        part = getattr(net, name, None)
        if isinstance(part, nn.Module):
            part.float().register_forward_pre_hook(_float_inputs)
    return net


def _float_inputs(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(a.float() if isinstance(a, Tensor) and a.is_floating_point() else a for a in args)


# ---------------------------------------------------------------------------------- compiling
class CompiledEmbedding:
    """``embedding`` under torch.compile at one batch size; eager (with a note) when compiling fails.

    A batch shorter than ``batch_size`` (the last) is padded with zero images and its rows cut back, so the
    one compiled graph serves every batch: a second shape would cost a second compile.
    """

    def __init__(self, embedding: Callable[[Tensor], Tensor], batch_size: int, on_event: OnEvent) -> None:
        self.eager = embedding
        self.batch_size = batch_size
        self.on_event = on_event
        self.compiled: Callable[[Tensor], Tensor] | None = None
        self.proven = False  # one compiled call has succeeded
        cache = use_inductor_cache()
        try:
            self.compiled = torch.compile(embedding, dynamic=False)
        except Exception as err:  # any failure of the compiler means: run eagerly
            self._fall_back(err)
            return
        on_event(Note(f"compiling the model with torch.compile (the first batch waits); cache: {cache}"))

    def __call__(self, x: Tensor) -> Tensor:
        if self.compiled is None:
            return self.eager(x)
        n = x.shape[0]
        padded = torch.cat([x, x.new_zeros(self.batch_size - n, *x.shape[1:])]) if n < self.batch_size else x
        if self.proven:
            return self.compiled(padded)[:n]
        try:  # inductor compiles at the first call: its failures surface here
            out = self.compiled(padded)[:n]
        except Exception as err:  # the eager call below raises the model's own errors
            self._fall_back(err)
            return self.eager(x)
        self.proven = True
        return out

    def _fall_back(self, err: Exception) -> None:
        self.compiled = None
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        self.on_event(Note(f"torch.compile failed ({type(err).__name__}: {first[:200]}); running eagerly"))


def use_inductor_cache(settings: Settings | None = None) -> str:
    """Point inductor's caches at ``ROOST_HOME/inductor`` for this process, unless a folder is already set."""
    folder = (settings or Settings.from_env()).home / "inductor"
    return os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.fspath(folder))


# ---------------------------------------------------------------------------------- files, backends
def check_model_file(model: str | os.PathLike[str]) -> None:
    """Refuse exported programs: the jobs need the checkpoint's embedding and classifier separately."""
    suffix = Path(os.fspath(model)).suffix.lower()
    if suffix in _EXPORTED:
        raise JobModelError(
            f"{model} is {_EXPORTED[suffix]}; batch jobs run .pt or .safetensors checkpoints (the file it was "
            "exported from). For ONNX Runtime speed, pass that checkpoint with backend 'ort'"
        )


def _ort(
    net: Any, info: ModelInfo, size: tuple[int, int], model: str | os.PathLike[str], options: RunOptions,
    on_event: OnEvent,
) -> nn.Module:
    from roost.inference.ort import ort_backend_for

    backend = ort_backend_for(
        net, info, size, quantize=options.backend is Backend.ORT_INT8, source=model, settings=Settings.from_env()
    )
    verb = "using the cached ONNX export" if backend.from_cache else "exported the model to ONNX, cached at"
    on_event(Note(f"{verb} {backend.session.path}"))
    return backend
