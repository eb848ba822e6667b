"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) on the CPU with benfred/implicit.

Confidence. ``batch.matrix`` produces a non-negative strength ``w`` per (user, item); the model is
fitted with confidence ``C = 1 + alpha * w`` on observed pairs and ``C = 1`` elsewhere, preference 1
on observed pairs, exactly as ``Settings.als_alpha`` documents. implicit 0.7 itself uses
``C = alpha * data`` (its solver adds ``(C - 1) y y^T``), so we hand it ``data = 1 + alpha * w`` with
its own ``alpha`` fixed at 1.0. That also keeps every observed confidence >= 1, i.e. an observed pair
is never weighted below an unobserved one, whatever the scale of ``w``.

Regularization. implicit's ``regularization`` is a plain ``lambda I`` added to each row's normal
equations, next to ``Y^T C_u Y``, so a good lambda grows with the confidences: the same 10 that suits a
log of views (observed C around 4) under-regularises a log of play counts (C around 20-30). The
default, ``"auto"``, sets ``lambda = AUTO_REGULARIZATION_PER_CONFIDENCE x median observed C`` of the
training matrix (``auto_regularization``); ``AlsParams.resolved`` turns it into that number once per run.
Measured with ``bench/model_quality.py`` (64 factors, alpha 4, NDCG@10 of the static protocol),
the rule lands within 1.5% of the best of the fixed values 0.05, 1, 10, 30, 100 on each of the
synthetic event log, its no-repeat mode and Last.fm play counts, where no single fixed value does
(10 loses 11% on Last.fm plays, 100 loses 24% on the synthetic log).

Determinism. Initial factors come from ``numpy.random.default_rng(seed)`` inside implicit; each ALS
half-step solves every row independently from the other side's fixed factors, so the OpenMP thread
count does not change the result, and BLAS is pinned to one thread (also implicit's advice).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import numpy as np
from implicit.cpu.als import AlternatingLeastSquares
from implicit.recommender_base import ModelFitError
from scipy.sparse import csr_matrix
from threadpoolctl import threadpool_limits

from batch.matrix import check_user_items
from shared.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from shared.config import Settings


AUTO = "auto"
# lambda of the "auto" regularization per unit of the median observed confidence (module docstring).
AUTO_REGULARIZATION_PER_CONFIDENCE = 4.0


def auto_regularization(matrix: csr_matrix, alpha: float) -> float:
    """``AUTO_REGULARIZATION_PER_CONFIDENCE`` x the median of ``1 + alpha * w`` over the stored entries of
    ``matrix`` (float CSR of strengths), rounded to 4 significant digits so the manifest reads well;
    that multiple of 1 for an empty matrix."""
    data = matrix.data[matrix.data > 0]
    median = float(np.median(1.0 + alpha * data.astype(np.float64))) if data.size else 1.0
    return float(f"{AUTO_REGULARIZATION_PER_CONFIDENCE * median:.4g}")


@dataclass(frozen=True)
class AlsParams:
    """Hyper-parameters of one ALS fit (see ``Settings.als_*`` for meaning and defaults).

    ``regularization`` is a number >= 0 or ``"auto"`` (module docstring), which ``resolved`` turns into
    the number for a training matrix; the fitting functions resolve it themselves when given "auto".
    """

    factors: int
    regularization: float | Literal["auto"]
    alpha: float
    iterations: int

    def __post_init__(self) -> None:
        reg_ok = self.regularization == AUTO or (
            isinstance(self.regularization, int | float) and self.regularization >= 0
        )
        if self.factors < 1 or self.iterations < 1 or not reg_ok or self.alpha <= 0:
            raise ConfigError(
                f"invalid ALS params {self}: need factors >= 1, iterations >= 1, regularization >= 0 or "
                "'auto', alpha > 0"
            )

    def resolved(self, matrix: csr_matrix) -> AlsParams:
        """These params with an "auto" regularization replaced by ``auto_regularization(matrix, alpha)``."""
        if self.regularization != AUTO:
            return self
        return replace(self, regularization=auto_regularization(matrix, self.alpha))

    @classmethod
    def from_settings(cls, settings: Settings) -> AlsParams:
        return cls(
            factors=settings.als_factors,
            regularization=settings.als_regularization,
            alpha=settings.als_alpha,
            iterations=settings.als_iterations,
        )


@dataclass(frozen=True, eq=False)
class AlsModel:
    """Plain factor arrays: ``user_factors`` float32 (n_users, f), ``item_factors`` float32 (n_items, f).

    Construction checks dtype, shape and finiteness, so an ``AlsModel`` in hand is always usable.
    """

    user_factors: np.ndarray
    item_factors: np.ndarray

    def __post_init__(self) -> None:
        for name in ("user_factors", "item_factors"):
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.dtype != np.float32:
                got = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
                raise ModelError(f"{name} must be a 2-D float32 array, got {got}")
            if not np.isfinite(arr).all():
                raise ModelError(
                    f"{name} contain NaN/inf; the fit diverged. Raise als_regularization or lower als_alpha"
                )
        if self.user_factors.shape[1] != self.item_factors.shape[1]:
            raise ModelError(
                f"factor widths differ: users {self.user_factors.shape[1]}, items {self.item_factors.shape[1]}"
            )

    @property
    def n_users(self) -> int:
        return self.user_factors.shape[0]

    @property
    def n_items(self) -> int:
        return self.item_factors.shape[0]

    @property
    def factors(self) -> int:
        return self.item_factors.shape[1]


def _confidence(matrix: csr_matrix, alpha: float) -> csr_matrix:
    """float32 CSR, same sparsity as ``matrix``, data ``1 + alpha * w`` (see the module docstring)."""
    data = (1.0 + alpha * matrix.data.astype(np.float64)).astype(np.float32)
    return csr_matrix((data, matrix.indices, matrix.indptr), shape=matrix.shape)


def _implicit_model(
    params: AlsParams, seed: int | None = None, model: AlsModel | None = None
) -> AlternatingLeastSquares:
    """An implicit CPU ALS object with our params (implicit ``alpha`` = 1, see module docstring).

    With ``model`` its factors are set from our arrays, e.g. for ``recalculate_user``. Any matrix
    passed to the returned object must already hold confidences (``_confidence``). Build it inside
    ``threadpool_limits(1, "blas")``: the constructor checks the BLAS thread count.
    """
    als = AlternatingLeastSquares(
        factors=params.factors,
        regularization=params.regularization,
        alpha=1.0,
        dtype=np.float32,
        use_native=True,
        use_cg=True,
        iterations=params.iterations,
        calculate_training_loss=False,
        num_threads=0,
        random_state=seed,
    )
    if model is not None:
        als.user_factors = model.user_factors
        als.item_factors = model.item_factors
    return als


def train_als(matrix: csr_matrix, params: AlsParams, seed: int) -> AlsModel:
    """Fit ALS on ``matrix`` float CSR (n_users, n_items) of strengths ``w >= 0``.

    Returns float32 factors (n_users, f) and (n_items, f). Users or items without any entry get zero
    vectors (implicit's convention), which score 0 against everything. Same matrix, params and seed
    give bit-identical arrays.
    """
    check_user_items(matrix, "training matrix")
    params = params.resolved(matrix)
    conf = _confidence(matrix, params.alpha)
    with threadpool_limits(1, "blas"):
        als = _implicit_model(params, seed=seed)
        try:
            als.fit(conf, show_progress=False)
        except (ModelFitError, ValueError) as exc:
            raise ModelError(
                f"ALS fit failed ({exc}); raise als_regularization or lower als_alpha / als_factors"
            ) from exc
    return AlsModel(
        user_factors=np.ascontiguousarray(als.user_factors, dtype=np.float32),
        item_factors=np.ascontiguousarray(als.item_factors, dtype=np.float32),
    )


def continue_als(model: AlsModel, matrix: csr_matrix, params: AlsParams, sweeps: int) -> AlsModel:
    """``sweeps`` more ALS sweeps on ``matrix`` (same shape as the model), starting from ``model``'s factors.

    The published model: the holdout-blind fit (what the run's metrics measure) continued on the
    run's full data, so an item whose only events were held out (someone's latest item) gets a real
    vector instead of the zero vector it had, and every vector reflects the newest events. Each sweep
    solves users then items (implicit's order); deterministic, like ``train_als``.
    """
    check_user_items(matrix, "full-data matrix")
    if matrix.shape != (model.n_users, model.n_items):
        raise ModelError(f"matrix {matrix.shape} does not match the model ({model.n_users}, {model.n_items})")
    if sweeps < 1:
        raise ConfigError(f"sweeps must be >= 1, got {sweeps}")
    params = params.resolved(matrix)  # a run resolves once, on its training matrix, and passes the number
    conf = _confidence(matrix, params.alpha)
    with threadpool_limits(1, "blas"):
        als = _implicit_model(params, model=AlsModel(model.user_factors.copy(), model.item_factors.copy()))
        als.iterations = sweeps
        try:
            als.fit(conf, show_progress=False)
        except (ModelFitError, ValueError) as exc:
            raise ModelError(f"ALS fit on the full data failed ({exc}); raise als_regularization") from exc
    return AlsModel(
        user_factors=np.ascontiguousarray(als.user_factors, dtype=np.float32),
        item_factors=np.ascontiguousarray(als.item_factors, dtype=np.float32),
    )


def refresh_users(model: AlsModel, matrix: csr_matrix, params: AlsParams) -> AlsModel:
    """Recompute every user vector exactly against the fixed item factors of ``model``.

    ``matrix``: float CSR (n_users', n_items) with the same item columns as ``model`` (n_users' may be
    larger, e.g. the full data after a fit without the holdout). Each row gets the closed-form
    least-squares solution ``x_u = (Y^T C_u Y + reg I)^-1 Y^T C_u p_u`` (implicit's Cholesky-based
    ``recalculate_user``), one exact ALS half-step; an empty row gives a zero vector. Item factors are
    returned unchanged (the same array). Deterministic: rows are solved independently.
    """
    check_user_items(matrix, "refresh matrix")
    if matrix.shape[1] != model.n_items:
        raise ModelError(
            f"refresh matrix has {matrix.shape[1]} item columns but the model has {model.n_items} items; "
            "build both matrices with the same IdMaps"
        )
    if params.factors != model.factors:
        raise ModelError(f"params.factors={params.factors} but the model has {model.factors} factors")
    params = params.resolved(matrix)
    conf = _confidence(matrix, params.alpha)
    with threadpool_limits(1, "blas"):
        als = _implicit_model(params, model=model)
        try:
            users = als.recalculate_user(np.arange(matrix.shape[0]), conf)
        except ValueError as exc:
            raise ModelError(f"user refresh failed ({exc}); raise als_regularization") from exc
    return AlsModel(user_factors=np.ascontiguousarray(users, dtype=np.float32), item_factors=model.item_factors)
