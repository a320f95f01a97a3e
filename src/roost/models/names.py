"""The RoPE-ViT name grammar (spec ``architecture.md`` §1), parsed rather than listed.

    {rope|rope_i|rope_a|rope_cs}_{vit|deit3}[_reg{N}]_{size}{patch}[_{component}...][_{pooling}][_c{N}]

``parse_name`` turns a name into a :class:`ParsedName`; ``ParsedName.config()`` resolves it to a
:class:`RoPEViTConfig` and ``ParsedName.format()`` writes the canonical name back. Components must come in
the canonical order below (the order every published name uses), so each network has exactly one name.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from roost.errors import ConfigError
from roost.models.config import SIZE_PRESETS, RoPEViTConfig

FAMILIES: dict[str, dict[str, Any]] = {
    "rope": {},
    "rope_i": {"rope_rot_type": "interleaved", "rope_temperature": 10000.0},
    "rope_a": {"rope_style": "axial", "rope_rot_type": "interleaved"},
    "rope_cs": {"rope_style": "centered_separate"},
}
BODIES: dict[str, dict[str, Any]] = {
    "vit": {},
    "deit3": {"pos_embed_special_tokens": False, "layer_scale_init_value": 1e-5},
}

# Canonical order of the component tokens, each with its config effect (spec §1.3).
COMPONENTS: dict[str, dict[str, Any]] = {
    "nape": {"abs_pos_embed": False},
    "nps": {"pos_embed_special_tokens": False},
    "pn": {"pre_norm": True, "norm_layer_eps": 1e-5},
    "npn": {"post_norm": False},
    "nap": {"norm_after_pool": True},
    "qkn": {"qk_norm": True},
    "ls": {"layer_scale_init_value": 1e-5},
    "nf": {"attn_norm": True, "mlp_layer_type": "Norm_SwiGLU_FFN"},
    "swiglu": {"mlp_layer_type": "SwiGLU_FFN"},
    "rms": {"norm_layer_type": "RMSNorm"},
    "quick_gelu": {"act_layer_type": "quick_gelu"},
}
POOLINGS: dict[str, dict[str, Any]] = {
    "avg": {"class_token": False},
    "ap": {"attn_pool_head": True, "class_token": False},
    "aps": {"attn_pool_head": True, "attn_pool_special_tokens": True},
    "ep": {"attn_pool_head": True, "attn_pool_type": "EfficientProbing", "class_token": False},
    "eps": {"attn_pool_head": True, "attn_pool_type": "EfficientProbing", "attn_pool_special_tokens": True},
}
GRAMMAR = "{rope|rope_i|rope_a|rope_cs}_{vit|deit3}[_reg{N}]_{size}{patch}[_{component}...][_{pooling}][_c{N}]"
UNSUPPORTED = {
    "hmlp": "the hierarchical-MLP stem (hmlp, hmlp_bn) is not supported",
    "soft": "Soft-MoE feed-forward layers (soft_moe_*) are not supported",
}

_NAME = re.compile(
    r"^(?P<family>rope(?:_i|_a|_cs)?)_(?P<body>vit|deit3)(?:_reg(?P<reg>\d+))?"
    r"_(?:(?P<so>so150m|so400m)_p(?P<so_patch>\d+)|(?P<size>gigantic|[tsmblhg])(?P<patch>\d+))"
    r"(?P<rest>(?:_[a-z0-9]+)*)$"
)


@dataclass(frozen=True)
class ParsedName:
    family: str
    body: str
    num_reg_tokens: int
    size: str
    patch_size: int
    components: tuple[str, ...] = ()
    pooling: str | None = None
    variant: int | None = None

    def format(self) -> str:
        size = f"{self.size}_p{self.patch_size}" if self.size.startswith("so") else f"{self.size}{self.patch_size}"
        parts = [self.family, self.body]
        parts += [f"reg{self.num_reg_tokens}"] if self.num_reg_tokens else []
        parts += [size, *self.components]
        parts += [self.pooling] if self.pooling else []
        parts += [f"c{self.variant}"] if self.variant is not None else []
        return "_".join(parts)

    def config(self) -> RoPEViTConfig:
        fields: dict[str, Any] = dataclasses.asdict(SIZE_PRESETS[self.size])
        fields.update(patch_size=self.patch_size, num_reg_tokens=self.num_reg_tokens)
        fields.update(FAMILIES[self.family])
        fields.update(BODIES[self.body])
        for token in sorted(self.components, key=lambda t: t == "nf"):  # nf's FFN wins over swiglu's
            fields.update(COMPONENTS[token])
        if self.pooling:
            fields.update(POOLINGS[self.pooling])
        if self.variant is not None:
            fields.update(_custom_variant(self, fields))
        return RoPEViTConfig(**fields)


def _custom_variant(parsed: ParsedName, fields: dict[str, Any]) -> dict[str, Any]:
    """``c{N}``: the settings the other tokens do not express, as an explicit table (spec §1.1, §1.4)."""
    if parsed.variant != 1 or parsed.family != "rope_i":
        raise ConfigError(f"custom variant c{parsed.variant} is defined only as c1 of the rope_i family")
    if fields.get("pre_norm"):
        # Meta's Perception Encoder (PE-Core, PE-Spatial): xy grid, offset 1, eps 1e-5, 8-head pool.
        pe = {"rope_grid_indexing": "xy", "rope_grid_offset": 1, "norm_layer_eps": 1e-5}
        return pe | ({"attn_pool_num_heads": 8} if fields.get("attn_pool_head") else {})
    # EVA02-CLIP: RoPE coordinates rescaled to the 16x16 pretraining grid, SwiGLU hidden width 2730.
    return {"pt_grid_size": (16, 16), "mlp_dim": 2730}


def parse_name(name: str) -> ParsedName:
    """Parse a network name; raise ConfigError when it does not follow the grammar."""
    match = _NAME.match(name)
    if not match:
        raise ConfigError(f"{name!r} does not follow the RoPE-ViT name grammar ({GRAMMAR})")
    tokens = [t for t in match["rest"].split("_") if t]
    components, pooling, variant = _split_tail(name, tokens)
    canonical_order = tuple(sorted(components, key=list(COMPONENTS).index))
    parsed = ParsedName(
        family=match["family"],
        body=match["body"],
        num_reg_tokens=int(match["reg"] or 0),
        size=match["so"] or match["size"],
        patch_size=int(match["so_patch"] or match["patch"]),
        components=canonical_order,
        pooling=pooling,
        variant=variant,
    )
    if parsed.format() != name:
        reason = "lists its components out of order" if canonical_order != components else "is not written canonically"
        raise ConfigError(f"{name!r} {reason}; the canonical name is {parsed.format()!r}")
    parsed.config()  # the tokens may still combine into an invalid config
    return parsed


def _split_tail(name: str, tokens: list[str]) -> tuple[tuple[str, ...], str | None, int | None]:
    components: list[str] = []
    pooling: str | None = None
    variant: int | None = None
    i = 0
    while i < len(tokens):
        token, pair = tokens[i], "_".join(tokens[i : i + 2]) if i + 1 < len(tokens) else ""
        if token in UNSUPPORTED:
            raise ConfigError(f"{name!r}: {UNSUPPORTED[token]}")
        if pair in COMPONENTS:
            components.append(pair)
            i += 1
        elif token in COMPONENTS and pooling is None and variant is None:
            components.append(token)
        elif token in POOLINGS and pooling is None and variant is None:
            pooling = token
        elif re.fullmatch(r"c\d+", token) and variant is None and i == len(tokens) - 1:
            variant = int(token[1:])
        else:
            raise ConfigError(f"{name!r}: unexpected token {token!r}")
        i += 1
    if len(set(components)) != len(components):
        raise ConfigError(f"{name!r} repeats a component")
    return tuple(components), pooling, variant
