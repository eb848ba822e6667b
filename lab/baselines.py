"""Reference models for the evaluation harness, all behind one small interface.

``fit(train_matrix)`` takes float CSR (n_users, n_items) of non-negative strengths (``batch.matrix``
confidences) and returns the model; ``recommend(users, k)`` returns int32 (len(users), k) item
indices by full ranking over the catalogue, each user's train items excluded, ``-1`` padded where a
model has fewer than k items it can score. Same matrix and constructor arguments (incl. the seed)
give identical lists; threads never change a result.
"""

from __future__ import annotations

import warnings
from typing import Literal, Protocol, TypeVar

import numpy as np
from implicit.nearest_neighbours import BM25Recommender, CosineRecommender
from implicit.utils import ParameterWarning
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from batch.ease import EaseModel, EaseParams, ease_top_n, train_ease
from batch.fusion import fuse_candidates
from batch.matrix import check_user_items
from batch.metrics import item_counts
from batch.train import AlsParams, train_als
from lab.splits import Factors, rank_all
from shared.errors import ModelError

_T = TypeVar("_T")
# Catalogues up to this size get EASE and the ALS+EASE fusion by default in `evaluate`'s static protocols
# and in `tune`'s candidate stage: an EASE fit takes seconds there (Last.fm's 17,632 artists: minutes).
STATIC_EASE_MAX_ITEMS = 5_000


class Baseline(Protocol):
    """What the harness needs from a model (see the module docstring for shapes and semantics)."""

    def fit(self, train_matrix: csr_matrix) -> Baseline: ...

    def recommend(self, users: np.ndarray, k: int) -> np.ndarray: ...


def _fitted(state: _T | None, name: str) -> _T:
    if state is None:
        raise ModelError(f"{name}.recommend called before fit")
    return state


class Popularity:
    """Everyone gets the items with the most distinct training users (``item_counts``), ties by index.

    The non-personalised floor: a personalised model that cannot beat it has learned nothing.
    """

    def __init__(self) -> None:
        self._fit: tuple[csr_matrix, Factors] | None = None

    def fit(self, train_matrix: csr_matrix) -> Popularity:
        train = check_user_items(train_matrix, "popularity training matrix")
        counts = item_counts(train).astype(np.float32)[:, None]  # exact below 2**24 users
        self._fit = train, Factors(np.ones((train.shape[0], 1), dtype=np.float32), counts)
        return self

    def recommend(self, users: np.ndarray, k: int) -> np.ndarray:
        train, factors = _fitted(self._fit, "Popularity")
        return rank_all(factors, train, users, k)


class ItemKNN:
    """Item-based kNN on implicit's ``CosineRecommender`` or ``BM25Recommender`` similarities.

    ``fit`` computes ``S`` float (n_items, n_items): row i holds item i's ``neighbours`` most similar
    items (cosine of the items' user columns, or dot products of BM25-weighted columns with implicit's
    ``K1 = bm25_k1``, ``B = bm25_b``). A user's score is ``s_u = x_u S`` over their train row ``x_u``
    (implicit's own scoring rule); items no train item links to have no score and are never
    recommended, so such lists end in ``-1`` padding rather than in arbitrary zero-score items.
    ``num_threads`` (0 = all cores) only sets OpenMP threads of the similarity computation, whose rows
    are independent, so the result does not depend on it; BLAS is held at one thread.
    """

    def __init__(
        self,
        similarity: Literal["cosine", "bm25"] = "cosine",
        neighbours: int = 100,
        num_threads: int = 0,
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
    ) -> None:
        if similarity not in ("cosine", "bm25"):
            raise ModelError(f"similarity must be 'cosine' or 'bm25', got {similarity!r}")
        if neighbours < 1 or num_threads < 0:
            raise ModelError(f"neighbours ({neighbours}) must be >= 1 and num_threads ({num_threads}) >= 0")
        self.similarity, self.neighbours, self.num_threads = similarity, neighbours, num_threads
        self.bm25_k1, self.bm25_b = bm25_k1, bm25_b
        self._fit: tuple[csr_matrix, csr_matrix] | None = None

    def fit(self, train_matrix: csr_matrix) -> ItemKNN:
        train = check_user_items(train_matrix, "item-kNN training matrix")
        if self.similarity == "cosine":
            model = CosineRecommender(K=self.neighbours, num_threads=self.num_threads)
        else:
            model = BM25Recommender(K=self.neighbours, K1=self.bm25_k1, B=self.bm25_b, num_threads=self.num_threads)
        with threadpool_limits(1, "blas"), warnings.catch_warnings():
            # implicit's own weighting hands its kNN a COO matrix and then warns about converting it.
            warnings.simplefilter("ignore", ParameterWarning)
            model.fit(train.astype(np.float64), show_progress=False)
        self._fit = train, csr_matrix(model.similarity, dtype=np.float64)
        return self

    def scores(self, users: np.ndarray) -> np.ndarray:
        """``x_u S`` for ``users`` int (m,): float32 (m, n_items), ``-inf`` where no train item links."""
        train, sim = _fitted(self._fit, "ItemKNN")
        product = (train[users].astype(np.float64) @ sim).tocoo()
        out = np.full(product.shape, -np.inf, dtype=np.float32)
        out[product.row, product.col] = product.data
        return out

    def recommend(self, users: np.ndarray, k: int) -> np.ndarray:
        train, _ = _fitted(self._fit, "ItemKNN")
        return rank_all(self.scores, train, users, k)


class ALS:
    """``batch.train.train_als`` (the production model) with fixed params and seed, ranked by dot product."""

    def __init__(self, params: AlsParams, seed: int) -> None:
        self.params, self.seed = params, seed
        self._fit: tuple[csr_matrix, Factors] | None = None

    def fit(self, train_matrix: csr_matrix) -> ALS:
        model = train_als(train_matrix, self.params, self.seed)
        self._fit = train_matrix, Factors(model.user_factors, model.item_factors)
        return self

    def recommend(self, users: np.ndarray, k: int) -> np.ndarray:
        train, factors = _fitted(self._fit, "ALS")
        return rank_all(factors, train, users, k)


class EASE:
    """``batch.ease.train_ease`` (the production candidate model of ``candidate_model=ease``), ranked by
    ``x_u B`` over the binarised train row, train items excluded."""

    def __init__(self, params: EaseParams) -> None:
        self.params = params
        self._fit: tuple[csr_matrix, EaseModel] | None = None

    def fit(self, train_matrix: csr_matrix) -> EASE:
        self._fit = train_matrix, train_ease(train_matrix, self.params)
        return self

    def recommend(self, users: np.ndarray, k: int) -> np.ndarray:
        train, model = _fitted(self._fit, "EASE")
        ids, _ = ease_top_n(model, train[users], k)
        return ids


class Fused:
    """Two fitted-together models' lists fused by weighted reciprocal rank (``batch.fusion``), as
    ``candidate_model=als+ease`` builds the precomputed candidates: each model's top ``max(k, depth)``
    (``depth`` = the production candidate count) fused into the top k."""

    def __init__(self, first: Baseline, second: Baseline, weight_second: float = 1.0, depth: int = 100) -> None:
        self.first, self.second, self.weight_second, self.depth = first, second, weight_second, depth

    def fit(self, train_matrix: csr_matrix) -> Fused:
        for part in (self.first, self.second):
            fitted = getattr(part, "_fit", None)
            if fitted is None or fitted[0] is not train_matrix:  # a part shared with the table, fitted already
                part.fit(train_matrix)
        return self

    def recommend(self, users: np.ndarray, k: int) -> np.ndarray:
        depth = max(k, self.depth)
        a, b = self.first.recommend(users, depth), self.second.recommend(users, depth)
        ids, _ = fuse_candidates(a, b, k, self.weight_second)
        return ids


def default_models(als_params: AlsParams, seed: int, ease: EaseParams | None = None) -> dict[str, Baseline]:
    """The static protocol's baselines, unfitted: popularity, item-kNN (cosine) and ALS seeded with ``seed``;
    with ``ease``, also EASE and the ALS+EASE fusion (the catalogue must fit ``ease.max_items``)."""
    models: dict[str, Baseline] = {"popularity": Popularity(), "item_knn": ItemKNN(), "als": ALS(als_params, seed)}
    if ease is not None:
        models["ease"] = EASE(ease)
        models["als+ease"] = Fused(models["als"], models["ease"])  # reuses both fits
    return models
