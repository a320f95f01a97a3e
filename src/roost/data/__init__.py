"""Image decoding and transforms: Pillow + numpy + torch, no torchvision."""

from roost.data.decode import load_image, to_rgb
from roost.data.transforms import (
    RGB_PRESETS,
    ClassificationTransform,
    RGBMode,
    RGBType,
    classification_transform,
    get_rgb_stats,
    inference_preset,
    reverse_transform,
)

__all__ = [
    "RGB_PRESETS",
    "ClassificationTransform",
    "RGBMode",
    "RGBType",
    "classification_transform",
    "get_rgb_stats",
    "inference_preset",
    "load_image",
    "reverse_transform",
    "to_rgb",
]
