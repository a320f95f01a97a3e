"""Grouping: stages in order (exact bytes, pixels, perceptual hashes, embeddings), union-find, keepers.

No stage compares all pairs. Bytes and pixels are grouped by digest. The perceptual stage searches a faiss
binary index (exact Hamming search, or an inverted file beyond ``BINARY_EXACT_UP_TO`` entries) with each
image's four rotation phashes against every image's upright and centred-crop phashes, and keeps a match
only when the dhashes of the same two views agree too. The embedding stage searches normalised vectors by
inner product (cosine; exact, or an HNSW graph as ``roost index`` builds). A pair closer than the stage's
threshold joins their groups.

Each member's ``match`` and ``similarity`` are measured against its group's keeper directly: ``exact``
(same bytes), ``pixels`` (same decoded pixels), ``perceptual`` (1 - Hamming distance / 64 at the best
rotation and crop) or ``embedding`` (cosine); a member that joined only through another member keeps the
stage that joined it and its own, lower, similarity to the keeper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import faiss
import numpy as np
import pyarrow as pa

from roost.dedup.signatures import HASH_BYTES, HASHES, KINDS, ROTATIONS, hash_array
from roost.jobs.base import Row

BINARY_EXACT_UP_TO = 50_000  # indexed hashes (5 per image) searched exactly; an inverted file beyond
NEIGHBOURS = 16  # nearest hashes or vectors looked at per query
HASH_BITS = HASH_BYTES * 8
CHECK_BITS = 16  # the dhashes of a phash match's two views must be this close (matches measured <= 12)
_INDEXED = [0, *range(len(ROTATIONS), HASHES)]  # the upright hash and the crops' hashes


class Match(StrEnum):
    EXACT = "exact"
    PIXELS = "pixels"
    PERCEPTUAL = "perceptual"
    EMBEDDING = "embedding"


class Keep(StrEnum):
    """Which member of a group is kept; ties fall through to the next criterion, then the path."""

    PIXELS = "pixels"  # most pixels, then largest file, then oldest (the default)
    SIZE = "size"  # largest file, then most pixels, then oldest
    OLDEST = "oldest"  # oldest modification time, then most pixels
    NEWEST = "newest"  # newest modification time, then most pixels
    PATH = "path"  # first path in sorted order


REPORT_SCHEMA = pa.schema(
    [("path", pa.string()), ("group", pa.int64()), ("keeper", pa.bool_()), ("match", pa.string()),
     ("similarity", pa.float64()), ("error", pa.string())]
)  # fmt: skip


class UnionFind:
    """Disjoint sets over 0..n-1; ``joined[i]`` is the stage of the first pair that touched ``i``."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)
        self.joined: dict[int, Match] = {}

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = int(self.parent[root])
        while self.parent[i] != root:
            self.parent[i], i = root, int(self.parent[i])
        return root

    def union(self, a: int, b: int, stage: Match) -> None:
        self.joined.setdefault(a, stage)
        self.joined.setdefault(b, stage)
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass(frozen=True)
class Thresholds:
    hash_similarity: float  # 1 - Hamming distance / 64 of the perceptual hashes
    similarity: float  # cosine of the embeddings

    @property
    def max_bits(self) -> int:
        return math.floor((1 - self.hash_similarity) * HASH_BITS + 1e-9)


def group_rows(
    rows: Sequence[Row], thresholds: Thresholds, keep: Keep, embeddings: np.ndarray | None = None
) -> list[Row]:
    """The report rows of fingerprint ``rows`` (all readable); ``embeddings`` (N, D) with NaN rows for none."""
    uf = UnionFind(len(rows))
    _by_digest(uf, [r["bytes_hash"] for r in rows], Match.EXACT)
    _by_digest(uf, [r["pixels_hash"] for r in rows], Match.PIXELS)
    hashes = hash_array(rows) if rows else np.zeros((0, KINDS, HASHES, HASH_BYTES), np.uint8)
    _perceptual(uf, hashes, thresholds.max_bits)
    vectors = normalised(embeddings) if embeddings is not None else None
    if vectors is not None:
        _embedding(uf, vectors, thresholds.similarity)
    return _report(rows, uf, keep, hashes, vectors)


def normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.full_like(vectors, np.nan), where=norms > 0)


def _by_digest(uf: UnionFind, digests: Sequence[str], stage: Match) -> None:
    first: dict[str, int] = {}
    for i, digest in enumerate(digests):
        if digest in first:
            uf.union(first[digest], i, stage)
        else:
            first[digest] = i


def _perceptual(uf: UnionFind, hashes: np.ndarray, max_bits: int) -> None:
    """Join images whose phashes match (one's rotation against the other's upright or crop views) and whose
    dhashes of the same two views agree."""
    n = len(hashes)
    if n < 2:
        return
    database = np.ascontiguousarray(hashes[:, 0, _INDEXED].reshape(-1, HASH_BYTES))
    index = binary_index(database)
    queries = np.ascontiguousarray(hashes[:, 0, : len(ROTATIONS)].reshape(-1, HASH_BYTES))
    distances, labels = index.search(queries, min(NEIGHBOURS, len(database)))  # type: ignore[call-arg]
    q, j = np.nonzero((distances <= max_bits) & (labels >= 0))
    a, rotation = np.divmod(q, len(ROTATIONS))
    b, view = np.divmod(labels[q, j], len(_INDEXED))
    check = np.bitwise_xor(hashes[a, 1, rotation], hashes[b, 1, np.asarray(_INDEXED)[view]])
    agree = np.unpackbits(check, axis=-1).sum(axis=-1) <= CHECK_BITS
    for x, y in zip(a[agree & (a != b)], b[agree & (a != b)], strict=True):
        uf.union(int(x), int(y), Match.PERCEPTUAL)


def binary_index(database: np.ndarray) -> faiss.IndexBinary:
    """A faiss binary index of (M, 8) uint8 hashes: exact up to BINARY_EXACT_UP_TO, else an inverted file."""
    if len(database) <= BINARY_EXACT_UP_TO:
        index = faiss.IndexBinaryFlat(HASH_BITS)
    else:
        nlist = int(4 * math.sqrt(len(database)))
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(HASH_BITS), HASH_BITS, nlist)
        sample = database[np.random.default_rng(0).permutation(len(database))[: 64 * nlist]]
        index.train(sample)  # type: ignore[call-arg]
        index.nprobe = 64  # recall 0.997 of pairs 6 bits apart among 300k random hashes (exact: 1.0, 7x slower)
    index.add(database)  # type: ignore[call-arg]
    return index


def _embedding(uf: UnionFind, vectors: np.ndarray, similarity: float) -> None:
    present = np.flatnonzero(~np.isnan(vectors).any(axis=1))
    if len(present) < 2:
        return
    from roost.index import vector_index  # exact, or an HNSW graph for large collections

    index, _ = vector_index(np.ascontiguousarray(vectors[present]))
    scores, labels = index.search(np.ascontiguousarray(vectors[present]), min(NEIGHBOURS, len(present)))  # type: ignore[call-arg]
    for q, j in zip(*np.nonzero((scores >= similarity) & (labels >= 0)), strict=True):
        a, b = int(present[q]), int(present[labels[q, j]])
        if a != b:
            uf.union(a, b, Match.EMBEDDING)


def keeper_order(row: Row, keep: Keep) -> tuple:
    """Sort key: the keeper sorts first."""
    pixels, size, mtime = row["width"] * row["height"], row["size"], row["mtime_ns"]
    return {
        Keep.PIXELS: (-pixels, -size, mtime),
        Keep.SIZE: (-size, -pixels, mtime),
        Keep.OLDEST: (mtime, -pixels, -size),
        Keep.NEWEST: (-mtime, -pixels, -size),
        Keep.PATH: (),
    }[keep] + (row["path"],)


def _report(
    rows: Sequence[Row], uf: UnionFind, keep: Keep, hashes: np.ndarray, vectors: np.ndarray | None
) -> list[Row]:
    members: dict[int, list[int]] = {}
    for i in range(len(rows)):
        members.setdefault(uf.find(i), []).append(i)
    groups = [sorted(m, key=lambda i: keeper_order(rows[i], keep)) for m in members.values() if len(m) > 1]
    groups.sort(key=lambda m: rows[m[0]]["path"])
    out = [{"path": r["path"], "group": None, "keeper": True, "match": None, "similarity": None, "error": None}
           for r in rows]  # fmt: skip
    for number, group in enumerate(groups, 1):
        keeper = group[0]
        out[keeper] |= {"group": number, "similarity": 1.0}
        for i in group[1:]:
            match, similarity = _relation(rows, i, keeper, uf.joined.get(i, Match.PERCEPTUAL), hashes, vectors)
            out[i] |= {"group": number, "keeper": False, "match": match.value, "similarity": similarity}
    return out


def _relation(
    rows: Sequence[Row], i: int, keeper: int, joined: Match, hashes: np.ndarray, vectors: np.ndarray | None
) -> tuple[Match, float]:
    if rows[i]["bytes_hash"] == rows[keeper]["bytes_hash"]:
        return Match.EXACT, 1.0
    if rows[i]["pixels_hash"] == rows[keeper]["pixels_hash"]:
        return Match.PIXELS, 1.0
    if joined is Match.EMBEDDING and vectors is not None and not np.isnan(vectors[[i, keeper]]).any():
        return Match.EMBEDDING, float(np.clip(vectors[i] @ vectors[keeper], 0.0, 1.0))
    return Match.PERCEPTUAL, 1.0 - hash_distance(hashes[i, 0], hashes[keeper, 0]) / HASH_BITS


def hash_distance(a: np.ndarray, b: np.ndarray) -> int:
    """The smallest Hamming distance between one image's rotation phashes and the other's indexed phashes
    ((HASHES, 8) each)."""
    rotations = len(ROTATIONS)

    def one_way(x: np.ndarray, y: np.ndarray) -> int:
        bits = np.unpackbits(np.bitwise_xor(x[:rotations, None, :], y[None, _INDEXED, :]), axis=-1)
        return int(bits.sum(axis=-1).min())

    return min(one_way(a, b), one_way(b, a))
