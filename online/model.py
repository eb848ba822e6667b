"""The model the API serves: one version's item data in memory, swapped atomically on publish.

A request takes ONE reference to a :class:`LoadedModel` at its start and uses it to the end, so a
version switch in the middle of a request cannot mix item data of two versions; the user record is
read under the same version id. Everything derived from a version (unit factors, the blend it was
tuned with, its learned re-ranker) is computed once, when it loads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from feature_store import codecs
from feature_store.base import ItemBundle, VersionStore
from feature_store.keys import ALL_CATEGORIES
from online.blend import BlendParams
from online.embedding_map import EmbeddingMap, pca_2d
from online.features import compile_kernels
from online.periodic import Periodic
from online.reranker import LinearReranker, RerankerFormatError
from shared.errors import StoreError

log = logging.getLogger("hybridrec.online")
_NO_ITEMS = np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class LoadedModel:
    """An ItemBundle plus what is derived from it once per version (not per request)."""

    bundle: ItemBundle
    unit_factors: np.ndarray  # float32 (n_items, f), rows L2-normalised (zero rows stay zero)
    norms: np.ndarray  # float32 (n_items,), |v_j|: item_factors = unit_factors * norms[:, None]
    log_popularity: np.ndarray  # float32 (n_items,), log1p(decayed popularity)
    category_codes: np.ndarray  # int64 (n_items,), index of the item's category in sorted categories
    n_categories: int
    params: BlendParams  # the configured blend with this version's tuned fields
    reranker: LinearReranker | None  # the version's learned re-ranker, None without a usable one
    user_layout: codecs.UserLayout  # how this version's user records are encoded
    popular_lists: dict[str, np.ndarray]  # category (ALL_CATEGORIES: all) -> int64 item indices, best first
    category_index: dict[str, int]  # category -> its code in category_codes
    seed_lists: np.ndarray  # int64 (n_items, n_neighbours + n_covisit): each item's ALS neighbours, then
    # its co-visitors (-1 padded): the candidates a session item brings, in one gather
    seed_scores: np.ndarray  # float32, same shape: the co-visitation score of each co-visitor, 0 elsewhere
    n_neighbours: int  # the width of the ALS part of seed_lists

    @classmethod
    def from_bundle(cls, bundle: ItemBundle, defaults: BlendParams | None = None) -> LoadedModel:
        """``defaults``: the configured blend (``BlendParams.from_settings``); the version's meta may tune it.
        A re-ranker the API cannot use (an unknown feature, say) is logged and left out: the blend serves."""
        f = bundle.item_factors.astype(np.float32, copy=False)
        norms = np.linalg.norm(f, axis=1, keepdims=True)
        unit = np.divide(f, norms, out=np.zeros_like(f), where=norms > 0)
        names, codes = np.unique(bundle.categories.astype(str), return_inverse=True)
        reranker = None
        try:
            reranker = LinearReranker.for_version(bundle.meta)
        except RerankerFormatError as exc:
            log.warning("version %s: re-ranker unusable, the blend serves instead: %s", bundle.version, exc)
        return cls(
            bundle=bundle,
            unit_factors=unit,
            norms=norms[:, 0].astype(np.float32),
            log_popularity=np.log1p(np.maximum(bundle.popularity, 0)).astype(np.float32),
            category_codes=codes.astype(np.int64),
            n_categories=len(names),
            params=(defaults or BlendParams()).for_version(bundle.meta),
            reranker=reranker,
            user_layout=tuple(map(tuple, codecs.user_layout_of(bundle.meta))),  # hashable: decoders are cached by it
            popular_lists={cat: idx.astype(np.int64) for cat, idx in bundle.popular.items()},
            category_index={str(name): i for i, name in enumerate(names)},
            seed_lists=np.concatenate([bundle.neighbours, bundle.covisit], axis=1).astype(np.int64),
            seed_scores=_seed_scores(bundle),
            n_neighbours=bundle.neighbours.shape[1],
        )

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def available(self) -> np.ndarray:
        """bool (n_items,)"""
        return self.bundle.available

    @cached_property
    def embedding_map(self) -> EmbeddingMap:
        """The items on the first two principal axes of their unit factors (the cosine geometry the
        neighbours use; raw factors would put popular items, the long vectors, on the first axis):
        computed on first use, once per version (the operator page's map), never on the request path."""
        return pca_2d(self.unit_factors)

    def popular(self, category: str | None) -> np.ndarray:
        """int64 popular list for ``category`` (global list when None); empty for an unknown category."""
        return self.popular_lists.get(category or ALL_CATEGORIES, _NO_ITEMS)


def compile_ranking() -> None:
    """Compile the ranking's numba kernels (or load them from numba's cache) on a two-item model, with the
    argument types of every real one: the image build runs this so that containers start with them
    cached (Dockerfile), and the test session runs it first."""
    pairs = np.array([[1], [0]], dtype=np.int32)
    ones = np.ones((2, 1), dtype=np.float32)
    arrays = {"item_factors": np.eye(2, 4, dtype=np.float32), "neighbours": pairs, "neighbour_scores": ones}
    arrays |= {"covisit": pairs, "covisit_scores": ones, "popularity": np.ones(2, dtype=np.float32)}
    bundle = ItemBundle(
        version="compile",
        meta={},
        item_ids=["a", "b"],
        categories=np.array(["c", "c"], dtype=object),
        titles=["a", "b"],
        available=np.array([True, True]),
        arrays=arrays,
        popular={ALL_CATEGORIES: np.array([0, 1], dtype=np.int32)},
    )
    compile_kernels(LoadedModel.from_bundle(bundle))


def _seed_scores(bundle: ItemBundle) -> np.ndarray:
    """float32 (n_items, n_neighbours + n_covisit): 0 for the ALS neighbours and the padding, the
    co-visitation score for each co-visitor (see ``LoadedModel.seed_scores``)."""
    covisit = np.where(bundle.covisit >= 0, bundle.covisit_scores, 0.0).astype(np.float32)
    return np.concatenate([np.zeros(bundle.neighbours.shape, dtype=np.float32), covisit], axis=1)


class ModelHolder:
    """Holds the current LoadedModel and keeps it in step with the store's version pointer.

    ``refresh()`` is cheap when nothing changed (one GET); a background thread calls it every
    ``interval_s``. Loading happens off the request path and the swap is a single reference
    assignment, so requests are never blocked or dropped by a reload.

    Every refresh error (a store error, a corrupt or missing value, a bug) is caught, logged with the
    version, counted (``failures``, and ``on_failure`` for the shared counters) and retried at the
    next tick, so a later good publish is always picked up. :meth:`problems` tells ``/ready`` when the
    model is not what the store publishes.
    """

    def __init__(
        self,
        store: VersionStore,
        interval_s: float,
        defaults: BlendParams | None = None,
        max_lag_intervals: int = 5,
        on_failure: Callable[[], None] | None = None,
        on_loaded: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.interval_s = interval_s
        self.defaults = defaults or BlendParams()
        self.max_lag_intervals = max_lag_intervals
        self.on_failure = on_failure
        self.on_loaded = on_loaded
        self.model: LoadedModel | None = None
        self.last_error: str | None = None
        self.failures = 0  # refresh errors since start
        self._failed_version: str | None = None  # the version whose latest load attempt failed
        self._behind_since: float | None = None  # monotonic time since the pointer differs from the model
        self._loop = Periodic(self.refresh, interval_s, "hybridrec-model-reload")
        self._lock = threading.Lock()

    def refresh(self) -> bool:
        """Load the pointer's version if it differs from the loaded one. True if a new model was swapped in."""
        with self._lock:  # one loader at a time; readers never take this lock
            version = None
            try:
                version = self.store.current_version()
                self._observe(version)
                if version is None or (self.model is not None and self.model.version == version):
                    self.last_error = None if version else "no version published yet"
                    self._failed_version = None
                    return False
                model = LoadedModel.from_bundle(self.store.read_item_bundle(version), self.defaults)
                compile_kernels(model)  # the ranking's compiled code, before the first request needs it
            except Exception as exc:  # any failure: keep serving what we have and retry at the next tick
                self._failed(version, exc)
                return False
            self.model = model
            self.last_error = self._failed_version = self._behind_since = None
            log.info("serving version %s (%d items)", version, len(model.bundle.item_ids))
            if self.on_loaded is not None:
                self.on_loaded(model.version)
            return True

    def _failed(self, version: str | None, exc: Exception) -> None:
        self.failures += 1
        self._failed_version = version
        self.last_error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, StoreError) else str(exc)
        log.warning(
            "model refresh failed (published version %s), keeping %s; retrying every %.1fs: %s",
            version,
            self.model and self.model.version,
            self.interval_s,
            self.last_error,
            exc_info=not isinstance(exc, StoreError),  # a bug: show where
        )
        if self.on_failure is not None:
            self.on_failure()

    def _observe(self, published: str | None) -> None:
        """Note since when the loaded model has differed from the published version (refresh and /ready
        both report what they read, so a lag is seen even if refreshes stopped happening)."""
        model = self.model
        if published is None:
            return
        if model is not None and model.version == published:
            self._behind_since = None
        elif self._behind_since is None:
            self._behind_since = time.monotonic()

    def problems(self, published: str | None) -> list[str]:
        """Why this worker is not ready, given the version the store publishes now (empty: ready).

        Not ready: the store has no version at all (never published, or Redis lost its data), no model
        is loaded, the published version failed to load, or the model has trailed the published
        version for more than ``max_lag_intervals`` reload intervals.
        """
        self._observe(published)
        model, problems = self.model, []
        if published is None:
            problems.append("the store has no published version (none yet, or Redis lost its data): publish one")
        if model is None:
            problems.append(f"no model loaded: {self.last_error or 'starting'}")
        elif published is not None and model.version != published:
            behind = time.monotonic() - (self._behind_since or time.monotonic())
            if self._failed_version == published:
                problems.append(
                    f"cannot load the published version {published} (still serving {model.version}): {self.last_error}"
                )
            elif behind > self.max_lag_intervals * self.interval_s:
                problems.append(
                    f"serving {model.version} but {published} is published: {behind:.1f}s behind, more than "
                    f"{self.max_lag_intervals} reload intervals of {self.interval_s:g}s"
                )
        return problems

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()
