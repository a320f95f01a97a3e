"""The one registry: network names -> RoPE-ViT builders, and ``create_model`` / ``list_models``.

Names are parsed (``names.py``), so any name that follows the grammar builds; ``list_models`` lists a
catalogue written out below: every network with published weights plus the common grid of
family x registers x size x pooling. Aliases map the model-card short names onto networks.
"""

from __future__ import annotations

import fnmatch
import itertools
from collections.abc import Mapping
from typing import Any

from roost.errors import ConfigError, UnknownModelError
from roost.models.names import parse_name
from roost.models.rope_vit import RoPEViT

# Networks of the 18 published weights (spec pretrained_rope_vit.json).
PUBLISHED_NETWORKS = (
    "rope_vit_s14_swiglu_avg",
    "rope_vit_m14_swiglu_avg",
    "rope_vit_reg4_b14",
    "rope_vit_reg8_b14_nps_avg",
    "rope_vit_reg8_so150m_p14_swiglu_rms_avg",
    "rope_vit_reg8_so150m_p14_swiglu_rms_ap",
    "rope_i_vit_l14_nf_swiglu_c1",
    "rope_i_vit_reg1_t16_pn_npn_avg_c1",
    "rope_i_vit_reg1_s16_pn_npn_avg_c1",
    "rope_i_vit_reg1_b16_pn_npn_avg_c1",
    "rope_i_vit_s16_pn_aps_c1",
    "rope_i_vit_b16_pn_aps_c1",
    "rope_i_vit_l14_pn_aps_c1",
)
ALIASES = {
    "pe_spatial_t16": "rope_i_vit_reg1_t16_pn_npn_avg_c1",
    "pe_spatial_s16": "rope_i_vit_reg1_s16_pn_npn_avg_c1",
    "pe_spatial_b16": "rope_i_vit_reg1_b16_pn_npn_avg_c1",
    "pe_core_s16": "rope_i_vit_s16_pn_aps_c1",
    "pe_core_b16": "rope_i_vit_b16_pn_aps_c1",
    "pe_core_l14": "rope_i_vit_l14_pn_aps_c1",
}


def _catalogue() -> tuple[str, ...]:
    grid = itertools.product(
        ("rope_vit", "rope_i_vit"),
        ("", "_reg1", "_reg4", "_reg8"),
        ("t14", "s14", "m14", "b14", "l14", "h14", "so150m_p14", "so400m_p14", "g14", "t16", "s16", "b16", "l16"),
        ("", "_avg", "_ap"),
    )
    names = {f"{family}{reg}_{size}{pool}" for family, reg, size, pool in grid}
    return tuple(sorted(names | set(PUBLISHED_NETWORKS)))


CATALOGUE = _catalogue()


def resolve_name(name: str) -> str:
    """The canonical network name for a name or alias; UnknownModelError with close names otherwise."""
    name = ALIASES.get(name, name)
    try:
        parse_name(name)
    except ConfigError as err:
        raise UnknownModelError("network", name, [*CATALOGUE, *ALIASES]) from err
    return name


def create_model(
    name: str,
    num_classes: int = 0,
    size: tuple[int, int] | int | None = None,
    config: Mapping[str, Any] | None = None,
) -> RoPEViT:
    """Build a network by name.

    Args:
        num_classes: classifier outputs; 0 gives a feature extractor whose ``forward`` is the embedding.
        size: construction size (H, W), which fixes the pos-embedding length and the RoPE grid; 224 by
            default (build the published networks at their card sizes: 252, 224, 512).
        config: Birder-style overrides on top of the config the name describes (what checkpoints store).
    """
    canonical = resolve_name(name)
    cfg = parse_name(canonical).config().with_overrides(config)
    net = RoPEViT(cfg, num_classes, size if size is not None else (224, 224))
    net.network_name = canonical
    return net


def list_models(pattern: str = "*") -> list[str]:
    """Catalogued network names matching a shell-style pattern (``*so150m*``)."""
    return [n for n in CATALOGUE if fnmatch.fnmatchcase(n, pattern)]
