"""Inference transforms without torchvision: RGB presets, resize, centre crop, normalise (spec api.md §1.4, §4).

``classification_transform`` reproduces the reference ``inference_preset`` pipeline step by step:

    Resize (or ResizeToCover) -> CenterCrop -> PILToTensor -> ToDtype(scale=True) -> Normalize

On a PIL image the resize is Pillow's own ``Image.resize(..., BICUBIC)``, exactly what the reference's
torchvision call runs, so the output is bit-identical to it. On a uint8 tensor it is
``torch.nn.functional.interpolate(mode="bicubic", antialias=True)``; the numbers then differ slightly
from the PIL path (by a level or so per pixel), in the reference too. PIL images of any mode are first
converted to RGB with ``roost.data.decode.to_rgb``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from roost.data.decode import to_rgb
from roost.errors import InputShapeError, TransformError

RGBMode = Literal["birder", "imagenet", "clip", "neutral", "centered"]
Triple = tuple[float, float, float]
ImageLike = Image.Image | torch.Tensor


class RGBType(TypedDict):
    mean: Triple
    std: Triple


RGB_PRESETS: dict[str, RGBType] = {
    "birder": {"mean": (0.5191, 0.5306, 0.4877), "std": (0.2316, 0.2304, 0.2588)},
    "imagenet": {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
    "clip": {"mean": (0.48145466, 0.4578275, 0.40821073), "std": (0.26862954, 0.26130258, 0.27577711)},
    "neutral": {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)},
    "centered": {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
}


def get_rgb_stats(
    mode: RGBMode | str, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> RGBType:
    """The mean/std of a named preset; ``mean`` or ``std``, when given, replace the preset's."""
    if mode not in RGB_PRESETS:
        raise TransformError(f"Unknown RGB mode {mode!r}; expected one of {', '.join(RGB_PRESETS)}")
    preset = RGB_PRESETS[mode]
    return {
        "mean": _triple(mean, "mean") if mean is not None else preset["mean"],
        "std": _triple(std, "std") if std is not None else preset["std"],
    }


def _triple(values: Sequence[float], what: str) -> Triple:
    if len(values) != 3:
        raise TransformError(f"RGB {what} needs 3 values, got {len(values)}")
    return (float(values[0]), float(values[1]), float(values[2]))


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or any(int(v) < 1 for v in pair):
        raise TransformError(f"size must be a positive int or an (height, width) pair, got {size!r}")
    return (int(pair[0]), int(pair[1]))


# ---------------------------------------------------------------------------------------------------------
# Geometry on PIL images and tensors


def image_size(img: ImageLike) -> tuple[int, int]:
    """(height, width) of a PIL image or a (..., C, H, W) tensor."""
    if isinstance(img, Image.Image):
        return (img.height, img.width)
    return (int(img.shape[-2]), int(img.shape[-1]))


def resize(img: ImageLike, size: tuple[int, int]) -> ImageLike:
    """Bicubic, antialiased resize to exactly (height, width)."""
    if image_size(img) == size:
        return img
    if isinstance(img, Image.Image):
        return img.resize((size[1], size[0]), Image.Resampling.BICUBIC)
    return _resize_tensor(img, size)


def _resize_tensor(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a (..., C, H, W) tensor. uint8 stays uint8 (rounded, clamped); other dtypes keep their dtype."""
    lead = t.shape[:-3]
    x = t.reshape(-1, *t.shape[-3:])
    native = x.dtype in (torch.float32, torch.float64) or (x.dtype == torch.uint8 and x.device.type == "cpu")
    y = _bicubic(x if native else x.float(), size)
    if not native:
        y = y.clamp(0, 255).round() if t.dtype == torch.uint8 else y
        y = y.to(t.dtype)
    return y.reshape(*lead, *y.shape[-3:])


def _bicubic(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=list(size), mode="bicubic", align_corners=False, antialias=True)


def center_crop(img: ImageLike, size: tuple[int, int]) -> ImageLike:
    """Crop the centre (top = round((h - th) / 2), likewise left); a crop larger than the image pads with 0."""
    height, width = image_size(img)
    th, tw = size
    if th > height or tw > width:
        img = _pad(img, _center_padding(th, tw, height, width))
        height, width = image_size(img)
    top, left = round((height - th) / 2.0), round((width - tw) / 2.0)  # round half to even, as torchvision
    if (top, left, height, width) == (0, 0, th, tw):
        return img
    if isinstance(img, Image.Image):
        return img.crop((left, top, left + tw, top + th))
    return img[..., top : top + th, left : left + tw]


def _center_padding(th: int, tw: int, height: int, width: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) zero padding that centres the image in the crop; the odd pixel goes right/bottom."""
    dw, dh = max(tw - width, 0), max(th - height, 0)
    return (dw // 2, dh // 2, (dw + 1) // 2, (dh + 1) // 2)


def _pad(img: ImageLike, ltrb: tuple[int, int, int, int]) -> ImageLike:
    left, top, right, bottom = ltrb
    if isinstance(img, Image.Image):
        canvas = Image.new(img.mode, (img.width + left + right, img.height + top + bottom), 0)
        canvas.paste(img, (left, top))
        return canvas
    return F.pad(img, (left, right, top, bottom), value=0)


def cover_size(image_hw: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """The smallest aspect-preserving size covering ``target`` (ResizeToCover, spec §4.1)."""
    (ih, iw), (th, tw) = image_hw, target
    if iw * th >= ih * tw:
        return (th, max(tw, th * iw // ih))
    return (max(th, tw * ih // iw), tw)


# ---------------------------------------------------------------------------------------------------------
# Pipeline steps


class Resize:
    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size

    def __call__(self, img: ImageLike) -> ImageLike:
        return resize(img, self.size)

    def __repr__(self) -> str:
        return f"Resize(size={list(self.size)}, BICUBIC, antialias=True)"


class ResizeToCover:
    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size

    def __call__(self, img: ImageLike) -> ImageLike:
        return resize(img, cover_size(image_size(img), self.size))

    def __repr__(self) -> str:
        return f"ResizeToCover(size={list(self.size)}, BICUBIC)"


class CenterCrop:
    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size

    def __call__(self, img: ImageLike) -> ImageLike:
        return center_crop(img, self.size)

    def __repr__(self) -> str:
        return f"CenterCrop({self.size})"


class PILToTensor:
    """PIL image -> uint8 (C, H, W) tensor; tensors pass through unchanged."""

    def __call__(self, img: ImageLike) -> torch.Tensor:
        if isinstance(img, torch.Tensor):
            return img
        return torch.from_numpy(_to_array(img)).permute(2, 0, 1).contiguous()

    def __repr__(self) -> str:
        return "PILToTensor"


def _to_array(img: Image.Image) -> np.ndarray:
    """(H, W, C) uint8 array, writable (a copy), so torch can share it."""
    arr = np.array(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


class ToDtype:
    """uint8 -> float32 in [0, 1]; float tensors are only cast (as torchvision's ``ToDtype(scale=True)``)."""

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        if t.dtype == torch.uint8:
            return t.to(torch.float32).mul_(1.0 / 255)
        return t.to(torch.float32)

    def __repr__(self) -> str:
        return "ToDtype(scale=True)"


class Normalize:
    def __init__(self, mean: Triple, std: Triple) -> None:
        self.mean, self.std = mean, std

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=t.dtype, device=t.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=t.dtype, device=t.device).view(-1, 1, 1)
        return t.sub(mean).div_(std)

    def __repr__(self) -> str:
        return f"Normalize(mean={list(self.mean)}, std={list(self.std)})"


# ---------------------------------------------------------------------------------------------------------
# Presets


class ClassificationTransform:
    """A fixed chain of steps; call it with a PIL image or a uint8 (C, H, W) tensor to get float32 (3, H, W).

    The chain splits where the pixels stop being uint8: :meth:`pixels` (resize, crop, to a uint8 tensor)
    and :meth:`finish` (scale and normalise, on one image or a batch). ``finish(pixels(img))`` is
    ``transform(img)`` bit for bit; the batch jobs decode with ``pixels`` in worker processes and ship a
    quarter of the bytes, finishing the whole batch at once where the model runs.
    """

    def __init__(self, steps: Sequence[Callable[..., ImageLike]]) -> None:
        self.steps = tuple(steps)
        self._split = next((i for i, s in enumerate(self.steps) if isinstance(s, ToDtype)), len(self.steps))

    def __call__(self, img: ImageLike) -> torch.Tensor:
        return self.finish(self.pixels(img))

    def pixels(self, img: ImageLike) -> torch.Tensor:
        """The steps up to the uint8 (3, H, W) tensor (the whole chain when it has no ``ToDtype``)."""
        x = _prepare(img)
        for step in self.steps[: self._split]:
            x = step(x)
        assert isinstance(x, torch.Tensor)
        return x

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """The remaining steps, on a (3, H, W) tensor or a (N, 3, H, W) batch of them."""
        for step in self.steps[self._split :]:
            x = step(x)  # type: ignore[assignment]  # the steps after ToDtype map tensors to tensors
        return x

    def __repr__(self) -> str:
        return " -> ".join(repr(step) for step in self.steps)


def _prepare(img: ImageLike) -> ImageLike:
    if isinstance(img, Image.Image):
        return to_rgb(img)
    if not isinstance(img, torch.Tensor):
        raise TypeError(f"Expected a PIL image or a tensor, got {type(img).__name__}")
    if img.ndim < 3 or img.shape[-3] not in (1, 3):
        raise InputShapeError(f"Expected a (C, H, W) tensor with 1 or 3 channels, got shape {tuple(img.shape)}")
    return img.expand(*img.shape[:-3], 3, *img.shape[-2:]) if img.shape[-3] == 1 else img


def classification_transform(
    size: int | Sequence[int], rgb_stats: RGBType, center_crop: float = 1.0, simple_crop: bool = False
) -> ClassificationTransform:
    """The reference inference preset (spec §4.1).

    The image is resized to ``size / center_crop`` (each side truncated to int), stretched to that exact
    (height, width) or, with ``simple_crop``, aspect-preserving to cover it; then the centre ``size`` is
    cropped, scaled to [0, 1] and normalised with ``rgb_stats``.
    """
    size = _pair(size)
    if not center_crop > 0:
        raise TransformError(f"center_crop must be positive, got {center_crop}")
    base = (int(size[0] / center_crop), int(size[1] / center_crop))
    return ClassificationTransform(
        [
            ResizeToCover(base) if simple_crop else Resize(base),
            CenterCrop(size),
            PILToTensor(),
            ToDtype(),
            Normalize(rgb_stats["mean"], rgb_stats["std"]),
        ]
    )


inference_preset = classification_transform


class ReverseTransform:
    """Undo ``Normalize`` and ``ToDtype``: a normalised float (..., 3, H, W) tensor -> uint8 tensor.

    Values are clamped to [0, 1] before scaling by 255.999 and truncating (torchvision's float -> uint8
    rule), so out-of-range values saturate instead of wrapping.
    """

    def __init__(self, rgb_stats: RGBType) -> None:
        self.mean, self.std = rgb_stats["mean"], rgb_stats["std"]

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=torch.float32, device=t.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=t.device).view(-1, 1, 1)
        x = (t.float() * std + mean).clamp_(0.0, 1.0)
        return x.mul_(255.999).to(torch.uint8)

    def to_pil(self, t: torch.Tensor) -> Image.Image:
        """The same, as an RGB PIL image (one (3, H, W) tensor)."""
        return Image.fromarray(self(t).permute(1, 2, 0).cpu().numpy())

    def __repr__(self) -> str:
        return f"ReverseTransform(mean={list(self.mean)}, std={list(self.std)})"


def reverse_transform(rgb_stats: RGBType) -> ReverseTransform:
    """The inverse of the transform's normalisation (spec §4.2, ``reverse_preset``)."""
    return ReverseTransform(rgb_stats)


reverse_preset = reverse_transform
