"""The learned re-ranker as the API runs it: a linear model over request-time features, numpy only.

Trained offline with scikit-learn (``lab.train_reranker``) and exported as plain numbers, so the
request path never imports sklearn. The exported form (a version's ``meta["params"]["reranker"]``)::

    {"kind": "linear", "features": ["session_z", "covisit", ...],   names from online.features.FEATURES
     "weights": [float, ...], "bias": float, ...}                    anything else is provenance

score(c) = bias + sum_i weights[i] * feature_i(c). The feature scaling of training is folded into
``weights``/``bias`` at export, so serving applies no scaler. Only the order of the scores matters
(the top-k of one request), which a logistic model's sigmoid would not change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from online.features import COLUMN, FEATURE_NAMES, FEATURES, Pool


class RerankerFormatError(ValueError):
    """A version's re-ranker cannot be used (unknown feature, bad numbers); the blend serves instead."""


@dataclass(frozen=True)
class LinearReranker:
    features: tuple[str, ...]
    weights: np.ndarray  # float32 (n_features,)
    bias: float

    @property
    def full_weights(self) -> np.ndarray:
        """float32 (len(FEATURE_NAMES),): ``weights`` placed at their columns of ``Pool.features``."""
        out = np.zeros(len(FEATURE_NAMES), dtype=np.float32)
        out[[COLUMN[n] for n in self.features]] = self.weights
        return out

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> LinearReranker:
        try:
            kind = spec.get("kind")
            names = tuple(str(n) for n in spec["features"])
            weights = [float(w) for w in spec["weights"]]
            bias = float(spec.get("bias", 0.0))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RerankerFormatError(f"not a re-ranker spec: {exc!r}") from None
        if kind != "linear":
            raise RerankerFormatError(f"unsupported re-ranker kind {kind!r} (this API scores 'linear')")
        unknown = [n for n in names if n not in FEATURES]
        if unknown:
            raise RerankerFormatError(f"unknown feature(s) {unknown}; this API computes {sorted(FEATURES)}")
        if not names or len(names) != len(weights) or len(set(names)) != len(names):
            raise RerankerFormatError(
                f"{len(names)} feature names (distinct, >= 1) need as many weights, got {len(weights)}"
            )
        if not all(math.isfinite(w) for w in [*weights, bias]):
            raise RerankerFormatError("re-ranker weights must be finite numbers")
        return cls(names, np.asarray(weights, dtype=np.float32), bias)

    @classmethod
    def for_version(cls, meta: Mapping[str, Any]) -> LinearReranker | None:
        """The re-ranker published with a version, None when it has none. RerankerFormatError if unusable."""
        spec = (meta.get("params") or {}).get("reranker")
        return None if spec is None else cls.from_dict(spec)

    def weights_for(self, pool: Pool) -> tuple[np.ndarray, float]:
        """Its weights over ``Pool.features`` (float32 (len(FEATURE_NAMES),)) and its bias: what
        :meth:`Pool.top` (the API) and :meth:`Pool.score` (every candidate's score) take."""
        return self._full, self.bias

    def __post_init__(self) -> None:
        full = self.full_weights
        full.flags.writeable = False  # shared by every request, as the blend's weights are
        object.__setattr__(self, "_full", full)
