"""The latent world behind ``batch.synthetic.generate`` (steps 1-4 of its docstring): categories, items, their
neighbourhoods, users' tastes, and how a user picks an item in a category or a neighbourhood."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial import cKDTree

LATENT_DIM = 8
CATEGORY_ZIPF, ITEM_ZIPF = 0.8, 1.1  # popularity weight = rank^-exponent
POP_POWER = 1.0  # a in w^a · exp(u·v/τ)
TEMPERATURE = 0.7  # τ
N_RELATED, N_NEIGHBOURS, N_CANDIDATES, MAX_TASTES = 3, 10, 16, 4


@dataclasses.dataclass(frozen=True)
class World:
    """The latent state behind the data (d = LATENT_DIM, C categories, I items, U users)."""

    n_categories: int
    item_cat: np.ndarray  # int64 (I,)
    item_vec: np.ndarray  # float64 (d, I): transposed so one dimension is one contiguous row
    pop_logit: np.ndarray  # float64 (I,): a · log w_i
    cat_items: np.ndarray  # int64 (I,): item indices sorted by category
    cat_cdf: np.ndarray  # float64 (I,): category index + within-category CDF of w^a, aligned with cat_items
    neighbours: np.ndarray  # int64 (I, N_NEIGHBOURS): nearest items of the same category
    related: np.ndarray  # int64 (C, <= N_RELATED): nearest other categories
    taste_cat: np.ndarray  # int64 (U, <= MAX_TASTES)
    taste_cdf: np.ndarray  # float64 (U, <= MAX_TASTES): cumulative taste weights, 1.0 in padding slots
    user_vec: np.ndarray  # float64 (d, U)

    def affinity(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``u·v`` (float64) for users (n,) and items (n,) or (n, m); same shape as items.

        Summed one latent dimension at a time with plain elementwise ops (no BLAS, no SIMD reductions),
        so the result, and every argmax taken on it, is the same on every CPU.
        """
        out = np.zeros(items.shape)
        uu = users.reshape(users.shape + (1,) * (items.ndim - 1))
        for k in range(self.user_vec.shape[0]):
            out += self.user_vec[k][uu] * self.item_vec[k][items]
        return out

    def taste_topic(self, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
        """A category (n,) per user drawn from that user's taste mixture."""
        slot = (rng.random(len(users))[:, None] >= self.taste_cdf[users]).sum(axis=1)
        return self.taste_cat[users, np.minimum(slot, self.taste_cat.shape[1] - 1)]

    def pick_in_category(self, rng: np.random.Generator, users: np.ndarray, cats: np.ndarray) -> np.ndarray:
        """One item (n,) per (user, category), ∝ w^a · exp(u·v/τ) by resampling N_CANDIDATES draws ∝ w^a."""
        return self.choose(rng, users, self.category_candidates(rng, cats), 0.0)

    def pick_neighbour(self, rng: np.random.Generator, users: np.ndarray, prev: np.ndarray) -> np.ndarray:
        """One item (n,) from each previous item's neighbourhood, ∝ w^a · exp(u·v/τ)."""
        cand = self.neighbours[prev]
        return self.choose(rng, users, cand, self.pop_logit[cand])

    def category_candidates(self, rng: np.random.Generator, cats: np.ndarray, m: int = N_CANDIDATES) -> np.ndarray:
        """m items (n, m) per category, drawn ∝ w^a with replacement."""
        query = cats[:, None] + rng.random((len(cats), m)) * (1.0 - 1e-9)
        pos = np.minimum(np.searchsorted(self.cat_cdf, query, side="right"), len(self.cat_items) - 1)
        return self.cat_items[pos]

    def choose(
        self,
        rng: np.random.Generator,
        users: np.ndarray,
        cand: np.ndarray,
        prior: np.ndarray | float,
        banned: np.ndarray | None = None,
    ) -> np.ndarray:
        """Gumbel-max over candidates (n, m): one item (n,) ∝ exp(prior + u·v/τ).

        ``banned`` (bool (n, m)) takes candidates out of the draw, so the pick is from the distribution
        restricted to the others; a row whose candidates are all banned gets -1.
        """
        score = self.affinity(users, cand) / TEMPERATURE + prior + rng.gumbel(size=cand.shape)
        if banned is not None:
            score[banned] = -np.inf
        rows, best = np.arange(len(cand)), np.argmax(score, axis=1)
        if banned is None:
            return cand[rows, best]
        return np.where(np.isneginf(score[rows, best]), -1, cand[rows, best])


def zipf_logit(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """log of Zipf weights rank^-exponent (n,), ranks a random permutation of 1..n."""
    return -exponent * np.log(rng.permutation(n) + 1.0)


def build_world(rng: np.random.Generator, n_users: int, n_items: int, n_categories: int) -> World:
    """Draw categories, items, neighbourhoods and users (steps 1-3 of batch.synthetic.generate's docstring)."""
    c, d = n_categories, LATENT_DIM
    cat_logit = zipf_logit(rng, c, CATEGORY_ZIPF)
    centre = rng.normal(size=(c, d))
    dist = ((centre[:, None, :] - centre[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    related = np.argsort(dist, axis=1, kind="stable")[:, : min(N_RELATED, c - 1)] if c > 1 else np.zeros((1, 1), int)

    size_p = np.exp(0.5 * cat_logit) / np.exp(0.5 * cat_logit).sum()
    item_cat = rng.permutation(np.concatenate((np.arange(c), rng.choice(c, n_items - c, p=size_p))))
    item_vec = centre[item_cat] + rng.normal(size=(n_items, d))
    pop_logit = POP_POWER * zipf_logit(rng, n_items, ITEM_ZIPF)
    cat_items = np.argsort(item_cat, kind="stable")
    sorted_cat = item_cat[cat_items]
    weight = np.exp(pop_logit[cat_items])
    bounds = np.searchsorted(sorted_cat, np.arange(c + 1))
    cdf = np.cumsum(weight)
    base = np.concatenate(([0.0], cdf))[bounds[:-1]]
    total = cdf[bounds[1:] - 1] - base
    within = (cdf - np.repeat(base, np.diff(bounds))) / np.repeat(total, np.diff(bounds))
    within[bounds[1:] - 1] = 1.0
    neighbours = np.empty((n_items, N_NEIGHBOURS), dtype=np.int64)
    for k in range(c):
        members = cat_items[bounds[k] : bounds[k + 1]]
        if len(members) == 1:
            neighbours[members] = members[0]
            continue
        _, nn = cKDTree(item_vec[members]).query(item_vec[members], k=min(N_NEIGHBOURS + 1, len(members)))
        nn = members[nn[:, 1:]]  # column 0 is the item itself
        neighbours[members] = nn[:, np.arange(N_NEIGHBOURS) % nn.shape[1]]

    kt = min(MAX_TASTES, c)
    keys = cat_logit[None, :] + rng.gumbel(size=(n_users, c))
    taste_cat = np.argsort(-keys, axis=1, kind="stable")[:, :kt]  # kt categories ∝ popularity, no repeats
    n_tastes = 1 + rng.binomial(kt - 1, 0.4, n_users)
    mix = rng.gamma(1.0, size=(n_users, kt)) * (np.arange(kt)[None, :] < n_tastes[:, None])
    taste_cdf = np.cumsum(mix, axis=1) / mix.sum(axis=1, keepdims=True)
    taste_cdf[:, -1] = 1.0
    return World(
        n_categories=c,
        item_cat=item_cat,
        item_vec=item_vec.T.copy(),
        pop_logit=pop_logit,
        cat_items=cat_items,
        cat_cdf=sorted_cat + within,
        neighbours=neighbours,
        related=related,
        taste_cat=taste_cat,
        taste_cdf=taste_cdf,
        user_vec=(rng.normal(size=(n_users, d)) / np.sqrt(d)).T.copy(),
    )
