"""The checkpoint codec: reference files read, roost files written with the reference's layout."""

from __future__ import annotations

import json
import os
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

import roost
from roost.errors import CheckpointError
from roost.weights.checkpoint import (
    Checkpoint,
    CheckpointFormat,
    decode_extra_files,
    encode_extra_files,
    export_metadata,
    get_signature,
    read_checkpoint,
    write_checkpoint,
)
from tests.conftest import SHARED

CHECKPOINTS = SHARED / "fixtures" / "checkpoints"
STEMS = sorted(p.stem for p in CHECKPOINTS.glob("*.pt"))
REFERENCE_PT_KEYS = ["state", "birder_version", "task", "signature", "class_to_idx", "rgb_stats", "config"]
REFERENCE_ST_META = {"birder_version", "task", "signature", "class_to_idx", "rgb_stats", "config"}
EXTRA = ["network", "roost_version"]
pytestmark = pytest.mark.skipif(not STEMS, reason="../shared/fixtures/checkpoints not present")


def _assert_same(a: Checkpoint, b: Checkpoint) -> None:
    assert a.state.keys() == b.state.keys()
    for key in a.state:
        assert torch.equal(a.state[key], b.state[key]), key
        assert a.state[key].dtype == b.state[key].dtype
    for name in ("signature", "class_to_idx", "rgb_stats", "config", "task", "network", "birder_version"):
        assert getattr(a, name) == getattr(b, name), name


@pytest.mark.parametrize("stem", STEMS)
def test_pt_and_safetensors_hold_the_same_checkpoint(stem: str) -> None:
    pt, st = read_checkpoint(CHECKPOINTS / f"{stem}.pt"), read_checkpoint(CHECKPOINTS / f"{stem}.safetensors")
    assert pt.rgb_stats == {k: tuple(v) for k, v in st.rgb_stats.items()}
    assert isinstance(pt.rgb_stats["mean"], tuple) and isinstance(st.rgb_stats["mean"], list)
    st.rgb_stats = pt.rgb_stats
    _assert_same(pt, st)
    assert pt.birder_version == "v0.8.4"
    assert pt.network is None  # the reference does not store it


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
@pytest.mark.parametrize("stem", STEMS)
def test_round_trip_is_identical(stem: str, fmt: str, tmp_path: Path) -> None:
    original = read_checkpoint(CHECKPOINTS / f"{stem}.{fmt}")
    original.network = stem.rsplit("_", 1)[0]
    out = write_checkpoint(tmp_path / f"{stem}.{fmt}", original)
    _assert_same(original, read_checkpoint(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{stem}.{fmt}"]  # no temporary left behind


@pytest.mark.parametrize("stem", STEMS)
def test_written_pt_has_reference_layout(stem: str, tmp_path: Path) -> None:
    ckpt = read_checkpoint(CHECKPOINTS / f"{stem}.pt")
    ckpt.network = "rope_vit_reg4_b14"
    path = write_checkpoint(tmp_path / f"{stem}.pt", ckpt)
    ours = torch.load(path, weights_only=True)
    reference = torch.load(CHECKPOINTS / f"{stem}.pt", weights_only=True)
    assert list(ours) == REFERENCE_PT_KEYS + EXTRA
    assert isinstance(ours["state"], OrderedDict)
    assert list(ours["state"]) == list(reference["state"])
    assert ours["roost_version"] == roost.__version__
    for key in REFERENCE_PT_KEYS[1:]:
        assert ours[key] == reference[key], key
        assert type(ours[key]) is type(reference[key])
    assert type(ours["rgb_stats"]["std"]) is tuple
    # torch names the zip archive after the file: same as the reference's own files
    assert zipfile.ZipFile(path).namelist()[0] == f"{stem}/data.pkl"


@pytest.mark.parametrize("stem", STEMS)
def test_written_safetensors_has_reference_metadata(stem: str, tmp_path: Path) -> None:
    ckpt = read_checkpoint(CHECKPOINTS / f"{stem}.safetensors")
    ckpt.network = "n"
    path = write_checkpoint(tmp_path / "x.safetensors", ckpt)
    with safe_open(path, "pt") as ours, safe_open(CHECKPOINTS / f"{stem}.safetensors", "pt") as reference:
        meta, ref_meta = ours.metadata(), reference.metadata()
        assert set(meta) == REFERENCE_ST_META | set(EXTRA)
        assert all(isinstance(v, str) for v in meta.values())
        for key in ("task", "birder_version"):
            assert meta[key] == ref_meta[key]
        for key in ("signature", "class_to_idx", "rgb_stats", "config"):
            assert json.loads(meta[key]) == json.loads(ref_meta[key]), key
        assert set(ours.keys()) == set(reference.keys())


def test_config_none_is_omitted(tmp_path: Path) -> None:
    ckpt = Checkpoint(
        state={"w": torch.ones(2)},
        signature=get_signature((1, 3, 224, 224), 0),
        class_to_idx={},
        rgb_stats={"mean": [0.5] * 3, "std": [0.5] * 3},
    )
    pt = torch.load(write_checkpoint(tmp_path / "a.pt", ckpt), weights_only=True)
    assert list(pt) == ["state", "birder_version", "task", "signature", "class_to_idx", "rgb_stats", "roost_version"]
    assert pt["rgb_stats"] == {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}
    with safe_open(write_checkpoint(tmp_path / "a.safetensors", ckpt), "pt") as f:
        assert "config" not in f.metadata() and "network" not in f.metadata()


def test_shared_tensors_are_written(tmp_path: Path) -> None:
    base = torch.arange(6.0)
    ckpt = Checkpoint(
        state={"a": base, "b": base, "c": base[:3]},
        signature=get_signature((1, 3, 14, 14), 2),
        class_to_idx={"x": 0, "y": 1},
        rgb_stats={"mean": (0.0,) * 3, "std": (1.0,) * 3},
    )
    back = read_checkpoint(write_checkpoint(tmp_path / "s.safetensors", ckpt))
    assert torch.equal(back.state["b"], base) and torch.equal(back.state["c"], base[:3])


def test_signature_helpers() -> None:
    sig = get_signature((7, 3, 252, 224), 4)
    assert sig == {"inputs": [{"data_shape": [0, 3, 252, 224]}], "outputs": [{"data_shape": [0, 4]}]}
    assert roost.get_size_from_signature(sig) == (252, 224)
    assert isinstance(roost.get_size_from_signature(sig), tuple)
    assert roost.get_channels_from_signature(sig) == 3


def test_format_from_suffix() -> None:
    assert CheckpointFormat.from_path("a/b.SAFETENSORS") is CheckpointFormat.SAFETENSORS
    assert CheckpointFormat.from_path("a.pt") is CheckpointFormat.PT
    assert CheckpointFormat.from_path("a.pt2") is CheckpointFormat.PT2
    with pytest.raises(CheckpointError, match="suffix"):
        CheckpointFormat.from_path("a.bin")
    with pytest.raises(CheckpointError, match=r'backend="ort".*checkpoint this file was exported from'):
        CheckpointFormat.from_path("a.ONNX")


def test_export_metadata_round_trip() -> None:
    info = roost.ModelInfo(
        {"a": 0, "b": 1}, get_signature((1, 3, 224, 196), 2), {"mean": (0.5,) * 3, "std": (0.25,) * 3}, None
    )
    meta = export_metadata(info, "image_classification", batch=2)
    assert meta["signature"]["inputs"][0]["data_shape"] == [2, 3, 224, 196]
    assert info.signature["inputs"][0]["data_shape"][0] == 0  # the caller's signature is left alone
    files = encode_extra_files(meta)
    assert all(isinstance(v, str) for v in files.values()) and files["task"] == "image_classification"
    back = decode_extra_files({k: v.encode() for k, v in files.items()})  # torch may hand back bytes
    assert back == {**meta, "rgb_stats": {"mean": [0.5] * 3, "std": [0.25] * 3}}


def test_bad_files_raise_checkpoint_error(tmp_path: Path) -> None:
    torch.save({"weights": torch.ones(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a Birder checkpoint"):
        read_checkpoint(tmp_path / "plain.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path / "junk.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path / "junk.safetensors")


class Evil:
    def __reduce__(self) -> tuple:
        return (print, ("unpickled!",))


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    torch.save({"state": {}, "signature": {}, "class_to_idx": {}, "rgb_stats": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="weights-only"):
        read_checkpoint(tmp_path / "evil.pt")


class RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_pickled_shell_command_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "rope_vit_reg4_b14_evil.pt"
    torch.save({"state": {}, "signature": {}, "class_to_idx": {}, "rgb_stats": RunsShell(marker)}, path)
    assert not marker.exists()
    for load in (read_checkpoint, roost.load_pretrained_model):
        with pytest.raises(CheckpointError, match="weights-only"):
            load(path)
    assert not marker.exists()
