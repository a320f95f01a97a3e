"""A 2-D map of embeddings: UMAP where ``umap-learn`` is installed (``pip install 'roost[map]'``), else PCA."""

from __future__ import annotations

import numpy as np

from roost.errors import ReviewError

UMAP_MIN_ROWS = 16  # below this UMAP's neighbourhood graph says little; PCA is used


def project(vectors: np.ndarray, *, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """``(N, 2)`` coordinates scaled to [0, 1] and the method used (``umap`` or ``pca``) for ``(N, D)`` vectors."""
    if vectors.ndim != 2:
        raise ValueError(f"expected an (N, D) array of embeddings, got shape {vectors.shape}")
    if method not in ("auto", "umap", "pca"):
        raise ValueError(f"projection must be auto, umap or pca, got {method!r}")
    points, used = None, "pca"
    if method != "pca" and len(vectors) >= UMAP_MIN_ROWS:
        points = _umap(vectors, seed, required=method == "umap")
        used = "umap" if points is not None else "pca"
    if points is None:
        points = pca(vectors)
    return _unit(points), used


def pca(vectors: np.ndarray) -> np.ndarray:
    """The first two principal components (from the D x D covariance: cheap for many rows)."""
    x = vectors.astype(np.float64)
    x -= x.mean(axis=0, keepdims=True)
    if len(x) < 2:
        return np.zeros((len(x), 2))
    values, vecs = np.linalg.eigh(x.T @ x)
    top = vecs[:, np.argsort(values)[::-1][:2]]
    points = x @ top
    return np.pad(points, ((0, 0), (0, 2 - points.shape[1])))


def _umap(vectors: np.ndarray, seed: int, required: bool) -> np.ndarray | None:
    try:
        import umap  # type: ignore[import-not-found]
    except ImportError:
        if required:
            raise ReviewError("the UMAP projection needs umap-learn: pip install 'roost[map]'") from None
        return None
    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(vectors) - 1), random_state=seed)
    return np.asarray(reducer.fit_transform(vectors), np.float64)


def _unit(points: np.ndarray) -> np.ndarray:
    if len(points) == 0:
        return points.reshape(0, 2)
    low, high = points.min(axis=0), points.max(axis=0)
    span = np.where(high - low > 0, high - low, 1.0)
    return (points - low) / span
