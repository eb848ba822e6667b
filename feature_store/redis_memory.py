"""Redis memory accounting for publishing: what a version will take, what Redis has free, and the
message when it does not fit. Numbers measured with ``bench/memory_sizing.py``."""

from __future__ import annotations

from feature_store import codecs
from feature_store.base import VersionData
from feature_store.keys import Keys
from feature_store.redis_client import Client, node_clients

# Redis memory per key beyond its name and value bytes (dict entry, key and value headers, allocator
# rounding), measured with bench/memory_sizing.py on Redis 7.0 (jemalloc): 135 B at 100k users, 243 B
# at 5k (the keyspace's own table weighs more); rounded up, so the estimate errs on the side of refusing
# (+10% at 100k users, +1% at 5k).
KEY_OVERHEAD_BYTES = 250
META_BYTES = 4_096  # a version's JSON meta, generously


def version_bytes(keys: Keys, data: VersionData, blobs: dict[str, bytes]) -> int:
    """Redis memory ``data`` will take once written: its item ``blobs`` (key -> value, as written),
    its user keys and records (sized from the arrays, none encoded) and its meta, plus
    ``KEY_OVERHEAD_BYTES`` per key."""
    ver, n_users = data.version, len(data.user_ids)
    size = sum(len(key) + len(value) for key, value in blobs.items()) + len(keys.meta(ver)) + META_BYTES
    size += n_users * len(keys.user(ver, "")) + sum(len(u) for u in data.user_ids)
    size += codecs.user_records_size(data, codecs.user_layout_of(data.meta))
    return size + (len(blobs) + 1 + n_users) * KEY_OVERHEAD_BYTES


def usage(client: Client) -> tuple[int, int]:
    """(used_memory, maxmemory) from INFO memory, in bytes; maxmemory 0 means no limit. On a cluster, the
    sums over its primaries (0 if any has no limit): a version's user records spread evenly over them
    (hash slots), so the sum is the room it has; its item blobs sit on the control slot's node."""
    used = limit = 0
    unlimited = False
    for _, node in node_clients(client):
        info = node.info("memory")
        used += int(info["used_memory"])
        limit += int(info.get("maxmemory", 0))
        unlimited |= not int(info.get("maxmemory", 0))
    return used, 0 if unlimited else limit


def mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def no_room(version: str, need: int, used: int, limit: int, pruned: list[str]) -> str:
    """What a publish that does not fit says: how much it needs, what is free, what to do."""
    after = f", after pruning {', '.join(pruned)}" if pruned else ""
    return (
        f"publishing {version} needs about {mib(need)} of Redis memory but only {mib(max(limit - used, 0))} is "
        f"free (used {mib(used)} of maxmemory {mib(limit)}{after}); nothing was written and the current version "
        f"is unchanged. Raise maxmemory to at least {mib(used + need)} (see the README's memory sizing), drain "
        "the events backlog (hybridrec compact), or keep fewer versions (HYBRIDREC_KEEP_VERSIONS)"
    )
