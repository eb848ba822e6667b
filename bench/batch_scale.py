"""Batch cost for the cost model (issue 13): per-step time and peak RSS of run_batch at one scale, the
sharded run's tasks (stage, N candidate shards at once, seal), and implicit ALS's cost per iteration.

    .venv/bin/python bench/batch_scale.py --users 100000 --items 20000 --events 1000000 [--reuse]
    .venv/bin/python bench/batch_scale.py --users 1000000 --items 20000 --events 10000000 --shards 1,2
    .venv/bin/python bench/batch_scale.py --als-cost          # ALS seconds per non-zero and per row

Scale mode builds (or reuses) a synthetic data set under bench/.cache/ (batch.synthetic, as
bench/batch_pipeline.py), then, each in a fresh child process so that time and peak RSS belong to that
work alone: ``run_batch`` (bench/batch_children.py ``pipeline``: every step, per-step seconds and peak
RSS); the sharded ``train`` task (``batch.shards.stage``); for each N of ``--shards``, N
``candidates_shard`` children started together (on this 2-core machine they share the cores: the
per-shard CPU seconds are what a worker of its own would spend); and ``seal_run``, whose content hash
must equal run_batch's. Output: tables and bench/results/batch_scale_<users>.json.

ALS mode fits implicit's CPU ALS (our settings: 64 factors, conjugate gradient, BLAS pinned to one
thread, all cores for OpenMP) for a few iterations on random matrices of chosen rows and non-zeros, fits
``seconds per iteration = a * nnz + b * (users + items)`` by least squares, and says how many users fit
a training window on one machine: bench/results/batch_scale_als.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from rich.table import Table

from common import (
    CACHE_DIR,
    REPO_DIR,
    RESULTS_DIR,
    DataSpec,
    build_dataset,
    console,
    interrupt_on_signals,
    machine_busy_s,
    machine_info,
    run_child,
    write_json,
)

BENCH = Path(__file__).resolve().parent
# Sweeps of one daily ALS fit: Settings.als_iterations (15) on the train split + FULL_DATA_SWEEPS (5).
DAILY_SWEEPS = 20


def _child(kind: str, *args: str) -> list[str]:
    """The command of one measured child: ``pipeline`` (bench/batch_children.py) or a sharded task's."""
    script = "batch_children.py" if kind == "pipeline" else "shard_children.py"
    return [sys.executable, str(BENCH / script), kind, *args]


def measured(cmd: list[str], out: Path, timeout_s: float, what: str) -> dict:
    """Run one child; its own report (OUT.json) plus wall, CPU and other processes' CPU meanwhile."""
    out.unlink(missing_ok=True)
    console.print(f"[bold]…[/] {what}")
    busy0 = machine_busy_s()
    child = run_child(cmd, timeout_s)
    if child.returncode != 0 or not out.exists():
        raise RuntimeError(f"{what}: child exited with {child.returncode} after {child.wall_s:.0f}s")
    result = json.loads(out.read_text())
    foreign = max(0.0, machine_busy_s() - busy0 - child.cpu_s) / child.wall_s
    result |= {
        "process_wall_s": round(child.wall_s, 2),
        "cpu_s": round(child.cpu_s, 2),
        "foreign_cpu_cores": round(foreign, 2),
    }
    console.print(
        f"[green]✓[/] {what}: {result['work_s']:.1f}s, peak RSS {result['peak_rss_mib']:,.0f} MiB, "
        f"CPU {child.cpu_s:.1f}s; other processes used {foreign:.2f} cores meanwhile"
    )
    return result


def measured_together(cmds: list[list[str]], outs: list[Path], timeout_s: float, what: str) -> dict:
    """Start every child at once (N workers' tasks); wall time until the last ends, and each child's report."""
    for out in outs:
        out.unlink(missing_ok=True)
    console.print(f"[bold]…[/] {what}")
    busy0 = machine_busy_s()
    start = time.perf_counter()
    procs = [subprocess.Popen(cmd, cwd=REPO_DIR, start_new_session=True) for cmd in cmds]
    try:
        for proc in procs:
            proc.wait(timeout=max(1.0, start + timeout_s - time.perf_counter()))
    except BaseException:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        raise
    wall = time.perf_counter() - start
    if any(p.returncode != 0 for p in procs) or not all(o.exists() for o in outs):
        raise RuntimeError(f"{what}: a child failed ({[p.returncode for p in procs]})")
    children = [json.loads(o.read_text()) for o in outs]
    busy = machine_busy_s() - busy0
    own = sum(c["cpu_s"] for c in children)
    result = {
        "wall_s": round(wall, 2),
        "children": children,
        "cpu_s": round(own, 2),
        "foreign_cpu_cores": round(max(0.0, busy - own) / wall, 2),
        "max_peak_rss_mib": max(c["peak_rss_mib"] for c in children),
    }
    console.print(
        f"[green]✓[/] {what}: {wall:.1f}s wall, CPU {own:.1f}s in all, peak RSS up to "
        f"{result['max_peak_rss_mib']:,.0f} MiB each; other processes used {result['foreign_cpu_cores']:.2f} cores"
    )
    return result


def scale_mode(args: argparse.Namespace) -> dict:
    spec = DataSpec.for_events(args.users, args.items, args.events, args.days, args.seed)
    data_dir = CACHE_DIR / f"scale-{spec.key()}"
    info = build_dataset(spec, data_dir, args.reuse)
    work = data_dir / "bench"
    work.mkdir(exist_ok=True)
    end = spec.end_date
    pipe = measured(
        _child("pipeline", str(data_dir), end, str(work / "pipeline.json")),
        work / "pipeline.json",
        args.timeout,
        "run_batch",
    )
    manifest = json.loads((data_dir / f"runs/date={end}/manifest.json").read_text())
    n_users = manifest["n_users"]
    shard_ns = [int(n) for n in args.shards.split(",") if n]
    result = {
        "dataset": {**info, "cache_dir": str(data_dir)},
        "run": {
            "n_users": n_users,
            "n_items": manifest["n_items"],
            "n_interactions": manifest["n_interactions"],
            "params": manifest["params"],
        },
        "run_batch": pipe,
    }
    if shard_ns:
        result.update(sharded_run(args, data_dir, spec, n_users, shard_ns, manifest["content_hash"]))
    if args.publish and shard_ns:
        result["staged_publish"] = staged_publish(args, data_dir, spec, n_users, shard_ns)
    return result


def staged_publish(args: argparse.Namespace, data_dir: Path, spec: DataSpec, n_users: int, shard_ns: list[int]) -> dict:
    """The sharded publish of the run into one redis-server (embedded, no persistence): begin_publish,
    N publish_shard children at once, publish (verify, meta, flip), for each N, each under its own key prefix."""
    from feature_store.embedded import EmbeddedRedis

    work, end, out = data_dir / "bench", spec.end_date, {}
    with EmbeddedRedis() as server:
        for n in shard_ns:
            common = [str(data_dir), end, server.url, f"b{n}", str(n)]
            begin = measured(
                _child("begin", *common, "0", str(work / "begin.json")),
                work / "begin.json",
                args.timeout,
                f"begin_publish ({n} ranges)",
            )
            outs = [work / f"publish-{n}-{i}.json" for i in range(n)]
            cmds = [_child("publish", *common, str(i), str(o)) for i, o in enumerate(outs)]
            group = measured_together(cmds, outs, args.timeout, f"{n} publish_shard task(s) at once")
            finish = measured(
                _child("finish", *common, "0", str(work / "finish.json")),
                work / "finish.json",
                args.timeout,
                "publish (verify, meta, flip)",
            )
            write_s = max(c["write_s"] for c in group["children"])
            out[n] = {
                "begin": begin,
                "shards": group,
                "finish": finish,
                "users_per_s_writing": round(n_users / write_s, 1),
            }
    return out


def sharded_run(
    args: argparse.Namespace, data_dir: Path, spec: DataSpec, n_users: int, shard_ns: list[int], content_hash: str
) -> dict:
    """The sharded run's tasks on the same data: stage once, then each N of ``shard_ns``, then seal."""
    from batch import artifacts as art
    from batch.shards import PLAN_FILE, user_ranges

    work, end = data_dir / "bench", spec.end_date
    stage_cmd = _child("stage", str(data_dir), end, str(max(shard_ns)), str(work / "stage.json"))
    stage = measured(stage_cmd, work / "stage.json", args.timeout, "sharded train (stage)")
    staging = art.staging_dir_for(data_dir / "runs", spec.end)
    plan_path = staging / PLAN_FILE
    plan = json.loads(plan_path.read_text())
    with np.load(staging / "history.npz") as history:
        nnz = int(history["indptr"][-1])
    sharded = {}
    for n in shard_ns:
        # the same staged run, split into n ranges: only the plan changes (what train would have written)
        plan["shards"] = [s.to_dict() for s in user_ranges(n_users, n)]
        art.write_json(plan_path, plan)
        outs = [work / f"shard-{n}-{i}.json" for i in range(n)]
        cmds = [_child("shard", str(data_dir), end, str(i), str(o)) for i, o in enumerate(outs)]
        sharded[n] = measured_together(cmds, outs, args.timeout, f"{n} candidates_shard task(s) at once")
    seal_cmd = _child("seal", str(data_dir), end, str(work / "seal.json"))
    seal = measured(seal_cmd, work / "seal.json", args.timeout, "seal_run")
    return {
        "full_matrix_nnz": nnz,
        "stage": stage,
        "candidates_shards": sharded,
        "seal": seal,
        "sealed_equals_run_batch": seal["content_hash"] == content_hash,
    }


def print_scale(r: dict) -> None:
    run, pipe = r["run"], r["run_batch"]
    n = run["n_users"]
    t = Table(
        title=f"run_batch at {n:,} users x {run['n_items']:,} items, {run['n_interactions']:,} events: "
        f"{pipe['work_s']:.0f}s, peak RSS {pipe['peak_rss_mib']:,.0f} MiB",
        caption=f"other processes used {pipe['foreign_cpu_cores']:.2f} of the 2 cores meanwhile",
    )
    for col in ("step", "s", "us per user", "peak RSS MiB"):
        t.add_column(col, justify="left" if col == "step" else "right")
    for name in pipe["step_order"]:
        secs = pipe["timings_s"][name]
        t.add_row(name, f"{secs:.2f}", f"{secs / n * 1e6:.1f}", f"{pipe['step_peak_rss_mib'][name]:,.0f}")
    console.print(t)
    if "stage" not in r:
        return
    s = Table(title="The sharded run's tasks (each child a task; N shards started together on 2 cores)")
    for col in ("task", "wall s", "CPU s", "peak RSS MiB", "us per user (work)", "other cores busy"):
        s.add_column(col, justify="left" if col == "task" else "right")
    st = r["stage"]
    s.add_row(
        "train (stage)",
        f"{st['work_s']:.1f}",
        f"{st['cpu_s']:.1f}",
        f"{st['peak_rss_mib']:,.0f}",
        f"{st['work_s'] / n * 1e6:.1f}",
        f"{st['foreign_cpu_cores']:.2f}",
    )
    for k, g in r["candidates_shards"].items():
        per = ", ".join(f"{c['work_s']:.0f}" for c in g["children"])
        s.add_row(
            f"candidates_shard x{k} (each: {per}s)",
            f"{g['wall_s']:.1f}",
            f"{g['cpu_s']:.1f}",
            f"{g['max_peak_rss_mib']:,.0f}",
            f"{max(c['work_s'] for c in g['children']) / n * 1e6:.1f}",
            f"{g['foreign_cpu_cores']:.2f}",
        )
    se = r["seal"]
    s.add_row(
        "seal_run",
        f"{se['work_s']:.1f}",
        f"{se['cpu_s']:.1f}",
        f"{se['peak_rss_mib']:,.0f}",
        f"{se['work_s'] / n * 1e6:.1f}",
        f"{se['foreign_cpu_cores']:.2f}",
    )
    console.print(s)
    console.print(f"sealed run == run_batch's run (content hash): {r['sealed_equals_run_batch']}")
    if "staged_publish" not in r:
        return
    t = Table(title="Sharded publish into one redis-server (N publish_shard children at once on 2 cores)")
    for col in ("N", "begin s", "load s (each)", "write s (each)", "users/s writing", "publish s"):
        t.add_column(col, justify="right")
    for k, x in r["staged_publish"].items():
        kids = x["shards"]["children"]
        t.add_row(
            str(k),
            f"{x['begin']['work_s']:.1f}",
            ", ".join(f"{c['load_s']:.1f}" for c in kids),
            ", ".join(f"{c['write_s']:.1f}" for c in kids),
            f"{x['users_per_s_writing']:,.0f}",
            f"{x['finish']['work_s']:.1f}",
        )
    console.print(t)


# --- ALS cost ----------------------------------------------------------------------------------------


def _random_matrix(users: int, items: int, per_user: int, seed: int):
    from scipy.sparse import csr_matrix

    rng = np.random.default_rng(seed)
    nnz = users * per_user
    rows = np.repeat(np.arange(users), per_user)
    # Zipf-ish item popularity, as real logs have
    cols = np.minimum((rng.pareto(1.2, nnz) * items / 20).astype(np.int64), items - 1)
    m = csr_matrix((np.ones(nnz, np.float32), (rows, cols)), shape=(users, items))
    m.sum_duplicates()
    m.data = (1.0 + 4.0 * np.log1p(m.data)).astype(np.float32)  # confidences as batch.train hands them over
    return m


def als_cost(args: argparse.Namespace) -> dict:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    points = []
    for users, per_user in ((100_000, 5), (100_000, 50), (400_000, 5)):
        users = max(1, int(users * args.als_scale))
        m = _random_matrix(users, args.items, per_user, args.seed)
        with threadpool_limits(1, "blas"):
            als = AlternatingLeastSquares(
                factors=64,
                regularization=15.0,
                alpha=1.0,
                dtype=np.float32,
                use_cg=True,
                iterations=args.als_iterations,
                calculate_training_loss=False,
                num_threads=0,
                random_state=1,
            )
            busy0 = machine_busy_s()
            start = time.perf_counter()
            als.fit(m, show_progress=False)
            wall = time.perf_counter() - start
        point = {
            "users": users,
            "items": args.items,
            "nnz": int(m.nnz),
            "iterations": args.als_iterations,
            "s_per_iteration": round(wall / args.als_iterations, 4),
            "machine_busy_cores": round((machine_busy_s() - busy0) / wall, 2),
        }
        console.print(f"[green]✓[/] ALS {users:,} users, {m.nnz:,} nnz: {point['s_per_iteration']:.2f}s per iteration")
        points.append(point)
    a_mat = np.array([[p["nnz"], p["users"] + p["items"]] for p in points], dtype=np.float64)
    y = np.array([p["s_per_iteration"] for p in points])
    (a, b), *_ = np.linalg.lstsq(a_mat, y, rcond=None)
    fit = {"s_per_nnz_iter": float(a), "s_per_row_iter": float(b), "cores": os.cpu_count()}
    window_s = args.window_h * 3600
    fits = []
    for cores in (2, 16, 64):
        for per_user in (10, 100):
            # users that fit DAILY_SWEEPS sweeps in the window, OpenMP scaling linearly from the cores measured
            per_user_s = DAILY_SWEEPS * (a * per_user + b) * (fit["cores"] or 2) / cores
            fits.append(
                {
                    "cores": cores,
                    "nnz_per_user": per_user,
                    "max_users": int(window_s / per_user_s),
                    "max_nnz": int(window_s / per_user_s * per_user),
                }
            )
    return {
        "points": points,
        "fit": fit,
        "window_h": args.window_h,
        "daily_sweeps": DAILY_SWEEPS,
        "fits_in_window": fits,
    }


def print_als(r: dict) -> None:
    f = r["fit"]
    t = Table(
        title=f"implicit CPU ALS (64 factors, CG): {f['s_per_nnz_iter'] * 1e9:.1f} ns per non-zero + "
        f"{f['s_per_row_iter'] * 1e6:.2f} us per row (user or item), per iteration, on {f['cores']} cores",
    )
    for col in ("users", "nnz", "s / iteration", "machine cores busy (ALS included)"):
        t.add_column(col, justify="right")
    for p in r["points"]:
        t.add_row(f"{p['users']:,}", f"{p['nnz']:,}", f"{p['s_per_iteration']:.2f}", f"{p['machine_busy_cores']:.2f}")
    console.print(t)
    w = Table(
        title=f"Users whose daily fit ({r['daily_sweeps']} sweeps) fits {r['window_h']:g} h on one CPU machine (linear in cores: an assumption)"
    )
    for col in ("cores", "nnz per user", "max users", "max non-zeros"):
        w.add_column(col, justify="right")
    for x in r["fits_in_window"]:
        w.add_row(str(x["cores"]), str(x["nnz_per_user"]), f"{x['max_users']:,}", f"{x['max_nnz']:,}")
    console.print(w)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=20_000)
    p.add_argument("--events", type=int, default=1_000_000, help="target event count")
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--shards", default="1,2", help="numbers of candidate shards to run at once, e.g. 1,2")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds before a child is killed")
    p.add_argument("--reuse", action="store_true", help="reuse the cached data set")
    p.add_argument("--publish", action="store_true", help="also the sharded publish into an embedded redis-server")
    p.add_argument("--als-cost", action="store_true", help="measure ALS's cost per non-zero and per row instead")
    p.add_argument("--als-iterations", type=int, default=3)
    p.add_argument("--als-scale", type=float, default=1.0, help="multiply the ALS matrices' users (a smoke run: 0.01)")
    p.add_argument("--window-h", type=float, default=4.0, help="training window of the crossover table")
    p.add_argument("--out", type=Path, default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    interrupt_on_signals()
    machine = machine_info()
    try:
        result = als_cost(args) if args.als_cost else scale_mode(args)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: child processes stopped")
        return 130
    (print_als if args.als_cost else print_scale)(result)
    out = args.out or RESULTS_DIR / ("batch_scale_als.json" if args.als_cost else f"batch_scale_{args.users}.json")
    payload = {
        "benchmark": "batch_scale",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(
            [".venv/bin/python", "bench/batch_scale.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "machine": machine,
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if v is not None},
        "result": result,
    }
    write_json(out, payload)
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
