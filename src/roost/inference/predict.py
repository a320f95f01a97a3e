"""Batched model outputs for decoded batches: probabilities, logits and embeddings as NumPy arrays."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from typing import Literal

import numpy as np
import torch
from torch import nn

from roost.data.datasets import Batch

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
Output = Literal["probs", "logits", "embedding"]


def autocast(device: torch.device, dtype: str):
    """Autocast for bf16/fp16 on the model's device; nothing for fp32."""
    if dtype == "fp32":
        return nullcontext()
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPES)}")
    return torch.autocast(device.type, dtype=DTYPES[dtype])


def run_model(
    net: nn.Module, batches: Iterable[Batch], *, dtype: str = "fp32", outputs: tuple[Output, ...] = ("probs",)
) -> Iterator[tuple[Batch, dict[str, np.ndarray]]]:
    """Yield each batch with the requested outputs (float32 arrays, one row per decoded image)."""
    device = next(net.parameters()).device
    for batch in batches:
        if batch.images is None:
            yield batch, {}
            continue
        x = batch.images.to(device, non_blocking=True)
        with torch.inference_mode(), autocast(device, dtype):
            embedding = net.embedding(x)
            logits = net.classify(embedding) if {"probs", "logits"} & set(outputs) else None
        result = {
            "embedding": embedding,
            "logits": logits,
            "probs": logits.float().softmax(dim=1) if logits is not None else None,
        }
        yield batch, {k: result[k].float().cpu().numpy() for k in outputs}
