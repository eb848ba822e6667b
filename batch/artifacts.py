"""The run directory: what each batch step writes, and how it is read back.

One run per partition date lives in ``<data_dir>/runs/date=YYYY-MM-DD/``::

    users.parquet       user_id                                    row i  = user index i
    items.parquet       item_id, category, title, available        row j  = item index j
    model.npz           user_factors float32 (n_users, f), item_factors float32 (n_items, f)
    candidates.npz      items int32 (n_users, n_candidates), -1 padded; scores float32, same shape
    neighbours.npz      items int32 (n_items, n_neighbours), -1 padded; scores float32, same shape
    covisit.npz         items int32 (n_items, n_covisit), -1 padded; scores float32, same shape, -inf
                        padded: co-visitation neighbours (see batch.covisit)
    popularity.npz      scores float32 (n_items,)  recency-decayed popularity
    eval_model.npz      user_factors float32 (n_users, f) of the model trained WITHOUT the holdout
                        (with model.npz's item factors it is what metrics.json measured; used by
                        the quality gate; not published)
    serving.json        {"blend": tuned blend weights or null}: how the API ranks this version
                        (hashed, so a new blend is a new version that the API reloads)
    metrics.json        holdout metrics (see batch.holdout_metrics)
    manifest.json       params, counts, data window, timings, content_hash   <- written last

A run is built in a temporary sibling directory and renamed into place, so a directory named
``date=...`` is always complete and a crashed run leaves only a ``.tmp-*`` directory behind, which the
next attempt removes. Arrays are ``.npz`` loaded with ``allow_pickle=False``; nothing is pickled.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shared.errors import ArtifactNotFound, ModelError
from shared.schemas import DATE_FORMAT

HASHED_FILES = (
    "users.parquet",
    "items.parquet",
    "model.npz",
    "candidates.npz",
    "neighbours.npz",
    "covisit.npz",
    "popularity.npz",
    "serving.json",
)


def run_dir_for(runs_dir: Path, partition: dt.date) -> Path:
    return runs_dir / f"date={partition.strftime(DATE_FORMAT)}"


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success replace ``final`` with it, on error delete it."""
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".tmp-{final.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _strict(value: object) -> object:
    """NaN and infinities become null: JSON has no literal for them and strict parsers reject ``NaN``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def write_json(path: Path, payload: dict) -> None:
    """Strict JSON (undefined metrics as null), written atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_strict(payload), indent=2, sort_keys=True, default=str, allow_nan=False) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    if not path.exists():
        raise ArtifactNotFound(f"{path} does not exist; run the step that produces it first")
    return json.loads(path.read_text())


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Save arrays uncompressed (fast, and byte-identical for identical input)."""
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise ArtifactNotFound(f"{path} does not exist; run the step that produces it first")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def content_hash(run_dir: Path) -> str:
    """sha256 over the published artifacts, in a fixed order: the basis of the version id."""
    h = hashlib.sha256()
    for name in HASHED_FILES:
        with open(run_dir / name, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class RunArtifacts:
    """Everything publish needs, loaded and checked for consistent shapes."""

    run_dir: Path
    user_ids: np.ndarray  # object/str (n_users,)
    items: pd.DataFrame  # item_id, category, title, available; row j = item j
    user_factors: np.ndarray  # float32 (n_users, f)
    item_factors: np.ndarray  # float32 (n_items, f)
    candidates: np.ndarray  # int32 (n_users, n_candidates), -1 padded
    neighbours: np.ndarray  # int32 (n_items, n_neighbours), -1 padded
    neighbour_scores: np.ndarray  # float32 (n_items, n_neighbours)
    covisit: np.ndarray  # int32 (n_items, n_covisit), -1 padded
    covisit_scores: np.ndarray  # float32 (n_items, n_covisit)
    popularity: np.ndarray  # float32 (n_items,)
    metrics: dict
    manifest: dict

    @classmethod
    def load(cls, run_dir: Path) -> RunArtifacts:
        if not (run_dir / "manifest.json").exists():
            date = run_dir.name.removeprefix("date=")
            raise ArtifactNotFound(f"no complete run in {run_dir}: run `hybridrec run-batch --date {date}` first")
        manifest = read_json(run_dir / "manifest.json")
        model = load_npz(run_dir / "model.npz")
        cands = load_npz(run_dir / "candidates.npz")
        nbrs = load_npz(run_dir / "neighbours.npz")
        if "n_covisit" in manifest.get("params", {}) or (run_dir / "covisit.npz").exists():
            covisit = load_npz(run_dir / "covisit.npz")
        else:  # a run built before co-visitation existed (e.g. the serving run the quality gate reads)
            n_items = len(nbrs["items"])
            covisit = {"items": np.empty((n_items, 0), np.int32), "scores": np.empty((n_items, 0), np.float32)}
        pop = load_npz(run_dir / "popularity.npz")
        arts = cls(
            run_dir=run_dir,
            user_ids=pd.read_parquet(run_dir / "users.parquet")["user_id"].to_numpy(dtype=object),
            items=pd.read_parquet(run_dir / "items.parquet"),
            user_factors=model["user_factors"],
            item_factors=model["item_factors"],
            candidates=cands["items"],
            neighbours=nbrs["items"],
            neighbour_scores=nbrs["scores"],
            covisit=covisit["items"],
            covisit_scores=covisit["scores"],
            popularity=pop["scores"],
            metrics=read_json(run_dir / "metrics.json"),
            manifest=manifest,
        )
        arts.validate()
        return arts

    def validate(self) -> None:
        n_users, n_items = len(self.user_ids), len(self.items)
        checks = [
            (
                self.user_factors.shape[0] == n_users,
                f"user_factors rows {self.user_factors.shape[0]} != users {n_users}",
            ),
            (
                self.item_factors.shape[0] == n_items,
                f"item_factors rows {self.item_factors.shape[0]} != items {n_items}",
            ),
            (self.user_factors.shape[1] == self.item_factors.shape[1], "user and item factor widths differ"),
            (self.candidates.shape[0] == n_users, "candidates rows != users"),
            (
                self.neighbours.shape == self.neighbour_scores.shape,
                "neighbour ids and scores differ in shape",
            ),
            (self.neighbours.shape[0] == n_items, "neighbours rows != items"),
            (self.covisit.shape == self.covisit_scores.shape, "co-visitation ids and scores differ in shape"),
            (self.covisit.shape[0] == n_items, "co-visitation rows != items"),
            (self.popularity.shape == (n_items,), "popularity length != items"),
            (bool(np.isfinite(self.user_factors).all()), "user_factors contain NaN/inf"),
            (bool(np.isfinite(self.item_factors).all()), "item_factors contain NaN/inf"),
            (int(self.candidates.max(initial=-1)) < n_items, "candidate index out of range"),
            (int(self.neighbours.max(initial=-1)) < n_items, "neighbour index out of range"),
            (int(self.covisit.max(initial=-1)) < n_items, "co-visitation index out of range"),
        ]
        problems = [msg for ok, msg in checks if not ok]
        if problems:
            raise ModelError(f"run {self.run_dir} is inconsistent: " + "; ".join(problems))
