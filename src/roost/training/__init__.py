"""Training recipes (training.md): supervised fine-tuning / linear probing, RotNet, CAPI pretraining.

Each recipe is a config dataclass plus one function; they share the loop in ``engine.py``::

    from roost.training.capi import CapiConfig, train_capi
    train_capi(CapiConfig(network="rope_vit_reg4_b14", data_path=["images/"], epochs=400, warmup_epochs=40))
"""
