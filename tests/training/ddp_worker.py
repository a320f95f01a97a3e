"""Run by test_ddp under torchrun (and once without): a tiny classify and CAPI run on the given folders."""

from __future__ import annotations

import sys

import torch

from roost.training.capi import CapiConfig, train_capi
from roost.training.classification import ClassifyConfig, train_classifier
from roost.training.state import teardown_distributed

TINY = {"num_layers": 2, "hidden_dim": 64, "num_heads": 2, "mlp_dim": 128, "drop_path_rate": 0.0}


def main(train: str, out: str, per_process_batch: int) -> None:
    torch.set_num_threads(1)
    common = dict(model_config=TINY, batch_size=per_process_batch, epochs=2, lr=3e-3, lr_update="step",
                  warmup_epochs=1, seed=1)
    train_classifier(ClassifyConfig(
        network="rope_vit_reg4_b14", size=28, data_path=[train], val_path=[train], out_dir=f"{out}/cls", aug_level=2,
        grad_accum=2, clip_grad_norm=1.0, **common,
    ))
    train_capi(CapiConfig(
        network="rope_vit_reg4_b14", size=56, data_path=[train], out_dir=f"{out}/capi", decoder_layers=1,
        decoder_dim=64, decoder_heads=4, num_clusters=32, kept_mask_ratio=0.5, decoder_drop_path=0.0, **common,
    ))
    teardown_distributed()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
