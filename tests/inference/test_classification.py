"""infer_image / infer_batch on a tiny RoPE-ViT: probabilities, logits, embeddings, TTA, inputs, dtypes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import roost
from roost.data.decode import load_image
from roost.data.transforms import ClassificationTransform
from roost.inference.classification import infer_batch, infer_image
from tests.conftest import SHARED

PHOTO = SHARED / "photos" / "ladybird.jpg"
SIZE = (56, 56)
NUM_CLASSES = 10
TINY = {"num_layers": 1, "hidden_dim": 64, "num_heads": 2, "mlp_dim": 128}


def _tiny_net() -> nn.Module:
    """A 1-layer model with every parameter random (a fresh head is zero, which would hide mistakes)."""
    torch.manual_seed(0)
    net = roost.create_model("rope_vit_reg4_b14", NUM_CLASSES, size=SIZE, config=TINY).eval()
    with torch.no_grad():
        for param in net.parameters():
            param.normal_(0.0, 0.2)
    return net


@pytest.fixture(scope="module")
def net() -> nn.Module:
    return _tiny_net()


@pytest.fixture(scope="module")
def transform() -> ClassificationTransform:
    return roost.classification_transform(SIZE, roost.get_rgb_stats("birder"))


@pytest.fixture(scope="module")
def photo_path() -> Path:
    if not PHOTO.is_file():
        pytest.skip(f"shared photos not found at {PHOTO.parent}")
    return PHOTO


def _batch(transform: ClassificationTransform, path: Path) -> torch.Tensor:
    return transform(load_image(path)).unsqueeze(0)


def test_probabilities(net: nn.Module, transform: ClassificationTransform, photo_path: Path) -> None:
    out, embedding = infer_image(net, photo_path, transform)
    assert out.shape == (1, NUM_CLASSES) and out.dtype == np.float32
    assert embedding is None
    assert out.sum() == pytest.approx(1.0, abs=1e-5)
    assert (out > 0).all()


def test_logits_equal_forward(net: nn.Module, transform: ClassificationTransform, photo_path: Path) -> None:
    out, _ = infer_image(net, str(photo_path), transform, return_logits=True)
    with torch.inference_mode():
        expected = net(_batch(transform, photo_path)).numpy()
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    assert not np.isclose(out.sum(), 1.0)


def test_embedding(net: nn.Module, transform: ClassificationTransform, photo_path: Path) -> None:
    out, embedding = infer_image(net, photo_path, transform, return_embedding=True)
    assert embedding is not None and embedding.shape == (1, TINY["hidden_dim"]) and embedding.dtype == np.float32
    with torch.inference_mode():
        x = _batch(transform, photo_path)
        np.testing.assert_allclose(embedding, net.embedding(x).numpy(), atol=1e-6)
        np.testing.assert_allclose(out, F.softmax(net(x), dim=1).numpy(), atol=1e-6)
        plain = net(x).numpy()
    logits, _ = infer_image(net, photo_path, transform, return_embedding=True, tta=True, return_logits=True)
    np.testing.assert_allclose(logits, plain, atol=1e-5)  # TTA ignored with embeddings


def test_tta_is_mean_of_five_crops(net: nn.Module, transform: ClassificationTransform, photo_path: Path) -> None:
    out, embedding = infer_image(net, photo_path, transform, tta=True)
    assert out.shape == (1, NUM_CLASSES) and embedding is None
    assert out.sum() == pytest.approx(1.0, abs=1e-5)
    logits, _ = infer_image(net, photo_path, transform, tta=True, return_logits=True)
    with torch.inference_mode():
        x = _batch(transform, photo_path)
        c = int(0.8 * SIZE[0])  # 44; centre offset round(12 / 2) = 6
        boxes = [(0, 0), (0, SIZE[1] - c), (SIZE[0] - c, 0), (SIZE[0] - c, SIZE[1] - c), (6, 6)]
        crops = [x[..., t : t + c, left : left + c] for t, left in boxes]
        resized = [F.interpolate(crop, size=SIZE, mode="bicubic", antialias=True) for crop in crops]
        expected = torch.stack([net(r) for r in resized]).mean(0).numpy()
        plain = net(x).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    assert not np.allclose(logits, plain, atol=1e-4)


def test_path_and_pil_inputs_agree(net: nn.Module, transform: ClassificationTransform, photo_path: Path) -> None:
    from_path, _ = infer_image(net, photo_path, transform, return_logits=True)
    from_str, _ = infer_image(net, str(photo_path), transform, return_logits=True)
    from_pil, _ = infer_image(net, Image.open(photo_path), transform, return_logits=True)
    np.testing.assert_array_equal(from_path, from_str)
    np.testing.assert_array_equal(from_path, from_pil)


def test_any_pil_mode_and_unknown_type(net: nn.Module, transform: ClassificationTransform) -> None:
    rgba = Image.new("RGBA", (80, 60), (10, 200, 30, 128))
    assert infer_image(net, rgba, transform)[0].shape == (1, NUM_CLASSES)
    gray = Image.new("L", (80, 60), 90)
    np.testing.assert_array_equal(
        infer_image(net, gray, transform)[0], infer_image(net, gray.convert("RGB"), transform)[0]
    )
    with pytest.raises(TypeError, match="Unknown sample type"):
        infer_image(net, np.zeros((60, 80, 3), dtype=np.uint8), transform)


def test_bf16_net_gets_bf16_input(transform: ClassificationTransform, photo_path: Path) -> None:
    net = _tiny_net()
    ref, _ = infer_image(net, photo_path, transform)
    net = net.to(torch.bfloat16)
    seen: list[torch.dtype] = []
    net.register_forward_pre_hook(lambda _module, args: seen.append(args[0].dtype))
    out, emb = infer_image(net, photo_path, transform, return_embedding=True)
    assert out.dtype == np.float32 and emb is not None and emb.dtype == np.float32
    assert out.sum() == pytest.approx(1.0, abs=1e-3)
    tta, _ = infer_image(net, photo_path, transform, tta=True)
    assert tta.dtype == np.float32
    assert seen and all(dtype == torch.bfloat16 for dtype in seen)
    np.testing.assert_allclose(infer_image(net, photo_path, transform)[0], ref, atol=0.05)


def test_device_argument_moves_input_only(net: nn.Module, transform: ClassificationTransform, photo_path: Path) -> None:
    out, _ = infer_image(net, photo_path, transform, device="cpu")
    np.testing.assert_array_equal(out, infer_image(net, photo_path, transform)[0])
    assert next(net.parameters()).device.type == "cpu"


def test_infer_batch_shapes(net: nn.Module) -> None:
    x = torch.randn(3, 3, *SIZE)
    with torch.inference_mode():
        out, emb = infer_batch(net, x)
        assert out.shape == (3, NUM_CLASSES) and emb is None
        np.testing.assert_allclose(out.sum(axis=1), np.ones(3), atol=1e-5)
        out, emb = infer_batch(net, x, return_embedding=True, return_logits=True)
        assert out.shape == (3, NUM_CLASSES) and emb.shape == (3, TINY["hidden_dim"])
        assert infer_batch(net, x, tta=True)[0].shape == (3, NUM_CLASSES)
