"""``roost predict``: the top-k classes of each image, with their probabilities.

Report columns: ``path, label_1, prob_1, …, label_k, prob_k, error`` (k is ``topk``, at most the number
of classes). Ties keep the class order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from roost.errors import JobModelError, JobOptionError
from roost.jobs.base import Job, ModelFacts, OnEvent, Row, RunOptions, Summary, ignore
from roost.jobs.engine import OnRows, execute

if TYPE_CHECKING:
    from roost.jobs.ray import RayOptions


@dataclass
class PredictJob(Job):
    topk: int = 5
    name: str = "predict"
    output = "probs"
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.topk, bool) or not isinstance(self.topk, int) or self.topk < 1:
            raise JobOptionError(f"topk must be a whole number >= 1, got {self.topk!r}")

    def bind(self, model: ModelFacts) -> pa.Schema:
        if not model.class_names:
            raise JobModelError(f"{model.name} has no classifier (0 classes); embed its images instead")
        self.class_names = model.class_names
        self.schema = predict_schema(min(self.topk, len(model.class_names)))
        return self.schema

    def values(self, output: np.ndarray) -> Row:
        k = (len(self.schema.names) - 2) // 2
        row: Row = {}
        for j, c in enumerate(np.argsort(-output, kind="stable")[:k], start=1):
            row[f"label_{j}"], row[f"prob_{j}"] = self.class_names[c], float(output[c])
        return row


def predict_schema(k: int) -> pa.Schema:
    """Columns of the predict report: path, label_1, prob_1, …, label_k, prob_k, error."""
    columns = [("path", pa.string())]
    for j in range(1, k + 1):
        columns += [(f"label_{j}", pa.string()), (f"prob_{j}", pa.float32())]
    return pa.schema([*columns, ("error", pa.string())])


def predict_files(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    model: str | os.PathLike[str],
    report: str | os.PathLike[str] | None = None,
    topk: int = 5,
    options: RunOptions | None = None,
    ray: RayOptions | None = None,
    on_event: OnEvent = ignore,
    on_rows: OnRows | None = None,
) -> Summary:
    """Classify each image; one row per input appended to ``report`` (and passed to ``on_rows``)."""
    job = PredictJob(topk=topk)
    return execute(job, inputs, model=model, report=report, options=options or RunOptions(), ray=ray,
                   on_event=on_event, on_rows=on_rows)  # fmt: skip
