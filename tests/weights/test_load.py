"""Loading the reference's checkpoint fixtures by path, and the loader's options."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import roost
from roost.errors import CheckpointError, ConfigError, WeightsNotFoundError
from roost.weights import load
from roost.weights.checkpoint import read_checkpoint
from tests.conftest import SHARED

CHECKPOINTS = SHARED / "fixtures" / "checkpoints"
CASES = json.loads((CHECKPOINTS / "cases.json").read_text()) if CHECKPOINTS.is_dir() else []
PRESETS = (
    json.loads((SHARED / "fixtures" / "transforms" / "cases.json").read_text())["rgb_presets"] if CASES else {}
)
pytestmark = pytest.mark.skipif(not CASES, reason="../shared/fixtures/checkpoints not present")
FORMATS = ("pt", "safetensors")


def _case_ids(case: dict) -> str:
    return case["tag"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", CASES, ids=_case_ids)
def test_fixture_loads_by_path_and_matches_reference(case: dict, fmt: str) -> None:
    path = CHECKPOINTS / f"{case['file_stem']}.{fmt}"
    net, _ = roost.load_pretrained_model(path, inference=True)
    expected = load_file(CHECKPOINTS / f"{case['file_stem']}.expected.safetensors")
    with torch.no_grad():
        logits, embedding = net(expected["input"]), net.embedding(expected["input"])
    torch.testing.assert_close(logits, expected["logits"], atol=1e-4, rtol=0)
    torch.testing.assert_close(embedding, expected["embedding"], atol=1e-4, rtol=0)
    assert net.network_name == case["network"]
    assert tuple(net.size) == tuple(case["size"])
    assert not net.training
    assert not any(p.requires_grad for p in net.parameters())


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", CASES, ids=_case_ids)
def test_model_info_matches_cases(case: dict, fmt: str) -> None:
    _, info = roost.load_model(None, CHECKPOINTS / f"{case['file_stem']}.{fmt}")
    assert isinstance(info, roost.ModelInfo)
    assert info.custom_config == case["config"]
    assert info.signature == {
        "inputs": [{"data_shape": [0, 3, *case["size"]]}],
        "outputs": [{"data_shape": [0, case["num_classes"]]}],
    }
    assert len(info.class_to_idx) == case["num_classes"]
    assert sorted(info.class_to_idx.values()) == list(range(case["num_classes"]))
    preset = PRESETS[case["rgb_mode"]]
    # .pt files hold tuples; safetensors metadata is JSON, so lists (as the reference returns them)
    kind = tuple if fmt == "pt" else list
    assert info.rgb_stats == {key: kind(value) for key, value in preset.items()}
    _, signature, *_ = info  # unpacks like the reference's NamedTuple
    assert roost.get_size_from_signature(signature) == tuple(case["size"])
    assert roost.get_channels_from_signature(signature) == 3


def test_defaults_train_mode_on_cpu(tmp_path: Path) -> None:
    net, _ = roost.load_model(None, CHECKPOINTS / f"{CASES[0]['file_stem']}.pt")
    assert net.training
    assert all(p.requires_grad for p in net.parameters())
    assert {p.device.type for p in net.parameters()} == {"cpu"}
    assert not any(b.is_meta for b in net.buffers())


def test_dtype_device_and_new_size() -> None:
    case = CASES[0]
    net, _ = roost.load_model(
        case["network"], CHECKPOINTS / f"{case['file_stem']}.pt", new_size=(112, 140), dtype=torch.float64,
        device="cpu", inference=True,
    )
    assert tuple(net.size) == (112, 140)
    assert {p.dtype for p in net.parameters()} == {torch.float64}
    out = net(torch.zeros(1, 3, 112, 140, dtype=torch.float64))
    assert out.shape == (1, case["num_classes"])


def test_caller_config_updates_stored_config() -> None:
    case = CASES[0]
    path = CHECKPOINTS / f"{case['file_stem']}.pt"
    net, info = roost.load_model(None, path, config={"drop_path_rate": 0.0})
    assert net.config.drop_path_rate == 0.0
    assert info.custom_config == case["config"]  # the stored config only, as the reference reports it
    with pytest.raises(CheckpointError, match="does not fit"):
        roost.load_model(None, path, config={"num_layers": 3})


def test_network_from_file_name() -> None:
    assert load.network_from_file_name("x/rope_vit_reg4_b14_capi-places365.pt") == "rope_vit_reg4_b14"
    assert load.network_from_file_name("rope_vit_reg4_b14.safetensors") == "rope_vit_reg4_b14"
    assert load.network_from_file_name("rope_vit_reg8_so150m_p14_swiglu_rms_ap_rotnet_12.pt") == (
        "rope_vit_reg8_so150m_p14_swiglu_rms_ap"
    )
    assert load.network_from_file_name("rope_i_vit_reg1_s16_pn_npn_avg_c1_pe-spatial.pt") == (
        "rope_i_vit_reg1_s16_pn_npn_avg_c1"
    )
    with pytest.raises(CheckpointError, match="network="):
        load.network_from_file_name("my_model.pt")


def test_renamed_reference_file_needs_network(tmp_path: Path) -> None:
    case = CASES[0]
    renamed = tmp_path / "weights.pt"
    shutil.copyfile(CHECKPOINTS / f"{case['file_stem']}.pt", renamed)
    with pytest.raises(CheckpointError, match="pass network="):
        roost.load_model(None, renamed)
    with pytest.raises(CheckpointError, match="pass network="):
        roost.load_pretrained_model(renamed)
    net, _ = roost.load_model(case["network"], renamed)
    assert net.network_name == case["network"]
    net, info = roost.load_pretrained_model(renamed, network=case["network"], inference=True)
    assert net.network_name == case["network"] and len(info.class_to_idx) == case["num_classes"]


def test_network_overrides_a_wrong_file_name_guess(tmp_path: Path) -> None:
    """A name that starts with another network would otherwise leave no way to load the file."""
    case = next(c for c in CASES if c["network"] != "rope_vit_reg4_b14")
    misnamed = tmp_path / "rope_vit_reg4_b14_mine.safetensors"
    shutil.copyfile(CHECKPOINTS / f"{case['file_stem']}.safetensors", misnamed)
    with pytest.raises(CheckpointError, match="does not fit network 'rope_vit_reg4_b14'"):
        roost.load_pretrained_model(misnamed)
    net, _ = roost.load_pretrained_model(misnamed, network=case["network"])
    assert net.network_name == case["network"]


def test_network_is_for_files_only() -> None:
    with pytest.raises(ConfigError, match="network= applies to checkpoint files"):
        roost.load_pretrained_model("rope_vit_reg4_b14_capi-places365", network="rope_vit_reg4_b14")


def test_onnx_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "rope_vit_reg4_b14_capi.onnx"
    path.write_bytes(b"an onnx graph")
    for weights in (path, str(path)):
        with pytest.raises(CheckpointError, match=r"ONNX Runtime runs a model through backend=\"ort\""):
            roost.load_pretrained_model(weights)


def test_save_model_records_network(tmp_path: Path) -> None:
    case = CASES[0]
    net, info = roost.load_model(None, CHECKPOINTS / f"{case['file_stem']}.pt", inference=True)
    for suffix in FORMATS:
        path = load.save_model(
            tmp_path / f"anything.{suffix}", net, class_to_idx=info.class_to_idx, rgb_stats=info.rgb_stats
        )
        ckpt = read_checkpoint(path)
        assert ckpt.network == case["network"]
        assert ckpt.config == case["config"]  # derived from the net: its changes against the name's config
        again, again_info = roost.load_pretrained_model(path, inference=True)
        x = torch.randn(1, 3, *case["size"])
        torch.testing.assert_close(again(x), net(x))
        assert again_info.custom_config == case["config"]


def test_load_pretrained_model_local_path_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError):
        roost.load_pretrained_model(tmp_path / "absent.pt")
    with pytest.raises(WeightsNotFoundError):
        roost.load_pretrained_model("absent.safetensors")
    bad = tmp_path / "rope_vit_reg4_b14.pts"
    bad.write_bytes(b"")
    with pytest.raises(CheckpointError):
        roost.load_pretrained_model(bad)
