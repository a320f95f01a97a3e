"""Held-out orientation accuracy of a RotNet checkpoint: every image at all four rotations.

Each image goes through the checkpoint's inference transform, then is rotated counter-clockwise by
k·90° (k = 0..3, the class index) exactly as training rotates its samples.

    python examples/rotnet_experiment/eval_rot.py /tmp/rotexp/rot_capi_ap/rope_vit_reg4_b14_ap_rotnet_60.pt \
        /tmp/rotexp/imgs/heldout
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from roost import classification_transform, load_model
from roost.data.decode import load_image

SUFFIXES = {".jpg", ".jpeg", ".png"}


@torch.no_grad()
def rotation_confusion(checkpoint: str, folder: str, batch_size: int = 64) -> torch.Tensor:
    """4×4 counts: rows the true rotation index, columns the predicted one."""
    net, info = load_model(None, checkpoint, inference=True)
    transform = classification_transform(net.size, info.rgb_stats)
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in SUFFIXES)
    x = torch.stack([transform(load_image(p)) for p in paths])
    confusion = torch.zeros(4, 4, dtype=torch.long)
    for k in range(4):
        for chunk in torch.rot90(x, k, dims=(-2, -1)).split(batch_size):
            pred = net(chunk).argmax(-1)
            confusion[k] += torch.bincount(pred, minlength=4)
    return confusion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", nargs="+")
    parser.add_argument("heldout")
    args = parser.parse_args()
    for checkpoint in args.checkpoint:
        confusion = rotation_confusion(checkpoint, args.heldout)
        correct, total = int(confusion.diag().sum()), int(confusion.sum())
        print(f"{checkpoint}: {correct}/{total} = {correct / total:.3f}; per angle {confusion.diag().tolist()}")


if __name__ == "__main__":
    main()
