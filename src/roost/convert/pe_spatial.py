"""Meta's PE-Spatial checkpoints (and timm's ``vit_pe_spatial_*``) -> Birder ``rope_i_vit_reg1_*16_pn_npn_avg_c1``.

Spec: ``pe_spatial.md``. Each layout is a declarative key map (source pattern, target pattern, transform);
only two tensors need a transform, both reshapes. The conversion is strict: every source key must be
consumed and every target key produced with the target's shape, else ``ConversionError`` lists them.

Meta's code interpolates its position embedding bilinearly (no antialias) at other input sizes, so the
converted file stores ``pos_embed_interpolation_mode="bilinear"`` to keep dynamic-size outputs equal to
Meta's; pass ``interpolation="bicubic"`` for Birder's registered behaviour.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from roost.errors import ConversionError
from roost.models import registry
from roost.weights.checkpoint import Checkpoint, get_signature, write_checkpoint

PeSize = Literal["t", "s", "b"]
Layout = Literal["meta", "timm"]
Interpolation = Literal["bilinear", "bicubic"]

NATIVE_SIZE = (512, 512)
WIDTHS: dict[str, int] = {"t": 192, "s": 384, "b": 768}
RGB_STATS = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}  # Meta's Normalize(0.5, 0.5): Birder "centered"
_CONTAINERS = ("state_dict", "weights", "model_ema", "model", "module")
# Heads of PE-Core / PE-Lang that PE-Spatial does not have (spec §3): named in the error message.
_FOREIGN_HEADS = ("ln_post", "proj", "attn_pool", "norm.", "fc_norm", "head", "ls_1", "ls_2", "gamma_")


def network_name(size: PeSize) -> str:
    return f"rope_i_vit_reg1_{size}16_pn_npn_avg_c1"


# ------------------------------------------------------------------------------ key maps (STYLE 10)
@dataclass(frozen=True)
class Rule:
    """``source`` and ``target`` are key patterns; ``{i}`` is a block index, ``{p}`` weight or bias."""

    source: str
    target: str
    transform: str | None = None

    def regex(self, inverse: bool = False) -> re.Pattern[str]:
        pattern = re.escape(self.target if inverse else self.source)
        pattern = pattern.replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)")
        return re.compile(pattern + r"\Z")


# Named tensor transforms (the only two reshapes the conversion needs) and their inverses.
TRANSFORMS: dict[str, Callable[[Tensor], Tensor]] = {
    "to_token": lambda t: t.reshape(1, 1, -1),  # (D,) -> (1, 1, D)
    "add_batch": lambda t: t.unsqueeze(0),  # (1 + L, D) -> (1, 1 + L, D); rows stay row-major
}
INVERSE_TRANSFORMS: dict[str, Callable[[Tensor], Tensor]] = {
    "to_token": lambda t: t.reshape(-1),
    "add_batch": lambda t: t.squeeze(0),
}

_BLOCK = "encoder.block.{i}"
META_MAP: tuple[Rule, ...] = (
    Rule("class_embedding", "reg_tokens", "to_token"),
    Rule("positional_embedding", "pos_embedding", "add_batch"),
    Rule("conv1.weight", "conv_proj.weight"),
    Rule("ln_pre.{p}", "encoder.pre_block.0.{p}"),
    Rule("transformer.resblocks.{i}.ln_1.{p}", f"{_BLOCK}.norm1.{{p}}"),
    Rule("transformer.resblocks.{i}.attn.in_proj_weight", f"{_BLOCK}.attn.qkv.weight"),
    Rule("transformer.resblocks.{i}.attn.in_proj_bias", f"{_BLOCK}.attn.qkv.bias"),
    Rule("transformer.resblocks.{i}.attn.out_proj.{p}", f"{_BLOCK}.attn.proj.{{p}}"),
    Rule("transformer.resblocks.{i}.ln_2.{p}", f"{_BLOCK}.norm2.{{p}}"),
    Rule("transformer.resblocks.{i}.mlp.c_fc.{p}", f"{_BLOCK}.mlp.0.{{p}}"),
    Rule("transformer.resblocks.{i}.mlp.c_proj.{p}", f"{_BLOCK}.mlp.3.{{p}}"),
)
TIMM_MAP: tuple[Rule, ...] = (
    Rule("cls_token", "reg_tokens"),
    Rule("pos_embed", "pos_embedding"),
    Rule("patch_embed.proj.weight", "conv_proj.weight"),
    Rule("norm_pre.{p}", "encoder.pre_block.0.{p}"),
    Rule("blocks.{i}.norm1.{p}", f"{_BLOCK}.norm1.{{p}}"),
    Rule("blocks.{i}.attn.qkv.{p}", f"{_BLOCK}.attn.qkv.{{p}}"),
    Rule("blocks.{i}.attn.proj.{p}", f"{_BLOCK}.attn.proj.{{p}}"),
    Rule("blocks.{i}.norm2.{p}", f"{_BLOCK}.norm2.{{p}}"),
    Rule("blocks.{i}.mlp.fc1.{p}", f"{_BLOCK}.mlp.0.{{p}}"),
    Rule("blocks.{i}.mlp.fc2.{p}", f"{_BLOCK}.mlp.3.{{p}}"),
)
KEY_MAPS: dict[str, tuple[Rule, ...]] = {"meta": META_MAP, "timm": TIMM_MAP}
# One key that only each layout has: used to tell them apart (the converter's business, not the model's).
_LAYOUT_MARKERS = {"meta": "conv1.weight", "timm": "patch_embed.proj.weight"}


def map_state(
    state: Mapping[str, Tensor], rules: tuple[Rule, ...], *, inverse: bool = False
) -> tuple[dict[str, Tensor], list[str]]:
    """Rename (and transform) every key ``rules`` covers; return the result and the keys none covered."""
    compiled = [(rule, rule.regex(inverse)) for rule in rules]
    transforms = INVERSE_TRANSFORMS if inverse else TRANSFORMS
    out: dict[str, Tensor] = {}
    unmatched: list[str] = []
    for key, tensor in state.items():
        for rule, regex in compiled:
            match = regex.match(key)
            if match is None:
                continue
            target = (rule.source if inverse else rule.target).format(**match.groupdict())
            out[target] = transforms[rule.transform](tensor) if rule.transform else tensor
            break
        else:
            unmatched.append(key)
    return out, unmatched


# ------------------------------------------------------------------------------ reading sources
def read_source(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """A PE state dict from ``.pt``/``.pth``/``.bin`` (weights only) or ``.safetensors``, unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    if path.suffix == ".safetensors":
        try:
            return unwrap(load_file(path))
        except SafetensorError as err:
            raise ConversionError(f"{path}: not a readable safetensors file: {err}") from err
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ConversionError(f"{path}: not a readable weights-only torch file: {err}") from err
    return unwrap(raw)


def unwrap(raw: object) -> dict[str, Tensor]:
    """Meta's ``load_ckpt`` rules plus timm's containers: unwrap, strip ``module.``, keep ``visual.``."""
    while isinstance(raw, Mapping) and not _is_state(raw):
        inner = next((raw[k] for k in _CONTAINERS if k in raw and isinstance(raw[k], Mapping)), None)
        if inner is None:
            raise ConversionError(f"no state dict found; top-level keys: {sorted(map(str, raw))[:20]}")
        raw = inner
    if not isinstance(raw, Mapping):
        raise ConversionError(f"expected a state dict, found {type(raw).__name__}")
    state = {k.replace("module.", ""): v for k, v in raw.items()}
    if any(k.startswith("visual.") for k in state):
        state = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    return state


def _is_state(raw: Mapping) -> bool:
    return bool(raw) and all(isinstance(v, Tensor) for v in raw.values())


def detect_layout(state: Mapping[str, Tensor]) -> Layout:
    found = [layout for layout, marker in _LAYOUT_MARKERS.items() if marker in state]
    if len(found) != 1:
        markers = ", ".join(f"{m!r} ({layout})" for layout, m in _LAYOUT_MARKERS.items())
        raise ConversionError(f"cannot tell the checkpoint layout: expected exactly one of {markers}")
    return found[0]  # type: ignore[return-value]


def infer_size(state: Mapping[str, Tensor]) -> PeSize:
    weight = state.get("conv1.weight", state.get("patch_embed.proj.weight"))
    width = None if weight is None else weight.shape[0]
    for size, w in WIDTHS.items():
        if w == width:
            return size  # type: ignore[return-value]
    raise ConversionError(f"patch-embedding width {width} matches no PE-Spatial size {WIDTHS}; pass size=")


# ------------------------------------------------------------------------------ conversion
def convert_state(
    state: Mapping[str, Tensor], size: PeSize, layout: Layout | None = None
) -> dict[str, Tensor]:
    """The Birder state dict of ``network_name(size)`` at 512 px, in the network's key order (strict)."""
    layout = layout or detect_layout(state)
    mapped, extra = map_state(state, KEY_MAPS[layout])
    expected = expected_state(size)
    missing = [k for k in expected if k not in mapped]
    extra += [k for k in mapped if k not in expected]  # e.g. a block index beyond the depth
    wrong = [f"{k}: {tuple(mapped[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in mapped and mapped[k].shape != v.shape]
    if extra or missing or wrong:
        raise ConversionError(_report(layout, size, extra, missing, wrong))
    return {k: mapped[k].detach().to(torch.float32).contiguous() for k in expected}


def expected_state(size: PeSize) -> dict[str, Tensor]:
    """Keys and shapes (meta tensors) of the target network at its native 512 px."""
    with torch.device("meta"):
        return dict(registry.create_model(network_name(size), 0, size=NATIVE_SIZE).state_dict())


def _report(layout: str, size: PeSize, extra: list[str], missing: list[str], wrong: list[str]) -> str:
    lines = [f"{layout} checkpoint does not convert exactly to {network_name(size)}:"]
    if extra:
        heads = [k for k in extra if k.startswith(_FOREIGN_HEADS)]
        hint = " (PE-Core/PE-Lang heads: PE-Spatial has none)" if heads else ""
        lines.append(f"  unexpected source keys{hint}: {_short(extra)}")
    if missing:
        lines.append(f"  target keys not produced: {_short(missing)}")
    if wrong:
        lines.append(f"  shape mismatches (source vs target): {_short(wrong)}")
    return "\n".join(lines)


def _short(items: list[str], limit: int = 12) -> str:
    more = f" … and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def to_checkpoint(
    state: Mapping[str, Tensor], size: PeSize | None = None, interpolation: Interpolation = "bilinear"
) -> Checkpoint:
    """A Birder checkpoint (backbone: no classes, centered RGB stats, 512 px signature, network recorded)."""
    size = size or infer_size(state)
    return Checkpoint(
        state=convert_state(state, size),
        signature=get_signature((1, 3, *NATIVE_SIZE), 0),
        class_to_idx={},
        rgb_stats=dict(RGB_STATS),
        config={"pos_embed_interpolation_mode": interpolation, "pos_embed_antialias": False},
        network=network_name(size),
    )


def convert_pe_spatial(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    size: PeSize | None = None,
    interpolation: Interpolation = "bilinear",
) -> Checkpoint:
    """Convert a Meta or timm PE-Spatial file at ``src`` to ``dst`` (``.pt`` or ``.safetensors``, atomic)."""
    if size is not None and size not in WIDTHS:
        raise ConversionError(f"size must be one of {sorted(WIDTHS)}, not {size!r}")
    ckpt = to_checkpoint(read_source(src), size, interpolation)
    write_checkpoint(dst, ckpt)
    return ckpt
