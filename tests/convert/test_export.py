"""Exports of a tiny rotnet-shaped checkpoint: ONNX (via ONNX Runtime), pt2 and TorchScript round trips."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch

from roost.convert.export import ExportOptions, export_model, verify
from roost.errors import ExportError
from roost.weights.load import load_model, load_pretrained_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

STEM = "rope_vit_reg8_so150m_p14_swiglu_rms_ap_tiny-rotnet"
META_KEYS = {"birder_version", "task", "class_to_idx", "signature", "rgb_stats"}


@pytest.fixture(scope="module")
def checkpoint(shared_dir):
    return shared_dir / "fixtures" / "checkpoints" / f"{STEM}.pt"


@pytest.fixture(scope="module")
def eager(checkpoint):
    net, info = load_model(None, checkpoint, inference=True)
    return net, info


def _inputs(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(7))


def test_onnx_dynamic_batch_and_size(tmp_path, checkpoint, eager):
    from roost.inference.ort import OrtSession

    out = tmp_path / "rotnet.onnx"
    result = export_model(checkpoint, ExportOptions("onnx", out, dynamic_size=True))
    assert result.max_abs_error < 1e-4 and len(result.checked_shapes) == 3
    sidecar = json.loads((tmp_path / "rotnet.onnx_metadata.json").read_text())
    assert set(sidecar) == META_KEYS and sidecar["signature"]["inputs"][0]["data_shape"] == [0, 3, 252, 252]
    net, _ = eager
    net.set_dynamic_size(True)
    session = OrtSession(out)
    for shape in [(1, 3, 252, 252), (5, 3, 252, 252), (2, 3, 196, 308)]:
        x = _inputs(*shape)
        with torch.inference_mode():
            torch.testing.assert_close(session(x), net(x), atol=1e-4, rtol=0)
    net.set_dynamic_size(False)


def test_pt2_round_trip_through_load_pretrained_model(tmp_path, checkpoint, eager):
    out = tmp_path / "rotnet.pt2"
    result = export_model(checkpoint, ExportOptions("pt2", out, dynamic_batch=True, dynamic_size=True))
    assert result.max_abs_error < 1e-4
    module, info = load_pretrained_model(out, inference=True)
    ref_net, ref_info = eager
    assert info.class_to_idx == ref_info.class_to_idx and info.custom_config is None
    assert info.signature["inputs"][0]["data_shape"] == [2, 3, 252, 252]  # pt2: the sample batch, as Birder
    assert module.size == (252, 252) and module.task == "image_classification" and module.input_channels == 3
    ref_net.set_dynamic_size(True)
    for shape in [(3, 3, 252, 252), (1, 3, 224, 280)]:
        x = _inputs(*shape)
        with torch.inference_mode():
            torch.testing.assert_close(module(x), ref_net(x), atol=1e-4, rtol=0)
    ref_net.set_dynamic_size(False)
    with zipfile.ZipFile(out) as archive:
        assert any(name.endswith("extra/rgb_stats") for name in archive.namelist())


def test_torchscript_round_trip(tmp_path, checkpoint, eager):
    out = tmp_path / "rotnet.pts"
    result = export_model(checkpoint, ExportOptions("torchscript", out))
    assert result.max_abs_error < 1e-4
    module, info = load_pretrained_model(out, inference=True)
    ref_net, ref_info = eager
    assert info.rgb_stats == {k: list(v) for k, v in ref_info.rgb_stats.items()}
    assert info.signature == ref_info.signature and not module.training
    x = _inputs(4, 3, 252, 252)
    with torch.inference_mode():
        torch.testing.assert_close(module(x), ref_net(x), atol=1e-4, rtol=0)
    with pytest.raises(ExportError, match="fixed input size"):
        export_model(checkpoint, ExportOptions("torchscript", tmp_path / "x.pts", dynamic_size=True))


def test_safetensors_export_and_new_size_refused_for_exports(tmp_path, checkpoint):
    result = export_model(checkpoint, ExportOptions("safetensors", tmp_path / f"{STEM}.safetensors"))
    assert result.max_abs_error < 1e-4
    with pytest.raises(ValueError, match="new_size"):
        load_pretrained_model("some_name", file_format="pt2", new_size=224)


def test_verify_detects_drift(eager):
    """Negative control: the on-the-spot check sees an error of 1e-3."""
    net, _ = eager
    error = verify(net, lambda x: net(x) + 1e-3, [(1, 3, 252, 252)], "fp32")
    assert error == pytest.approx(1e-3, rel=1e-2)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_exported_file_without_metadata_is_refused(tmp_path, eager):
    net, _ = eager
    traced = torch.jit.trace(net, _inputs(1, 3, 252, 252), check_trace=False)
    path = tmp_path / "bare.pts"
    torch.jit.save(traced, str(path))
    with pytest.raises(ValueError, match="lacks the metadata"):
        load_pretrained_model(path)
