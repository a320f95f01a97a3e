"""The name grammar, the registry and the published networks (architecture.md §1, §2, §6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import roost
from roost.errors import ConfigError, UnknownModelError
from roost.models.names import parse_name
from roost.models.registry import CATALOGUE, PUBLISHED_NETWORKS

SPEC = Path(__file__).resolve().parents[2].parent / "shared" / "spec"


@pytest.mark.parametrize("name", CATALOGUE)
def test_catalogue_names_round_trip(name: str) -> None:
    assert parse_name(name).format() == name
    parse_name(name).config()  # validates


def test_seed_configs() -> None:
    a = parse_name("rope_vit_reg8_so150m_p14_swiglu_rms_ap").config()
    assert (a.hidden_dim, a.num_heads, a.num_layers, a.mlp_dim, a.patch_size) == (896, 16, 18, 2320, 14)
    assert a.norm_layer_type == "RMSNorm" and a.mlp_layer_type == "SwiGLU_FFN"
    assert a.attn_pool_head and not a.class_token and a.num_reg_tokens == 8
    assert a.rope_temperature == 100.0 and a.rope_rot_type == "standard"
    c = parse_name("rope_i_vit_reg1_s16_pn_npn_avg_c1").config()
    assert c.rope_rot_type == "interleaved" and c.rope_temperature == 10000.0
    assert (c.rope_grid_indexing, c.rope_grid_offset, c.norm_layer_eps) == ("xy", 1, 1e-5)
    assert c.pre_norm and not c.post_norm and not c.class_token
    eva = parse_name("rope_i_vit_l14_nf_swiglu_c1").config()
    assert eva.pt_grid_size == (16, 16) and eva.rope_grid_indexing == "ij" and eva.attn_norm
    assert eva.mlp_layer_type == "Norm_SwiGLU_FFN"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("rope_vit_reg8_so150m_p14_rms_swiglu_ap", "canonical name is 'rope_vit_reg8_so150m_p14_swiglu_rms_ap'"),
        ("rope_vit_b14_avg_rms", "unexpected token 'rms'"),
        ("rope_vit_b14_swiglu_swiglu", "repeats"),
        ("rope_vit_b14_c2", "c2"),
        ("rope_vit_hmlp_b16", "grammar"),
        ("rope_vit_b16_hmlp", "hierarchical-MLP"),
    ],
)
def test_bad_names_are_specific(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_name(name)


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


def test_every_published_network_builds_with_its_card_size() -> None:
    weights = json.loads((SPEC / "pretrained_rope_vit.json").read_text())
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
