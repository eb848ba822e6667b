"""CLI commands against a password-protected redis-server: the password never reaches the terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from feature_store.embedded import EmbeddedRedis

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent / "hybridrec"
PASSWORD = "s3cret-Pa55"


def test_status_prints_the_redis_url_without_its_password(tmp_path: Path) -> None:
    with EmbeddedRedis(config={"requirepass": PASSWORD}) as server:
        assert PASSWORD in server.url
        env = {**os.environ, "HYBRIDREC_REDIS_URL": server.url, "HYBRIDREC_DATA_DIR": str(tmp_path)}
        out = subprocess.run([str(BIN), "status"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"redis://:***@127.0.0.1:{server.port}/0" in out.stdout
    assert PASSWORD not in out.stdout + out.stderr
