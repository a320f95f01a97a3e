"""The model-card snippets, run verbatim with ``import roost as birder``.

The published names are re-pointed (through ROOST_MANIFEST, as a private mirror would be) at the
reference-written fixture checkpoints served over loopback HTTP, so the whole path runs: manifest,
download, sha256, Birder file format, model, Pillow transform and softmax, on real photos.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tests.conftest import SHARED
from tests.weights.conftest import entry, write_manifest

CHECKPOINTS = SHARED / "fixtures" / "checkpoints"
PHOTO = SHARED / "photos" / "ladybird.jpg"

# (published weights name, fixture stem): each card's name served with a reference-written file.
CARDS = {
    "rope_vit_reg8_so150m_p14_swiglu_rms_ap_rotnet-capi": "rope_vit_reg8_so150m_p14_swiglu_rms_ap_tiny-rotnet",
    "rope_vit_reg4_b14_capi-places365": "rope_vit_reg4_b14_tiny-places",
    "rope_i_vit_reg1_s16_pn_npn_avg_c1_pe-spatial": "rope_i_vit_reg1_s16_pn_npn_avg_c1_tiny-pe",
}

CLASSIFICATION_CARD = """
import birder
from birder.inference.classification import infer_image

(net, model_info) = birder.load_pretrained_model("{name}", inference=True)

# Get the image size the model was trained on
size = birder.get_size_from_signature(model_info.signature)

# Create an inference transform
transform = birder.classification_transform(size, model_info.rgb_stats)

image = "path/to/image.jpeg"  # or a PIL image, must be loaded in RGB format
(out, _) = infer_image(net, image, transform)
# out is a NumPy array with shape of (1, {classes}), representing class probabilities.
"""

EMBEDDING_CARD = """
import birder
from birder.inference.classification import infer_image

(net, model_info) = birder.load_pretrained_model("{name}", inference=True)

# Get the image size the model was trained on
size = birder.get_size_from_signature(model_info.signature)

# Create an inference transform
transform = birder.classification_transform(size, model_info.rgb_stats)

image = "path/to/image.jpeg"  # or a PIL image
(out, embedding) = infer_image(net, image, transform, return_embedding=True)
# embedding is a NumPy array with shape of (1, {dim})
"""

DETECTION_CARD = """
from PIL import Image
import birder

(net, model_info) = birder.load_pretrained_model("{name}", inference=True)

# Get the image size the model was trained on
size = birder.get_size_from_signature(model_info.signature)

# Create an inference transform
transform = birder.classification_transform(size, model_info.rgb_stats)

image = Image.open("path/to/image.jpeg")
features = net.detection_features(transform(image).unsqueeze(0))
# features is a dict (stage name -> torch.Tensor)
print([(k, v.size()) for k, v in features.items()])
# Output example:
# [('neck', torch.Size([1, {dim}, {grid}, {grid}]))]
"""


def run_card(card: str) -> dict:
    """Execute a snippet with only its imports changed from birder to roost."""
    code = textwrap.dedent(card).replace("import birder\n", "import roost as birder\n")
    code = code.replace("from birder.", "from roost.").replace("path/to/image.jpeg", str(PHOTO))
    namespace: dict = {}
    exec(compile(code, "<model card>", "exec"), namespace)
    return namespace


@pytest.fixture
def mirror(roost_env: Path, file_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Serve each card's weights name with its fixture file and register them through ROOST_MANIFEST."""
    if not CHECKPOINTS.is_dir():
        pytest.skip("shared fixtures not present")
    entries = {}
    for name, stem in CARDS.items():
        data = (CHECKPOINTS / f"{stem}.pt").read_bytes()
        file_server.state.files[f"/mirror/{name}.pt"] = data
        entries[name] = entry(f"{file_server.url}/mirror", stem.rsplit("_", 1)[0], {"pt": data})
    monkeypatch.setenv("ROOST_MANIFEST", str(write_manifest(tmp_path / "mirror.json", entries)))
    return file_server


@pytest.mark.parametrize("name", list(CARDS)[:2])
def test_classification_card(mirror, name: str) -> None:
    ns = run_card(CLASSIFICATION_CARD.format(name=name, classes="N"))
    net, info, out = ns["net"], ns["model_info"], ns["out"]
    assert out.shape == (1, len(info.class_to_idx)) and out.dtype == np.float32
    assert out.sum() == pytest.approx(1.0, abs=1e-5)
    # End to end against the pieces: the transform is exact to the reference (tests/data), the model
    # reproduces the reference outputs on this very file (below), softmax closes the chain.
    x = ns["transform"](Image.open(PHOTO).convert("RGB")).unsqueeze(0)
    with torch.inference_mode():
        expected = torch.softmax(net(x), dim=1).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-6)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert mirror.state.gets(), "the weights were not fetched over HTTP"


def test_embedding_card(mirror) -> None:
    ns = run_card(EMBEDDING_CARD.format(name="rope_vit_reg4_b14_capi-places365", dim=192))
    assert ns["embedding"].shape == (1, ns["net"].embedding_size)
    assert ns["out"].shape == (1, 6)


def test_detection_features_card(mirror, capsys: pytest.CaptureFixture) -> None:
    ns = run_card(DETECTION_CARD.format(name="rope_i_vit_reg1_s16_pn_npn_avg_c1_pe-spatial", dim=96, grid=16))
    assert capsys.readouterr().out.strip() == "[('neck', torch.Size([1, 96, 16, 16]))]"
    assert ns["model_info"].class_to_idx == {}


@pytest.mark.parametrize("stem", sorted(CARDS.values()))
def test_card_files_reproduce_reference_outputs(mirror, stem: str) -> None:
    import roost as birder

    name = next(k for k, v in CARDS.items() if v == stem)
    net, _ = birder.load_pretrained_model(name, inference=True)
    expected = load_file(CHECKPOINTS / f"{stem}.expected.safetensors")
    with torch.inference_mode():
        np.testing.assert_allclose(net(expected["input"]), expected["logits"], atol=1e-4)
