"""``roost review``: a report turned into a self-contained folder to look at, decide on, and export decisions.

The folder holds ``index.html``, ``review.js`` and ``review.css`` (plain HTML/CSS/JS kept in the package:
no network, no server, opens from ``file://``), ``data.js`` (the rows in columnar form, assigned to a global:
``fetch()`` of a JSON file is blocked on ``file://``) and ``thumbs/`` (see ``thumbs.py``). The page shows one
page of rows at a time and loads thumbnails lazily, so a report of 100k rows opens as fast as one of 100.

The page contract: each row of the report is an element with a ``data-path`` attribute holding its path
(and ``data-group`` for dedup), containing its thumbnail ``<img>`` and a ``data-decision`` element that
toggles its decision; the ``#export`` button downloads ``decisions.csv`` (see ``apply.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from roost.errors import ReviewError
from roost.files.atomic import atomic_write
from roost.jobs.orient import ACTION_LOW_CONFIDENCE, ROTATIONS, SHOWN_UPRIGHT
from roost.review.kinds import Kind, Report, Row, read_report
from roost.review.projection import project
from roost.review.thumbs import DEFAULT_PX, Thumb, make_thumbs

MARKER = "roost-review.json"  # says the folder was written by roost review (it is never written elsewhere)
STATIC = ("index.html", "review.js", "review.css", "placeholder.svg")
DATA_VERSION = 1


class Only(StrEnum):
    ALL = "all"
    ROTATED = "rotated"
    UNCERTAIN = "uncertain"


class Sort(StrEnum):
    CONFIDENCE = "confidence"
    PATH = "path"


@dataclass(frozen=True)
class ReviewOptions:
    """What the page shows: which rows (``only``), in which order, thumbnail size, what counts as uncertain."""

    only: Only = Only.ALL
    sort: Sort = Sort.CONFIDENCE
    thumb_px: int = DEFAULT_PX
    uncertain: float = 0.8  # orient confidence, predict top probability or dedup similarity below this
    workers: int = 0  # thumbnail processes
    projection: str = "auto"  # embed: auto (UMAP if installed, else PCA), umap or pca

    def __post_init__(self) -> None:
        for name, enum in (("only", Only), ("sort", Sort)):
            try:
                object.__setattr__(self, name, enum(getattr(self, name)))
            except ValueError:
                choices = ", ".join(m.value for m in enum)
                raise ReviewError(f"{name} must be one of {choices}; got {getattr(self, name)!r}") from None
        if isinstance(self.thumb_px, bool) or not 16 <= self.thumb_px <= 2048:
            raise ReviewError(f"thumb must be from 16 to 2048 pixels, got {self.thumb_px!r}")
        if not 0.0 <= self.uncertain <= 1.0:
            raise ReviewError(f"uncertain must be a number from 0 to 1, got {self.uncertain!r}")
        if self.projection not in ("auto", "umap", "pca"):
            raise ReviewError(f"projection must be auto, umap or pca; got {self.projection!r}")


@dataclass(frozen=True)
class ReviewSummary:
    kind: Kind
    rows: int
    thumbnails: int
    unreadable: int  # rows whose image could not be read now
    index: Path

    def line(self) -> str:
        bad = f", {self.unreadable} images unreadable" if self.unreadable else ""
        return f"review ({self.kind}): {self.rows} rows, {self.thumbnails} thumbnails{bad}; open {self.index}"


def review_report(
    report: str | os.PathLike[str], out_dir: str | os.PathLike[str], options: ReviewOptions | None = None
) -> ReviewSummary:
    """Write the review folder of ``report`` to ``out_dir`` (see the module docstring); what was written."""
    options = options or ReviewOptions()
    out = Path(out_dir)
    check_out_dir(out)
    data = read_report(report)
    rows = select(data, options)
    thumbs = make_thumbs([r["path"] for r in rows], out / "thumbs", options.thumb_px, options.workers)
    payload = build_data(data, rows, thumbs, options)
    write_page(out, payload)
    unreadable = sum(1 for r in rows if thumbs[r["path"]].sha256 is None)
    made = len({t.sha256 for t in thumbs.values() if t.sha256 is not None})
    return ReviewSummary(data.kind, len(rows), made, unreadable, out / "index.html")


def check_out_dir(out: Path) -> None:
    """Refuse an output that is a file, or a folder with files that ``roost review`` did not write."""
    if out.exists() and not out.is_dir():
        raise ReviewError(f"{out} is a file; give a folder for the review")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ReviewError(f"{out} holds files that roost review did not write; give an empty or new folder")


# ------------------------------------------------------------------ rows shown, in order
def select(report: Report, options: ReviewOptions) -> list[Row]:
    """The rows of the page, filtered by ``only`` and sorted (errors last)."""
    kind, rows = report.kind, report.rows
    if options.only is Only.ROTATED and kind is not Kind.ORIENT:
        raise ReviewError(f"only 'rotated' applies to orient reports; this is a {kind} report")
    if options.only is not Only.ALL and kind is Kind.EMBED:
        raise ReviewError(f"only {options.only.value!r} does not apply to embed reports; use all")
    if kind is Kind.DEDUP:
        return _dedup_rows(rows, options)
    score = _score(kind)
    if options.only is Only.ROTATED:
        rows = [r for r in rows if r.get("rotation") not in (None, 0)]
    elif options.only is Only.UNCERTAIN:
        rows = [r for r in rows if score(r) is not None and score(r) < options.uncertain]  # type: ignore[operator]
    if options.sort is Sort.PATH:
        return sorted(rows, key=lambda r: r["path"])
    if kind is Kind.PREDICT:
        return sorted(rows, key=lambda r: (r.get("label_1") is None, r.get("label_1") or "", _low_first(score(r))))
    return sorted(rows, key=lambda r: (score(r) is None, _low_first(score(r)), r["path"]))


def _score(kind: Kind) -> Callable[[Row], float | None]:
    column = {Kind.ORIENT: "confidence", Kind.PREDICT: "prob_1", Kind.DEDUP: "similarity"}.get(kind)
    return lambda row: row.get(column) if column else None


def _low_first(value: float | None) -> float:
    return 2.0 if value is None else float(value)


def _dedup_rows(rows: list[Row], options: ReviewOptions) -> list[Row]:
    """Dedup rows group by group (keeper first); groups least similar first, or by their keeper's path."""
    groups: dict[Any, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.get("group"), []).append(row)
    if options.only is Only.UNCERTAIN:
        groups = {g: m for g, m in groups.items() if any(_below(r, options.uncertain) for r in m)}

    def order(members: list[Row]) -> tuple[Any, ...]:
        lowest = min((_low_first(r.get("similarity")) for r in members if not r["keeper"]), default=2.0)
        return (members[0].get("group") is None, members[0]["path"] if options.sort is Sort.PATH else lowest)

    ordered = [sorted(m, key=lambda r: (not r["keeper"], r["path"])) for m in groups.values()]
    return [row for members in sorted(ordered, key=order) for row in members]


def _below(row: Row, limit: float) -> bool:
    return not row["keeper"] and row.get("similarity") is not None and row["similarity"] < limit


# ------------------------------------------------------------------ the data file
def build_data(report: Report, rows: list[Row], thumbs: dict[str, Thumb], options: ReviewOptions) -> dict[str, Any]:
    """The page's data: report facts and one list per column (``sha256`` None where the image is unreadable)."""
    columns: dict[str, list[Any]] = {
        "path": [r["path"] for r in rows],
        "sha256": [thumbs[r["path"]].sha256 for r in rows],
        "error": [r.get("error") or thumbs[r["path"]].error for r in rows],
    }
    columns |= KIND_COLUMNS[report.kind](rows)
    data: dict[str, Any] = {
        "version": DATA_VERSION, "kind": report.kind.value, "report": report.path.name,
        "id": _review_id(report), "thumbPx": options.thumb_px, "uncertain": options.uncertain, "columns": columns,
    }  # fmt: skip
    if report.kind is Kind.EMBED:
        data["map"] = _map(rows, options)
    return data


def _review_id(report: Report) -> str:
    """Names the page's saved decisions (in the browser): the report's absolute path."""
    return hashlib.sha256(os.fsencode(os.path.abspath(report.path))).hexdigest()[:16]


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def _orient(rows: list[Row]) -> dict[str, list[Any]]:
    def fixed(row: Row) -> bool:  # the file was changed already: its row's rotation no longer applies
        return bool(set(str(row.get("fix") or "").split("+")) & SHOWN_UPRIGHT)

    def decision(row: Row) -> str:
        ok = row.get("rotation") is not None and row.get("action") != ACTION_LOW_CONFIDENCE and not fixed(row)
        return "accept" if ok else "reject"

    columns = {
        "rotation": [r.get("rotation") for r in rows],
        "confidence": [_round(r.get("confidence")) for r in rows],
        "action": [r.get("action") for r in rows],
        "fix": [r.get("fix") for r in rows],
        "fixed": [fixed(r) for r in rows],
        "decision": [decision(r) for r in rows],
    }
    return columns | {f"p{a}": [_round(r.get(f"p{a}"), 3) for r in rows] for a in ROTATIONS}


def _predict(rows: list[Row]) -> dict[str, list[Any]]:
    k = sum(1 for name in (rows[0] if rows else {}) if name.startswith("label_"))
    top = [[[r.get(f"label_{j}"), _round(r.get(f"prob_{j}"), 3)] for j in range(1, k + 1) if r.get(f"label_{j}")]
           for r in rows]  # fmt: skip
    return {
        "label": [r.get("label_1") for r in rows],
        "confidence": [_round(r.get("prob_1")) for r in rows],
        "top": top,
        "decision": ["accept" if r.get("label_1") is not None else "reject" for r in rows],
    }


def _dedup(rows: list[Row]) -> dict[str, list[Any]]:
    return {
        "group": [r.get("group") for r in rows],
        "keeper": [bool(r["keeper"]) for r in rows],
        "match": [r.get("match") for r in rows],
        "similarity": [_round(r.get("similarity")) for r in rows],
        "decision": ["reject" if r.get("error") else "accept" for r in rows],
    }


def _embed(rows: list[Row]) -> dict[str, list[Any]]:
    return {"decision": ["accept" for _ in rows]}


def _map(rows: list[Row], options: ReviewOptions) -> dict[str, Any]:
    """The 2-D projection of the rows that have an embedding (``x``, ``y`` None for the others)."""
    have = [i for i, r in enumerate(rows) if r.get("embedding") is not None and not r.get("error")]
    vectors = np.asarray([rows[i]["embedding"] for i in have], np.float32).reshape(len(have), -1)
    points, method = project(vectors, method=options.projection) if have else (np.zeros((0, 2)), "pca")
    x: list[float | None] = [None] * len(rows)
    y: list[float | None] = [None] * len(rows)
    for i, (px, py) in zip(have, points.tolist(), strict=True):
        x[i], y[i] = round(px, 4), round(py, 4)
    return {"x": x, "y": y, "projection": method}


KIND_COLUMNS: dict[Kind, Callable[[list[Row]], dict[str, list[Any]]]] = {
    Kind.ORIENT: _orient, Kind.PREDICT: _predict, Kind.DEDUP: _dedup, Kind.EMBED: _embed
}  # fmt: skip


# ------------------------------------------------------------------ writing the folder
def write_page(out: Path, data: dict[str, Any]) -> None:
    """Write the static files, ``data.js`` and the marker into ``out`` (each file atomically)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / MARKER, json.dumps({"version": DATA_VERSION, "kind": data["kind"]}).encode() + b"\n")
    static = resources.files("roost.review") / "static"
    for name in STATIC:
        atomic_write(out / name, (static / name).read_bytes())
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)  # ASCII: any file name survives
    atomic_write(out / "data.js", f"window.ROOST_REVIEW = {text};\n".encode())
