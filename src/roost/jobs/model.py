"""The model of a batch job: loaded once, with its transform, on the chosen device, precision and backend."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from roost.data.datasets import Batch
from roost.data.transforms import classification_transform
from roost.errors import JobModelError
from roost.jobs.base import Backend, Downloading, Dtype, ModelFacts, Note, OnEvent, Output, RunOptions, ignore
from roost.weights.checkpoint import ModelInfo, get_size_from_signature
from roost.weights.load import load_pretrained_model

_AUTOCAST = {Dtype.BF16: torch.bfloat16, Dtype.FP16: torch.float16}
_EXPORTED = {".pt2": "a torch.export program", ".pts": "a TorchScript program", ".onnx": "an ONNX graph"}


@dataclass
class JobModel:
    """A loaded network with what the jobs need around it."""

    net: nn.Module
    facts: ModelFacts
    transform: Callable
    size: tuple[int, int]  # (height, width)
    options: RunOptions

    @classmethod
    def load(cls, model: str | os.PathLike[str], options: RunOptions, on_event: OnEvent = ignore) -> JobModel:
        check_model_file(model)
        device = options.torch_device()
        net, info = load_pretrained_model(
            model, inference=True, device=device, network=options.network,
            on_progress=lambda p: on_event(Downloading(p.name, p.done, p.total)),
        )  # fmt: skip
        size = get_size_from_signature(info.signature)
        if options.backend is not Backend.TORCH:
            net = _ort(net, info, size, model, options, on_event)
        elif options.compile:  # the jobs call embedding() and classify(), not forward()
            net.embedding = torch.compile(net.embedding)
        names = [name for name, _ in sorted(info.class_to_idx.items(), key=lambda kv: kv[1])]
        facts = ModelFacts(os.fspath(model), names, getattr(net, "embedding_size", None))
        transform = classification_transform(size, info.rgb_stats)  # type: ignore[arg-type]  # checked on load
        return cls(net, facts, transform, size, options)

    @property
    def draft(self) -> tuple[int, int] | None:
        """The (width, height) JPEGs may be DCT-decoded down to, or None for full decodes."""
        return (self.size[1], self.size[0]) if self.options.draft else None

    def run(self, batches: Iterable[Batch], output: Output) -> Iterator[tuple[Batch, np.ndarray | None]]:
        """Each batch with the job's output for its decoded images (float32, one row each)."""
        device = next(self.net.parameters()).device
        autocast = _AUTOCAST.get(self.options.dtype)
        for batch in batches:
            if batch.images is None:
                yield batch, None
                continue
            x = batch.images.to(device, non_blocking=True)
            with torch.inference_mode(), torch.autocast(device.type, autocast, enabled=autocast is not None):
                result = self.net.embedding(x)  # type: ignore[operator]  # RoPEViT or OrtBackend
                if output == "probs":
                    result = self.net.classify(result).float().softmax(dim=1)  # type: ignore[operator]
            yield batch, result.float().cpu().numpy()


def check_model_file(model: str | os.PathLike[str]) -> None:
    """Refuse exported programs: the jobs need the checkpoint's embedding and classifier separately."""
    suffix = Path(os.fspath(model)).suffix.lower()
    if suffix in _EXPORTED:
        raise JobModelError(
            f"{model} is {_EXPORTED[suffix]}; batch jobs run .pt or .safetensors checkpoints (the file it was "
            "exported from). For ONNX Runtime speed, pass that checkpoint with backend 'ort'"
        )


def _ort(
    net: Any, info: ModelInfo, size: tuple[int, int], model: str | os.PathLike[str], options: RunOptions,
    on_event: OnEvent,
) -> nn.Module:
    from roost.inference.ort import ort_backend_for
    from roost.settings import Settings

    backend = ort_backend_for(
        net, info, size, quantize=options.backend is Backend.ORT_INT8, source=model, settings=Settings.from_env()
    )
    verb = "using the cached ONNX export" if backend.from_cache else "exported the model to ONNX, cached at"
    on_event(Note(f"{verb} {backend.session.path}"))
    return backend
