"""The name grammar (architecture.md §1), the registry and the published networks (§2, §6).

The tables below are read off the spec: every published network (pretrained_rope_vit.json) and one name per
grammar feature with the fields it must parse to, names that must be refused with their reason, and names
whose components are out of the canonical order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import roost
from roost.errors import ConfigError, UnknownModelError
from roost.models.names import ParsedName, parse_name
from roost.models.registry import ALIASES, CATALOGUE, PUBLISHED_NETWORKS, resolve_name

PE = {"rope_rot_type": "interleaved", "rope_temperature": 10000.0, "rope_grid_indexing": "xy", "rope_grid_offset": 1,
      "norm_layer_eps": 1e-5, "pre_norm": True}
SO150 = {"num_layers": 18, "num_heads": 16, "hidden_dim": 896, "mlp_dim": 2320}

# name -> ((family, body, registers, size, patch, components, pooling, c{N}), config fields it must resolve to)
NAMES: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
    # the 13 networks with published weights
    "rope_vit_s14_swiglu_avg": (
        ("rope", "vit", 0, "s", 14, ("swiglu",), "avg", None),
        {"hidden_dim": 384, "num_heads": 6, "mlp_dim": 1536, "mlp_layer_type": "SwiGLU_FFN", "class_token": False},
    ),
    "rope_vit_m14_swiglu_avg": (
        ("rope", "vit", 0, "m", 14, ("swiglu",), "avg", None),
        {"hidden_dim": 512, "num_heads": 8, "num_layers": 12, "mlp_dim": 2048, "drop_path_rate": 0.0},
    ),
    "rope_vit_reg4_b14": (
        ("rope", "vit", 4, "b", 14, (), None, None),
        {"hidden_dim": 768, "num_heads": 12, "mlp_dim": 3072, "drop_path_rate": 0.1, "class_token": True,
         "num_reg_tokens": 4, "rope_temperature": 100.0, "rope_rot_type": "standard", "mlp_layer_type": "FFN",
         "norm_layer_eps": 1e-6, "attn_pool_head": False},
    ),
    "rope_vit_reg8_b14_nps_avg": (
        ("rope", "vit", 8, "b", 14, ("nps",), "avg", None),
        {"pos_embed_special_tokens": False, "class_token": False, "abs_pos_embed": True},
    ),
    "rope_vit_reg8_so150m_p14_swiglu_rms_avg": (
        ("rope", "vit", 8, "so150m", 14, ("swiglu", "rms"), "avg", None),
        {**SO150, "norm_layer_type": "RMSNorm", "attn_pool_head": False},
    ),
    "rope_vit_reg8_so150m_p14_swiglu_rms_ap": (
        ("rope", "vit", 8, "so150m", 14, ("swiglu", "rms"), "ap", None),
        {**SO150, "norm_layer_type": "RMSNorm", "mlp_layer_type": "SwiGLU_FFN", "attn_pool_head": True,
         "class_token": False, "attn_pool_special_tokens": False, "rope_temperature": 100.0},
    ),
    "rope_i_vit_l14_nf_swiglu_c1": (
        ("rope_i", "vit", 0, "l", 14, ("nf", "swiglu"), None, 1),
        {"num_layers": 24, "hidden_dim": 1024, "attn_norm": True, "mlp_layer_type": "Norm_SwiGLU_FFN", "mlp_dim": 2730,
         "pt_grid_size": (16, 16), "rope_grid_indexing": "ij", "rope_grid_offset": 0, "rope_temperature": 10000.0,
         "rope_rot_type": "interleaved"},
    ),
    "rope_i_vit_reg1_t16_pn_npn_avg_c1": (
        ("rope_i", "vit", 1, "t", 16, ("pn", "npn"), "avg", 1),
        {**PE, "hidden_dim": 192, "num_heads": 3, "post_norm": False, "class_token": False},
    ),
    "rope_i_vit_reg1_s16_pn_npn_avg_c1": (
        ("rope_i", "vit", 1, "s", 16, ("pn", "npn"), "avg", 1),
        {**PE, "hidden_dim": 384, "num_heads": 6, "post_norm": False, "class_token": False, "pt_grid_size": None},
    ),
    "rope_i_vit_reg1_b16_pn_npn_avg_c1": (
        ("rope_i", "vit", 1, "b", 16, ("pn", "npn"), "avg", 1),
        {**PE, "hidden_dim": 768, "post_norm": False},
    ),
    "rope_i_vit_s16_pn_aps_c1": (
        ("rope_i", "vit", 0, "s", 16, ("pn",), "aps", 1),
        {**PE, "attn_pool_head": True, "attn_pool_special_tokens": True, "attn_pool_num_heads": 8,
         "class_token": True},
    ),
    "rope_i_vit_b16_pn_aps_c1": (("rope_i", "vit", 0, "b", 16, ("pn",), "aps", 1), {**PE, "attn_pool_num_heads": 8}),
    "rope_i_vit_l14_pn_aps_c1": (
        ("rope_i", "vit", 0, "l", 14, ("pn",), "aps", 1),
        {**PE, "num_layers": 24, "patch_size": 14, "pt_grid_size": None},
    ),
    # one name per remaining grammar feature (§1.1-§1.4, §12)
    "rope_deit3_reg4_s16": (
        ("rope", "deit3", 4, "s", 16, (), None, None),
        {"pos_embed_special_tokens": False, "layer_scale_init_value": 1e-5, "class_token": True},
    ),
    "rope_a_vit_b16_avg": (
        ("rope_a", "vit", 0, "b", 16, (), "avg", None),
        {"rope_style": "axial", "rope_rot_type": "interleaved"},
    ),
    "rope_cs_vit_reg4_b14": (
        ("rope_cs", "vit", 4, "b", 14, (), None, None),
        {"rope_style": "centered_separate", "rope_rot_type": "standard"},
    ),
    "rope_vit_b14_nape_qkn_ls_quick_gelu_ep": (
        ("rope", "vit", 0, "b", 14, ("nape", "qkn", "ls", "quick_gelu"), "ep", None),
        {"abs_pos_embed": False, "qk_norm": True, "layer_scale_init_value": 1e-5, "act_layer_type": "quick_gelu",
         "attn_pool_type": "EfficientProbing", "attn_pool_head": True, "class_token": False},
    ),
    "rope_vit_reg4_so400m_p14_nap_eps": (
        ("rope", "vit", 4, "so400m", 14, ("nap",), "eps", None),
        {"num_layers": 27, "hidden_dim": 1152, "mlp_dim": 4304, "norm_after_pool": True,
         "attn_pool_type": "EfficientProbing", "attn_pool_special_tokens": True},
    ),
    "rope_vit_reg16_gigantic14_rms": (
        ("rope", "vit", 16, "gigantic", 14, ("rms",), None, None),
        {"num_layers": 48, "hidden_dim": 1664, "mlp_dim": 8192, "num_reg_tokens": 16, "norm_layer_type": "RMSNorm"},
    ),
    "rope_vit_h14_pn_avg": (
        ("rope", "vit", 0, "h", 14, ("pn",), "avg", None),
        {"num_layers": 32, "hidden_dim": 1280, "pre_norm": True, "norm_layer_eps": 1e-5, "rope_grid_offset": 0},
    ),
    "rope_vit_g14": (("rope", "vit", 0, "g", 14, (), None, None), {"num_layers": 40, "hidden_dim": 1408}),
}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_names_parse_to_the_spec_fields(name: str) -> None:
    fields, config = NAMES[name]
    parsed = parse_name(name)
    assert parsed == ParsedName(*fields)
    assert parsed.format() == name
    resolved = parsed.config()
    assert {key: getattr(resolved, key) for key in config} == config


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("rope_vit_hmlp_b16", "does not follow the RoPE-ViT name grammar"),  # a stem is a component, after the size
        ("rope_vit_b16_hmlp", "the hierarchical-MLP stem (hmlp, hmlp_bn) is not supported"),
        ("rope_vit_b16_hmlp_bn", "the hierarchical-MLP stem (hmlp, hmlp_bn) is not supported"),
        ("rope_vit_reg4_b16_soft_moe_8e", "Soft-MoE feed-forward layers (soft_moe_*) are not supported"),
        ("rope_vit_b14_avg_rms", "unexpected token 'rms'"),  # a component after the pooling
        ("rope_vit_b14_avg_ap", "unexpected token 'ap'"),  # two poolings
        ("rope_vit_b14_c1_avg", "unexpected token 'c1'"),  # c{N} comes last
        ("rope_vit_b14_gelu", "unexpected token 'gelu'"),
        ("rope_vit_b14_quick", "unexpected token 'quick'"),
        ("rope_vit_b14_swiglu_swiglu", "repeats a component"),
        ("rope_vit_b14_c2", "custom variant c2 is defined only as c1 of the rope_i family"),
        ("rope_vit_b14_c1", "custom variant c1 is defined only as c1 of the rope_i family"),
        ("rope_a_vit_b14_c1", "custom variant c1 is defined only as c1 of the rope_i family"),
        ("rope_x_vit_b14", "does not follow the RoPE-ViT name grammar"),
        ("rope_vit_x14", "does not follow the RoPE-ViT name grammar"),
        ("rope_vit_b", "does not follow the RoPE-ViT name grammar"),  # no patch size
        ("rope_vit_so150m14", "does not follow the RoPE-ViT name grammar"),  # shape-optimised sizes need _p{N}
        ("rope_vit_b_p14", "does not follow the RoPE-ViT name grammar"),
        ("rope_vit_reg_b14", "does not follow the RoPE-ViT name grammar"),
        ("vit_b14", "does not follow the RoPE-ViT name grammar"),
        ("Rope_vit_b14", "does not follow the RoPE-ViT name grammar"),
        ("rope_vit_b14_", "does not follow the RoPE-ViT name grammar"),
        ("rope_vit_b0", "patch_size must be positive, got 0"),
        ("rope_vit_reg0_b14", "is not written canonically; the canonical name is 'rope_vit_b14'"),
        ("rope_vit_b014", "is not written canonically; the canonical name is 'rope_vit_b14'"),
    ],
)
def test_bad_names_give_their_reason(name: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_name(name)
    assert reason in str(info.value)


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("rope_vit_reg8_so150m_p14_rms_swiglu_ap", "rope_vit_reg8_so150m_p14_swiglu_rms_ap"),
        ("rope_i_vit_l14_swiglu_nf_c1", "rope_i_vit_l14_nf_swiglu_c1"),
        ("rope_i_vit_reg1_s16_npn_pn_avg_c1", "rope_i_vit_reg1_s16_pn_npn_avg_c1"),
        ("rope_vit_b14_qkn_nps", "rope_vit_b14_nps_qkn"),
        ("rope_vit_b14_quick_gelu_rms", "rope_vit_b14_rms_quick_gelu"),
    ],
)
def test_components_out_of_order_name_the_canonical_name(name: str, canonical: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_name(name)
    assert str(info.value) == f"{name!r} lists its components out of order; the canonical name is {canonical!r}"
    assert parse_name(canonical).format() == canonical


def test_the_tables_cover_every_published_network(shared_dir: Path) -> None:
    weights = json.loads((shared_dir / "spec" / "pretrained_rope_vit.json").read_text())
    published = {entry["net"]["network"] for entry in weights.values()}
    assert published == set(PUBLISHED_NETWORKS)
    assert published <= set(NAMES)


def test_catalogue_names_are_canonical() -> None:
    bad = [name for name in CATALOGUE if parse_name(name).format() != name]
    assert bad == []
    assert len(CATALOGUE) == len(set(CATALOGUE))


def test_aliases_resolve_to_published_networks() -> None:
    assert resolve_name("pe_spatial_s16") == "rope_i_vit_reg1_s16_pn_npn_avg_c1"
    assert resolve_name("pe_core_l14") == "rope_i_vit_l14_pn_aps_c1"
    assert set(ALIASES.values()) <= set(PUBLISHED_NETWORKS)
    assert resolve_name("rope_vit_g14") == "rope_vit_g14"  # outside the catalogue, still a name of the grammar


def test_unknown_name_lists_close_names() -> None:
    with pytest.raises(UnknownModelError, match="rope_vit_reg4_b14") as info:
        roost.create_model("rope_vit_reg4_b15x")
    assert isinstance(info.value, KeyError)
    assert "rope_vit_reg4_b14" in info.value.suggestions


def test_list_models() -> None:
    assert "rope_vit_reg8_so150m_p14_swiglu_rms_ap" in roost.list_models("*so150m*")
    assert all("rope_i_" in n for n in roost.list_models("rope_i_*"))
    assert set(PUBLISHED_NETWORKS) <= set(roost.list_models())
    assert roost.list_models("nothing*") == []


def test_every_published_network_builds_with_its_card_size(shared_dir: Path) -> None:
    weights = json.loads((shared_dir / "spec" / "pretrained_rope_vit.json").read_text())
    for entry in weights.values():
        with torch.device("meta"):
            net = roost.create_model(entry["net"]["network"], 0, size=tuple(entry["resolution"]))
        mib = sum(p.numel() for p in net.parameters()) * 4 / 2**20
        file_mb = next(iter(entry["formats"].values()))["file_size"]
        assert mib <= file_mb + 0.1  # the file holds the body (plus a classifier for fine-tuned tags)


@pytest.mark.parametrize(
    ("name", "classes", "size", "millions"),
    [
        ("rope_vit_reg8_so150m_p14_swiglu_rms_ap", 4, 252, 178.5),
        ("rope_vit_reg4_b14", 365, 224, 86.0),
        ("rope_i_vit_reg1_s16_pn_npn_avg_c1", 0, 512, 22.0),
        ("pe_spatial_s16", 0, 512, 22.0),
    ],
)
def test_card_parameter_counts(name: str, classes: int, size: int, millions: float) -> None:
    with torch.device("meta"):
        net = roost.create_model(name, classes, size=size)
    assert round(sum(p.numel() for p in net.parameters()) / 1e6, 1) == millions
