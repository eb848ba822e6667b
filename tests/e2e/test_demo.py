"""`hybridrec demo` as the README runs it: embedded Redis, whole loop, a real first response, clean stop."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent / "hybridrec"


def test_demo_runs_the_whole_loop_on_an_embedded_redis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRIDREC_")}
    env["HYBRIDREC_DATA_DIR"] = str(tmp_path)
    args = ["demo", "--users", "400", "--items", "150", "--days", "5", "--port", "0", "--exit-after-first-response"]
    out = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "started embedded redis-server" in text
    assert re.search(r"published \d{4}-\d{2}-\d{2}\.[0-9a-f]{10}", text)
    assert "hybridrec is serving" in text and "strategy=precomputed" in text
    assert "quality gate passed: no comparison" in text  # the demo runs the DAG's gate before publishing
    # the pages' URLs come first, with the run's key in the fragment
    base = re.search(r"Demo storefront: (http://127\.0\.0\.1:\d+)/demo#key=hrk_", text).group(1)
    assert f"Operator page:   {base}/ops#key=hrk_" in text
    assert text.index("Demo storefront:") < text.index("hybridrec is serving")
    assert text.count("curl -s") >= 3
    # the run's own key is in the examples that need one, with a session id the API issued
    key = re.search(r"API key of this run .*: (hrk_[\w-]{43})", text).group(1)
    assert text.count(f"Bearer {key}") >= 3
    session = re.search(r"Session (\S+) was issued for (\S+) by POST /sessions", text).group(1)
    assert f"session_id={session}" in text and f'"session_id": "{session}"' in text
    port = int(re.search(r"redis://127\.0\.0\.1:(\d+)", text).group(1))
    with socket.socket() as sock:  # Redis was stopped on the way out
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    assert (tmp_path / "redis" / "appendonly.aof").exists() or (tmp_path / "redis" / "appendonlydir").exists()
