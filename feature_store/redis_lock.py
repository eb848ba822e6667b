"""A lease on one Redis key, for the one publisher at a time: ``SET key token NX PX ttl``.

* Taken with ``SET NX PX``, so a holder that dies (SIGKILL, a lost host) frees it after ``ttl_s``.
* Renewed by a daemon thread every ``ttl_s / 3`` while held (compare-and-``PEXPIRE`` in Lua), so a
  publish longer than the TTL keeps it; the thread notes when the key no longer holds our token
  (the lease expired while we were stalled: another publisher may hold it now).
* Released by a compare-and-delete Lua script, so a holder whose lease expired never deletes the
  lock a newer holder took.
* Fencing: writers check the token in the same atomic step that writes (a Lua script, or a
  transaction under WATCH of the lock key: see ``redis_versions``), so a stalled holder that lost
  its lease cannot write after another took it.

Under ``maxmemory`` + ``noeviction`` Redis refuses ``SET`` (it may grow memory); taking the lock then
retries with a script flagged ``allow-oom`` (Redis >= 7), because the publish that follows is what
frees memory (it prunes before it writes). PEXPIRE and DEL are allowed when full anyway.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

from redis import exceptions as rexc

from feature_store.redis_client import Client
from shared.errors import PublishError

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# Redis 7 script flags: may run when used_memory > maxmemory (a lock key is a few bytes).
_ACQUIRE_WHEN_FULL = """#!lua flags=allow-oom
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
"""


class RedisLock:
    """One lease on ``key``; not re-entrant (see ``RedisVersionStore.publishing`` for that)."""

    def __init__(self, client: Client, key: str, ttl_s: float, wait_s: float, what: str = "publish") -> None:
        self.client = client
        self.key = key
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.wait_s = wait_s
        self.what = what
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.token = f"{socket.gethostname()}:{os.getpid()}:{stamp}:{uuid.uuid4().hex[:8]}"
        self.lost = False  # set by the renewal thread when the key no longer holds our token
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)

    def acquire(self) -> None:
        """Take the lease, waiting up to ``wait_s`` for a holder to finish; PublishError if it does not."""
        deadline = time.monotonic() + self.wait_s
        pause = 0.05
        while not self._try_set():
            if time.monotonic() >= deadline:
                holder, ttl_ms = self.client.get(self.key), self.client.pttl(self.key)
                who = holder.decode(errors="replace") if holder else "a holder that just finished"
                raise PublishError(
                    f"another {self.what} is running (lock {self.key} held by {who}, expires in "
                    f"{max(ttl_ms, 0) / 1000:.0f}s unless renewed); waited {self.wait_s:g}s: "
                    "try again when it has finished"
                )
            time.sleep(pause)
            pause = min(pause * 2, 1.0)
        self._thread = threading.Thread(target=self._keep, name=f"hybridrec-{self.what}-lock", daemon=True)
        self._thread.start()

    def _try_set(self) -> bool:
        try:
            return bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))
        except rexc.OutOfMemoryError:
            try:
                return bool(self.client.eval(_ACQUIRE_WHEN_FULL, 1, self.key, self.token, self.ttl_ms))
            except rexc.ResponseError:  # Redis < 7 has no script flags: the OOM error stands
                raise rexc.OutOfMemoryError(
                    "command not allowed when used memory > 'maxmemory' (taking the publish lock)"
                ) from None

    def _keep(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                if not self._renew(keys=[self.key], args=[self.token, self.ttl_ms]):
                    self.lost = True
                    return
            except rexc.RedisError:
                continue  # Redis unreachable for a moment: try again; the lease may still be ours

    def check(self) -> None:
        """Raise PublishError if the lease was lost (the holder stalled longer than its TTL)."""
        if self.lost:
            raise PublishError(
                f"lost the {self.what} lock {self.key} (this process stalled longer than its "
                f"{self.ttl_ms / 1000:g}s lease): stopped; the current version is unchanged"
            )

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._release(keys=[self.key], args=[self.token])
