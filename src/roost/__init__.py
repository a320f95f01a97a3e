"""roost: RoPE Vision Transformers (the Birder model family) and the image-curation jobs they serve.

``import roost as birder`` runs the Birder model-card snippets unchanged.
"""

from roost.data.transforms import classification_transform, get_rgb_stats
from roost.models.registry import create_model, list_models
from roost.weights.checkpoint import ModelInfo, get_channels_from_signature, get_size_from_signature
from roost.weights.load import load_model, load_pretrained_model, save_model
from roost.weights.manifest import list_pretrained_models, register_weights

__version__ = "0.1.0"

__all__ = [
    "ModelInfo",
    "__version__",
    "classification_transform",
    "create_model",
    "get_channels_from_signature",
    "get_rgb_stats",
    "get_size_from_signature",
    "list_models",
    "list_pretrained_models",
    "load_model",
    "load_pretrained_model",
    "register_weights",
    "save_model",
]
