"""Classification inference on a batch or one image (spec api.md §1.7, §5).

Same signatures and return types as the reference: ``(out, embedding)`` as float32 numpy arrays,
``out`` [B, num_classes] softmax probabilities (or logits with ``return_logits``), ``embedding``
[B, D] or None. Differences, all on the side of robustness:

* ``infer_image`` takes a path (str or ``Path``, decoded by ``load_image``: RGB, EXIF orientation
  applied) or a PIL image of any mode (converted to RGB), where the reference opens a path without
  converting it and fails on RGBA.
* The input is cast to the dtype of the net's first parameter (a bf16 net gets bf16 input) and, unless
  ``device`` is given, put on that parameter's device. ``device``, as in the reference, moves the input
  only, never the net.
* Softmax and the TTA average are computed in float32 whatever the net's dtype.
* ``infer_image`` runs under ``torch.inference_mode()``; ``infer_batch`` leaves that to its caller, as the
  reference does. Neither switches the net to eval mode.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from roost.data.decode import load_image, to_rgb
from roost.data.transforms import ImageLike, center_crop, resize

FloatArray = npt.NDArray[np.float32]
InferResult = tuple[FloatArray, FloatArray | None]
TTA_CROP_RATIO = 0.8


def infer_batch(
    net: nn.Module,
    inputs: torch.Tensor,
    return_embedding: bool = False,
    tta: bool = False,
    return_logits: bool = False,
    **kwargs: Any,
) -> InferResult:
    """Run ``net`` on a (B, C, H, W) batch already on its device and dtype.

    With ``return_embedding`` the output goes through ``net.embedding`` then ``net.classify`` and TTA is
    ignored (as in the reference). With ``tta`` the output is the mean over five crops of 0.8 x the
    input (four corners, then the centre), each resized back to (H, W) with antialiased bicubic.
    """
    if return_embedding:
        embedding = net.embedding(inputs, **kwargs)  # type: ignore[operator]  # a RoPE-ViT
        out = _scores(net.classify(embedding), return_logits)  # type: ignore[operator]
        return _to_numpy(out), _to_numpy(embedding)
    if tta:
        crops = five_crop_resized(inputs)
        out = torch.stack([_scores(net(crop, **kwargs), return_logits) for crop in crops]).mean(dim=0)
        return _to_numpy(out), None
    return _to_numpy(_scores(net(inputs, **kwargs), return_logits)), None


def _scores(logits: torch.Tensor, return_logits: bool) -> torch.Tensor:
    logits = logits.float()
    return logits if return_logits else F.softmax(logits, dim=1)


def _to_numpy(t: torch.Tensor) -> FloatArray:
    return t.detach().cpu().float().numpy()


def five_crop_resized(inputs: torch.Tensor) -> list[torch.Tensor]:
    """Corner crops (top-left, top-right, bottom-left, bottom-right) and centre crop of 0.8 x (H, W), resized back."""
    height, width = inputs.shape[-2:]
    ch, cw = int(TTA_CROP_RATIO * height), int(TTA_CROP_RATIO * width)
    corners = [(0, 0), (0, width - cw), (height - ch, 0), (height - ch, width - cw)]
    crops = [inputs[..., top : top + ch, left : left + cw] for top, left in corners]
    crops.append(_tensor(center_crop(inputs, (ch, cw))))
    return [_tensor(resize(crop, (height, width))) for crop in crops]


def _tensor(image: ImageLike) -> torch.Tensor:
    assert isinstance(image, torch.Tensor)  # the transforms return what they are given
    return image


def infer_image(
    net: nn.Module,
    sample: str | os.PathLike[str] | Image.Image,
    transform: Any,
    return_embedding: bool = False,
    tta: bool = False,
    return_logits: bool = False,
    device: torch.device | str | None = None,
    **kwargs: Any,
) -> InferResult:
    """Classify one image: a path or a PIL image, run through ``transform`` (a callable returning (3, H, W)).

    Returns ``(out [1, num_classes], embedding [1, D] or None)``; see ``infer_batch``.
    """
    img = _as_rgb_image(sample)
    target_device, dtype = _input_placement(net, device)
    with torch.inference_mode():
        x = transform(img).unsqueeze(0).to(device=target_device, dtype=dtype)
        return infer_batch(net, x, return_embedding, tta, return_logits, **kwargs)


def _as_rgb_image(sample: object) -> Image.Image:
    if isinstance(sample, str | os.PathLike):
        return load_image(sample)
    if isinstance(sample, Image.Image):
        return to_rgb(sample)
    raise TypeError("Unknown sample type")


def _input_placement(net: nn.Module, device: torch.device | str | None) -> tuple[torch.device, torch.dtype]:
    """The device (``device`` if given, else the net's) and floating dtype (the net's) for the input."""
    param = next(net.parameters(), None)
    dtype = param.dtype if param is not None and param.dtype.is_floating_point else torch.float32
    if device is not None:
        return torch.device(device), dtype
    return (param.device if param is not None else torch.device("cpu")), dtype
