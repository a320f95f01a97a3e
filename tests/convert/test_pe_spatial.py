"""PE-Spatial conversion: exact against Meta's own outputs, strict about keys and shapes, timm layout too."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from roost.convert import pe_spatial
from roost.errors import ConversionError
from roost.weights.checkpoint import read_checkpoint
from roost.weights.load import load_model
from tests.formula import formula_tensor


@pytest.fixture(scope="module")
def fixture_dir(shared_dir):
    return shared_dir / "fixtures" / "pe_spatial"


@pytest.fixture(scope="module")
def meta_state(fixture_dir) -> dict[str, torch.Tensor]:
    keys = json.loads((fixture_dir / "meta_state_dict.json").read_text())
    return {key: formula_tensor(key, tuple(shape)) for key, shape in keys}


@pytest.fixture(scope="module")
def meta_io(fixture_dir) -> dict[str, torch.Tensor]:
    return load_file(fixture_dir / "meta_io.safetensors")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_converted_file_reproduces_meta_outputs(tmp_path, meta_state, meta_io, suffix):
    src = tmp_path / "PE-Spatial-S16-512.pt"
    torch.save({"weights": {f"module.visual.{k}": v for k, v in meta_state.items()}}, src)
    dst = tmp_path / f"anything{suffix}"  # loads by path whatever it is called: the network is recorded
    pe_spatial.convert_pe_spatial(src, dst, size="s")

    net, info = load_model(None, dst, inference=True)
    assert info.class_to_idx == {}
    assert info.signature == {"inputs": [{"data_shape": [0, 3, 512, 512]}], "outputs": [{"data_shape": [0, 0]}]}
    assert tuple(info.rgb_stats["mean"]) == (0.5, 0.5, 0.5) and tuple(info.rgb_stats["std"]) == (0.5, 0.5, 0.5)
    assert info.custom_config["pos_embed_interpolation_mode"] == "bilinear"
    assert read_checkpoint(dst).network == "rope_i_vit_reg1_s16_pn_npn_avg_c1"
    with torch.inference_mode():
        tokens = net.forward_features(meta_io["input_512x512"])
        torch.testing.assert_close(tokens, meta_io["tokens_512x512"], atol=1e-4, rtol=0)
        net.set_dynamic_size(True)
        tokens = net.forward_features(meta_io["input_384x512"])
        torch.testing.assert_close(tokens, meta_io["tokens_384x512"], atol=1e-4, rtol=0)


def test_bicubic_differs_from_meta_off_native_size(meta_state, meta_io):
    """Negative control: the 384x512 check is sensitive to the interpolation mode."""
    from roost.weights.load import build_from_checkpoint

    ckpt = pe_spatial.to_checkpoint(meta_state, "s", interpolation="bicubic")
    net = build_from_checkpoint(ckpt.network, ckpt).eval()
    net.set_dynamic_size(True)
    with torch.inference_mode():
        tokens = net.forward_features(meta_io["input_384x512"])
    assert (tokens - meta_io["tokens_384x512"]).abs().max() > 1e-3


@pytest.mark.parametrize(
    "wrap",
    [
        lambda s: s,
        lambda s: {"state_dict": s},
        lambda s: {"weights": s},
        lambda s: {f"module.{k}": v for k, v in s.items()},
        lambda s: {f"visual.{k}": v for k, v in s.items()} | {"text.token_embedding": torch.zeros(1)},
        lambda s: {"state_dict": {f"module.visual.{k}": v for k, v in s.items()}},
    ],
    ids=["plain", "state_dict", "weights", "module", "visual", "module.visual"],
)
def test_unwraps_meta_containers_and_prefixes(meta_state, wrap):
    out = pe_spatial.convert_state(pe_spatial.unwrap(wrap(meta_state)), "s")
    assert torch.equal(out["reg_tokens"], meta_state["class_embedding"].reshape(1, 1, -1))
    qkv = meta_state["transformer.resblocks.11.attn.in_proj_weight"]
    assert torch.equal(out["encoder.block.11.attn.qkv.weight"], qkv)
    assert len(out) == 149


def test_size_is_inferred_and_checked(meta_state):
    assert pe_spatial.infer_size(meta_state) == "s"
    with pytest.raises(ConversionError, match="shape mismatches"):
        pe_spatial.convert_state(meta_state, "b")


def test_missing_key_is_listed(meta_state):
    state = {k: v for k, v in meta_state.items() if k != "transformer.resblocks.3.ln_2.bias"}
    with pytest.raises(ConversionError, match=r"not produced: encoder\.block\.3\.norm2\.bias"):
        pe_spatial.convert_state(state, "s")


@pytest.mark.parametrize(
    "extra", ["ln_post.weight", "proj", "attn_pool.probe", "transformer.resblocks.12.ln_1.weight", "ls_1.gamma"]
)
def test_extra_key_is_listed(meta_state, extra):
    state = {**meta_state, extra: torch.zeros(384)}
    with pytest.raises(ConversionError, match="unexpected source keys") as err:
        pe_spatial.convert_state(state, "s")
    assert extra in str(err.value) or "encoder.block.12" in str(err.value)


def test_shape_mismatch_is_listed(meta_state):
    state = {**meta_state, "ln_pre.weight": torch.zeros(385)}
    with pytest.raises(ConversionError, match=r"encoder\.pre_block\.0\.weight: \(385,\) != \(384,\)"):
        pe_spatial.convert_state(state, "s")


def test_timm_layout_round_trip(tmp_path, meta_state):
    birder = pe_spatial.convert_state(meta_state, "s")
    timm, left = pe_spatial.map_state(birder, pe_spatial.TIMM_MAP, inverse=True)
    assert not left and "cls_token" in timm and "blocks.0.mlp.fc1.weight" in timm
    src = tmp_path / "vit_pe_spatial_small_patch16_512.safetensors"
    save_file({k: v.contiguous() for k, v in timm.items()}, src)
    ckpt = pe_spatial.convert_pe_spatial(src, tmp_path / "out.pt")
    assert list(ckpt.state) == list(birder)
    assert all(torch.equal(ckpt.state[k], birder[k]) for k in birder)
    back = pe_spatial.convert_state(pe_spatial.unwrap({"model_ema": timm}), "s", "timm")
    assert all(torch.equal(back[k], birder[k]) for k in birder)


def test_meta_inverse_map_round_trip(meta_state):
    birder = pe_spatial.convert_state(meta_state, "s")
    meta, left = pe_spatial.map_state(birder, pe_spatial.META_MAP, inverse=True)
    assert not left and set(meta) == set(meta_state)
    assert all(torch.equal(meta[k], meta_state[k]) for k in meta_state)


def test_unknown_layout_and_unreadable_file(tmp_path):
    with pytest.raises(ConversionError, match="cannot tell the checkpoint layout"):
        pe_spatial.convert_state({"foo.weight": torch.zeros(1)}, "s")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ConversionError, match="not a readable"):
        pe_spatial.read_source(bad)
    with pytest.raises(FileNotFoundError):
        pe_spatial.read_source(tmp_path / "missing.pt")
