"""bench/api_replay.py end to end on a tiny generated rating log: real redis-server, `hybridrec serve`, HTTP.

Asserts what must hold whatever the machine: the API serves the lists the lab's in-process replay ranks
on the same steps, every request is counted by the client and by the server alike, each variant is
served by the tier it is named after, and the seen share is 0 with exclusion on and not with it off
(so the measurement can see a seen item). No timing is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tuning import BLEND, write_tuning

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "hybridrec"
SESSIONS = 30
RERANKER = {"kind": "linear", "features": ["session_z", "covisit"], "weights": [1.5, 0.25], "bias": 0.0, "c": 1.0}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDREC_")}
    return env | {"HYBRIDREC_ALS_FACTORS": "8", "HYBRIDREC_RELOAD_INTERVAL_S": "0.5"} | extra


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("replay-log")
    gen = ("generate", "--users", "300", "--items", "120", "--days", "6", "--end-date", "2026-01-31", "--no-repeats")
    ingest = ("ingest", str(data / "raw/interactions.parquet"), "--items", str(data / "raw/items.parquet"))
    for args in (gen, ingest):
        out = subprocess.run([str(BIN), *args, "--data-dir", str(data)], env=_env(), capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    return data


def _replay(log_dir: Path, tmp_path: Path, *args: str, **env: str) -> dict:
    out_json = tmp_path / "replay.json"
    cmd = [sys.executable, str(ROOT / "bench/api_replay.py"), "--data-dir", str(log_dir), "--max-sessions"]
    cmd += [str(SESSIONS), "--work-dir", str(tmp_path / "work"), "--out", str(out_json), *args]
    out = subprocess.run(cmd, cwd=ROOT, env=_env(**env), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(out_json.read_text())


def _check_counts(got: dict, variants: set[str]) -> None:
    """Every target asked of every variant once (plus retries of degraded reads), two sessions per
    replayed session, and the server's own counters agree with the client's."""
    n, api = got["sample"]["n_targets"], got["api"]
    assert n > 0 and got["sample"]["n_sessions"] == SESSIONS
    assert set(api["strategies"]) == variants
    assert all(sum(c.values()) == n for c in api["strategies"].values())
    retried = api["retried"].get("degraded_read", 0)
    assert api["requests"]["get_recommendations"] == len(variants) * n + retried
    assert api["requests"]["post_sessions"] == 2 * SESSIONS
    assert api["server_counts_match"] == {"requests_by_strategy": True, "events_accepted": True}
    assert api["events_posted"] == api["server_counts"]["events"]["accepted"] > 0
    assert api["events_posted"] % 2 == 0  # each event once to the user's session and once to the parallel one


def _check_agreement(got: dict, variants: set[str]) -> None:
    assert set(got["agreement"]) == variants
    for v, a in got["agreement"].items():
        assert (a["identical_rate"], a["n_disagreements"], a["examples"]) == (1.0, 0, []), v
        assert got["api"]["quality"]["variants"][v] == got["lab"]["quality"]["variants"][v]


def test_with_a_reranker_and_exclusion_on_the_api_serves_what_the_lab_ranks(log_dir: Path, tmp_path: Path) -> None:
    tuning = write_tuning(tmp_path / "best.json", {"best": BLEND, "reranker": RERANKER})
    got = _replay(log_dir, tmp_path, "--tuning", str(tuning))

    variants = {"batch_only", "session_only", "hybrid", "reranked"}
    _check_counts(got, variants)
    _check_agreement(got, variants)
    # the re-ranker serves on one server; the blend variants come from the one started without it
    assert got["routes"] == {"hybrid": "blend", "session_only": "blend", "batch_only": "blend", "reranked": "main"}
    assert got["servers"]["blend"]["env"] == {"HYBRIDREC_RERANKER_ENABLED": "false"}
    served_by = {v: set(c) for v, c in got["api"]["strategies"].items()}
    assert served_by == {
        "batch_only": {"precomputed"},
        "session_only": {"session"},
        "hybrid": {"hybrid"},
        "reranked": {"reranked"},
    }
    assert got["api"]["flags"]["session_only"] == {"unknown_user": got["sample"]["n_targets"]}
    shares = got["api"]["seen_share_at_10"]
    assert shares["batch_only"] == shares["hybrid"] == shares["reranked"] == 0.0
    assert shares["session_only"] > 0  # anonymous: the API cannot know whose history to remove
    assert got["acceptance"]["seen_share_zero"] is True
    assert got["tuning_label"] == "tuned" and got["protocol"]["reranker"] is True


def test_with_exclusion_off_the_measurement_sees_seen_items(log_dir: Path, tmp_path: Path) -> None:
    got = _replay(log_dir, tmp_path, "--no-tuning", HYBRIDREC_EXCLUDE_SEEN="false")

    variants = {"batch_only", "session_only", "hybrid"}
    _check_counts(got, variants)
    _check_agreement(got, variants)
    assert got["routes"] == {"hybrid": "main", "session_only": "main", "batch_only": "main"}
    assert got["api"]["seen_share_at_10"]["hybrid"] > 0
    assert got["acceptance"]["seen_share_zero"] is False
    assert got["protocol"]["blend"]["exclude_seen"] is False
