"""Pretrained weights: the manifest registry, downloads, the checkpoint codec and the loaders."""

from roost.weights.checkpoint import (
    Checkpoint,
    CheckpointFormat,
    ModelInfo,
    get_channels_from_signature,
    get_signature,
    get_size_from_signature,
    read_checkpoint,
    write_checkpoint,
)
from roost.weights.load import load_model, load_pretrained_model, save_model
from roost.weights.manifest import PretrainedEntry, list_pretrained_models, register_weights

__all__ = [
    "Checkpoint",
    "CheckpointFormat",
    "ModelInfo",
    "PretrainedEntry",
    "get_channels_from_signature",
    "get_signature",
    "get_size_from_signature",
    "list_pretrained_models",
    "load_model",
    "load_pretrained_model",
    "read_checkpoint",
    "register_weights",
    "save_model",
    "write_checkpoint",
]
