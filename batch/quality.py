"""The quality gate: is the new model at least as good as the one serving, on the same fair holdout?

Both models are ranked on the SAME users and items: each user's held-out latest items whose events
fall on the new run's partition day. The serving model was trained before that day, and the new
model's holdout-blind vectors (``eval_model.npz``) never saw those items, so neither has an unfair
advantage. Items unknown to the serving model get a zero vector (a real weakness of an older model);
users unknown to it are left out. Both are scored with batch.holdout_metrics' full-ranking metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from batch.artifacts import RunArtifacts, load_npz
from batch.candidates import decayed_popularity
from batch.dataset import load_interactions
from batch.holdout import holdout_indices, temporal_split
from batch.holdout_metrics import holdout_metrics
from batch.matrix import build_id_maps, confidence_matrix
from batch.pipeline import partition_end
from batch.train import AlsModel
from shared.config import Settings
from shared.errors import HybridrecError, ModelError
from shared.ids import parse_date

GATED_METRICS = ("ndcg", "recall")


class QualityGateFailed(HybridrecError):
    """The candidate model is worse than the serving one by more than the tolerance."""

    code = "quality_gate_failed"
    exit_code = 8


@dataclass(frozen=True)
class Comparison:
    k: int
    n_users: int
    candidate: dict[str, float] | None
    current: dict[str, float] | None
    current_version: str | None
    note: str = ""

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def _mapped(model_ids: np.ndarray, factors: np.ndarray, target_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``factors`` (indexed like model_ids) re-ordered to target_ids; zero rows + False for unknown ids."""
    index = pd.Index(model_ids)
    pos = index.get_indexer(pd.Index(target_ids))
    known = pos >= 0
    out = np.zeros((len(target_ids), factors.shape[1]), dtype=np.float32)
    out[known] = factors[pos[known]]
    return out, known


def compare_with_serving(
    settings: Settings, run_dir: Path, serving_run_dir: Path | None, serving_version: str | None
) -> Comparison:
    """Evaluate the run in ``run_dir`` and the serving run on the same fair holdout (see module docstring)."""
    new = RunArtifacts.load(run_dir)
    k = settings.eval_k
    if serving_run_dir is None or serving_run_dir.resolve() == run_dir.resolve():
        note = "nothing else is serving" if serving_run_dir is None else "the serving version is this run"
        return Comparison(k, 0, None, None, serving_version, note)
    current = RunArtifacts.load(serving_run_dir)
    partition = parse_date(new.manifest["partition"])
    interactions = load_interactions(settings.interactions_dir, partition, int(new.manifest["window_days"]))
    maps = build_id_maps(interactions)
    if not np.array_equal(maps.user_ids, new.user_ids.astype(str)):
        raise ModelError(
            f"the interactions under {settings.interactions_dir} changed since {run_dir} was built; rebuild it"
        )
    train_df, holdout = temporal_split(interactions, settings.holdout_per_user)
    day_start = partition_end(partition) - pd.Timedelta(days=1)
    today = interactions[interactions["ts"] >= day_start]
    fresh = set(zip(today["user_id"], today["item_id"], strict=True))
    cur_users, user_known = _mapped(current.user_ids, current.user_arrays["vector"], maps.user_ids)
    cur_items, _ = _mapped(current.items["item_id"].to_numpy(), current.item_arrays["item_factors"], maps.item_ids)
    known_users = set(maps.user_ids[user_known].tolist())
    fair = {u: {i for i in items if (u, i) in fresh} for u, items in holdout.items() if u in known_users}
    fair = {u: items for u, items in fair.items() if items}
    if not fair:
        return Comparison(k, 0, None, None, serving_version, f"no user has a held-out item on {partition}")
    holdout_idx = holdout_indices(fair, maps.user_index, maps.item_index)
    train = confidence_matrix(train_df, maps, settings.confidence, settings.bm25_k1, settings.bm25_b)
    pop = decayed_popularity(train_df, maps, partition_end(partition), settings.popularity_half_life_days)
    blind = load_npz(run_dir / "eval_model.npz")
    # runs older than the full-data fit published the blind model's item factors, so they are the same
    candidate = AlsModel(blind["user_factors"], blind.get("item_factors", new.item_arrays["item_factors"]))
    serving = AlsModel(cur_users, cur_items)
    args = (train, holdout_idx, k, settings.eval_max_users, settings.seed, pop)
    m_new, m_cur = holdout_metrics(candidate, *args), holdout_metrics(serving, *args)
    return Comparison(k, m_new["n_users_evaluated"], m_new["als"], m_cur["als"], serving_version)


def check_gate(comparison: Comparison, tolerance: float, force: bool) -> str:
    """One line saying what passed; QualityGateFailed (with what to do) when a metric fell too far."""
    if comparison.candidate is None or comparison.current is None:
        return f"quality gate passed: no comparison ({comparison.note})"
    k = comparison.k
    drops = []
    for name in GATED_METRICS:
        new, cur = comparison.candidate[name], comparison.current[name]
        if cur > 0 and new < cur * (1 - tolerance):
            drops.append(
                f"{name.upper()}@{k} {new:.4f} is {100 * (1 - new / cur):.1f}% below the serving model's {cur:.4f}"
            )
    summary = ", ".join(
        f"{n.upper()}@{k} {comparison.candidate[n]:.4f} vs {comparison.current[n]:.4f}" for n in GATED_METRICS
    )
    if not drops:
        return f"quality gate passed on {comparison.n_users} users: {summary}"
    message = (
        f"quality gate refused the new model: {'; '.join(drops)} (tolerance {tolerance:.0%}, "
        f"{comparison.n_users} users held out). Version {comparison.current_version} keeps serving. "
        "Check the day's data and the run's metrics.json; to publish anyway, trigger the run with "
        "force_publish=true."
    )
    if force:
        return f"quality gate overridden by force_publish: {message}"
    raise QualityGateFailed(message)
