"""``roost predict``: the top-k classes of each image, with their probabilities.

Report columns: ``path, label_1, prob_1, …, label_k, prob_k, error`` (k is ``topk``, at most the number
of classes). Ties keep the class order.

With ``xmp`` each photo's top-k labels are added as ``dc:subject`` keywords to its XMP sidecar (see
``roost.files.xmp``; other fields kept, no keyword twice). Adding is idempotent, so a run killed at any
point and resumed never doubles a keyword; a resumed run also tags the photos an earlier run (without
``xmp``) reported. A sidecar that cannot be merged turns its row into an error row.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa

from roost.errors import JobModelError, JobOptionError, XmpError
from roost.files.atomic import atomic_write
from roost.files.xmp import Naming, check_naming, merge_sidecar, read_keywords, read_sidecar, sidecar_path
from roost.jobs.base import Job, ModelFacts, OnEvent, Row, RunOptions, Summary, ignore
from roost.jobs.engine import OnRows, execute
from roost.jobs.inputs import Item

if TYPE_CHECKING:
    from roost.jobs.ray import RayOptions


@dataclass
class PredictJob(Job):
    topk: int = 5
    name: str = "predict"
    output = "probs"
    class_names: list[str] = field(default_factory=list)
    xmp: Naming | None = None  # add the labels to each photo's sidecar, named this way

    def __post_init__(self) -> None:
        if isinstance(self.topk, bool) or not isinstance(self.topk, int) or self.topk < 1:
            raise JobOptionError(f"topk must be a whole number >= 1, got {self.topk!r}")
        if self.xmp is not None:
            self.xmp = check_naming(self.xmp)

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

    def state_columns(self) -> Sequence[str]:
        return self.schema.names

    def resume(self, row: Row) -> Literal["done", "rerun", "effect"]:
        """A reported photo whose sidecar lacks its labels (``xmp`` asked now) is tagged without computing."""
        if self.xmp is None or row.get("error"):
            return "done"
        try:
            tagged = set(_labels(row)) <= set(read_keywords(read_sidecar(self._sidecar(row))))
        except (XmpError, OSError):
            tagged = False  # tagging again reports why in the row
        return "done" if tagged else "effect"

    def after_batch(self, rows: list[Row], items: Sequence[Item]) -> None:
        for row in rows:
            if self.xmp is not None and not row.get("error"):
                self._tag(row)

    def _sidecar(self, row: Row) -> os.PathLike[str]:
        assert self.xmp is not None
        return sidecar_path(row["path"], self.xmp)

    def _tag(self, row: Row) -> None:
        path = self._sidecar(row)
        try:
            existing = read_sidecar(path)
            new = merge_sidecar(existing, keywords=_labels(row))
            if new != existing:
                atomic_write(Path(path), new, mode_from=Path(path) if existing is not None else None)
        except (XmpError, OSError) as err:
            row["error"] = f"xmp sidecar {path}: {type(err).__name__}: {err}"


def _labels(row: Row) -> list[str]:
    return [row[k] for k in sorted((k for k in row if k.startswith("label_")), key=lambda k: int(k[6:])) if row[k]]


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
    xmp: Naming | str | None = None,
    options: RunOptions | None = None,
    ray: RayOptions | None = None,
    on_event: OnEvent = ignore,
    on_rows: OnRows | None = None,
) -> Summary:
    """Classify each image; one row per input appended to ``report`` (and passed to ``on_rows``).

    ``xmp``: add the labels as keywords to each photo's sidecar, named ``append`` or ``replace`` (see
    ``roost.files.xmp.Naming``).
    """
    job = PredictJob(topk=topk, xmp=check_naming(xmp) if xmp is not None else None)
    return execute(job, inputs, model=model, report=report, options=options or RunOptions(), ray=ray,
                   on_event=on_event, on_rows=on_rows)  # fmt: skip
