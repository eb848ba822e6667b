"""Redis implementation of :class:`feature_store.base.VersionStore`.

Publishing protocol (a reader never sees a mix of versions; a killed publish leaves the old one serving):

0. take the publish lock ``p:lock:publish`` (``redis_lock.RedisLock``: a lease renewed while held);
   a second publisher waits for it up to ``lock_wait_s``, then refuses with PublishError;
1. register the version id in ``p:versions`` (so a crash is found and cleaned by a later prune);
2. write every key of the version in batches, each a MULTI/MSET/EXEC under WATCH of the lock key,
   after checking it holds our token (fencing: a publisher that stalled past its lease cannot write
   after another took it); while Redis stores one batch, the next is encoded;
3. verify: count the version's user keys and compare blob lengths with what was sent;
4. write ``p:v:ver:meta`` last (its presence marks the version complete);
5. :meth:`activate` flips ``p:current`` (and ``p:previous``) atomically in one Lua script.

**On Redis Cluster** (``feature_store.keys``: ``{p}`` tags the control slot) the same protocol holds
with one difference, in step 2. The lock, the registry, both pointers, every version's meta and its
item blobs share the control slot, so the blob and meta writes stay fenced transactions (WATCH of the
lock key, on its node) and the flip stays the one script above. User records live in their users'
slots, which no transaction or script can span together with the lock: each batch is written after
checking the lock holds our token (``_write_users``), as one MSET per slot pipelined per node. So a
publisher that stalls past its lease between that check and its write can land one more batch of its
own version after another took the lock; that version has no meta (its meta write IS fenced), so it is
never flipped to, and republishing it first deletes what it left. Step 3 counts the version's user
records with SCAN on every primary node (a missing record anywhere fails the publish, naming the counts
per node) before the meta exists and before the flip, so readers, who resolve the one pointer
``{p}:current`` and then address every key by that version id, see all of a version or none of it.

Every step that changes versions (write, activate, prune) runs under the lock, and
:meth:`publishing` holds it across all of them (``batch.publish.publish_run``), so prune never
deletes a version another publisher is writing and two publishes never interleave. Republishing a
complete version is a no-op, so a retried task converges on the same state. Which
arrays a version holds, and how each is encoded, come from ``layout`` and ``codecs``: nothing here
names an array.

Staged (sharded) publishing splits steps 1-4 over processes that cannot hold one lock throughout
(Airflow tasks): :meth:`begin_version` (1, item blobs, and a staging token ``p:v:ver:staging`` with a
lease), any number of :meth:`write_user_range` calls for disjoint user ranges in parallel, without the
lock (2), fenced by the staging token instead: each batch is a MULTI/MSET/EXEC under WATCH of the
token key after checking it still holds the token, and each writer renews the lease every third of
it; then :meth:`finish_version` (3-4, under the lock). Prune keeps an incomplete version while its
lease runs; once the lease ran out (every writer died) the token key is gone, so no writer can write
into the version again and prune deletes it as dead. A retried begin deletes the token first, so the
writers of the earlier attempt stop. Version ids are content hashes: every writer of a version writes
the same bytes for the same user, so a duplicated or retried range only rewrites identical values.
:meth:`write_version` is the three stages under one hold of the lock (no token: the lock fences).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from redis import exceptions as rexc

from feature_store import codecs, redis_memory
from feature_store.base import ItemBundle, ProgressFn, RequestFeatures, StoredRequest, VersionData, VersionInfo
from feature_store.keys import Keys
from feature_store.layout import ITEM_ARRAYS
from feature_store.redis_client import Client, node_clients, translate_errors
from feature_store.redis_lock import RedisLock
from feature_store.redis_online import READ_SCRIPT, request_reads, stored_request
from shared.errors import PublishError, VersionNotFound

_SAMPLE_SCANS = 20  # SCAN calls sample_users makes at most (per node)

_LOCK_LOST = "LOCKLOST"
_WRITE_ATTEMPTS = 5  # fenced batches discarded by a change of the lock key before giving up
# KEYS: current, previous, meta-of-new, publish lock. ARGV: new version, lock token.
# Returns the version that was current before.
_ACTIVATE = """
if redis.call('GET', KEYS[4]) ~= ARGV[2] then return redis.error_reply('LOCKLOST') end
if redis.call('EXISTS', KEYS[3]) == 0 then return redis.error_reply('version has no meta: incomplete') end
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then return cur end
if cur then redis.call('SET', KEYS[2], cur) end
redis.call('SET', KEYS[1], ARGV[1])
return cur
"""
# KEYS: publish lock, staging token. ARGV: lock token, staging token, lease ms. Sets the staging token,
# fenced by the publish lock like every publish write.
_STAGE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('LOCKLOST') end
return redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
"""
# KEYS: staging token. ARGV: token, lease ms. Renews the lease while the key still holds the token.
_RENEW_STAGING = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
# KEYS: current, previous. Swaps them; returns the new current.
_ROLLBACK = """
local cur = redis.call('GET', KEYS[1])
local prev = redis.call('GET', KEYS[2])
if not prev then return redis.error_reply('no previous version to roll back to') end
redis.call('SET', KEYS[1], prev)
if cur then redis.call('SET', KEYS[2], cur) end
return prev
"""


class _StagingLease:
    """The fence of a staged writer, used by ``_write`` as it uses the publish lock: ``check()`` before
    each batch, the token compared under WATCH of ``key`` inside the transaction, ``lost`` set when the
    key no longer holds it. ``check()`` also renews the lease once a third of it has run down.

    A renewal changes the key, which aborts the transactions other writers have in flight under WATCH
    of it (they retry), so writers renew rarely: not at their start unless the lease has already run
    down by a third (N shard tasks start together right after begin_version), then every third of it.
    """

    def __init__(self, renew: Any, key: str, token: str, ttl_ms: int, remaining_ms: int, version: str) -> None:
        self.key, self.token, self.ttl_ms, self.version = key, token, ttl_ms, version
        self.lost = False
        self._renew = renew
        self._due = time.monotonic() + max(0, remaining_ms - 2 * ttl_ms // 3) / 1000

    def check(self) -> None:
        if not self.lost and time.monotonic() >= self._due:
            self.lost = not self._renew(keys=[self.key], args=[self.token, self.ttl_ms])
            self._due = time.monotonic() + self.ttl_ms / 3000
        if self.lost:
            raise PublishError(
                f"version {self.version} is no longer staged by the publish this writer belongs to (it was staged "
                "again, finished, or its staging lease ran out and prune deleted it): stopped; the current version "
                "is unchanged. Run the publish again from its first step"
            )


class RedisVersionStore:
    """Thread-safe (redis-py pools connections)."""

    def __init__(
        self,
        client: Client,
        keys: Keys,
        batch_size: int = 2_000,
        lock_ttl_s: float = 30.0,
        lock_wait_s: float = 60.0,
        staging_ttl_s: float = 3_600.0,
    ) -> None:
        self.client = client
        self.keys = keys
        self.batch_size = batch_size
        self.lock_ttl_s = lock_ttl_s
        self.lock_wait_s = lock_wait_s
        self.staging_ttl_ms = max(1, round(staging_ttl_s * 1000))
        self._activate = client.register_script(_ACTIVATE)
        self._stage = client.register_script(_STAGE)
        self._renew_staging = client.register_script(_RENEW_STAGING)
        self._rollback = client.register_script(_ROLLBACK)
        self._read = client.register_script(READ_SCRIPT)
        self._layouts: dict[str, codecs.UserLayout] = {}  # version -> user-record layout (immutable)
        self._held: RedisLock | None = None  # the publish lock, while this store holds it
        self._held_by: int | None = None  # ... in this thread (re-entrant per thread)

    # --- publishing ------------------------------------------------------------------------
    @contextlib.contextmanager
    def publishing(self) -> Iterator[RedisLock]:
        """Hold the publish lock for the block (re-entrant in one thread): what publish, activate and
        prune run under. Waits up to ``lock_wait_s`` for another publisher, then PublishError."""
        if self._held is not None and self._held_by == threading.get_ident():
            yield self._held
            return
        lock = RedisLock(self.client, self.keys.publish_lock, self.lock_ttl_s, self.lock_wait_s)
        with translate_errors("taking the publish lock"):
            lock.acquire()
        self._held, self._held_by = lock, threading.get_ident()
        try:
            yield lock
        finally:
            self._held = self._held_by = None
            with translate_errors("releasing the publish lock"):
                lock.release()

    def write_version(
        self, data: VersionData, progress: ProgressFn | None = None, keep: int | None = None
    ) -> list[str]:
        """Write ``data`` as a complete version (see the module docstring): ``begin_version``,
        ``write_user_range`` of every user and ``finish_version`` under one hold of the publish lock.
        Returns the versions pruned first to make room.

        Before writing anything it checks that Redis has room (``maxmemory`` minus ``used_memory``)
        for the version's estimated size; when it does not and ``keep`` is given, it first prunes
        what a later ``prune(keep)`` would delete anyway (and dead half-written versions), never the
        current or previous version; still short, it refuses with PublishError saying how much it
        needs, instead of failing half-way.
        """
        with self.publishing():
            pruned = self.begin_version(data, keep, staged=False)
            self.write_user_range(data.version, data, range(len(data.user_ids)), progress)
            self.finish_version(data)
        return pruned

    def begin_version(self, data: VersionData, keep: int | None = None, staged: bool = True) -> list[str]:
        """Stage 1, under the publish lock; a no-op for a complete version. Deletes what an earlier attempt
        left, checks for room (pruning first when short and ``keep`` is given, as ``write_version`` says),
        writes the item blobs and registers the version. Returns the versions pruned.

        ``staged``: other processes will write the users (``write_user_range`` without the lock), so a new
        staging token is set with a lease of ``staging_ttl_s``: prune keeps the incomplete version while it
        runs, and writers of an earlier attempt stop. ``write_version`` holds the lock across all three
        stages instead (``staged=False``: no token; the lock fences its writes).
        """
        k, ver = self.keys, data.version
        with self.publishing() as lock, translate_errors(f"publishing {ver}"):
            if self.client.exists(k.meta(ver)):
                return []  # complete already: publishing is idempotent
            self.client.delete(k.staging(ver))  # first: an earlier attempt's writers stop before we clean up
            self._delete_version_keys(ver)  # leftovers of an earlier killed attempt
            blobs = self._item_blobs(data)
            pruned = self._make_room(ver, self.estimate_bytes(data, blobs), keep)
            self.client.zadd(k.versions, {ver: time.time()})
            self._write(lock, blobs)
            if staged:
                lock.check()
                token = f"{lock.token}:{uuid.uuid4().hex[:8]}"
                try:
                    self._stage(keys=[lock.key, k.staging(ver)], args=[lock.token, token, self.staging_ttl_ms])
                except rexc.ResponseError as exc:
                    if str(exc).startswith(_LOCK_LOST):
                        lock.lost = True
                        lock.check()
                    raise
        return pruned

    def write_user_range(self, version: str, data: VersionData, rows: range, progress: ProgressFn | None = None) -> int:
        """Stage 2: write the records of users ``rows`` (a range of indices into ``data.user_ids``) in
        batches of ``batch_size``. Idempotent (the same bytes again), so a retried or duplicated range
        converges; a no-op for a complete version. Returns the number of users written.

        Fenced like every publish write: by the publish lock when this thread holds it (``write_version``),
        else by the version's staging token (``begin_version``): PublishError when there is none, and a
        writer stops at its next batch once the token changed or is gone (see the module docstring).
        """
        k = self.keys
        if data.version != version:
            raise PublishError(f"write_user_range: the data is version {data.version}, not {version}")
        layout = codecs.user_layout_of(data.meta)
        with translate_errors(f"publishing {version}"):
            if self.client.exists(k.meta(version)):
                return 0
            fence = self._fence(version)
            # Two stages: while Redis stores one batch (the client waits on the socket, GIL released),
            # this thread encodes the next.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hybridrec-publish") as writer:
                pending: Future[None] | None = None
                for start in range(rows.start, rows.stop, self.batch_size):
                    chunk = range(start, min(rows.stop, start + self.batch_size))
                    records = codecs.encode_users(data, layout, chunk)
                    batch = {k.user(version, data.user_ids[i]): r for i, r in zip(chunk, records, strict=True)}
                    if pending is not None:
                        pending.result()  # in order, and the first failure stops the publish
                    pending = writer.submit(self._write_users, fence, batch)
                    if progress:
                        progress(len(chunk))
                if pending is not None:
                    pending.result()
        return len(rows)

    def _fence(self, version: str) -> RedisLock | _StagingLease:
        """The publish lock if this thread holds it, else the version's staging lease (PublishError: none)."""
        if self._held is not None and self._held_by == threading.get_ident():
            return self._held
        key = self.keys.staging(version)
        pipe = self.client.pipeline(transaction=True)
        pipe.get(key)
        pipe.pttl(key)
        token, remaining_ms = pipe.execute()
        if token is None:
            raise PublishError(
                f"version {version} is not being staged: run begin_version first (or its staging lease of "
                f"{self.staging_ttl_ms / 1000:g}s ran out and it was pruned); publish again from the first step"
            )
        return _StagingLease(self._renew_staging, key, token.decode(), self.staging_ttl_ms, remaining_ms, version)

    def finish_version(self, data: VersionData) -> None:
        """Stage 3, under the publish lock; a no-op for a complete version. Verifies that every user key is
        there and every item blob has its length (PublishError saying what is missing otherwise: nothing
        changes, and the writes can be completed and this retried), then writes the meta last, which marks
        the version complete, and drops the staging token (its writers stop)."""
        k, ver = self.keys, data.version
        with self.publishing() as lock, translate_errors(f"publishing {ver}"):
            if self.client.exists(k.meta(ver)):
                return
            self._verify(ver, len(data.user_ids), self._item_blobs(data))
            self._write(lock, {k.meta(ver): codecs.encode_json(data.meta)})
            self.client.delete(k.staging(ver))

    def estimate_bytes(self, data: VersionData, blobs: dict[str, bytes] | None = None) -> int:
        """Redis memory that ``data`` will take once written (``redis_memory.version_bytes``)."""
        return redis_memory.version_bytes(self.keys, data, self._item_blobs(data) if blobs is None else blobs)

    def memory(self) -> tuple[int, int]:
        """(used_memory, maxmemory) of Redis in bytes; maxmemory 0 means no limit."""
        with translate_errors("reading Redis memory"):
            return redis_memory.usage(self.client)

    def _make_room(self, ver: str, need: int, keep: int | None) -> list[str]:
        used, limit = self.memory()
        if not limit or used + need <= limit:
            return []
        pruned = self.prune(max(keep - 1, 1)) if keep else []
        used, limit = self.memory()
        if used + need > limit:
            raise PublishError(redis_memory.no_room(ver, need, used, limit, pruned))
        return pruned

    def _write(self, lock: RedisLock, values: dict[str, bytes]) -> None:
        """SET every key, fenced: WATCH the lock key, check it holds our token, then MULTI/MSET/EXEC,
        which Redis discards if the lock key changed meanwhile. A renewal of our own lease also changes
        it, so a discarded batch is retried while the token is still ours (a batch is a few ms, a
        renewal every ttl/3). Measured ~1.5x the keys/s of the Lua script that checked and SET each key
        (bench/README.md, publish_speed). On a cluster every key must share the lock's slot (blobs, meta:
        the control slot); user records go through :meth:`_write_users`."""
        lock.check()
        for _ in range(_WRITE_ATTEMPTS):
            with self.client.pipeline(transaction=True) as pipe:
                pipe.watch(lock.key)
                if pipe.get(lock.key) != lock.token.encode():
                    lock.lost = True
                    lock.check()  # raises: another publisher holds the lock now
                pipe.multi()
                if self.keys.cluster:  # redis-py's cluster pipeline has no MSET; one slot, one transaction
                    for key, value in values.items():
                        pipe.set(key, value)
                else:
                    pipe.mset(values)
                try:
                    pipe.execute()
                    return
                except rexc.WatchError:
                    continue
        raise PublishError(f"the publish lock {lock.key} kept changing under {_WRITE_ATTEMPTS} attempts to write")

    def _write_users(self, lock: RedisLock, records: dict[str, bytes]) -> None:
        """A batch of user records (key -> record). One server: :meth:`_write`, fenced atomically. A
        cluster: the token is checked, then the records are SET as one MSET per slot, pipelined per node
        (``mset_nonatomic``): fenced by the check, not atomically (the module docstring says what that
        allows)."""
        if not self.keys.cluster:
            self._write(lock, records)
            return
        lock.check()
        if self.client.get(lock.key) != lock.token.encode():
            lock.lost = True
            lock.check()
        self.client.mset_nonatomic(records)  # type: ignore[union-attr]

    def _item_blobs(self, data: VersionData) -> dict[str, bytes]:
        k, ver = self.keys, data.version
        blobs = {k.items(ver): codecs.encode_catalogue(data.catalogue)}
        blobs.update({k.item_array(ver, name): raw for name, raw in codecs.encode_item_arrays(data).items()})
        blobs.update({k.popular(ver, cat): codecs.encode_popular(idx) for cat, idx in data.popular.items()})
        return blobs

    def _verify(self, ver: str, n_users: int, blobs: dict[str, bytes]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for key in blobs:
            pipe.strlen(key)
        lengths = pipe.execute()
        wrong = [key for key, n in zip(blobs, lengths, strict=True) if n != len(blobs[key])]
        per_node = self.user_keys_per_node(ver)
        found = sum(per_node.values())
        if wrong or found != n_users:
            nodes = f" (per node: {', '.join(f'{n}: {c}' for n, c in per_node.items())})" if self.keys.cluster else ""
            raise PublishError(
                f"version {ver} did not verify: {found}/{n_users} user keys{nodes}, blobs with wrong length: "
                f"{wrong or 'none'}; the current version is unchanged"
            )

    def count_user_keys(self, version: str) -> int:
        return sum(self.user_keys_per_node(version).values())

    def user_keys_per_node(self, version: str) -> dict[str, int]:
        """How many user records of ``version`` each primary node holds, counted with SCAN (one server:
        one entry, named "")."""
        pattern = self.keys.user_pattern(version)
        with translate_errors("counting user keys"):
            return {
                name: sum(1 for _ in node.scan_iter(match=pattern, count=10_000))
                for name, node in node_clients(self.client)
            }

    def activate(self, version: str) -> str | None:
        k = self.keys
        with self.publishing() as lock, translate_errors(f"activating {version}"):
            lock.check()
            try:
                before = self._activate(
                    keys=[k.current, k.previous, k.meta(version), lock.key], args=[version, lock.token]
                )
            except rexc.ResponseError as exc:
                if str(exc).startswith(_LOCK_LOST):
                    lock.lost = True
                    lock.check()
                raise PublishError(f"cannot activate {version}: {exc}") from exc
        return before.decode() if before else None

    def rollback(self) -> str:
        with translate_errors("rolling back"):
            try:
                return self._rollback(keys=[self.keys.current, self.keys.previous]).decode()
            except rexc.ResponseError as exc:
                raise VersionNotFound(str(exc)) from exc

    def prune(self, keep: int) -> list[str]:
        """Delete all versions but the newest ``keep`` complete ones (always keeping current and previous,
        and versions a staged publish is writing: their staging lease runs)."""
        k = self.keys
        with self.publishing() as lock, translate_errors("pruning versions"):
            # Under the lock no other publisher is writing, so an incomplete version is a dead one, unless
            # its staging token lives: then shards of a staged publish write it without the lock.
            infos = self.list_versions()
            complete = [v.version for v in infos if v.meta is not None]
            staging = [v.version for v in infos if v.meta is None]
            pipe = self.client.pipeline(transaction=False)
            for ver in staging:
                pipe.exists(k.staging(ver))
            live = {ver for ver, n in zip(staging, pipe.execute() if staging else [], strict=True) if n}
            protected = {v.version for v in infos if v.is_current or v.is_previous} | set(complete[-keep:]) | live
            doomed = [v.version for v in infos if v.version not in protected]
            for ver in doomed:
                lock.check()
                self._delete_version_keys(ver)
                self.client.zrem(k.versions, ver)
            return doomed

    def _delete_version_keys(self, ver: str) -> None:
        """Every key of ``ver``, found with SCAN on each node (version-wide keys first: on a cluster the
        meta goes before any user record) and UNLINKed in batches (a cluster client splits those by slot)."""
        for pattern in self.keys.version_patterns(ver):
            for _, node in node_clients(self.client):
                batch: list[bytes] = []
                for key in node.scan_iter(match=pattern, count=10_000):
                    batch.append(key)
                    if len(batch) >= 5_000:
                        self.client.unlink(*batch)
                        batch.clear()
                if batch:
                    self.client.unlink(*batch)

    # --- reading ---------------------------------------------------------------------------
    def current_version(self) -> str | None:
        with translate_errors("reading the version pointer"):
            raw = self.client.get(self.keys.current)
        return raw.decode() if raw else None

    def list_versions(self) -> list[VersionInfo]:
        """All registered versions, oldest first."""
        k = self.keys
        with translate_errors("listing versions"):
            entries = self.client.zrange(k.versions, 0, -1, withscores=True)
            pipe = self.client.pipeline(transaction=False)
            pipe.get(k.current)
            pipe.get(k.previous)
            for ver, _ in entries:
                pipe.get(k.meta(ver.decode()))
            cur, prev, *metas = pipe.execute()
        return [
            VersionInfo(
                version=ver_b.decode(),
                meta=codecs.decode_meta(meta, ver_b.decode()) if meta else None,
                started_at=score,
                is_current=ver_b == cur,
                is_previous=ver_b == prev,
            )
            for (ver_b, score), meta in zip(entries, metas, strict=True)
        ]

    def read_meta(self, version: str) -> dict[str, Any] | None:
        with translate_errors("reading version meta"):
            raw = self.client.get(self.keys.meta(version))
        return codecs.decode_meta(raw, version) if raw else None

    def read_item_bundle(self, version: str) -> ItemBundle:
        k = self.keys
        with translate_errors(f"loading items of {version}"):
            meta = self.read_meta(version)
            if meta is None:
                raise VersionNotFound(f"version {version} is not complete or was pruned")
            pipe = self.client.pipeline(transaction=False)
            pipe.get(k.items(version))
            for spec in ITEM_ARRAYS:
                pipe.get(k.item_array(version, spec.name))
            catalogue_raw, *arrays_raw = pipe.execute()
            popular_keys = list(self.client.scan_iter(match=k.popular_pattern(version), count=10_000))
            popular_vals = self.client.mget(popular_keys) if popular_keys else []
        prefix_len = len(k.popular(version, ""))
        popular = {key.decode()[prefix_len:]: val for key, val in zip(popular_keys, popular_vals, strict=True)}
        arrays = {spec.name: raw for spec, raw in zip(ITEM_ARRAYS, arrays_raw, strict=True)}
        self._layouts[version] = codecs.user_layout_of(meta)
        return codecs.decode_item_bundle(version, meta, catalogue_raw, arrays, popular)

    def _layout(self, version: str) -> codecs.UserLayout:
        layout = self._layouts.get(version)
        if layout is None:
            layout = self._layouts[version] = codecs.user_layout_of(self.read_meta(version) or {})
        return layout

    def read_request(self, version: str, user_id: str | None, session_id: str | None) -> RequestFeatures:
        """User record, session events and session seen set in ONE round trip, decoded: the script the
        API reads with (``redis_online.RedisOnline.read_request``), for tools and tests."""
        layout = self._layout(version) if user_id is not None else ()
        stored = StoredRequest(None, [], [])
        if user_id is not None or session_id is not None:
            calls = request_reads(self.keys, version, user_id, session_id)
            with translate_errors("reading request features"):
                stored = stored_request([self._read(keys=keys, args=args) for keys, args in calls])
        return codecs.decode_request(stored, layout, session_id)

    def sample_users(self, version: str, n: int) -> list[str]:
        """Up to ``n`` user ids that have a record in ``version`` (SCAN, a few round trips per node at
        most; for the demo page's user picker, never on the request path). Sorted, so a page shows a
        stable list."""
        found: set[str] = set()
        with translate_errors("sampling users"):
            for _, node in node_clients(self.client):
                cursor = 0
                for _ in range(_SAMPLE_SCANS if len(found) < n else 0):
                    cursor, keys = node.scan(cursor, match=self.keys.user_pattern(version), count=500)
                    found.update(self.keys.user_id_of(version, key.decode()) for key in keys)
                    if cursor == 0 or len(found) >= n:
                        break
        return sorted(found)[:n]

    def record_gate(self, decision: Mapping[str, Any]) -> None:
        """Keep the quality gate's latest decision (JSON) for the operator page."""
        with translate_errors("recording the gate decision"):
            self.client.set(self.keys.gate_decision, json.dumps(decision, sort_keys=True))

    def last_gate(self) -> dict[str, Any] | None:
        with translate_errors("reading the gate decision"):
            raw = self.client.get(self.keys.gate_decision)
        return json.loads(raw) if raw else None
