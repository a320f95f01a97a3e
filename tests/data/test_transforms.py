"""classification_transform against the reference fixtures, plus presets, crops and tensor input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from roost import classification_transform, get_rgb_stats
from roost.data.transforms import RGB_PRESETS, center_crop, cover_size, inference_preset, reverse_transform
from roost.errors import InputShapeError, TransformError
from tests.conftest import SHARED

FIXTURES = SHARED / "fixtures" / "transforms"
PHOTOS = SHARED / "photos"
CASES = json.loads((FIXTURES / "cases.json").read_text())["cases"] if FIXTURES.is_dir() else []
needs_shared = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"shared fixtures not found at {SHARED}")
NEUTRAL = get_rgb_stats("neutral")


def _photo(name: str) -> Image.Image:
    return Image.open(PHOTOS / name).convert("RGB")


def _as_uint8(t: torch.Tensor) -> torch.Tensor:
    return (t * 255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def expected() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(FIXTURES / "expected_uint8.safetensors")


@needs_shared
@pytest.mark.parametrize("case", CASES, ids=[c["key"] for c in CASES])
def test_reference_fixture_exact(case: dict, expected: dict[str, torch.Tensor]) -> None:
    transform = classification_transform(case["size"], NEUTRAL, case["center_crop"], case["simple_crop"])
    out = transform(_photo(case["image"]))
    assert out.dtype == torch.float32
    assert list(out.shape) == case["shape"]
    assert torch.equal(_as_uint8(out), expected[case["key"]])


@needs_shared
@pytest.mark.parametrize("rgb", ["birder", "centered"])
def test_pixels_then_finish_is_the_transform_bit_for_bit_one_image_or_a_batch(rgb: str) -> None:
    """The batch jobs decode to uint8 in workers and normalise whole batches where the model runs."""
    transform = classification_transform(252, get_rgb_stats(rgb))
    photos = [_photo(p.name) for p in sorted(PHOTOS.glob("*.jpg"))[:4]]
    pixels = [transform.pixels(img) for img in photos]
    assert all(p.dtype == torch.uint8 and p.shape == (3, 252, 252) for p in pixels)
    whole = torch.stack([transform(img) for img in photos])
    assert torch.equal(transform.finish(torch.stack(pixels)), whole)
    assert torch.equal(transform.finish(pixels[0]), whole[0])
    assert whole.std() > 0.1  # real, distinct images


@needs_shared
def test_presets_match_reference() -> None:
    presets = json.loads((FIXTURES / "cases.json").read_text())["rgb_presets"]
    assert set(presets) == set(RGB_PRESETS)
    for mode, stats in presets.items():
        got = get_rgb_stats(mode)
        assert got["mean"] == pytest.approx(tuple(stats["mean"]), abs=0)
        assert got["std"] == pytest.approx(tuple(stats["std"]), abs=0)


def test_preset_values_and_overrides() -> None:
    assert get_rgb_stats("birder") == {"mean": (0.5191, 0.5306, 0.4877), "std": (0.2316, 0.2304, 0.2588)}
    assert get_rgb_stats("centered", mean=[0.1, 0.2, 0.3]) == {"mean": (0.1, 0.2, 0.3), "std": (0.5, 0.5, 0.5)}
    assert get_rgb_stats("imagenet", std=(1, 2, 3))["std"] == (1.0, 2.0, 3.0)
    with pytest.raises(TransformError, match="Unknown RGB mode 'none'"):
        get_rgb_stats("none")
    with pytest.raises(ValueError):
        get_rgb_stats("imagenet", mean=(0.5, 0.5))


def test_repr() -> None:
    transform = classification_transform((224, 224), get_rgb_stats("birder"))
    assert repr(transform) == (
        "Resize(size=[224, 224], BICUBIC, antialias=True) -> CenterCrop((224, 224)) -> PILToTensor"
        " -> ToDtype(scale=True) -> Normalize(mean=[0.5191, 0.5306, 0.4877], std=[0.2316, 0.2304, 0.2588])"
    )
    assert repr(classification_transform(512, NEUTRAL, simple_crop=True)).startswith(
        "ResizeToCover(size=[512, 512], BICUBIC) -> CenterCrop((512, 512))"
    )
    assert inference_preset is classification_transform


def _gradient_image(width: int = 300, height: int = 200) -> Image.Image:
    yy, xx = np.mgrid[0:height, 0:width]
    arr = np.stack([xx % 256, yy % 256, (xx * yy) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(arr)


def test_center_crop_0875_resizes_to_256_then_crops_224() -> None:
    img = _gradient_image()
    transform = classification_transform((224, 224), NEUTRAL, center_crop=0.875)
    assert repr(transform).startswith("Resize(size=[256, 256]")
    manual = np.asarray(img.resize((256, 256), Image.Resampling.BICUBIC))[16:240, 16:240]
    assert torch.equal(_as_uint8(transform(img)), torch.from_numpy(manual.copy()).permute(2, 0, 1))


def test_normalisation() -> None:
    img = _gradient_image()
    stats = get_rgb_stats("birder")
    plain = classification_transform(64, NEUTRAL)(img)
    normed = classification_transform(64, stats)(img)
    mean = torch.tensor(stats["mean"]).view(3, 1, 1)
    std = torch.tensor(stats["std"]).view(3, 1, 1)
    torch.testing.assert_close(normed, (plain - mean) / std)


def test_reverse_transform_round_trip() -> None:
    img = _gradient_image()
    stats = get_rgb_stats("clip")
    x = classification_transform(96, stats)(img)
    expected = _as_uint8(classification_transform(96, NEUTRAL)(img))
    reverse = reverse_transform(stats)
    assert torch.equal(reverse(x), expected)
    assert reverse.to_pil(x).size == (96, 96)


def test_tensor_input_close_to_pil() -> None:
    img = _gradient_image()
    tensor = torch.from_numpy(np.array(img)).permute(2, 0, 1)
    for kwargs in ({}, {"center_crop": 0.875}, {"simple_crop": True}):
        transform = classification_transform((112, 96), NEUTRAL, **kwargs)
        from_tensor, from_pil = transform(tensor), transform(img)
        assert from_tensor.dtype == torch.float32
        assert from_tensor.shape == from_pil.shape == (3, 112, 96)
        diff = (_as_uint8(from_tensor).int() - _as_uint8(from_pil).int()).abs()
        assert diff.max() <= 3
        assert diff.float().mean() < 0.5


def test_tensor_input_shapes() -> None:
    transform = classification_transform(32, NEUTRAL)
    gray = torch.randint(0, 256, (1, 40, 50), dtype=torch.uint8)
    assert torch.equal(transform(gray)[0], transform(gray)[2])
    assert transform(torch.randint(0, 256, (2, 3, 40, 50), dtype=torch.uint8)).shape == (2, 3, 32, 32)
    with pytest.raises(InputShapeError):
        transform(torch.zeros(4, 40, 50, dtype=torch.uint8))
    with pytest.raises(TypeError):
        transform(np.zeros((40, 50, 3), dtype=np.uint8))


def test_non_rgb_pil_input_is_converted() -> None:
    gray = _gradient_image().convert("L")
    transform = classification_transform(48, NEUTRAL)
    assert torch.equal(transform(gray), transform(gray.convert("RGB")))


def test_cover_size_rule() -> None:
    assert cover_size((640, 1024), (512, 512)) == (512, 819)
    assert cover_size((1024, 640), (512, 512)) == (819, 512)
    assert cover_size((100, 100), (50, 80)) == (80, 80)
    assert cover_size((300, 200), (300, 200)) == (300, 200)


def test_center_crop_rounding_and_padding() -> None:
    t = torch.arange(10 * 7, dtype=torch.uint8).view(1, 10, 7)
    # (10 - 7) / 2 = 1.5 rounds half to even: top = 2; (7 - 4) / 2 = 1.5: left = 2
    assert torch.equal(center_crop(t, (7, 4)), t[:, 2:9, 2:6])
    padded = center_crop(t, (10 + 39, 7 + 2))  # 39 rows of padding: 19 above, 20 below; 1 column each side
    assert padded.shape == (1, 49, 9)
    assert torch.equal(padded[:, 19:29, 1:8], t)
    assert padded.sum() == t.sum()
    img = Image.fromarray(t[0].numpy())
    assert np.array_equal(np.asarray(center_crop(img, (49, 9))), padded[0].numpy())
    mixed = center_crop(t, (12, 3))  # pad rows, crop columns
    assert torch.equal(mixed[:, 1:11], t[:, :, 2:5])


def test_center_crop_larger_than_resize_pads_black() -> None:
    transform = classification_transform(40, NEUTRAL, center_crop=1.25)  # resize to 32, crop 40
    out = transform(Image.new("RGB", (60, 50), (255, 255, 255)))
    assert out.shape == (3, 40, 40)
    assert out[:, :4].abs().sum() == 0 and out[:, 36:].abs().sum() == 0
    assert torch.all(out[:, 4:36, 4:36] == 1.0)


def test_bad_arguments() -> None:
    with pytest.raises(TransformError):
        classification_transform((224, 224, 3), NEUTRAL)
    with pytest.raises(TransformError):
        classification_transform(224, NEUTRAL, center_crop=0)
