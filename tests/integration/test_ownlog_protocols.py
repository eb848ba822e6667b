"""Hand-built logs through `hybridrec evaluate/tune --data-dir`: one without time order, and a rating
log built so that any top-10 list must hold a seen item unless the seen sets are excluded.

Rating log: 40 users x 20 items over 5 days, each user rating 14 distinct items (3, 3, 2, 3, 3 a day)
and never one twice. The test period is the last day (>= 10% of the events), so the test model knows
11 items of every user; a full top-10 list of the 20 items minus the session so far (at most 2) must
hold at least 3 of those 11. So with HYBRIDREC_EXCLUDE_SEEN=false every served list holds a seen item,
and with exclusion on none may.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent / "hybridrec"
PER_DAY = (3, 3, 2, 3, 3)


def _run(args: list[str], code: int = 0, **settings: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDREC_")}
    env |= {"HYBRIDREC_ALS_FACTORS": "4"} | {f"HYBRIDREC_{k.upper()}": v for k, v in settings.items()}
    proc = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == code, proc.stderr
    proc.stderr = " ".join(proc.stderr.split())  # rich wraps long lines; phrases are checked unwrapped
    return proc


def _ingest(tmp: Path, name: str, rows: list[str]) -> Path:
    csv = tmp / f"{name}.csv"
    csv.write_text("\n".join(["user_id,item_id,event_type,ts", *rows]) + "\n")
    _run(["ingest", str(csv), "--data-dir", str(tmp / name)])
    return tmp / name


@pytest.fixture(scope="module")
def rating_log(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        items = iter(rng.permutation(20)[: sum(PER_DAY)])
        for day, n in enumerate(PER_DAY, 1):
            rows += [f"u{u:02d},i{next(items):02d},rating,2025-03-0{day}T{10 + j}:00:00Z" for j in range(n)]
    return _ingest(tmp_path_factory.mktemp("rating"), "log", rows)


@pytest.fixture(scope="module")
def one_timestamp_log(tmp_path_factory) -> Path:
    rng = np.random.default_rng(1)
    rows = [f"u{u:02d},i{i:02d},play,2011-05-31T00:00:00Z" for u in range(60) for i in rng.permutation(30)[:8]]
    return _ingest(tmp_path_factory.mktemp("plays"), "plays", rows)


@pytest.mark.parametrize(("exclude", "expected"), [("true", 0.0), ("false", 1.0)])
def test_seen_share_is_zero_with_exclusion_and_every_list_without(
    rating_log: Path, tmp_path: Path, exclude: str, expected: float
) -> None:
    _run(["evaluate", "--data-dir", str(rating_log), "--out", str(tmp_path / "r")], exclude_seen=exclude)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    replay = report["replay"]
    assert report["protocol"]["periods"]["test"] == ["2025-03-05", "2025-03-05"]
    assert report["protocol"]["sessions"] == "user_period"  # no session_id: one session per user and period
    assert replay["data"]["n_sessions"] == 40 and replay["data"]["n_targets"] == 80  # 3 ratings: 2 targets each
    assert replay["data"]["n_skipped_history"] == 0  # nobody re-rates: no target is in the history
    share = replay["seen_share_at_10"]
    assert (share["hybrid"], share["batch_only"]) == (expected, expected)
    assert "as ONE session in time order" in (tmp_path / "r" / "report.md").read_text()


def test_a_log_with_one_timestamp_is_evaluated_by_the_random_protocol_and_says_so(
    one_timestamp_log: Path, tmp_path: Path
) -> None:
    proc = _run(["evaluate", "--data-dir", str(one_timestamp_log), "--out", str(tmp_path / "r")])
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["protocol"]["name"] == "random" and report["replay"] is None
    assert "1 day(s)" in report["protocol"]["reason"] and "no time order" in report["protocol"]["reason"]
    assert [s["protocol"]["name"] for s in report["static"]] == ["random"]
    assert set(report["static"][0]["models"]) == {"popularity", "item_knn", "als", "ease", "als+ease"}
    assert "no time order" in (tmp_path / "r" / "report.md").read_text() and "random protocol" in proc.stderr


def test_a_log_with_one_timestamp_tunes_only_als_on_a_random_split_and_says_so(
    one_timestamp_log: Path, tmp_path: Path
) -> None:
    grid = ["--factors", "4,8", "--regularization", "auto,10", "--alpha", "4", "--iterations", "15"]
    proc = _run(["tune", "--data-dir", str(one_timestamp_log), "--out", str(tmp_path / "t"), *grid])
    result = json.loads((one_timestamp_log / "tuning" / "best.json").read_text())
    assert result["protocol"] == "random" and result["blend_tuned"] is False and "reranker" not in result
    assert "no blend search" in proc.stderr
    points = result["als_search"]["points"]
    assert len(points) == 3  # the start (4 factors), 8 factors, then the other regularization
    best = max(points, key=lambda p: p["ndcg_at_10"])
    assert result["als"] == best["params"] and result["als_search"]["best_validation"] == best["ndcg_at_10"]
    # a small catalogue: ALS, EASE and their fusion compared on the same validation split, the best kept
    rows = result["candidate_search"]
    assert [r["model"] for r in rows] == ["als", "ease", "als+ease"]
    assert result["candidates"]["model"] == max(rows, key=lambda r: r["ndcg_at_10"])["model"]
    chosen = result["candidates"]["model"]
    assert set(result["test"]) == {"popularity", "als_settings", "als_tuned"} | (
        {f"{chosen}_tuned"} if chosen != "als" else set()
    )
    # the next batch run of that data dir trains with it
    _run(["run-batch", "--date", "2011-05-31", "--data-dir", str(one_timestamp_log)])
    manifest = json.loads((one_timestamp_log / "runs" / "date=2011-05-31" / "manifest.json").read_text())
    assert manifest["params"]["als_source"] == "tuning" and manifest["params"]["factors"] == result["als"]["factors"]
    assert manifest["params"]["candidates_source"] == "tuning" and manifest["params"]["candidate_model"] == chosen
