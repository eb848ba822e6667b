"""Candidates of one request and their request-time features: the one definition that the API ranks
with and that the re-ranker is trained on (``lab.train_reranker`` calls these very functions).

Candidate pool (indices into the loaded version's items):

* the user's precomputed top-N (batch ALS, already excluding what they saw in training);
* for each of the ``seed_items`` most recent distinct session items (the *seeds*): its precomputed
  ALS neighbours and its co-visitation neighbours (items that followed it in past sessions);
* for a user without a record only: the head of the popular list (of the requested category, if any).

Items seen in the session, unavailable items and items outside the requested category are removed.

Features of candidate c (float32 (n_candidates,) each; all known at request time). A z-score is taken
over the request's pool, so a weight means the same thing in every request; a constant or absent
signal gives 0::

    user_z          z( u . v_c )                       ALS affinity of the user (0 without a user record)
    session_z       z( cos(s, v_c) )                   s = recency-weighted mean of the unit vectors of
                                                       the session items, weight_j = event_weight_j *
                                                       0.5 ** (age_j / half_life), age 0 = newest event
    popularity_z    z( log(1 + popularity_c) )         recency-decayed popularity of the version
    covisit_z       z( covisit )
    covisit         sum over seeds s of decay_s * covis(s -> c)   decay_s = 0.5 ** (age_s / half_life),
                                                       age_s = events since the seed's latest event
    last_item_sim   cos(v_last, v_c)                   the newest session item only
    category_share  share of the session's weight (as in s) on items of c's category
    in_candidates   1 if c is in the user's precomputed list
    candidate_rank  1 / log2(2 + r), r = c's 0-based rank in that list (0 if absent)
    log_popularity  log(1 + popularity_c), not standardised (absolute popularity)

All features of a request are computed in one vectorised pass into one float32 (n, n_features)
matrix (``Pool.features``, columns in ``FEATURE_NAMES`` order): one gather of the candidates' unit
vectors, one small matrix product for the three dot products, one pass for the four z-scores. The
blend (``online.blend``) and the learned re-ranker (``online.reranker``) are each one weight vector
over those columns. Reasons are worked out for the served top-k only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from feature_store.base import RequestFeatures, SessionEvent, UserRecord
from shared.schemas import EVENT_WEIGHTS

if TYPE_CHECKING:  # the model imports the re-ranker, which names these features
    from online.model import LoadedModel

# Column order of Pool.features. The z columns standardise the raw column Z_OF names.
RAW_FEATURES = (
    "user_dot",
    "session_cos",
    "log_popularity",
    "covisit",
    "last_item_sim",
    "category_share",
    "candidate_rank",
    "in_candidates",
)
Z_OF = {"user_z": "user_dot", "session_z": "session_cos", "popularity_z": "log_popularity", "covisit_z": "covisit"}
FEATURE_NAMES: tuple[str, ...] = (*RAW_FEATURES, *Z_OF)
COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}
FEATURES = frozenset(FEATURE_NAMES)  # what a re-ranker may name
_Z_SRC = np.array([COLUMN[src] for src in Z_OF.values()])
_Z_DST = np.array([COLUMN[name] for name in Z_OF])
_EMPTY = np.empty(0, dtype=np.int64)
_RANK_DISCOUNT = 1.0 / np.log2(2.0 + np.arange(2_000))  # candidate_rank of rank r (n_candidates <= 2,000)


@dataclass(frozen=True)
class Pool:
    """One request's candidates and their features. Per request, not shared.

    The raw features are kept feature-major with the mean and inverse standard deviation of the z
    columns; :meth:`score` folds the standardisation into the weights, so serving never materialises
    the (n, len(FEATURE_NAMES)) matrix, which :attr:`features` builds on first use (the lab trains on it).
    """

    model: LoadedModel
    user: UserRecord | None
    seeds: np.ndarray  # int64 (n_seeds,) recent distinct session items, newest first
    s_vec: np.ndarray | None  # float32 (f,) unit session vector, None without a known session item
    items: np.ndarray  # int64 (n,) candidate item indices, ascending
    blocked: np.ndarray  # bool (n_items,): items never served to this request (unavailable, or see build_pool)
    raw: np.ndarray  # float32 (len(RAW_FEATURES), n): the raw features, one row each
    z_mean: np.ndarray  # float64 (len(Z_OF),): mean over the pool of each z column's raw feature
    z_scale: np.ndarray  # float64 (len(Z_OF),): 1 / its standard deviation (0 for a constant one)
    history_reason: bool  # exclude_seen is off: history items are labelled seen_before

    @cached_property
    def features(self) -> np.ndarray:
        """float32 (n, len(FEATURE_NAMES)), columns in FEATURE_NAMES order."""
        out = np.empty((len(self.items), len(FEATURE_NAMES)), dtype=np.float32)
        out[:, : len(RAW_FEATURES)] = self.raw.T
        z = (self.raw[_Z_SRC].astype(np.float64) - self.z_mean[:, None]) * self.z_scale[:, None]
        out[:, _Z_DST] = z.T
        return out

    def score(self, weights: np.ndarray, bias: float = 0.0) -> np.ndarray:
        """float32 (n,): ``features @ weights + bias`` (``weights`` (len(FEATURE_NAMES),)), computed from
        the raw rows: a z column's weight w becomes w / std on its raw row and -w * mean / std in the bias."""
        w_z = weights[_Z_DST].astype(np.float64) * self.z_scale
        w_raw = weights[: len(RAW_FEATURES)].astype(np.float64)
        w_raw[_Z_SRC] += w_z
        return (w_raw @ self.raw + (bias - float(w_z @ self.z_mean))).astype(np.float32)

    def column(self, name: str) -> np.ndarray:
        """Feature ``name`` over the pool, float32 (n,)."""
        return self.raw[COLUMN[name]] if COLUMN[name] < len(RAW_FEATURES) else self.features[:, COLUMN[name]]

    def matrix(self, names: tuple[str, ...] | list[str]) -> np.ndarray:
        """float32 (n, len(names)) of the named features."""
        return self.features[:, [COLUMN[n] for n in names]]

    def reasons(self, rows: np.ndarray) -> list[str]:
        """Why each chosen candidate (``rows``: int (k,) positions in ``items``) is in the pool: the
        newest seed whose ALS, then co-visitation, neighbours hold it, else the user's list
        (``for_you``), else ``popular``; ``seen_before`` for a history item when exclusion is off.
        Vectorised over the k items."""
        model = self.model
        chosen = self.items[rows]
        k = len(chosen)
        out = ["popular"] * k
        for i in np.flatnonzero(self.raw[COLUMN["in_candidates"], rows]).tolist():
            out[i] = "for_you"
        if self.seeds.size and k:
            # Each seed's row of seed_lists is its ALS neighbours then its co-visitors, newest seed first,
            # so the first match in the flattened rows is the first in the order of precedence.
            width = model.seed_lists.shape[1]
            same = (model.seed_lists[self.seeds].ravel() == chosen[:, None]).view(np.uint8)  # (k, n_seeds * width)
            first = same.argmax(axis=1)
            found = same[np.arange(k), first].nonzero()[0].tolist()
            for i, at in zip(found, first[found].tolist(), strict=True):
                seed = model.bundle.item_ids[int(self.seeds[at // width])]
                out[i] = f"{'similar_to' if at % width < model.n_neighbours else 'often_next_to'}:{seed}"
        if self.history_reason and self.user is not None and self.user.seen.size:
            seen = np.sort(self.user.seen)
            pos = np.minimum(np.searchsorted(seen, chosen), seen.size - 1)
            for i in np.flatnonzero(seen[pos] == chosen).tolist():
                out[i] = "seen_before"
        return out


def z_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and inverse standard deviation (0 for a constant, or empty, row) of each row of (m, n)
    values (m signals over n candidates), in float64: ``(x - mean) * scale`` are the z-scores.
    Written out (sum, not ``mean``/``std``): numpy's reductions cost more in call overhead than in
    arithmetic here."""
    n = x.shape[1]
    if n == 0:
        return np.zeros(x.shape[0]), np.zeros(x.shape[0])
    d = x.astype(np.float64)
    mean = d.sum(axis=1) / n
    d -= mean[:, None]
    std = np.sqrt(np.einsum("ij,ij->i", d, d) / n)
    return mean, np.divide(1.0, std, out=np.zeros_like(std), where=std >= 1e-9)


def _session(
    model: LoadedModel, events: list[SessionEvent], half_life: float, limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Known session events as (item indices int64, weights float32) and the seeds: the ``limit`` most
    recent distinct known items, newest first, with their recency decay ``0.5 ** (age / half_life)``."""
    index = model.bundle.item_index
    n = len(events)
    idx: list[int] = []
    ages: list[int] = []
    kinds: list[float] = []
    for pos, ev in enumerate(events):
        j = index.get(ev.item_id)
        if j is not None:
            idx.append(j)
            ages.append(n - 1 - pos)
            kinds.append(EVENT_WEIGHTS.get(ev.event_type, 1.0))
    if not idx:
        return _EMPTY, np.empty(0, np.float32), _EMPTY, np.empty(0, np.float32)
    decay = 0.5 ** (np.asarray(ages, dtype=np.float64) / half_life)
    weights = (np.asarray(kinds) * decay).astype(np.float32)
    seeds: list[int] = []
    seed_decay: list[float] = []
    for j, d in zip(reversed(idx), reversed(decay.tolist()), strict=True):
        if j not in seeds:
            seeds.append(j)
            seed_decay.append(d)
            if len(seeds) == limit:
                break
    return (
        np.asarray(idx, dtype=np.int64),
        weights,
        np.asarray(seeds, dtype=np.int64),
        np.asarray(seed_decay, np.float32),
    )


def session_vector(model: LoadedModel, events: list[SessionEvent], half_life: float) -> np.ndarray | None:
    """Recency-weighted mean of the unit vectors of the session's known items (f,), unit-normalised."""
    idx, weights, _, _ = _session(model, events, half_life, 1)
    return _unit_mean(model, idx, weights)


def _unit_mean(model: LoadedModel, idx: np.ndarray, weights: np.ndarray) -> np.ndarray | None:
    if idx.size == 0:
        return None
    vec = weights @ model.unit_factors[idx]
    norm = math.sqrt(float(vec @ vec))
    return (vec / norm).astype(np.float32) if norm > 0 else None


def build_pool(
    model: LoadedModel,
    features: RequestFeatures | None,
    category: str | None,
    seed_items: int,
    half_life: float,
    popular_pool: int,
    exclude_seen: bool = True,
) -> Pool:
    """The candidates of one request and their features (module docstring). ``features`` None: the store
    was not read.

    Never served: every item of the live session (its seen set, beyond the session list's cap) and,
    with ``exclude_seen``, every item of the user's training history (``user.seen``). Without
    ``exclude_seen`` (repeat-purchase domains) history items may come back, with reason ``seen_before``.

    One pass: the candidate lists are concatenated and de-duplicated once (``np.unique`` with the
    inverse, which places every list entry in the pool without a search), the raw features computed for
    every distinct candidate, then the rows that may not be served dropped before the z-scores.
    """
    bundle = model.bundle
    user = features.user if features else None
    events = features.session if features else []
    session_idx, session_w, seeds, seed_decay = _session(model, events, half_life, seed_items)

    base = user.candidates if user is not None else model.popular(category)[:popular_pool]
    lists = model.seed_lists[seeds].ravel() if seeds.size else _EMPTY  # seeds' neighbours, then co-visitors
    items, where = _unique_inverse(np.concatenate([base, lists]))
    s_vec = _unit_mean(model, session_idx, session_w)
    raw = _raw_features(model, user, s_vec, items, where, len(base), seeds, seed_decay, session_idx, session_w)

    # one flag per item of the version (n_items bytes, 20 KB at 20k items): cheaper than sorting the
    # exclusions for a membership test, and what the popular fill reads too
    blocked = ~model.available
    blocked[session_idx] = True
    seen_ids = features.session_seen if features else ()
    if seen_ids:
        index = bundle.item_index
        blocked[[index[i] for i in seen_ids if i in index]] = True
    if exclude_seen and user is not None:
        blocked[user.seen] = True
    keep = ~blocked[items]
    keep &= items >= 0  # -1 pads the neighbour lists (and read blocked's last flag)
    if category:
        keep &= model.category_codes[items] == model.category_index.get(category, -1)
    items = items[keep]
    raw = raw[:, keep]
    z_mean, z_scale = z_stats(raw[_Z_SRC])
    return Pool(
        model=model,
        user=user,
        seeds=seeds,
        s_vec=s_vec,
        items=items,
        blocked=blocked,
        raw=raw,
        z_mean=z_mean,
        z_scale=z_scale,
        history_reason=not exclude_seen,
    )


def _raw_features(
    model: LoadedModel,
    user: UserRecord | None,
    s_vec: np.ndarray | None,
    items: np.ndarray,
    where: np.ndarray,
    n_base: int,
    seeds: np.ndarray,
    seed_decay: np.ndarray,
    session_idx: np.ndarray,
    session_w: np.ndarray,
) -> np.ndarray:
    """float32 (len(RAW_FEATURES), n), feature-major (each feature one contiguous row): the raw features
    of every distinct candidate ``items`` (int64 (n,), ascending; -1 included when a list is padded).
    ``where``: the position in ``items`` of each entry of the concatenated lists: the first ``n_base``
    the user's candidates (or the popular head), then, per seed, its ALS neighbours and its co-visitors
    (``LoadedModel.seed_lists``)."""
    n = len(items)
    raw = np.zeros((len(RAW_FEATURES), n), dtype=np.float32)
    if n == 0:
        return raw
    queries, rows = [], []
    if user is not None:
        queries.append(user.vector)
        rows.append(COLUMN["user_dot"])
    if s_vec is not None:
        queries.append(s_vec)
        rows.append(COLUMN["session_cos"])
    if seeds.size:
        queries.append(model.unit_factors[seeds[0]])
        rows.append(COLUMN["last_item_sim"])
    if queries:
        raw[rows] = np.stack(queries) @ model.unit_factors[items].T  # the one gather of item vectors
        if user is not None:
            raw[COLUMN["user_dot"]] *= model.norms[items]  # u . v_c = |v_c| (u . v_c / |v_c|)
    raw[COLUMN["log_popularity"]] = model.log_popularity[items]
    if seeds.size:
        # sum over seeds s of decay_s * covis(s -> c): seed_scores is 0 outside the co-visitors' columns
        weights = (model.seed_scores[seeds] * seed_decay[:, None]).ravel()
        raw[COLUMN["covisit"]] = np.bincount(where[n_base:], weights=weights, minlength=n)
        total = float(session_w.sum())
        if total > 0:
            codes = model.category_codes
            per_category = np.bincount(codes[session_idx], weights=session_w, minlength=model.n_categories)
            raw[COLUMN["category_share"]] = per_category[codes[items]] / total
    if user is not None and n_base:
        at = where[:n_base]
        raw[COLUMN["candidate_rank"], at] = _rank_discount(n_base)
        raw[COLUMN["in_candidates"], at] = 1.0
    return raw


def _unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` for a 1-D int64 array, without its generality."""
    order = values.argsort(kind="stable")
    ordered = values[order]
    first = np.empty(len(values), dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    where = np.empty(len(values), dtype=np.int64)
    where[order] = np.cumsum(first) - 1
    return ordered[first], where


def _rank_discount(n: int) -> np.ndarray:
    """1 / log2(2 + r) for ranks r = 0..n-1."""
    return _RANK_DISCOUNT[:n] if n <= _RANK_DISCOUNT.size else 1.0 / np.log2(2.0 + np.arange(n))
