"""A run split by user range, so that several workers share its per-user work (issue 13).

Training stays one step; what grows with users and splits cleanly by user is the candidate lists and
the seen sets (each user's rows depend on that user's history alone, see
``batch.candidates.fitted_candidate_lists`` and ``batch.seen.seen_from_touches``) and publishing
(``batch.publish``). So a sharded run is three steps, each idempotent:

1. ``stage`` (``batch.pipeline.stage_run``): everything ``run_batch`` builds but candidates and seen
   sets, plus their inputs (``pipeline.SHARD_*``), into ``runs/.sharded-date=D/``, atomically; and
   ``plan.json``: the manifest so far and the user ranges, ``[i, start, stop)``.
2. ``build_shard`` for each range, in any order, on any worker: ``candidates-<i>.npz`` and
   ``seen-<i>.npz`` (same arrays as the run's files, that range's rows; ``seen``'s ``indptr`` starts at
   0), each written to a temporary name and renamed. A killed shard leaves no file under its name; a
   rerun recomputes the same bytes.
3. ``seal_run``: checks every shard is there, builds ``runs/date=D/`` in a temporary directory (the
   staged files hard-linked, the shards streamed into ``candidates.npz`` and ``seen.npz``, byte-identical
   to the unsharded run's: ``artifacts.save_npz_concat``; the manifest last), renames it into place and
   removes the staging directory. The run directory, its content hash and so the version id are those
   of ``run_batch`` on the same data and settings.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix

from batch import artifacts as art
from batch.candidates import fitted_candidate_lists
from batch.ease import EaseModel
from batch.pipeline import SHARD_EASE, SHARD_HISTORY, SHARD_TOUCHES, StepLog, stage_run
from batch.seen import seen_from_touches
from batch.textfile import run_families, write_families
from batch.train import AlsModel
from shared.config import Settings
from shared.errors import ArtifactNotFound, ConfigError

PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class Shard:
    """Users ``start`` (inclusive) to ``stop`` (exclusive) of a run, the ``index``-th range; as a dict it is
    what the Airflow tasks pass around."""

    index: int
    start: int
    stop: int

    @property
    def rows(self) -> range:
        return range(self.start, self.stop)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def user_ranges(n_users: int, n_shards: int) -> list[Shard]:
    """``n_shards`` contiguous ranges covering ``range(n_users)``, sizes differing by at most one (fewer
    when there are fewer users than shards: no range is empty unless there are no users at all)."""
    if n_shards < 1:
        raise ConfigError(f"the number of shards must be >= 1, got {n_shards}")
    n = max(1, min(n_shards, n_users))
    bounds = [i * n_users // n for i in range(n + 1)]
    return [Shard(i, bounds[i], bounds[i + 1]) for i in range(n)]


def stage(settings: Settings, partition: dt.date, n_shards: int, log: StepLog | None = None) -> list[Shard]:
    """Step 1: the shared part of the run, in its staging directory, and the plan; returns the ranges."""
    staging, manifest = stage_run(settings, partition, *([log] if log else []))
    shards = user_ranges(manifest["n_users"], n_shards)
    art.write_json(staging / PLAN_FILE, {"manifest": manifest, "shards": [s.to_dict() for s in shards]})
    return shards


def planned_shards(settings: Settings, partition: dt.date) -> list[Shard]:
    """The ranges of the staged run of ``partition``; [] when none is staged (an unsharded run, or one
    sealed already: nothing left to build)."""
    path = art.staging_dir_for(settings.runs_dir, partition) / PLAN_FILE
    return [Shard(**s) for s in art.read_json(path)["shards"]] if path.exists() else []


def _plan(staging: Path, shard: Shard | None = None) -> dict:
    if not (staging / PLAN_FILE).exists():
        raise ArtifactNotFound(
            f"no sharded run is staged in {staging}: run the train step (with HYBRIDREC_BATCH_SHARDS > 1) first"
        )
    plan = art.read_json(staging / PLAN_FILE)
    if shard is not None and shard.to_dict() not in plan["shards"]:
        raise ArtifactNotFound(f"{shard} is not a range of the run staged in {staging} (its plan: {plan['shards']})")
    return plan


def shard_files(staging: Path, index: int) -> tuple[Path, Path, Path]:
    """A shard's candidates, seen sets and report; the report is written last, so it marks the shard done."""
    return staging / f"candidates-{index}.npz", staging / f"seen-{index}.npz", staging / f"shard-{index}.json"


def _shard_work(name: str) -> bool:
    """Files of the staging directory that the complete run does not keep: the plan, the shards' inputs
    and outputs (merged into candidates.npz and seen.npz) and temporary files."""
    return (
        name in (PLAN_FILE, SHARD_HISTORY, SHARD_TOUCHES, SHARD_EASE)
        or name.endswith(".tmp.npz")
        or re.fullmatch(r"(candidates|seen)-\d+\.npz|shard-\d+\.json", name) is not None
    )


def build_shard(settings: Settings, partition: dt.date, shard: Shard) -> dict[str, float]:
    """Step 2 for one range: its candidate lists and seen sets (see the module docstring); returns timings."""
    staging = art.staging_dir_for(settings.runs_dir, partition)
    params = _plan(staging, shard)["manifest"]["shard_params"]
    timings = {}
    start = time.perf_counter()
    model = art.load_npz(staging / "model.npz", mmap=True)
    history = art.load_npz(staging / SHARD_HISTORY, mmap=True)
    lo, hi = int(history["indptr"][shard.start]), int(history["indptr"][shard.stop])
    n_items = model["item_factors"].shape[0]
    matrix = csr_matrix(
        (
            np.asarray(history["data"][lo:hi]),
            np.asarray(history["indices"][lo:hi]),
            history["indptr"][shard.start : shard.stop + 1] - lo,
        ),
        shape=(len(shard.rows), n_items),
    )
    als = AlsModel(np.asarray(model["user_factors"][shard.start : shard.stop]), np.asarray(model["item_factors"]))
    ease = (
        EaseModel(art.load_npz(staging / SHARD_EASE, mmap=True)["weights"])
        if params["candidate_model"] != "als"
        else None
    )
    items, scores = fitted_candidate_lists(
        params["candidate_model"], als, matrix, params["n_candidates"], ease, params["fusion_weight"]
    )
    timings["candidates"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    seen = seen_from_touches(art.load_npz(staging / SHARD_TOUCHES, mmap=True), params["seen_max_items"], shard.rows)
    timings["seen"] = round(time.perf_counter() - start, 3)
    cand_path, seen_path, report = shard_files(staging, shard.index)
    art.save_npz(cand_path, items=items, scores=scores)
    art.save_npz(seen_path, indptr=seen.indptr, items=seen.values)
    art.write_json(report, {"shard": shard.to_dict(), "timings_s": timings})
    return timings


def seal_run(settings: Settings, partition: dt.date) -> Path:
    """Step 3: the complete run directory from the staged run and its shards; returns its path.

    Built in a temporary directory (the staged files hard-linked, the merged ones written) and renamed
    into place, then the staging directory is removed: killed before the rename, nothing changed and a
    rerun starts over; killed after it, a rerun seals again (the same bytes). Sealed already (no staging
    directory, a complete run): returns the run.
    """
    staging = art.staging_dir_for(settings.runs_dir, partition)
    final = art.run_dir_for(settings.runs_dir, partition)
    if not staging.exists() and (final / "manifest.json").exists():
        return final
    plan = _plan(staging)
    shards = [Shard(**s) for s in plan["shards"]]
    missing = [s.index for s in shards if not all(p.exists() for p in shard_files(staging, s.index))]
    if missing:
        raise ArtifactNotFound(
            f"the run of {partition} is missing shard(s) {missing} of {len(shards)}: build them (clear those "
            "map indexes of candidates_shard), then seal again"
        )
    start = time.perf_counter()
    manifest = plan["manifest"]
    with art.atomic_dir(final) as out:
        for path in staging.iterdir():
            if not _shard_work(path.name):
                _link(path, out / path.name)
        cands = [art.load_npz(shard_files(staging, s.index)[0], mmap=True) for s in shards]
        seens = [art.load_npz(shard_files(staging, s.index)[1], mmap=True) for s in shards]
        art.save_npz_concat(
            out / "candidates.npz", items=[c["items"] for c in cands], scores=[c["scores"] for c in cands]
        )
        offsets = np.cumsum([0] + [int(p["indptr"][-1]) for p in seens])
        indptr = np.concatenate(
            [np.zeros(1, np.int64)] + [p["indptr"][1:] + o for p, o in zip(seens, offsets, strict=False)]
        )
        art.save_npz_concat(out / "seen.npz", indptr=[indptr], items=[p["items"] for p in seens])
        del cands, seens
        reports = [art.read_json(shard_files(staging, s.index)[2])["timings_s"] for s in shards]
        manifest["shards"] = {"ranges": plan["shards"], "timings_s": reports}
        manifest["timings_s"]["seal"] = round(time.perf_counter() - start, 3)
        manifest["content_hash"] = art.content_hash(out)
        art.write_json(out / "manifest.json", manifest)
    shutil.rmtree(staging, ignore_errors=True)
    write_families(
        settings.textfile_dir / "hybridrec_run_batch.prom",
        run_families(manifest, art.read_json(final / "metrics.json")),
    )
    return final


def _link(src: Path, dst: Path) -> None:
    """``dst`` as a hard link to ``src`` (a run's files are never changed in place, only replaced), or a copy
    where the file system has no hard links."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
