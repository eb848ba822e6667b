"""A 2-D map of a version's item embeddings for the operator page: PCA of the (unit) ALS item factors, with numpy.

Computed once per loaded version (``LoadedModel.embedding_map``, on first use), never per request:
an SVD of the centred factors, 20,000 x 64 in about a tenth of a second. scikit-learn's PCA would give
the same axes, but the API never imports scikit-learn (STYLE.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EmbeddingMap:
    coords: np.ndarray  # float32 (n_items, 2): each item on the first two principal axes
    explained: tuple[float, float]  # share of the factors' variance along each axis


def pca_2d(factors: np.ndarray) -> EmbeddingMap:
    """Project ``factors`` float (n_items, f) on its first two principal axes.

    Each axis's sign is fixed (its largest loading positive), so the same factors always draw the same
    map. Fewer than two items or dimensions give zeros on the missing axes.
    """
    x = np.asarray(factors, dtype=np.float64)
    n = x.shape[0]
    coords = np.zeros((n, 2), dtype=np.float32)
    if n < 2 or x.ndim != 2 or x.shape[1] == 0:
        return EmbeddingMap(coords, (0.0, 0.0))
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(2, vt.shape[0])
    axes = vt[:k]
    signs = np.sign(axes[np.arange(k), np.abs(axes).argmax(axis=1)])
    axes = axes * np.where(signs == 0, 1.0, signs)[:, None]
    coords[:, :k] = (centred @ axes.T).astype(np.float32)
    total = float((s**2).sum())
    shares = [float(s[i] ** 2 / total) if total > 0 and i < k else 0.0 for i in range(2)]
    return EmbeddingMap(coords, (shares[0], shares[1]))
