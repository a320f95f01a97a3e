"""``roost index`` and ``roost search``: an on-disk embedding index of a collection, searched by example.

An index is a folder:

* ``identity.json``: the model that made it (its name or file, and the file's sha256 and size); embedding
  with another model is refused, since its vectors would not compare;
* ``embeddings.parquet/``: the embed job's report, so building resumes after a kill and a run over a
  grown collection embeds only the new images;
* ``vectors.npy`` (N, D float32) with ``vectors.index.csv`` (path, row, error), and ``vectors.faiss``:
  an exact inner-product index (``IndexFlatIP``) on the L2-normalised vectors below ``APPROX_FROM``
  vectors, a graph (``IndexHNSWFlat``) from there, where exact search gets slow. BENCHMARKS.md measures
  both (recall@10 included) and an inverted file (IVF), whose recall was far lower at the same speed;
* ``meta.json``, written last: the count, dimension and kind of the faiss index. The files are each
  replaced atomically; a kill between them leaves counts that disagree, which :func:`load_index` refuses
  with what to do (run ``roost index`` again, which rebuilds them from the report).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np
import pyarrow as pa

from roost.errors import SearchIndexError
from roost.files.atomic import atomic_target, atomic_write
from roost.jobs.base import Note, OnEvent, Row, RunOptions, Summary, ignore
from roost.jobs.embed import EMBED_SCHEMA_ANY, EmbedJob, embed_files, write_npy
from roost.jobs.engine import execute
from roost.jobs.inputs import normalise
from roost.jobs.journal import file_sha256
from roost.jobs.report import read_rows

if TYPE_CHECKING:
    from roost.jobs.ray import RayOptions

APPROX_FROM = 100_000  # vectors; below, exact search answers one query within ~0.1 s on 2 cores
HNSW_LINKS = 32  # faiss HNSW "M": neighbours per node
HNSW_BUILD_DEPTH = 80  # efConstruction
HNSW_SEARCH_DEPTH = 128  # efSearch: recall@10 0.98 at 100k structured vectors (BENCHMARKS.md)
SEARCH_SCHEMA = pa.schema(
    [("query", pa.string()), ("rank", pa.int64()), ("path", pa.string()), ("similarity", pa.float64()),
     ("error", pa.string())]
)  # fmt: skip


@dataclass(frozen=True)
class Index:
    """A loaded index: its model identity, the indexed paths and their L2-normalised vectors (N, D)."""

    folder: Path
    identity: dict[str, Any]
    paths: list[str]
    vectors: np.ndarray
    faiss_index: faiss.Index


def model_identity(model: str | os.PathLike[str]) -> dict[str, Any]:
    """What identifies a model's embeddings: a checkpoint file by its bytes, published weights by name."""
    if os.path.isfile(model):
        path = Path(model).resolve()
        return {"model": os.fspath(path), "sha256": file_sha256(path), "size": path.stat().st_size}
    return {"model": os.fspath(model), "sha256": None, "size": None}


def _same_model(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if a["sha256"] or b["sha256"]:
        return a["sha256"] == b["sha256"]
    return a["model"] == b["model"]


def build_index(
    inputs: Sequence[str | os.PathLike[str]],
    *,
    model: str | os.PathLike[str],
    output: str | os.PathLike[str],
    options: RunOptions | None = None,
    ray: RayOptions | None = None,
    on_event: OnEvent = ignore,
) -> Summary:
    """Embed ``inputs`` into the index folder ``output`` (created, or extended and resumed), then rebuild
    its vectors and faiss index. Refuses an index made with another model before computing anything."""
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise SearchIndexError(f"{folder} is a file; an index is a folder (give a new name)")
    identity = model_identity(model)
    known = folder / "identity.json"
    if known.exists():
        earlier = json.loads(known.read_text())
        if not _same_model(earlier, identity):
            raise SearchIndexError(
                f"the index {folder} was made with {earlier['model']}, not {identity['model']}; "
                "give another index folder (embeddings of different models do not compare)"
            )
    else:
        atomic_write(known, json.dumps(identity, indent=1).encode())
    report = folder / "embeddings.parquet"
    summary = execute(EmbedJob(), inputs, model=model, report=report, options=options or RunOptions(), ray=ray,
                      exclude=[folder], on_event=on_event)  # fmt: skip
    summary.job = "index"
    count = _rebuild(folder, report, on_event)
    summary.counts["indexed"] = count
    return summary


def _rebuild(folder: Path, report: Path, on_event: OnEvent) -> int:
    """Write the vectors, paths and faiss index from the report; an HNSW graph is extended, not rebuilt."""
    dim = next((len(r["embedding"]) for r in read_rows(report, EMBED_SCHEMA_ANY, ["embedding"]) if r["embedding"]), 0)
    previous = _previous(folder)
    count = write_npy(report, folder / "vectors.npy", dim)
    vectors = _normalised(np.load(folder / "vectors.npy"))
    paths = _indexed_paths(folder / "vectors.index.csv")
    if previous is not None and paths[: len(previous[0])] == previous[0]:  # earlier vectors keep their rows
        index, kind = previous[1], previous[2]
        index.add(vectors[len(previous[0]) :])  # type: ignore[call-arg]
    else:
        index, kind = vector_index(vectors)
    on_event(Note(f"index: {count} vectors of {dim} dimensions, {kind} search"))
    with atomic_target(folder / "vectors.faiss") as tmp:
        faiss.write_index(index, os.fspath(tmp))
    meta = {"count": count, "dim": dim, "kind": kind}
    atomic_write(folder / "meta.json", json.dumps(meta, indent=1).encode())
    return count


def _previous(folder: Path) -> tuple[list[str], faiss.Index, str] | None:
    """The paths, HNSW index and kind of a finished earlier build (None when not HNSW or not finished)."""
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if not meta["kind"].startswith("approximate (HNSW"):
        return None
    index = faiss.read_index(os.fspath(folder / "vectors.faiss"))
    paths = _indexed_paths(folder / "vectors.index.csv")
    return (paths, index, meta["kind"]) if meta["count"] == len(paths) == index.ntotal else None


def vector_index(vectors: np.ndarray) -> tuple[faiss.Index, str]:
    """An inner-product faiss index of normalised (N, D) vectors: exact below APPROX_FROM, else HNSW."""
    n, dim = vectors.shape
    if n < APPROX_FROM:
        index: faiss.Index = faiss.IndexFlatIP(max(dim, 1))
        kind = "exact"
    else:
        index = faiss.IndexHNSWFlat(dim, HNSW_LINKS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_BUILD_DEPTH  # type: ignore[attr-defined]
        index.hnsw.efSearch = HNSW_SEARCH_DEPTH  # type: ignore[attr-defined]
        kind = f"approximate (HNSW, {HNSW_LINKS} links, search depth {HNSW_SEARCH_DEPTH})"
    if n:
        index.add(vectors)  # type: ignore[call-arg]
    return index, kind


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def load_index(folder: str | os.PathLike[str]) -> Index:
    """Read an index folder; a missing or half-written one raises SearchIndexError saying what to do."""
    folder = Path(folder)
    if not (folder / "meta.json").is_file():
        raise SearchIndexError(f"{folder} is not a finished roost index (build it with roost index)")
    meta = json.loads((folder / "meta.json").read_text())
    identity = json.loads((folder / "identity.json").read_text())
    vectors = _normalised(np.load(folder / "vectors.npy"))
    paths = _indexed_paths(folder / "vectors.index.csv")
    index = faiss.read_index(os.fspath(folder / "vectors.faiss"))
    if not meta["count"] == len(vectors) == len(paths) == index.ntotal:
        raise SearchIndexError(f"{folder} was left half-written by a killed run; run roost index again to finish it")
    return Index(folder, identity, paths, vectors, index)


def _indexed_paths(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return [row["path"] for row in csv.DictReader(f) if row["row"]]


def search_index(
    index: Index | str | os.PathLike[str],
    queries: Sequence[str | os.PathLike[str]],
    *,
    k: int = 10,
    options: RunOptions | None = None,
    on_event: OnEvent = ignore,
) -> list[Row]:
    """The ``k`` nearest indexed images of each query image: rows ``query, rank, path, similarity, error``.

    A query that is in the index uses its stored vector (no model needed) and finds itself first with
    similarity 1; others are embedded with the index's model.
    """
    if k < 1:
        raise SearchIndexError(f"k must be >= 1, got {k}")
    loaded = index if isinstance(index, Index) else load_index(index)
    keys = [normalise(q) for q in queries]
    position = {p: i for i, p in enumerate(loaded.paths)}
    vectors, errors = _query_vectors(loaded, [q for q in keys if q not in position], options, on_event)
    vectors |= {q: loaded.vectors[position[q]] for q in keys if q in position}
    found = [q for q in keys if q in vectors]
    rows: list[Row] = []
    if found:
        matrix = np.ascontiguousarray(np.stack([vectors[q] for q in found]), np.float32)
        scores, labels = loaded.faiss_index.search(matrix, min(k + 1, len(loaded.paths)))  # type: ignore[call-arg]
        results = {
            q: _ranked(q, s, lab, loaded.paths, q in position, k)
            for q, s, lab in zip(found, scores, labels, strict=True)
        }
    else:
        results = {}
    for q in keys:
        if q in results:
            rows += results[q]
        else:
            rows.append({"query": q, "rank": None, "path": None, "similarity": None, "error": errors.get(q)})
    return rows


def _query_vectors(
    index: Index, keys: list[str], options: RunOptions | None, on_event: OnEvent
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    if not keys:
        return {}, {}
    collected: list[Row] = []
    embed_files(keys, model=index.identity["model"], options=options, on_event=on_event, on_rows=collected.extend)
    vectors = {r["path"]: _normalised(np.asarray([r["embedding"]]))[0] for r in collected if not r["error"]}
    return vectors, {r["path"]: r["error"] for r in collected if r["error"]}


def _ranked(query: str, scores: np.ndarray, labels: np.ndarray, paths: list[str], indexed: bool, k: int) -> list[Row]:
    hits = [(paths[j], float(np.clip(s, 0.0, 1.0))) for s, j in zip(scores, labels, strict=True) if j >= 0]
    if indexed:  # itself first, exactly 1 (ties with identical copies, approximate misses)
        hits = [(query, 1.0)] + [(p, s) for p, s in hits if p != query]
    return [{"query": query, "rank": r, "path": p, "similarity": s, "error": None}
            for r, (p, s) in enumerate(hits[:k], 1)]  # fmt: skip
