"""The static protocol: one seeded split, every model fitted on train and ranked over the full catalogue.

Index space: users and items are indexed over the *whole* input (``batch.matrix.build_id_maps`` on
all interactions plus any catalogue ids), so an item seen only in the holdout still has a column every
model can rank (with no training signal), and coverage is relative to that whole catalogue. The training
matrix is ``batch.matrix.confidence_matrix`` of the train rows, as production builds it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Literal

import numpy as np
import pandas as pd

from batch.holdout import holdout_indices
from batch.matrix import build_id_maps, confidence_matrix
from batch.metrics import METRICS, item_counts, mean_metrics, popularity_percentile
from lab.baselines import Baseline
from lab.splits import SplitProtocol
from shared.errors import ModelError


def run_static_protocol(
    interactions: pd.DataFrame,
    protocol: SplitProtocol,
    models: Mapping[str, Baseline],
    ks: Sequence[int] = (10, 20, 50),
    seed: int = 42,
    scheme: Literal["log", "bm25"] = "log",
    max_users: int | None = None,
    item_ids: Iterable[str] = (),
) -> dict:
    """Split ``interactions`` with ``protocol`` and ``seed``, fit each model, report every metric at each k.

    ``interactions``: user_id, item_id, weight (+ ts for the temporal protocol); ``item_ids``: catalogue
    items nobody interacted with, which widen the ranking and the coverage denominator. Each model in
    ``models`` (unfitted, name -> model) is fitted on the train matrix (float32 CSR (n_users, n_items),
    ``scheme`` confidences) and asked for ``max(ks)`` items for every user with held-out items (or a
    ``seed``-drawn sample of ``max_users`` of them). Popularity percentiles come from the train
    matrix's ``item_counts``. Returns a JSON-ready dict::

        {"protocol": {"name": ..., <its parameters>}, "seed": int, "ks": [int], "scheme": str,
         "data": {"n_users", "n_items", "n_interactions", "n_train_pairs", "n_eval_users", "n_heldout_pairs"},
         "models": {name: {"<k>": {metric: float, "n_lists": int}}},
         "timings_s": {"split": float, name: {"fit": float, "recommend": float}}}

    Everything but ``timings_s`` is a deterministic function of the inputs.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ModelError(f"ks must be a non-empty set of integers >= 1, got {ks}")
    if not models:
        raise ModelError("no models to evaluate")
    timings: dict = {}
    t0 = time.perf_counter()
    train, holdout = protocol.split(interactions, seed)
    maps = build_id_maps(interactions, item_ids)
    train_matrix = confidence_matrix(train, maps, scheme=scheme)
    truth = holdout_indices(holdout, maps.user_index, maps.item_index)
    timings["split"] = time.perf_counter() - t0

    users = np.array(sorted(u for u, items in truth.items() if len(items)), dtype=np.int64)
    if len(users) == 0:
        raise ModelError("no user has held-out items; the data is too small for this protocol")
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
    relevant = [truth[int(u)] for u in users]
    percentile = popularity_percentile(item_counts(train_matrix))

    results: dict[str, dict] = {}
    for name, model in models.items():
        t0 = time.perf_counter()
        model.fit(train_matrix)
        t1 = time.perf_counter()
        ranked = model.recommend(users, ks[-1])
        t2 = time.perf_counter()
        if ranked.shape != (len(users), ks[-1]):
            raise ModelError(f"model {name!r} returned lists of shape {ranked.shape}, expected {(len(users), ks[-1])}")
        scores = mean_metrics(ranked, relevant, ks, maps.n_items, percentile)
        results[name] = {str(k): row for k, row in scores.items()}
        timings[name] = {"fit": t1 - t0, "recommend": t2 - t1}

    return {
        "protocol": {"name": protocol.name, **asdict(protocol)},
        "seed": seed,
        "ks": ks,
        "scheme": scheme,
        "data": {
            "n_users": maps.n_users,
            "n_items": maps.n_items,
            "n_interactions": len(interactions),
            "n_train_pairs": int(train_matrix.nnz),
            "n_eval_users": len(users),
            "n_heldout_pairs": int(sum(len(r) for r in relevant)),
        },
        "models": results,
        "timings_s": timings,
    }


def markdown_table(result: Mapping) -> str:
    """``run_static_protocol``'s metrics as a markdown table: one row per (model, k), one column per metric."""
    head = "| model | k | " + " | ".join(METRICS) + " |"
    lines = [head, "|" + "---|" * (len(METRICS) + 2)]
    for name, by_k in result["models"].items():
        for k, row in by_k.items():
            cells = ["nan" if math.isnan(row[m]) else f"{row[m]:.4f}" for m in METRICS]
            lines.append(f"| {name} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
