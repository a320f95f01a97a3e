"""roost: RoPE Vision Transformers (the Birder model family) and the image-curation jobs they serve.

``import roost as birder`` runs the Birder model-card snippets unchanged.
"""

from roost.models.registry import create_model, list_models

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "create_model",
    "list_models",
]
