"""int8 dynamic quantization (torch and ONNX Runtime) and the ONNX Runtime backend of the batch jobs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from roost.convert.quantize import quantize_linear_int8, quantize_onnx, top1_agreement
from roost.weights.load import load_model

pytest.importorskip("onnxruntime")

STEM = "rope_vit_reg8_so150m_p14_swiglu_rms_ap_tiny-rotnet"


@pytest.fixture(scope="module")
def net(shared_dir):
    model, _ = load_model(None, shared_dir / "fixtures" / "checkpoints" / f"{STEM}.pt", inference=True)
    return model


@pytest.fixture(scope="module")
def images():
    return torch.randn(16, 3, 252, 252, generator=torch.Generator().manual_seed(3))


def test_top1_agreement():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 2.0], [3.0, 2.0]])
    assert top1_agreement(a, a) == 1.0
    assert top1_agreement(a, -a) == 0.0
    with pytest.raises(ValueError):
        top1_agreement(a, a[:2])


def test_torch_int8_replaces_linears_and_stays_close(net, images):
    q = quantize_linear_int8(net)
    assert not any(type(m) is nn.Linear for m in q.modules())
    assert any(type(m) is nn.Linear for m in net.modules())  # the original is untouched
    with torch.inference_mode():
        ref, got = net(images), q(images)
    assert not torch.equal(ref, got)
    assert torch.nn.functional.cosine_similarity(ref, got, dim=1).min() > 0.98
    assert top1_agreement(ref, got) >= 0.75


def test_ort_backend_matches_eager_and_quantizes(tmp_path, net, images):
    from roost.inference.ort import OrtBackend

    backend = OrtBackend.from_network(net, (252, 252), quantize=False, cache_dir=tmp_path, key="fp32")
    assert backend.path == tmp_path / "fp32" / "embedding.onnx" and not backend.from_cache
    with torch.inference_mode():
        torch.testing.assert_close(backend.embedding(images[:3]), net.embedding(images[:3]), atol=1e-4, rtol=0)
        torch.testing.assert_close(backend(images[:5]), net(images[:5]), atol=1e-4, rtol=0)
        assert backend.classify(backend.embedding(images[:2])).shape == (2, 4)
    # What the batch jobs ask of a network: its device through a parameter, its embedding width.
    assert next(backend.parameters()).device.type == "cpu" and backend.embedding_size == 128

    int8 = quantize_onnx(backend.path, tmp_path / "embedding_int8.onnx")
    assert int8.stat().st_size < backend.path.stat().st_size
    q = OrtBackend.from_network(net, (252, 252), quantize=True, cache_dir=tmp_path, key="int8")
    assert [p.name for p in (tmp_path / "int8").iterdir()] == ["embedding_int8.onnx"]  # no fp32 copy kept
    with torch.inference_mode():
        ref, got = net(images), q(images)
    assert not torch.allclose(ref, got, atol=1e-6)
    assert torch.nn.functional.cosine_similarity(ref, got, dim=1).min() > 0.98
