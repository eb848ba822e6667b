"""A run built in user-range shards (batch.shards) is the unsharded run, byte for byte; a shard that
died is caught by the seal and its rerun converges; the pieces (ranges, seen sets from touches, the
streamed npz writer, memory-mapped npz) each agree with what they replace."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batch import artifacts as art
from batch import shards
from batch.ingest import ingest_interactions, ingest_items
from batch.matrix import build_id_maps
from batch.pipeline import run_batch
from batch.seen import last_touches, seen_from_touches, seen_items
from batch.synthetic.generate import generate, write_synthetic
from shared.config import Settings, get_settings
from shared.errors import ArtifactNotFound

DAY = dt.date(2026, 3, 6)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("shards")
    raw = write_synthetic(generate(600, 250, 5, 6, DAY), data / "raw")
    ingest_items(raw["items"], data / "items/items.parquet")
    ingest_interactions(raw["interactions"], "parquet", data / "interactions", data / "quarantine")
    return data


def _files(run_dir: Path) -> dict[str, str]:
    """sha256 of every file of a run but the manifest (its timings differ from run to run)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run_dir.iterdir() if p.name != "manifest.json"}


def _sharded(settings: Settings, n: int, order: list[int] | None = None) -> Path:
    ranges = shards.stage(settings, DAY, n)
    for i in order if order is not None else range(len(ranges)):
        shards.build_shard(settings, DAY, ranges[i])
    return shards.seal_run(settings, DAY)


@pytest.mark.parametrize("model", ["als", "als+ease"])
def test_a_sharded_run_is_the_unsharded_run_byte_for_byte(data_dir: Path, model: str) -> None:
    settings = get_settings(data_dir=data_dir, als_factors=8, candidate_model=model, seen_max_items=7)
    unsharded = run_batch(settings, DAY)
    expected, expected_hash = _files(unsharded), json.loads((unsharded / "manifest.json").read_text())["content_hash"]
    for n, order in ((3, [2, 0, 1]), (7, None)):
        sealed = _sharded(settings, n, order)
        assert sealed == unsharded
        assert _files(sealed) == expected, n  # candidates.npz and seen.npz included; no shard file left
        manifest = json.loads((sealed / "manifest.json").read_text())
        assert manifest["content_hash"] == expected_hash  # hence the same version id
        assert len(manifest["shards"]["ranges"]) == n
        assert not art.staging_dir_for(settings.runs_dir, DAY).exists()
    assert shards.seal_run(settings, DAY) == unsharded  # sealed already: a retried seal converges


def test_a_shard_that_died_is_caught_by_the_seal_and_its_rerun_converges(data_dir: Path) -> None:
    settings = get_settings(data_dir=data_dir, als_factors=8)
    expected = _files(run_batch(settings, DAY))
    ranges = shards.stage(settings, DAY, 3)
    staging = art.staging_dir_for(settings.runs_dir, DAY)
    shards.build_shard(settings, DAY, ranges[0])
    shards.build_shard(settings, DAY, ranges[2])
    (staging / "candidates-1.tmp.npz").write_bytes(b"half a file")  # shard 1 was killed while writing
    with pytest.raises(ArtifactNotFound, match=r"missing shard\(s\) \[1\] of 3"):
        shards.seal_run(settings, DAY)
    assert shards.planned_shards(settings, DAY) == ranges  # still staged, nothing sealed
    shards.build_shard(settings, DAY, ranges[1])  # the retry
    shards.build_shard(settings, DAY, ranges[0])  # a duplicate run of a finished shard: the same bytes
    assert _files(shards.seal_run(settings, DAY)) == expected
    assert shards.planned_shards(settings, DAY) == []


def test_a_seal_killed_at_any_point_is_rerun_to_the_same_run(data_dir: Path, monkeypatch) -> None:
    settings = get_settings(data_dir=data_dir, als_factors=8)
    expected = _files(run_batch(settings, DAY))
    ranges = shards.stage(settings, DAY, 2)
    for shard in ranges:
        shards.build_shard(settings, DAY, shard)
    staging = art.staging_dir_for(settings.runs_dir, DAY)

    def killed(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:  # killed while writing the merged files: nothing changed
        m.setattr(art, "save_npz_concat", killed)
        with pytest.raises(KeyboardInterrupt):
            shards.seal_run(settings, DAY)
    assert (
        shards.planned_shards(settings, DAY) == ranges and _files(art.run_dir_for(settings.runs_dir, DAY)) == expected
    )
    with monkeypatch.context() as m:  # killed after the rename, before the staging directory is removed
        m.setattr(shards.shutil, "rmtree", killed)
        with pytest.raises(KeyboardInterrupt):
            shards.seal_run(settings, DAY)
    assert staging.exists()
    assert _files(shards.seal_run(settings, DAY)) == expected and not staging.exists()


def test_a_shard_must_be_a_range_of_the_staged_plan(data_dir: Path) -> None:
    settings = get_settings(data_dir=data_dir, als_factors=8)
    ranges = shards.stage(settings, DAY, 2)
    with pytest.raises(ArtifactNotFound, match="is not a range of the run staged"):
        shards.build_shard(settings, DAY, shards.Shard(0, 0, ranges[0].stop + 1))
    run_batch(settings, DAY)  # an unsharded rebuild makes the staged run obsolete
    assert shards.planned_shards(settings, DAY) == []
    with pytest.raises(ArtifactNotFound, match="no sharded run is staged"):
        shards.build_shard(settings, DAY, ranges[0])


def test_user_ranges_cover_every_user_once() -> None:
    for n_users, n in ((10, 3), (3, 7), (1_000_001, 16), (0, 4)):
        ranges = shards.user_ranges(n_users, n)
        assert [r.index for r in ranges] == list(range(len(ranges)))
        assert ranges[0].start == 0 and ranges[-1].stop == n_users
        assert all(a.stop == b.start for a, b in itertools.pairwise(ranges))
        assert len(ranges) == max(1, min(n, n_users))
        sizes = [len(r.rows) for r in ranges]
        assert max(sizes) - min(sizes) <= 1


def test_seen_sets_of_a_range_are_those_rows_of_all_seen_sets() -> None:
    rng = np.random.default_rng(3)
    n = 400
    events = pd.DataFrame(
        {
            "user_id": [f"u{u:03d}" for u in rng.integers(0, 40, n)],
            "item_id": [f"i{i:02d}" for i in rng.integers(0, 30, n)],
            "ts": pd.to_datetime(rng.integers(0, 50, n), unit="s", utc=True),  # ties at the cap
        }
    )
    maps = build_id_maps(events)
    everyone = seen_items(events, maps, cap=4)
    touches = last_touches(events, maps)
    for rows in (range(0, 40), range(5, 17), range(39, 40), range(7, 7)):
        part = seen_from_touches(touches, 4, rows)
        assert len(part) == len(rows)
        for r, u in enumerate(rows):
            assert part[r].tolist() == everyone[u].tolist()


def test_the_streamed_npz_writer_and_memory_maps_agree_with_numpy(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    items = rng.integers(-1, 1000, (1003, 7)).astype(np.int32)
    scores = rng.random((1003, 7)).astype(np.float32)
    art.save_npz(tmp_path / "whole.npz", items=items, scores=scores)
    art.save_npz_concat(tmp_path / "parts.npz", items=[items[:10], items[10:10], items[10:]], scores=[scores])
    assert (tmp_path / "parts.npz").read_bytes() == (tmp_path / "whole.npz").read_bytes()
    mapped = art.load_npz(tmp_path / "whole.npz", mmap=True)
    assert isinstance(mapped["items"], np.memmap)
    assert np.array_equal(mapped["items"], items) and np.array_equal(mapped["scores"], scores)
    art.save_npz(tmp_path / "empty.npz", none=np.empty((0, 3), np.int32))
    assert art.load_npz(tmp_path / "empty.npz", mmap=True)["none"].shape == (0, 3)
