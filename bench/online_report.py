"""Statistics and tables of bench/online_latency.py, from the raw per-request records of bench/loadgen.py."""

from __future__ import annotations

import argparse
import collections

import numpy as np
from rich.table import Table

from common import console, fmt_ms, fmt_ratio

TARGET_P99_MS = 50.0
FLOOR = "ready_floor"
MIXES = (FLOOR, "known_user", "known_user_session", "unknown_user_session")
_QS = {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "p99_9": 99.9, "max": 100}


def _pct(values: np.ndarray, names: tuple[str, ...]) -> dict[str, float | None]:
    if values.size == 0:
        return dict.fromkeys(names)
    got = np.percentile(values, [_QS[n] for n in names])
    return {n: round(float(v), 3) for n, v in zip(names, got, strict=True)}


def _arrays(raw: dict) -> dict[str, np.ndarray]:
    def opt(xs: list[float | None]) -> np.ndarray:
        return np.array([np.nan if x is None else x for x in xs], dtype=float)

    return {"due": np.array(raw["due"]), "sent": opt(raw["sent"]), "done": opt(raw["done"])}


def percentiles(raw: dict) -> dict[str, float | None]:
    """Latency from the scheduled time (ms) of one slice: p50 and p99."""
    a = _arrays(raw)
    ok = ~np.isnan(a["done"])
    return _pct((a["done"] - a["due"])[ok] * 1000, ("p50", "p99"))


def summarise_mix(slices: list[dict], wrk: list[dict], rate: float) -> dict:
    """One mix over all its slices: latency (from due), service time (from sent), send lag, errors,
    strategies, server CPU per request, foreign CPU, and the wrk probe."""
    lat, service, lag, took = [], [], [], []
    status, errors, strategies, flags = [], collections.Counter(), collections.Counter(), collections.Counter()
    answered_n, span = 0, 0.0
    for raw in slices:
        a = _arrays(raw)
        ok = ~np.isnan(a["done"])
        lat.append((a["done"] - a["due"])[ok] * 1000)
        service.append((a["done"] - a["sent"])[ok] * 1000)
        lag.append((a["sent"] - a["due"])[~np.isnan(a["sent"])] * 1000)
        t = np.array(raw["took_ms"], dtype=float)
        took.append(t[t >= 0])
        st = np.array(raw["status"])
        status.append(st[ok])
        answered_n += int(ok.sum())
        span += float(np.nanmax(a["done"])) if ok.any() else 0.0
        errors.update(e for e in raw["error"] if e)
        strategies.update(s for s, code in zip(raw["strategy"], raw["status"], strict=True) if s and code == 200)
        flags.update(f for fl in raw["flags"] for f in fl.split(",") if f)
    codes = np.concatenate(status) if status else np.empty(0, dtype=int)
    n = sum(raw["n"] for raw in slices)
    return {
        "target_rps": rate,
        "requests": n,
        "slices": len(slices),
        "achieved_rps": round(answered_n / span, 1) if span else 0.0,
        "latency_ms": _pct(np.concatenate(lat), tuple(_QS)),
        "service_ms": _pct(np.concatenate(service), ("p50", "p99", "max")),
        "send_lag_ms": _pct(np.concatenate(lag), ("p50", "p99", "max")),
        "server_took_ms": _pct(np.concatenate(took), ("p50", "p99")),
        "p99_ms_per_round": (per_round := [percentiles(raw)["p99"] for raw in slices]),
        "p99_ms_median_of_rounds": _median([p for p in per_round if p is not None]),
        "ok": int((codes == 200).sum()),
        "non_200": int((codes != 200).sum()),
        "status_counts": {str(k): v for k, v in collections.Counter(codes[codes != 200].tolist()).items()},
        "transport_errors": dict(errors),
        "strategies": dict(strategies),
        "flags": dict(flags),
        "server_cpu_ms_per_request": round(float(np.mean([r["server_cpu_s_per_request"] for r in slices])) * 1000, 3),
        "foreign_cpu_cores_per_round": [round(r["foreign_cpu_cores"], 2) for r in slices],
        "client_cpu_us_per_request": round(sum(r["client_cpu_s"] for r in slices) / max(1, n) * 1e6, 1),
        "client_sys_cpu_us_per_request": round(sum(r["client_cpu_sys_s"] for r in slices) / max(1, n) * 1e6, 1),
        "event_loop": slices[0]["event_loop"] if slices else None,
        "wrk": _wrk_summary(wrk),
    }


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 3) if values else None


def _wrk_summary(rounds: list[dict]) -> dict | None:
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
        "server_cpu_ms_per_request": round(
            sum(r["server_cpu_s_per_request"] * r["requests"] for r in rounds) / requests * 1000, 3
        ),
    }


def add_ratios(results: dict[str, dict]) -> None:
    """Ratios of each mix to the floor (None without a floor); the p99 target verdict."""
    floor = results.get(FLOOR)
    for r in results.values():
        for q in ("p50", "p99"):
            v, b = r["latency_ms"][q], floor["latency_ms"][q] if floor else None
            r[f"{q}_vs_floor"] = round(v / b, 2) if v is not None and b else None
        m, fm = r["p99_ms_median_of_rounds"], floor["p99_ms_median_of_rounds"] if floor else None
        r["p99_median_of_rounds_vs_floor"] = round(m / fm, 2) if m is not None and fm else None
        c, fc = r["server_cpu_ms_per_request"], floor["server_cpu_ms_per_request"] if floor else None
        r["server_cpu_vs_floor"] = round(c / fc, 2) if fc else None
        w, fw = r["wrk"], floor["wrk"] if floor else None
        r["wrk_rps_vs_floor"] = round(w["rps"] / fw["rps"], 3) if w and fw else None
        p99 = r["latency_ms"]["p99"]
        r["meets_p99_target"] = p99 is not None and p99 < TARGET_P99_MS and r["non_200"] == 0


def print_tables(results: dict[str, dict], args: argparse.Namespace) -> None:
    t = Table(
        title=f"Open loop at {args.rate:g} req/s, {args.duration:g}s per mix in {args.rounds} interleaved rounds "
        "(latency from the scheduled send time, ms)"
    )
    cols = ("mix", "target/s", "achieved/s", "p50", "p95", "p99", "max", "err/non-200", "p99 vs floor")
    for col in (*cols, "same, median of rounds"):
        t.add_column(col, justify="left" if col == "mix" else "right")
    t.add_column(f"p99<{TARGET_P99_MS:g}", justify="center")
    t.add_column(f"wrk -c{args.wrk_connections} max/s", justify="right")
    t.add_column("wrk vs floor", justify="right")
    for name, r in results.items():
        lat, wrk = r["latency_ms"], r["wrk"]
        t.add_row(
            name,
            f"{r['target_rps']:g}",
            f"{r['achieved_rps']:.1f}",
            fmt_ms(lat["p50"]),
            fmt_ms(lat["p95"]),
            fmt_ms(lat["p99"]),
            fmt_ms(lat["max"]),
            f"{sum(r['transport_errors'].values())}/{r['non_200']}",
            fmt_ratio(r["p99_vs_floor"]),
            fmt_ratio(r["p99_median_of_rounds_vs_floor"]),
            "[green]yes[/]" if r["meets_p99_target"] else "[red]no[/]",
            f"{wrk['rps']:.0f}" if wrk else "-",
            fmt_ratio(r["wrk_rps_vs_floor"]),
        )
    console.print(t)
    d = Table(
        title="Diagnostics: service = from actual send (ms), lag = send - scheduled (ms), took = server's own timer "
        "(ms), server CPU = API + Redis CPU per request (ms), foreign = CPU cores used by other processes"
    )
    cols = ("mix", "service p50", "service p99", "lag p99", "took p50", "took p99", "server CPU", "vs floor")
    for col in (*cols, "p99 per round", "foreign cores", "strategies / flags"):
        d.add_column(col, justify="right" if col not in ("mix", "strategies / flags", "p99 per round") else "left")
    for name, r in results.items():
        strat = ", ".join(f"{k}={v}" for k, v in sorted(r["strategies"].items())) or "-"
        if r["flags"]:
            strat += " | " + ", ".join(f"{k}={v}" for k, v in sorted(r["flags"].items()))
        foreign = r["foreign_cpu_cores_per_round"]
        d.add_row(
            name,
            fmt_ms(r["service_ms"]["p50"]),
            fmt_ms(r["service_ms"]["p99"]),
            fmt_ms(r["send_lag_ms"]["p99"]),
            fmt_ms(r["server_took_ms"]["p50"]),
            fmt_ms(r["server_took_ms"]["p99"]),
            f"{r['server_cpu_ms_per_request']:.2f}",
            fmt_ratio(r["server_cpu_vs_floor"]),
            " ".join(fmt_ms(p) for p in r["p99_ms_per_round"]),
            f"{np.mean(foreign):.2f}" if foreign else "-",
            strat,
        )
    console.print(d)
