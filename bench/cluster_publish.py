"""Publishing on a 3-master Redis Cluster against one redis-server, in one run: users/s and bytes per user.

    .venv/bin/python bench/cluster_publish.py [--reuse] [--users 100000] [--repeats 3]

Publishes one batch run of the synthetic benchmark data (100k users x 20k items, 64 factors, 100
candidates, the run's seen sets; built, or reused with ``--reuse``, under ``bench/.cache/cluster-*``)
with ``RedisVersionStore.write_version`` then ``activate``, as ``hybridrec publish`` does, into:

* ``single``: one redis-server (``redis://``), the default mode;
* ``cluster``: three masters on this machine (``feature_store.embedded_cluster``, ``redis+cluster://``),
  user records in their users' slots, version-wide keys in the control slot (README "Running on Redis
  Cluster").

Each mode is published ``--repeats`` times into emptied servers, interleaved; medians are reported, and
the cluster's as a ratio of the single server's of the same run. Measured per run:

* users/s of the whole ``write_version`` (memory check, item blobs, user records, verify, meta) and
  the seconds of the flip (``activate``);
* ``MEMORY USAGE`` of a sample of user records (``--sample`` keys, ``SAMPLES 0``), mean bytes per user:
  what a user costs in Redis wherever it lives;
* used_memory after minus before, summed over the nodes, less the item-side keys' own ``MEMORY
  USAGE``, per user (so it includes each node's keyspace overhead);
* the user records on each node (the spread over the cluster);
* CPU seconds during ``write_version`` of this client (all its threads) and of the servers together
  (``/proc``), which say which side the time goes to.

All nodes and this client share the machine's cores (2 on the development machine), so the cluster's
throughput here is a floor: the client (one Python process routing every key to its slot) is the
bottleneck, not the servers. Results: a table and bench/results/cluster_publish.json.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import random
import statistics
import sys
import time
from pathlib import Path

from common import (
    CACHE_DIR,
    RESULTS_DIR,
    DataSpec,
    build_dataset,
    console,
    group_cpu_s,
    interrupt_on_signals,
    run_header,
    write_json,
)


def prepare(spec: DataSpec, reuse: bool) -> object:
    """The VersionData of the run for ``spec`` (one ``run_batch``, no re-ranker: publishing does not
    depend on it)."""
    from batch.artifacts import HASHED_FILES, RunArtifacts, run_dir_for
    from batch.pipeline import run_batch
    from batch.publish import version_data
    from shared.config import get_settings

    data_dir = CACHE_DIR / f"cluster-{spec.key()}"
    build_dataset(spec, data_dir, reuse)
    settings = get_settings(data_dir=data_dir)
    run_dir = run_dir_for(settings.runs_dir, spec.end)
    if not (reuse and all((run_dir / f).exists() for f in (*HASHED_FILES, "manifest.json"))):
        start = time.perf_counter()
        run_batch(settings, spec.end)
        console.print(f"  run_batch {time.perf_counter() - start:.1f}s")
    return version_data(RunArtifacts.load(run_dir))


def publish_once(url: str, servers: set[int], data: object, sample: int, seed: int) -> dict:
    """One publish into the emptied server(s) at ``url``; ``servers``: their process groups, whose CPU
    seconds during ``write_version`` are reported next to this client's."""
    from feature_store.redis_client import node_clients
    from feature_store.redis_store import RedisStore
    from shared.config import get_settings

    with RedisStore.from_settings(get_settings(redis_url=url)) as store:
        nodes = node_clients(store.client)
        for _, node in nodes:
            node.flushall()
        before = sum(int(node.info("memory")["used_memory"]) for _, node in nodes)
        start, cpu, server_cpu = time.perf_counter(), time.process_time(), group_cpu_s(servers)
        store.versions.write_version(data)  # type: ignore[arg-type]
        seconds = time.perf_counter() - start
        client_cpu, server_cpu = time.process_time() - cpu, group_cpu_s(servers) - server_cpu
        start = time.perf_counter()
        store.versions.activate(data.version)  # type: ignore[attr-defined]
        flip_s = time.perf_counter() - start
        after = sum(int(node.info("memory")["used_memory"]) for _, node in nodes)
        keys, ver = store.keys, data.version  # type: ignore[attr-defined]
        item_keys = [
            k
            for _, node in nodes
            for k in node.scan_iter(match=keys.version_pattern(ver), count=10_000)
            if not fnmatch.fnmatchcase(k.decode(), keys.user_pattern(ver))  # one server: the pattern has users too
        ]
        item_bytes = sum(int(store.client.memory_usage(k, samples=0) or 0) for k in item_keys)
        users = random.Random(seed).sample(list(data.user_ids), min(sample, len(data.user_ids)))  # type: ignore[attr-defined]
        usage = [int(store.client.memory_usage(keys.user(ver, u), samples=0) or 0) for u in users]
        per_node = store.versions.user_keys_per_node(ver)
    n = len(data.user_ids)  # type: ignore[attr-defined]
    return {
        "seconds": seconds,
        "users_per_s": n / seconds,
        "flip_s": flip_s,
        "client_cpu_s": client_cpu,  # this process, all threads (encoding, routing, sending)
        "server_cpu_s": server_cpu,  # every redis-server of the mode together
        "memory_usage_bytes_per_user": statistics.fmean(usage),
        "used_memory_bytes_per_user": (after - before - item_bytes) / n,
        "item_side_bytes": item_bytes,
        "users_per_node": sorted(per_node.values()),
        "loadavg_1m_after": os.getloadavg()[0],  # the machine is shared: how busy it was
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--events", type=int, default=1_200_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sample", type=int, default=5_000, help="user records whose MEMORY USAGE is read")
    p.add_argument("--reuse", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "cluster_publish.json")
    args = p.parse_args(argv)
    interrupt_on_signals()
    from feature_store.embedded import EmbeddedRedis
    from feature_store.embedded_cluster import EmbeddedCluster

    data = prepare(DataSpec.for_events(args.users, args.items, args.events, 14, args.seed), args.reuse)
    runs: dict[str, list[dict]] = {"single": [], "cluster": []}
    with EmbeddedRedis() as single, EmbeddedCluster(args.nodes) as cluster:
        urls = {"single": single.url, "cluster": cluster.url}
        groups = {"single": {single.proc.pid}, "cluster": {node.proc.pid for node in cluster.nodes}}  # type: ignore[union-attr]
        for r in range(args.repeats):
            for mode, url in urls.items():
                got = publish_once(url, groups[mode], data, args.sample, args.seed)
                runs[mode].append(got)
                console.print(
                    f"  repeat {r + 1} {mode:<8}: {got['users_per_s']:>9,.0f} users/s, "
                    f"{got['memory_usage_bytes_per_user']:.0f} B/user (MEMORY USAGE), CPU s client "
                    f"{got['client_cpu_s']:.2f} servers {got['server_cpu_s']:.2f}, per node {got['users_per_node']}"
                )
    medians = {
        mode: {k: statistics.median(x[k] for x in rs) for k in rs[0] if k != "users_per_node"}
        for mode, rs in runs.items()
    }
    for mode in medians:
        medians[mode]["users_per_node"] = runs[mode][-1]["users_per_node"]
    ratios = {
        k: medians["cluster"][k] / medians["single"][k]
        for k in ("users_per_s", "memory_usage_bytes_per_user", "used_memory_bytes_per_user")
    }
    print_table(medians, ratios, len(data.user_ids), args.nodes)  # type: ignore[attr-defined]
    write_json(
        args.out,
        {
            **run_header("cluster_publish", args),
            "version": {k: data.meta[k] for k in ("n_users", "n_items", "n_factors", "n_candidates")},  # type: ignore[attr-defined]
            "results_median": medians,
            "cluster_over_single": ratios,
            "runs": runs,
        },
    )
    console.print(f"wrote {args.out}")
    return 0


def print_table(medians: dict[str, dict], ratios: dict[str, float], n_users: int, nodes: int) -> None:
    from rich.table import Table

    t = Table(title=f"write_version + activate of {n_users:,} users: one redis-server vs a {nodes}-master cluster")
    cols = (
        "mode",
        "s",
        "users/s",
        "flip",
        "CPU s client",
        "CPU s servers",
        "MEMORY USAGE B/user",
        "used_memory B/user",
    )
    for col in (*cols, "users per node"):
        t.add_column(col, justify="left" if col == "mode" else "right")
    for mode, r in medians.items():
        t.add_row(
            mode,
            f"{r['seconds']:.2f}",
            f"{r['users_per_s']:,.0f}",
            f"{r['flip_s'] * 1000:.1f} ms",
            f"{r['client_cpu_s']:.2f}",
            f"{r['server_cpu_s']:.2f}",
            f"{r['memory_usage_bytes_per_user']:.0f}",
            f"{r['used_memory_bytes_per_user']:.0f}",
            " / ".join(f"{n:,}" for n in r["users_per_node"]),
        )
    t.add_row(
        "cluster / single",
        "",
        f"{ratios['users_per_s']:.2f}x",
        "",
        "",
        "",
        f"{ratios['memory_usage_bytes_per_user']:.2f}x",
        f"{ratios['used_memory_bytes_per_user']:.2f}x",
        "",
    )
    console.print(t)


if __name__ == "__main__":
    sys.exit(main())
