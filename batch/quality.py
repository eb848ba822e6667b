"""The quality gate: is the new model at least as good as the one serving, on the same fair holdout?

Both models are ranked on the SAME users and items: each user's held-out latest items whose events
fall on the new run's partition day. The serving model was trained before that day, and the new
model's holdout-blind vectors (``eval_model.npz``) never saw those items, so neither has an unfair
advantage. Items unknown to the serving model get a zero vector (a real weakness of an older model);
users unknown to it are left out. Both are scored with batch.holdout_metrics' full-ranking metrics.

The gate rebuilds nothing: the batch run saves what it measured its own holdout metrics on
(:class:`GateInputs`: the holdout, which of its items fall on the partition day, the train matrix and
the train popularity) next to ``eval_model.npz``. None of it is published or hashed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from batch.artifacts import RunArtifacts, load_npz, save_npz
from batch.holdout_metrics import holdout_metrics
from batch.matrix import IdMaps
from batch.train import AlsModel
from shared.config import Settings
from shared.errors import ArtifactNotFound, HybridrecError

GATED_METRICS = ("ndcg", "recall")
EVAL_HOLDOUT_FILE = "eval_holdout.npz"
EVAL_TRAIN_FILE = "eval_train.npz"


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


@dataclass(frozen=True, eq=False)
class GateInputs:
    """What a run measured its holdout metrics on, saved so that the gate rebuilds nothing.

    ``users`` int32 (h,): the users with held-out items, ascending; user ``users[j]``'s held-out items
    are ``items[indptr[j]:indptr[j + 1]]`` (int32, ascending; ``indptr`` int64 (h + 1,)) and ``on_day``
    (bool, aligned with ``items``) says which of them the user had an event with on the partition day.
    ``train`` CSR float32 (n_users, n_items): the confidence matrix the holdout-blind model was trained
    on; ``train_popularity`` float32 (n_items,): the popularity baseline of ``metrics.json``.
    Files: ``eval_holdout.npz`` (users, indptr, items, on_day), ``eval_train.npz`` (indptr, indices,
    data, shape, popularity).
    """

    users: np.ndarray
    indptr: np.ndarray
    items: np.ndarray
    on_day: np.ndarray
    train: csr_matrix
    train_popularity: np.ndarray

    @classmethod
    def build(
        cls,
        partition: dt.date,
        interactions: pd.DataFrame,
        maps: IdMaps,
        holdout: Mapping[int, np.ndarray],
        train: csr_matrix,
        train_popularity: np.ndarray,
    ) -> GateInputs:
        """From the pipeline's values: ``interactions`` of the run's window, ``holdout`` user index -> item indices."""
        users = np.array(sorted(holdout), dtype=np.int32)
        rows = [np.unique(np.asarray(holdout[u], dtype=np.int32)) for u in users]
        indptr = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=indptr[1:])
        items = np.concatenate(rows) if rows else np.empty(0, dtype=np.int32)
        today = interactions[interactions["ts"] >= pd.Timestamp(partition, tz="UTC")]
        n_items = np.int64(maps.n_items)
        fresh = maps.user_codes(today["user_id"]).astype(np.int64) * n_items + maps.item_codes(today["item_id"])
        pairs = np.repeat(users.astype(np.int64), np.diff(indptr)) * n_items + items
        on_day = np.isin(pairs, fresh)
        return cls(users, indptr, items, on_day, train, np.asarray(train_popularity, dtype=np.float32))

    def save(self, run_dir: Path) -> None:
        save_npz(
            run_dir / EVAL_HOLDOUT_FILE, users=self.users, indptr=self.indptr, items=self.items, on_day=self.on_day
        )
        t = self.train
        shape = np.array(t.shape, dtype=np.int64)
        save_npz(
            run_dir / EVAL_TRAIN_FILE,
            indptr=t.indptr,
            indices=t.indices,
            data=t.data,
            shape=shape,
            popularity=self.train_popularity,
        )

    @classmethod
    def load(cls, run_dir: Path) -> GateInputs:
        if not (run_dir / EVAL_HOLDOUT_FILE).exists():
            date = run_dir.name.removeprefix("date=")
            raise ArtifactNotFound(
                f"{run_dir} has no {EVAL_HOLDOUT_FILE} (it was built by an older release): rebuild it with "
                f"`hybridrec run-batch --date {date}`"
            )
        h, t = load_npz(run_dir / EVAL_HOLDOUT_FILE), load_npz(run_dir / EVAL_TRAIN_FILE)
        train = csr_matrix((t["data"], t["indices"], t["indptr"]), shape=tuple(int(n) for n in t["shape"]))
        return cls(h["users"], h["indptr"], h["items"], h["on_day"], train, t["popularity"])

    def held_out(self) -> Mapping[int, np.ndarray]:
        """user index -> held-out item indices (int32, ascending), a view over these arrays (a dict of
        100k small arrays costs ~20 MB of object headers)."""
        return _HeldOut(self.users, self.indptr, self.items)

    def fair_targets(self, known_users: np.ndarray) -> dict[int, np.ndarray]:
        """user index -> the held-out items with an event on the partition day, for users with
        ``known_users`` (bool (n_users,)) True; users left with none are absent."""
        out = {}
        for j, user in enumerate(self.users.tolist()):
            start, end = self.indptr[j], self.indptr[j + 1]
            items = self.items[start:end][self.on_day[start:end]]
            if known_users[user] and len(items):
                out[user] = items
        return out


class _HeldOut(Mapping[int, np.ndarray]):
    def __init__(self, users: np.ndarray, indptr: np.ndarray, items: np.ndarray) -> None:
        self._users, self._indptr, self._items = users, indptr, items  # not .items: Mapping has items()

    def __getitem__(self, user: int) -> np.ndarray:
        if not 0 <= user <= np.iinfo(self._users.dtype).max:
            raise KeyError(user)
        # the key in the array's dtype: with a Python int numpy casts the whole (int32) array to int64 on
        # every lookup, which made holdout_metrics quadratic in users (192 s for 590k users at 1M)
        j = int(np.searchsorted(self._users, self._users.dtype.type(user)))
        if j >= len(self._users) or self._users[j] != user:
            raise KeyError(user)
        return self._items[self._indptr[j] : self._indptr[j + 1]]

    def __iter__(self) -> Iterator[int]:
        return iter(self._users.tolist())

    def __len__(self) -> int:
        return len(self._users)


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
    gate = GateInputs.load(run_dir)
    cur_users, user_known = _mapped(current.user_ids, current.user_arrays["vector"], new.user_ids)
    cur_items, _ = _mapped(
        current.items["item_id"].to_numpy(), current.item_arrays["item_factors"], new.items["item_id"].to_numpy()
    )
    fair = gate.fair_targets(user_known)
    if not fair:
        note = f"no user has a held-out item on {new.manifest['partition']}"
        return Comparison(k, 0, None, None, serving_version, note)
    blind = load_npz(run_dir / "eval_model.npz")
    # runs older than the full-data fit published the blind model's item factors, so they are the same
    candidate = AlsModel(blind["user_factors"], blind.get("item_factors", new.item_arrays["item_factors"]))
    serving = AlsModel(cur_users, cur_items)
    args = (gate.train, fair, k, settings.eval_max_users, settings.seed, gate.train_popularity)
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
