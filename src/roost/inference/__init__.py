"""Inference: classification of batches and single images."""

from roost.inference.classification import infer_batch, infer_image

__all__ = ["infer_batch", "infer_image"]
