"""What both benchmarks share: the cached synthetic data set, child processes, machine info, output.

The data set of one parameter set lives in ``bench/.cache/<kind>-<hash>/`` (gitignored), laid out
like any hybridrec data dir (``raw/``, ``interactions/``, ``items/``, ``runs/``), plus
``dataset.json`` written last, so its presence means "complete" and ``--reuse`` can trust it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
CACHE_DIR = BENCH_DIR / ".cache"
RESULTS_DIR = BENCH_DIR / "results"

# batch.synthetic.generate draws a session as 2 + Geometric(0.17) views plus funnel events, cut at 30 rows:
# 9.78 rows on average (measured on 20k-100k users). Used only to pick sessions_per_user_day.
EVENTS_PER_SESSION = 9.78
# A fixed date, never "today": the same arguments must give the same data, hash and cache directory.
END_DATE = dt.date(2026, 10, 31)

# Wide enough for the result tables when stdout is a file or a pipe (rich would assume 80 columns).
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Arguments of ``batch.synthetic.generate.generate``; their hash names the cache directory."""

    users: int
    items: int
    days: int
    seed: int
    end_date: str
    sessions_per_user_day: float
    categories: int = 20

    @classmethod
    def for_events(cls, users: int, items: int, events: int, days: int = 14, seed: int = 42) -> DataSpec:
        """The spec whose expected volume is ``events`` rows.

        generate() gives each user ``1 + Poisson(activity * rate * days)`` sessions (mean activity 1),
        so rows ~= users * (1 + rate * days) * EVENTS_PER_SESSION; below users * EVENTS_PER_SESSION
        the rate is 0 (every user has one session).
        """
        rate = max(0.0, (events / (users * EVENTS_PER_SESSION) - 1.0) / days)
        return cls(users, items, days, seed, END_DATE.isoformat(), round(rate, 6))

    @property
    def end(self) -> dt.date:
        return dt.date.fromisoformat(self.end_date)

    def key(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@contextlib.contextmanager
def step(key: str, timings: dict[str, float], what: str | None = None) -> Iterator[None]:
    """Print a step (``what``, default ``key``) when it starts and its wall time when it ends;
    record the time in ``timings[key]``."""
    what = what or key
    console.print(f"[bold]…[/] {what}")
    start = time.perf_counter()
    yield
    timings[key] = round(time.perf_counter() - start, 3)
    console.print(f"[green]✓[/] {what} [dim]({timings[key]:.1f}s)[/]")


def build_dataset(spec: DataSpec, data_dir: Path, reuse: bool) -> dict:
    """Generate, write and ingest the synthetic data set into ``data_dir``; return its ``dataset.json``.

    With ``reuse`` and a complete ``dataset.json`` nothing is rebuilt. Otherwise the directory is
    wiped first, so no part file of an older build can leak into the window.
    """
    marker = data_dir / "dataset.json"
    if reuse and marker.exists():
        info = json.loads(marker.read_text())
        console.print(f"[green]✓[/] reusing data set {data_dir.name} ({info['n_events']:,} events)")
        return info
    # Heavy batch imports here, not at module level: a --reuse run that skips them starts faster.
    from batch.ingest import ingest_interactions, ingest_items
    from batch.synthetic.generate import generate, write_synthetic
    from shared.config import get_settings

    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    settings = get_settings(data_dir=data_dir)
    timings: dict[str, float] = {}
    with step("generate", timings, f"generate {spec.users:,} users x {spec.items:,} items, {spec.days} days"):
        data = generate(
            spec.users,
            spec.items,
            spec.days,
            spec.seed,
            spec.end,
            n_categories=spec.categories,
            sessions_per_user_day=spec.sessions_per_user_day,
        )
        n_events = len(data.interactions)
        paths = write_synthetic(data, settings.raw_dir)
        del data
    with step("ingest", timings):
        ingest_items(paths["items"], settings.items_path)
        report = ingest_interactions(
            paths["interactions"], "parquet", settings.interactions_dir, settings.quarantine_dir
        )
    console.print(f"  {report.summary()}")
    info = {
        "spec": dataclasses.asdict(spec),
        "n_events": n_events,
        "rows_good": report.rows_good,
        "timings_s": timings,
        "built_at_commit": git_state()["commit"],
    }
    write_json(marker, info)
    return info


def run_header(script: str, args: argparse.Namespace, machine: dict[str, object] | None = None) -> dict[str, object]:
    """What every result file starts with: the benchmark's name, when, the command line that reproduces
    it, the machine (``machine_info()`` unless given) and the parsed arguments."""
    return {
        "benchmark": script,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([".venv/bin/python", f"bench/{script}.py", *sys.argv[1:]]),
        "machine": machine if machine is not None else machine_info(),
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }


def write_json(path: Path, payload: dict) -> None:
    """Write via a ``.tmp`` sibling and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def git_state() -> dict[str, object]:
    def git(*args: str) -> str:
        try:
            out = subprocess.run(["git", *args], cwd=REPO_DIR, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}


def machine_info() -> dict[str, object]:
    """CPU, OS, interpreter and library versions, load at the start: enough to tell two runs apart."""
    import numpy
    import scipy

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": model,
        "mem_total_gib": round(mem_kib / 2**20, 1),
        "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "git": git_state(),
    }


@dataclasses.dataclass(frozen=True)
class ChildResult:
    returncode: int
    wall_s: float
    maxrss_mib: float  # wait4's ru_maxrss: includes the parent's RSS at fork time (see peak_rss_mib)
    cpu_s: float  # user + system CPU of the child


def run_child(cmd: list[str], timeout_s: float, env: dict[str, str] | None = None) -> ChildResult:
    """Run ``cmd`` to completion (killed after ``timeout_s``); return its wall time and its rusage.

    ``os.wait4`` gives the rusage of exactly this child (CPU time is exact), where
    ``getrusage(RUSAGE_CHILDREN)`` would accumulate over all children waited for so far. Its
    ``ru_maxrss`` is not the child's own peak, though: children report ``peak_rss_mib()`` themselves.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO_DIR, env=env, start_new_session=True)
    deadline = start + timeout_s
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)  # the child's own session: it and its workers only
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.wait4(proc.pid, 0)
        proc.returncode = -signal.SIGKILL
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return ChildResult(proc.returncode, time.perf_counter() - start, usage.ru_maxrss / 1024, cpu)


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def group_cpu_s(pgids: set[int]) -> float:
    """CPU seconds (user + system) used so far by the live processes whose process group is in ``pgids``.

    Each server we start leads its own session, so its group is its pid and holds its workers too.
    """
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()  # fields after the command name; pgrp is the 3rd
        if int(fields[2]) in pgids:
            total += int(fields[11]) + int(fields[12])  # utime, stime (clock ticks)
    return total / _TICK


def machine_busy_s() -> float:
    """CPU seconds all cores have spent not idle since boot (/proc/stat; 0.0 where unavailable)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    return (sum(values) - values[3] - values[4]) / _TICK  # minus idle and iowait


def _status_mib(field: str) -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return None


def current_rss_mib() -> float:
    """Resident set size now, from /proc (0.0 where /proc is unavailable)."""
    return _status_mib("VmRSS") or 0.0


def peak_rss_mib() -> float:
    """Peak RSS of this process's own address space since it was exec'd (``VmHWM``).

    Not ``ru_maxrss``: on Linux, exec carries the high-water mark of the address space it replaces
    into ``ru_maxrss``, so a child forked from a parent holding 800 MiB reports >= 800 MiB even if it
    never uses more than 10 MiB (measured here; see bench/README.md). The same goes for ``wait4`` and
    ``RUSAGE_CHILDREN``. ``ru_maxrss`` is the fallback where /proc is unavailable.
    """
    return _status_mib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def interrupt_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt, so ``finally`` blocks stop what we started.

    SIGINT explicitly too: a shell starts background jobs with SIGINT ignored, and Python then
    installs no handler for it.
    """

    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def fmt_ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"
