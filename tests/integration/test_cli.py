"""The hybridrec CLI as a user runs it: exit codes, one-line errors, resumable backfill."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent / "hybridrec"
END = dt.date(2026, 2, 10)


def _cli(data: Path, *args: str, redis_url: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDREC_")}
    env["HYBRIDREC_DATA_DIR"] = str(data)
    env["HYBRIDREC_ALS_FACTORS"] = "8"
    if redis_url:
        env["HYBRIDREC_REDIS_URL"] = redis_url
    return subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("cli")
    assert (
        _cli(data, "generate", "--users", "300", "--items", "80", "--days", "4", "--end-date", str(END)).returncode == 0
    )
    assert (
        _cli(
            data, "ingest", str(data / "raw/interactions.parquet"), "--items", str(data / "raw/items.parquet")
        ).returncode
        == 0
    )
    return data


def test_backfill_runs_in_order_and_resumes_after_a_crash(data: Path) -> None:
    start = END - dt.timedelta(days=2)
    first = _cli(data, "backfill", "--start", str(start), "--end", str(END))
    assert first.returncode == 0, first.stderr
    assert "3 built, 0 skipped" in first.stderr
    hashes = {
        d: json.loads((data / f"runs/date={d}/manifest.json").read_text())["content_hash"]
        for d in ("2026-02-08", "2026-02-09", "2026-02-10")
    }
    # a crash while building 02-09: its run is gone and a half-written temporary directory is left
    shutil.rmtree(data / "runs/date=2026-02-09")
    (data / "runs/.tmp-date=2026-02-09-deadbeef").mkdir()
    again = _cli(data, "backfill", "--start", str(start), "--end", str(END))
    assert again.returncode == 0, again.stderr
    assert "1 built, 2 skipped" in again.stderr
    assert json.loads((data / "runs/date=2026-02-09/manifest.json").read_text())["content_hash"] == hashes["2026-02-09"]
    assert not list((data / "runs").glob(".tmp-*"))


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("run-batch", "--date", "2026-13-01"), 2, "not a date: '2026-13-01'"),
        (("backfill", "--start", "2026-02-10", "--end", "2026-02-01"), 2, "is before start date"),
        (("run-batch", "--date", "2025-01-01"), 5, "no interaction partitions"),
        (("publish", "--date", "2026-02-10"), 2, "no Redis URL"),
    ],
)
def test_errors_are_one_line_with_a_non_zero_exit(data: Path, args: tuple, code: int, message: str) -> None:
    out = _cli(data, *args)
    assert out.returncode == code, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


def test_ingesting_a_file_that_is_not_what_it_claims(data: Path, tmp_path: Path) -> None:
    fake = tmp_path / "events.csv"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    out = _cli(data, "ingest", str(fake))
    assert out.returncode == 3 and "error:" in out.stderr and "Traceback" not in out.stderr


def test_a_tuned_blend_is_part_of_the_version(data: Path) -> None:
    """Same data, new blend -> new content hash, so the API reloads and ranks with the new blend."""
    day = str(END)
    assert _cli(data, "run-batch", "--date", day).returncode == 0
    manifest = data / f"runs/date={day}/manifest.json"
    plain = json.loads(manifest.read_text())
    tuning = data / "tuning/best.json"
    tuning.parent.mkdir(parents=True, exist_ok=True)
    blend = {"weight_user": 0.25, "weight_session": 1.0, "weight_popularity": 0.2, "session_half_life": 3.0}
    tuning.write_text(json.dumps({"best": blend}))
    try:
        assert _cli(data, "run-batch", "--date", day).returncode == 0
        tuned = json.loads(manifest.read_text())
    finally:
        tuning.unlink()
    assert tuned["params"]["blend"] == blend and "blend" not in plain["params"]
    assert tuned["content_hash"] != plain["content_hash"]
    assert json.loads((data / f"runs/date={day}/serving.json").read_text()) == {"blend": blend, "reranker": None}


def test_no_repeats_generates_a_rating_log_the_batch_pipeline_takes(tmp_path: Path) -> None:
    """``generate --no-repeats``: one rating per user and item, ingested and trained on like MovieLens."""
    gen = ("generate", "--users", "300", "--items", "80", "--days", "4", "--end-date", str(END), "--no-repeats")
    assert _cli(tmp_path, *gen).returncode == 0
    raw = pd.read_parquet(tmp_path / "raw/interactions.parquet")
    assert set(raw["event_type"]) == {"rating"} and not raw.duplicated(["user_id", "item_id"]).any()
    ingest = ("ingest", str(tmp_path / "raw/interactions.parquet"), "--items", str(tmp_path / "raw/items.parquet"))
    assert _cli(tmp_path, *ingest).returncode == 0
    out = _cli(tmp_path, "run-batch", "--date", str(END))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / f"runs/date={END}/manifest.json").exists()


def test_publish_never_moves_serving_back_in_time_unless_forced(data: Path, redis_url: str) -> None:
    """`publish` and `backfill --publish` go through the DAG's publish step (batch.daily.publish_day)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    older = "2026-02-09"
    first = _cli(data, "backfill", "--start", older, "--end", str(END), "--publish", redis_url=redis_url)
    assert first.returncode == 0, first.stderr
    newest = client.get("hr:current").decode()
    assert newest.startswith(str(END)) and "kept" not in first.stderr  # published day by day, in order

    kept = _cli(data, "publish", "--date", older, redis_url=redis_url)
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.strip() == newest and "never moves back in time" in kept.stderr
    again = _cli(data, "backfill", "--start", older, "--end", older, "--publish", redis_url=redis_url)
    assert again.returncode == 0 and f"kept {newest} serving" in again.stderr
    assert client.get("hr:current").decode() == newest

    forced = _cli(data, "publish", "--date", older, "--force", redis_url=redis_url)
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.strip().startswith(older) and client.get("hr:current").decode() == forced.stdout.strip()
    client.close()
