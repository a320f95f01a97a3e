"""``roost index``'s vector search: exact against approximate (HNSW; IVF for comparison), synthetic 768-d.

    python bench/index.py                       # 1k, 100k and 1M vectors (the 1M row takes minutes)
    python bench/index.py --sizes 1000 100000

The vectors (float32, 768-d, L2-normalised) are a mixture of 10,000 Gaussian clusters, ``--data
structured`` (default: in a 64-d subspace, as image embeddings are of low intrinsic dimension) or
``isotropic`` (in all 768 dimensions: the worst case for an inverted file). The queries are 1000 indexed
vectors plus a little noise ("is this new image a near-copy of one I have?"). For each size: build time
and the resident memory the index added (``/proc/self/statm``), the latency of one query alone and per
query in a batch of 1000, and recall@10 of the approximate indexes against exact search, at several
search depths. Exact (faiss ``IndexFlatIP``) and HNSW (``IndexHNSWFlat``) are built by roost's own
``roost.index.vector_index``; an inverted file (``IndexIVFFlat``, ``4·√N`` lists) is built here to compare.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import faiss
import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import roost.index as index_module

DIM = 768
CENTRES = 10_000
LATENT = 64
QUERIES = 1000
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def vectors(n: int, kind: str, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors: ``structured`` (a mixture in a LATENT-d subspace, like image embeddings, whose
    intrinsic dimension is far below 768) or ``isotropic`` (the same mixture drowned in 768-d noise: the
    worst case for an inverted file)."""
    rng = np.random.default_rng(seed)
    latent = LATENT if kind == "structured" else DIM
    centres = rng.standard_normal((CENTRES, latent), dtype=np.float32)
    projection = rng.standard_normal((latent, DIM), dtype=np.float32) if kind == "structured" else None
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        points = centres[rng.integers(0, CENTRES, stop - start)]
        points += rng.standard_normal((stop - start, latent), dtype=np.float32)
        out[start:stop] = points @ projection if projection is not None else points
        out[start:stop] += 0.1 * rng.standard_normal((stop - start, DIM), dtype=np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def build(data: np.ndarray, kind: str) -> tuple[faiss.Index, float, int]:
    """Build ``exact`` or ``hnsw`` with roost's own ``vector_index``, or ``ivf`` (for comparison)."""
    before = rss()
    start = time.perf_counter()
    if kind == "ivf":
        nlist = int(4 * np.sqrt(len(data)))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(DIM), DIM, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(data[np.random.default_rng(0).permutation(len(data))[: 32 * nlist]])  # type: ignore[call-arg]
        index.add(data)  # type: ignore[call-arg]
    else:
        saved = index_module.APPROX_FROM
        index_module.APPROX_FROM = 0 if kind == "hnsw" else len(data) + 1
        try:
            index = index_module.vector_index(data)[0]
        finally:
            index_module.APPROX_FROM = saved
    return index, time.perf_counter() - start, rss() - before


def latency(index: faiss.Index, queries: np.ndarray) -> tuple[float, float, np.ndarray]:
    start = time.perf_counter()
    for q in queries[:20]:
        index.search(q[None], 10)  # type: ignore[call-arg]
    single = (time.perf_counter() - start) / 20
    start = time.perf_counter()
    labels = index.search(queries, 10)[1]  # type: ignore[call-arg]
    batched = (time.perf_counter() - start) / len(queries)
    return single, batched, labels


def recall(truth: np.ndarray, found: np.ndarray) -> float:
    return float(np.mean([len(set(t) & set(f)) / len(t) for t, f in zip(truth, found, strict=True)]))


def run(sizes: list[int], depths: list[int], probes: list[int], kind: str, console: Console) -> None:
    table = Table("vectors", "index", "search setting", "build (s)", "memory (MB)", "1 query (ms)",
                  "batched (ms/query)", "recall@10", title=f"vector search, {kind} {DIM}-d float32, faiss "
                  f"{faiss.__version__}, {os.cpu_count()} CPUs")  # fmt: skip
    for n in sizes:
        data = vectors(n, kind)
        rng = np.random.default_rng(1)
        queries = data[rng.integers(0, n, QUERIES)] + 0.05 * rng.standard_normal((QUERIES, DIM), dtype=np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        exact, seconds, memory = build(data, "exact")
        single, batched, truth = latency(exact, queries)
        table.add_row(f"{n:,}", "exact (FlatIP)", "-", f"{seconds:.2f}", f"{memory / 2**20:.0f}",
                      f"{single * 1e3:.2f}", f"{batched * 1e3:.3f}", "1.000")  # fmt: skip
        del exact
        for name, settings, attribute in (("hnsw", depths, "efSearch"), ("ivf", probes, "nprobe")):
            if not settings:
                continue
            index, seconds, memory = build(data, name)
            target = index.hnsw if name == "hnsw" else index  # type: ignore[attr-defined]
            label = f"HNSW{index_module.HNSW_LINKS}" if name == "hnsw" else f"IVF{index.nlist},Flat"  # type: ignore[attr-defined]
            for value in settings:
                setattr(target, attribute, value)
                single, batched, found = latency(index, queries)
                table.add_row(f"{n:,}", label, f"{attribute} {value}", f"{seconds:.2f}", f"{memory / 2**20:.0f}",
                              f"{single * 1e3:.2f}", f"{batched * 1e3:.3f}", f"{recall(truth, found):.3f}")  # fmt: skip
            del index
        del data
        console.print(table)  # after each size: the 1M rows take a while


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000, 1_000_000])
    parser.add_argument("--depths", type=int, nargs="*", default=[64, 128, 256], help="HNSW efSearch values")
    parser.add_argument("--probes", type=int, nargs="*", default=[32, 128], help="IVF nprobe values (none: skip)")
    parser.add_argument("--data", choices=["structured", "isotropic"], default="structured")
    args = parser.parse_args()
    run(args.sizes, args.depths, args.probes, args.data, Console(width=170))


if __name__ == "__main__":
    main()
