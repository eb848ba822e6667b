"""The fault suite's world: a small data set with three finished runs (built in-process, once per
session), a redis-server per test that the test may kill, pause, restart or fill, the ``hybridrec``
CLI in subprocesses, and a few probes of the store's state."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from batch.ingest import ingest_interactions, ingest_items
from batch.pipeline import run_batch
from batch.synthetic.generate import generate, write_synthetic
from feature_store.embedded import EmbeddedRedis
from shared.config import Settings, get_settings
from tests.support.auth import auth_overrides

BIN = Path(sys.executable).parent / "hybridrec"
END = dt.date(2026, 4, 10)
DAYS = (END - dt.timedelta(days=2), END - dt.timedelta(days=1), END)


@dataclass
class World:
    data_dir: Path
    days: tuple[dt.date, ...]

    def settings(self, redis_url: str, **overrides: object) -> Settings:
        """A secured API's settings (tests/support/auth.py), as in production."""
        return get_settings(
            data_dir=self.data_dir, redis_url=redis_url, als_factors=16, **{**auth_overrides(), **overrides}
        )

    def env(self, redis_url: str, **settings: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDREC_")}
        env |= {"HYBRIDREC_DATA_DIR": str(self.data_dir), "HYBRIDREC_REDIS_URL": redis_url}
        env["HYBRIDREC_PUBLISH_LOCK_TTL_S"] = "1"  # a killed publisher frees the lock within a second
        env |= {f"HYBRIDREC_{k.upper()}": v for k, v in settings.items()}
        return env

    def cli(self, redis_url: str, *args: str, **settings: str) -> subprocess.CompletedProcess:
        cmd = [str(BIN), *args]
        return subprocess.run(cmd, env=self.env(redis_url, **settings), capture_output=True, text=True, timeout=180)

    def start_cli(self, redis_url: str, *args: str, **settings: str) -> subprocess.Popen:
        """The command in the background; its output goes to a file (a pipe nobody reads would fill up
        with progress bars and block it): ``output(proc)`` reads it."""
        log = tempfile.NamedTemporaryFile(prefix="hybridrec-cli-", suffix=".log", delete=False)  # noqa: SIM115
        proc = subprocess.Popen(
            [str(BIN), *args], env=self.env(redis_url, **settings), stdout=log, stderr=subprocess.STDOUT
        )
        proc.log_path = log.name  # type: ignore[attr-defined]
        log.close()
        return proc


def output(proc: subprocess.Popen) -> str:
    return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    """800 users x 300 items over 6 days; finished runs for the last three days (three versions)."""
    data_dir = tmp_path_factory.mktemp("fault-world")
    settings = get_settings(data_dir=data_dir, als_factors=16)
    data = generate(800, 300, 6, 7, END, n_categories=10)
    paths = write_synthetic(data, settings.raw_dir)
    ingest_items(paths["items"], settings.items_path)
    ingest_interactions(paths["interactions"], "parquet", settings.interactions_dir, settings.quarantine_dir)
    for day in DAYS:
        run_batch(settings, day)
    return World(data_dir, DAYS)


@pytest.fixture()
def server(tmp_path) -> Iterator[EmbeddedRedis]:
    """A redis-server of this test alone, with an append-only file (a restart replays it)."""
    with EmbeddedRedis(tmp_path / "redis", persistent=True) as srv:
        yield srv


@pytest.fixture()
def client(server: EmbeddedRedis) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(server.url)
    yield c
    c.close()


def wait_for(cond: Callable[[], object], what: str, timeout: float = 20.0, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if cond():
                return
        except Exception:  # the thing probed may be down on purpose
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for: {what}")
        time.sleep(every)


def assert_store_consistent(client: redis.Redis, prefix: str = "hr") -> dict[str, bool]:
    """Every version key belongs to a registered version; current and previous are complete versions.
    Returns {version: complete} of the registry."""
    registered = {
        v.decode(): bool(client.exists(f"{prefix}:v:{v.decode()}:meta"))
        for v in client.zrange(f"{prefix}:versions", 0, -1)
    }
    owners = {key.decode().split(":")[2] for key in client.scan_iter(match=f"{prefix}:v:*", count=10_000)}
    assert owners <= set(registered), f"keys of versions no registry lists: {sorted(owners - set(registered))}"
    for pointer in ("current", "previous"):
        ver = client.get(f"{prefix}:{pointer}")
        assert ver is None or registered.get(ver.decode()), f"{pointer} points at {ver!r}, not a complete version"
    return registered


def stream_event_ids(client: redis.Redis, prefix: str = "hr") -> list[str]:
    return [fields[b"event_id"].decode() for _, fields in client.xrange(f"{prefix}:events")]
