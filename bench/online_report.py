"""Statistics and tables of bench/online_latency.py, from the raw per-request records of bench/loadgen.py.

Every mix is reported as a ratio to the floor (bench/floor_app.py) measured in the same run: CPU per
request, closed-loop maximum (wrk), p99 at each open-loop rate, and the highest rate found to hold a
p99 under the target.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np
from rich.table import Table

from common import console, fmt_ms, fmt_ratio

FLOOR = "floor"


@dataclass(frozen=True)
class Mix:
    """One request mix: which server answers it, what it sends, and the ``strategy`` it must be served by."""

    server: str  # "floor" (bench/floor_app.py), "main" (the product), "blend" (the product, re-ranker off)
    population: str  # "users" (random known user) | "known_sessions" | "anon_sessions"
    expected: str | None  # the strategy every 200 response should name; None for the floor
    what: str


MIXES: dict[str, Mix] = {
    FLOOR: Mix("floor", "known_sessions", None, "floor app: one pipelined read (user + session), numpy top-10"),
    "known_user": Mix("main", "users", "precomputed", "known user, no session"),
    "known_user_session": Mix("main", "known_sessions", "reranked", "known user + live session, re-ranked"),
    "anon_session": Mix("main", "anon_sessions", "reranked", "anonymous visitor + live session, re-ranked"),
    # optional: the same paths as known_user_session, served by the blend (HYBRIDREC_RERANKER_ENABLED=false)
    "known_user_session_blend": Mix("blend", "known_sessions", "hybrid", "known user + session, blend"),
}
DEFAULT_MIXES = (FLOOR, "known_user", "known_user_session", "anon_session")
_QS = {"p50": 50, "p90": 90, "p99": 99, "max": 100}


def _pct(values: np.ndarray, names: tuple[str, ...]) -> dict[str, float | None]:
    if values.size == 0:
        return dict.fromkeys(names)
    got = np.percentile(values, [_QS[n] for n in names])
    return {n: round(float(v), 3) for n, v in zip(names, got, strict=True)}


def _opt(xs: list[float | None]) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in xs], dtype=float)


def percentiles(raw: dict) -> dict[str, float | None]:
    """p50 and p99 latency from the scheduled time (ms) of one slice (unanswered requests left out)."""
    done, due = _opt(raw["done"]), np.array(raw["due"])
    ok = ~np.isnan(done)
    return _pct((done - due)[ok] * 1000, ("p50", "p99"))


def slice_p99(raw: dict) -> float | None:
    """p99 latency from the scheduled time (ms) of one slice (unanswered requests left out)."""
    return percentiles(raw)["p99"]


def summarise_rate(slices: list[dict], rate: float) -> dict:
    """One mix at one open-loop rate, over all its slices (rounds): latency from the scheduled time,
    service time, send lag, the server's own timer, errors, strategies, CPU per request, foreign CPU."""
    lat, service, lag, took = [], [], [], []
    codes_all: list[np.ndarray] = []
    errors: collections.Counter = collections.Counter()
    strategies: collections.Counter = collections.Counter()
    flags: collections.Counter = collections.Counter()
    answered, span = 0, 0.0
    for raw in slices:
        due, sent, done = np.array(raw["due"]), _opt(raw["sent"]), _opt(raw["done"])
        ok = ~np.isnan(done)
        lat.append((done - due)[ok] * 1000)
        service.append((done - sent)[ok] * 1000)
        lag.append((sent - due)[~np.isnan(sent)] * 1000)
        t = np.array(raw["took_ms"], dtype=float)
        took.append(t[t >= 0])
        codes_all.append(np.array(raw["status"])[ok])
        answered += int(ok.sum())
        span += float(np.nanmax(done)) if ok.any() else 0.0
        errors.update(e for e in raw["error"] if e)
        strategies.update(s for s, c in zip(raw["strategy"], raw["status"], strict=True) if s and c == 200)
        flags.update(f for fl in raw["flags"] for f in fl.split(",") if f)
    codes = np.concatenate(codes_all) if codes_all else np.empty(0, dtype=int)
    n = sum(raw["n"] for raw in slices)
    return {
        "target_rps": rate,
        "requests": n,
        "slices": len(slices),
        "achieved_rps": round(answered / span, 1) if span else 0.0,
        "latency_ms": _pct(np.concatenate(lat), tuple(_QS)),
        "service_ms": _pct(np.concatenate(service), ("p50", "p99")),
        "send_lag_ms": _pct(np.concatenate(lag), ("p50", "p99", "max")),
        "server_took_ms": _pct(np.concatenate(took), ("p50", "p99")),
        "p99_ms_per_round": [slice_p99(raw) for raw in slices],
        "ok": int((codes == 200).sum()),
        "non_200": int((codes != 200).sum()),
        "status_counts": {str(k): v for k, v in collections.Counter(codes[codes != 200].tolist()).items()},
        "transport_errors": dict(errors),
        "strategies": dict(strategies),
        "flags": dict(flags),
        "server_cpu_ms_per_request": round(float(np.mean([r["server_cpu_s_per_request"] for r in slices])) * 1000, 3),
        "foreign_cpu_cores_per_round": [round(r["foreign_cpu_cores"], 2) for r in slices],
        "client_cpu_us_per_request": round(sum(r["client_cpu_s"] for r in slices) / max(1, n) * 1e6, 1),
        "redis_connections_opened": sum(r.get("redis_connections", 0) for r in slices),
    }


def holds(summary: dict, p99_target_ms: float) -> bool:
    """The rate was held: p99 under the target, at least 97% of the rate achieved, every answer a 200."""
    p99 = summary["latency_ms"]["p99"]
    errors = sum(summary["transport_errors"].values()) + summary["non_200"]
    return (
        p99 is not None
        and p99 < p99_target_ms
        and summary["achieved_rps"] >= 0.97 * summary["target_rps"]
        and not errors
    )


def summarise_wrk(rounds: list[dict]) -> dict | None:
    if not rounds:
        return None
    requests = sum(r["requests"] for r in rounds)
    seconds = sum(r["duration_s"] for r in rounds)
    return {
        "rps": round(requests / seconds, 1),
        "rps_per_round": [r["rps"] for r in rounds],
        "requests": requests,
        "seconds": round(seconds, 2),
        "connections": rounds[0]["connections"],
        "non_2xx": sum(r["non_2xx"] for r in rounds),
        "socket_errors": sum(r["socket_errors"] for r in rounds),
        "p99_ms_max_round": max(r["p99_ms"] for r in rounds),
        "redis_connections_opened": sum(r.get("redis_connections", 0) for r in rounds),
        "server_cpu_ms_per_request": round(
            sum(r["server_cpu_s_per_request"] * r["requests"] for r in rounds) / max(1, requests) * 1000, 3
        ),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def add_ratios(results: dict[str, dict], rates: list[float]) -> None:
    """Each mix over the floor: CPU per request and p99 at every rate, wrk maximum, sustainable rate;
    and the share of 200s served by the mix's expected strategy."""
    floor = results.get(FLOOR)
    for name, r in results.items():
        ratios: dict = {}
        for rate in rates:
            key = f"{rate:g}"
            mine, base = r["rates"].get(key), floor["rates"].get(key) if floor else None
            if mine and base:
                ratios[f"cpu_at_{key}"] = _ratio(mine["server_cpu_ms_per_request"], base["server_cpu_ms_per_request"])
                ratios[f"p99_at_{key}"] = _ratio(mine["latency_ms"]["p99"], base["latency_ms"]["p99"])
        if r.get("wrk") and floor and floor.get("wrk"):
            ratios["wrk_rps"] = _ratio(r["wrk"]["rps"], floor["wrk"]["rps"])
            ratios["cpu_at_wrk"] = _ratio(
                r["wrk"]["server_cpu_ms_per_request"], floor["wrk"]["server_cpu_ms_per_request"]
            )
        if r.get("sustainable") and floor and floor.get("sustainable"):
            ratios["sustainable_rps"] = _ratio(r["sustainable"]["max_rps"], floor["sustainable"]["max_rps"])
        r["vs_floor"] = ratios
        expected = MIXES[name].expected
        served: collections.Counter = collections.Counter()
        flags: collections.Counter = collections.Counter()
        ok = 0
        for s in r["rates"].values():
            served.update(s["strategies"])
            flags.update(s["flags"])
            ok += s["ok"]
        r["strategies_all"], r["flags_all"] = dict(served), dict(flags)
        r["expected_strategy"] = expected
        r["expected_strategy_share"] = round(served.get(expected, 0) / ok, 4) if expected and ok else None


def acceptance(results: dict[str, dict], p99_target_ms: float, cpu_rate: str) -> dict:
    """Issue 11's acceptance, read off this run (reported, never asserted)."""
    r = results.get("known_user_session")
    if r is None or FLOOR not in results:
        return {}
    v = r["vs_floor"]
    at500 = r["rates"].get("500")
    return {
        "cpu_rate": cpu_rate,
        "cpu_vs_floor": v.get(f"cpu_at_{cpu_rate}"),
        "cpu_at_most_1_5x_floor": (v.get(f"cpu_at_{cpu_rate}") or 99) <= 1.5,
        "wrk_vs_floor": v.get("wrk_rps"),
        "wrk_at_least_60pct_of_floor": (v.get("wrk_rps") or 0) >= 0.6,
        "p99_at_500_ms": at500["latency_ms"]["p99"] if at500 else None,
        "p99_at_500_under_target": bool(at500 and holds(at500, p99_target_ms)),
        "served_reranked_share": r["expected_strategy_share"],
    }


def _cell(value: str, ratio: float | None) -> str:
    return f"{value} ({fmt_ratio(ratio)})" if ratio is not None else value


def print_tables(payload: dict) -> None:
    results, rates = payload["mixes"], payload["params"]["rates"]
    target, cpu_rate = payload["params"]["p99_target"], payload["cpu_rate"]
    console.print(f"[bold]{payload['auth']}[/]; caches: {payload['caches']}")
    t = Table(
        title=f"Each mix against the floor in the same run (ratio to the floor in brackets). CPU = API + Redis CPU "
        f"ms per request at {cpu_rate} req/s; wrk = -t1 -c{payload['params']['wrk_connections']} max req/s; p99 = ms "
        f"from the scheduled send time, open loop; sustainable = highest rate found with p99 < {target:g} ms"
    )
    t.add_column("mix")
    t.add_column("served by")
    t.add_column("CPU ms/req", justify="right")
    t.add_column("max req/s", justify="right")
    for rate in rates:
        t.add_column(f"p99 @{rate:g}/s", justify="right")
    t.add_column(f"sustainable p99<{target:g}", justify="right")
    for name, r in results.items():
        v = r["vs_floor"]
        strat = ", ".join(f"{k} {n}" for k, n in sorted(r["strategies_all"].items())) or "-"
        cpu = r["rates"].get(cpu_rate)
        row = [
            name,
            strat,
            _cell(f"{cpu['server_cpu_ms_per_request']:.2f}", v.get(f"cpu_at_{cpu_rate}")) if cpu else "-",
            _cell(f"{r['wrk']['rps']:.0f}", v.get("wrk_rps")) if r.get("wrk") else "-",
        ]
        for rate in rates:
            s = r["rates"].get(f"{rate:g}")
            if s is None:
                row.append("-")
                continue
            p99 = _cell(fmt_ms(s["latency_ms"]["p99"]), v.get(f"p99_at_{rate:g}"))
            if s["achieved_rps"] < 0.97 * rate:
                p99 += f" [red]held {s['achieved_rps']:.0f}/s[/]"
            row.append(p99)
        sus = r.get("sustainable")
        row.append(_cell(f"{sus['max_rps']:.0f}", v.get("sustainable_rps")) if sus else "-")
        t.add_row(*row)
    console.print(t)
    d = Table(
        title="Per rate: achieved req/s, p50 / p99 (ms), errors, CPU ms/req, other processes' CPU (cores), "
        "connections Redis accepted"
    )
    d.add_column("mix")
    for rate in rates:
        d.add_column(f"@{rate:g}/s", justify="right")
    d.add_column("wrk CPU ms/req", justify="right")
    for name, r in results.items():
        row = [name]
        for rate in rates:
            s = r["rates"].get(f"{rate:g}")
            if s is None:
                row.append("-")
                continue
            errs = sum(s["transport_errors"].values()) + s["non_200"]
            foreign = np.mean(s["foreign_cpu_cores_per_round"]) if s["foreign_cpu_cores_per_round"] else 0.0
            row.append(
                f"{s['achieved_rps']:.0f}/s {fmt_ms(s['latency_ms']['p50'])}/{fmt_ms(s['latency_ms']['p99'])} "
                f"err {errs} cpu {s['server_cpu_ms_per_request']:.2f} fg {foreign:.2f} conn {s['redis_connections_opened']}"
            )
        row.append(f"{r['wrk']['server_cpu_ms_per_request']:.2f}" if r.get("wrk") else "-")
        d.add_row(*row)
    console.print(d)
    s = Table(
        title=f"Search for the highest rate with p99 < {target:g} ms (open loop; each step the median of its slices)"
    )
    s.add_column("mix")
    s.add_column("steps: rate → p99 ms (held?)")
    s.add_column("max held", justify="right")
    s.add_column("lowest failed", justify="right")
    for name, r in results.items():
        sus = r.get("sustainable")
        if not sus:
            continue
        steps = ", ".join(f"{st['rate']:.0f}→{fmt_ms(st['p99_ms'])}{'' if st['held'] else '✗'}" for st in sus["steps"])
        s.add_row(
            name, steps, f"{sus['max_rps']:.0f}", f"{sus['lowest_failed_rps']:.0f}" if sus["lowest_failed_rps"] else "-"
        )
    console.print(s)
    acc = payload.get("acceptance")
    if acc:
        yes = {True: "[green]yes[/]", False: "[red]no[/]"}
        console.print(
            f"Acceptance (known user + session, re-ranked): CPU {fmt_ratio(acc['cpu_vs_floor'])} of the floor's "
            f"(≤1.5x: {yes[acc['cpu_at_most_1_5x_floor']]}); max req/s {fmt_ratio(acc['wrk_vs_floor'])} "
            f"(≥0.6x: {yes[acc['wrk_at_least_60pct_of_floor']]}); p99 @500/s {fmt_ms(acc['p99_at_500_ms'])} ms "
            f"(<{target:g} and held: {yes[acc['p99_at_500_under_target']]}); served re-ranked: "
            f"{acc['served_reranked_share']:.1%}"
        )
    for name, r in results.items():
        share = r["expected_strategy_share"]
        if share is not None and share < 0.99:
            console.print(
                f"[yellow]{name}: only {share:.1%} served by {r['expected_strategy']}[/]: {r['strategies_all']}"
            )
