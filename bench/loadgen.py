"""Open-loop HTTP/1.1 load generator: ``python bench/loadgen.py SPEC.json OUT.json``.

Request ``i`` is due at ``t0 + i / rate`` whatever happened to earlier requests (open loop), over a pool
of keep-alive connections (one request in flight per connection, FIFO reuse so load spreads over all
connections and therefore over all server workers). For each request we record the time it was due,
the time its bytes were written and the time its response was complete, so that

* ``latency = done - due`` includes any queueing (in the pool, in the client, in the server), i.e. no
  coordinated omission: a server stall delays every request due during it, and all of them count;
* ``service = done - sent`` is what a closed-loop client would have reported;
* ``send_lag = sent - due`` shows whether the generator itself kept up (it should stay well below a
  millisecond or two; if not, the client, not the server, is the bottleneck).

Why raw asyncio streams and not ``httpx.AsyncClient``: every request here is a pre-encoded ``GET`` and
every response is parsed only as far as the status line, ``Content-Length`` and a few byte searches,
so the client costs a few tens of microseconds of CPU per request. httpx builds request and response
objects, header lists and an httpcore connection pool state machine per request, several hundred
microseconds each (see bench/README.md). On a 2-core machine the generator shares the CPU with the
server, so every microsecond it spends is a microsecond the server does not get: the cheaper client
distorts less. uvloop (a uvicorn dependency) is used when installed.

Only 127.0.0.1 is accepted as a target, and every phase is bounded by a deadline and a request count.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import re
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

MAX_REQUESTS = 200_000
_STRATEGY = re.compile(rb'"strategy":"([A-Za-z_]+)"')
_FLAGS = re.compile(rb'"flags":\[([^\]]*)\]')
_TOOK = re.compile(rb'"took_ms":([0-9.eE+-]+)')


class ProtocolError(Exception):
    pass


@dataclass
class Spec:
    port: int
    paths: list[str]
    rate: float
    duration_s: float
    warmup_s: float = 2.0
    connections: int = 64  # upper bound; opened on demand, ``prewarm`` of them before t0
    prewarm: int = 16
    timeout_s: float = 5.0  # per request
    drain_s: float = 10.0  # after the last request is due, wait at most this long for the rest
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if self.host != "127.0.0.1":
            raise ValueError(f"refusing to load {self.host}: this generator only targets 127.0.0.1")
        if not (0 < self.rate <= 20_000 and 0 < self.duration_s <= 600 and 0 <= self.warmup_s <= 60):
            raise ValueError(f"rate {self.rate}, duration {self.duration_s}, warmup {self.warmup_s} out of bounds")
        if not self.paths or not all(p.startswith("/") for p in self.paths):
            raise ValueError("paths must be a non-empty list of absolute paths")


@dataclass
class Record:
    due: float
    sent: float = 0.0
    done: float = 0.0
    status: int = 0  # 0: no response (see error)
    error: str = ""
    strategy: str = ""
    flags: str = ""
    took_ms: float = -1.0


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()

    async def roundtrip(self, raw: bytes) -> tuple[int, bytes, bool]:
        """Send one request; return (status, body, keep_alive)."""
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1."):
            raise ProtocolError(f"bad status line {head[:40]!r}")
        status = int(head[9:12])
        lower = head.lower()
        i = lower.find(b"\r\ncontent-length:")
        if i >= 0:
            n = int(lower[i + 17 : lower.index(b"\r\n", i + 2)])
            body = await self.reader.readexactly(n)
        elif b"\r\ntransfer-encoding: chunked" in lower:
            body = await self._chunked()
        else:
            return status, await self.reader.read(), False  # body ends at EOF
        return status, body, b"\r\nconnection: close" not in lower

    async def _chunked(self) -> bytes:
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await self.reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                return b"".join(parts)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)


class Pool:
    """Keep-alive connections; an idle one is reused oldest-first, a new one opened up to ``limit``."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.idle: collections.deque[Conn] = collections.deque()
        self.waiters: collections.deque[asyncio.Future[Conn]] = collections.deque()
        self.open = 0
        self.opened_total = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def _connect(self) -> Conn:
        self.open += 1
        try:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        except BaseException:
            self.open -= 1
            raise
        self.opened_total += 1
        return Conn(reader, writer)

    async def prewarm(self, n: int) -> None:
        for conn in await asyncio.gather(*(self._connect() for _ in range(min(n, self.limit)))):
            self.idle.append(conn)

    async def acquire(self) -> Conn:
        if self.idle:
            return self.idle.popleft()
        if self.open < self.limit:
            return await self._connect()
        fut: asyncio.Future[Conn] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        return await fut

    def release(self, conn: Conn, healthy: bool) -> None:
        if not healthy:
            conn.close()
            self.open -= 1
            if self.waiters and self.open < self.limit:  # let a waiter open a fresh connection
                task = asyncio.ensure_future(self._hand_new(self.waiters.popleft()))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(conn)
                return
        self.idle.append(conn)

    async def _hand_new(self, fut: asyncio.Future[Conn]) -> None:
        try:
            conn = await self._connect()
        except OSError as exc:
            if not fut.done():
                fut.set_exception(exc)
            return
        if fut.done():
            self.release(conn, True)
        else:
            fut.set_result(conn)

    def close(self) -> None:
        while self.idle:
            self.idle.popleft().close()


@dataclass
class Phase:
    records: list[Record] = field(default_factory=list)
    t0: float = 0.0


async def _one(pool: Pool, raw: bytes, rec: Record, timeout_s: float) -> None:
    conn: Conn | None = None
    healthy = False
    try:
        async with asyncio.timeout(timeout_s):
            conn = await pool.acquire()
            rec.sent = time.perf_counter()
            rec.status, body, healthy = await conn.roundtrip(raw)
        rec.done = time.perf_counter()
        if m := _STRATEGY.search(body):
            rec.strategy = m.group(1).decode()
        if m := _FLAGS.search(body):
            rec.flags = m.group(1).decode().replace('"', "")
        if m := _TOOK.search(body):
            rec.took_ms = float(m.group(1))
    except TimeoutError:
        rec.error = "timeout"
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ProtocolError, ValueError) as exc:
        rec.error = type(exc).__name__
    finally:
        if conn is not None:
            pool.release(conn, healthy and not rec.error)


async def _phase(pool: Pool, requests: list[bytes], rate: float, n: int, spec: Spec, offset: int) -> Phase:
    """Issue ``n`` requests open-loop at ``rate``; return when all finished or the drain deadline passed."""
    phase = Phase(t0=time.perf_counter() + 0.01)
    tasks = []
    for i in range(n):
        due = phase.t0 + i / rate
        if i % 64 == 0 and due <= time.perf_counter():
            await asyncio.sleep(0)  # behind schedule: still let responses be read
        # uvloop's timers have millisecond resolution and round down, so a sleep can end early: sleep
        # again rather than send before the request is due.
        while (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        rec = Record(due=due)
        phase.records.append(rec)
        raw = requests[(offset + i) % len(requests)]
        tasks.append(asyncio.ensure_future(_one(pool, raw, rec, spec.timeout_s)))
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=spec.drain_s + spec.timeout_s)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        for rec in phase.records:
            if rec.done == 0.0 and not rec.error:
                rec.error = "unfinished"
    return phase


async def run(spec: Spec) -> dict:
    requests = [
        (f"GET {p} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\nUser-Agent: hybridrec-bench\r\n\r\n").encode()
        for p in spec.paths
    ]
    n_warm = min(int(spec.rate * spec.warmup_s), MAX_REQUESTS)
    n = min(int(spec.rate * spec.duration_s), MAX_REQUESTS)
    pool = Pool(spec.host, spec.port, spec.connections)
    try:
        await pool.prewarm(spec.prewarm)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        if n_warm:  # the paths after the measured ones, when the list is long enough
            await _phase(pool, requests, spec.rate, n_warm, spec, offset=n)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        phase = await _phase(pool, requests, spec.rate, n, spec, offset=0)
        cpu2 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        pool.close()
    t0 = phase.t0
    recs = phase.records
    return {
        "t0": t0,
        "n": len(recs),
        "due": [r.due - t0 for r in recs],
        "sent": [(r.sent - t0) if r.sent else None for r in recs],
        "done": [(r.done - t0) if r.done else None for r in recs],
        "status": [r.status for r in recs],
        "error": [r.error for r in recs],
        "strategy": [r.strategy for r in recs],
        "flags": [r.flags for r in recs],
        "took_ms": [r.took_ms for r in recs],
        "connections_opened": pool.opened_total,
        "client_cpu_s": (cpu2.ru_utime + cpu2.ru_stime) - (cpu1.ru_utime + cpu1.ru_stime),
        "client_cpu_sys_s": cpu2.ru_stime - cpu1.ru_stime,
        "client_cpu_warmup_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime),
        "event_loop": type(asyncio.get_running_loop()).__module__,
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    spec = Spec(**json.loads(Path(argv[0]).read_text()))
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(spec))
    else:
        result = uvloop.run(run(spec))
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
