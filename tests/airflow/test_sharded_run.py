"""A real dag.test() of hybridrec_daily with HYBRIDREC_BATCH_SHARDS=3: the mapped tasks run (one instance
per user range), the published version is the unsharded publish's, and a run whose shards did not do
their work fails at the seal with serving untouched, then converges when run again."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from tests.airflow.conftest import LAST_DAY, generated_data
from tests.airflow.test_daily_run import _run

pytestmark = pytest.mark.airflow
DAY = LAST_DAY - dt.timedelta(days=1)


@pytest.fixture(scope="module")
def env(tmp_path_factory, airflow_db) -> Iterator[dict]:
    with generated_data(tmp_path_factory.mktemp("sharded")) as env:
        yield env


@pytest.fixture()
def client(env: dict, monkeypatch) -> Iterator[redis.Redis]:
    monkeypatch.setenv("HYBRIDREC_DATA_DIR", str(env["data"]))
    monkeypatch.setenv("HYBRIDREC_REDIS_URL", env["redis"])
    monkeypatch.setenv("HYBRIDREC_ALS_FACTORS", "16")
    c = redis.Redis.from_url(env["redis"])
    yield c
    c.close()


def _version_keys(client: redis.Redis, prefix: str, version: str) -> dict[str, bytes]:
    head = f"{prefix}:v:{version}:"
    return {k.decode()[len(head) :]: client.get(k) for k in client.scan_iter(match=head + "*", count=10_000)}


def _mapped(run, task_id: str) -> Counter:
    return Counter(ti.state for ti in run.get_task_instances() if ti.task_id == task_id and ti.map_index >= 0)


def test_the_sharded_dag_publishes_the_unsharded_version(env: dict, client: redis.Redis, monkeypatch) -> None:
    monkeypatch.setenv("HYBRIDREC_KEY_PREFIX", "hr")  # unsharded, the default
    run, states = _run(DAY)
    assert run.state == "success", states
    assert states["candidates_shard"] == "skipped" and states["publish_shard"] == "skipped"
    unsharded = client.get("hr:current").decode()
    expected = _version_keys(client, "hr", unsharded)

    monkeypatch.setenv("HYBRIDREC_KEY_PREFIX", "hs")  # sharded, into its own namespace of the same Redis
    monkeypatch.setenv("HYBRIDREC_BATCH_SHARDS", "3")
    run, states = _run(DAY)
    assert run.state == "success", states
    assert _mapped(run, "candidates_shard") == {"success": 3}
    assert _mapped(run, "publish_shard") == {"success": 3}
    assert client.get("hs:current").decode() == unsharded  # the same run bytes, so the same version id
    published = _version_keys(client, "hs", unsharded)
    assert published == expected  # every user record, item blob, popular list and the meta
    assert sum(1 for k in published if k.startswith("u:")) == json.loads(published["meta"])["n_users"] > 800
    manifest = json.loads((env["data"] / f"runs/date={DAY}/manifest.json").read_text())
    assert len(manifest["shards"]["ranges"]) == 3
    assert not (env["data"] / f"runs/.sharded-date={DAY}").exists()


def test_shards_that_did_not_run_fail_the_seal_and_a_rerun_converges(
    env: dict, client: redis.Redis, monkeypatch
) -> None:
    monkeypatch.setenv("HYBRIDREC_KEY_PREFIX", "hs")
    monkeypatch.setenv("HYBRIDREC_BATCH_SHARDS", "3")
    serving = client.get("hs:current").decode()
    # as if each shard's worker died after Airflow recorded success: nothing of theirs is on disk
    run, states = _run(LAST_DAY, force_publish=True, mark_success_pattern="candidates_shard")
    assert run.state == "failed"
    assert _mapped(run, "candidates_shard") == {"success": 3}
    assert states["seal_run"] == "failed" and states["publish"] == "upstream_failed"
    assert client.get("hs:current").decode() == serving
    assert (env["data"] / f"runs/.sharded-date={LAST_DAY}/plan.json").exists()
    assert not (env["data"] / f"runs/date={LAST_DAY}").exists()  # nothing that looks like a run

    run, states = _run(LAST_DAY, force_publish=True)  # run again: every step converges
    assert run.state == "success", states
    newest = client.get("hs:current").decode()
    assert newest.startswith(LAST_DAY.isoformat()) and client.get("hs:previous").decode() == serving
    assert not client.exists(f"hs:v:{newest}:staging")
    meta = json.loads(client.get(f"hs:v:{newest}:meta"))
    assert sum(1 for k in _version_keys(client, "hs", newest) if k.startswith("u:")) == meta["n_users"]
