"""Statistics and tables of bench/online_latency.py, from the raw per-request records of bench/loadgen.py."""

from __future__ import annotations

import argparse
import collections

import numpy as np
from rich.table import Table

from common import console, fmt_ms, fmt_ratio

TARGET_P99_MS = 50.0
FLOOR = "ready_floor"
BLEND_FLOOR = "ready_floor_blend"
# Round-robin order: each re-ranked mix is followed by its blend twin, so a pair samples the same background.
MIXES = (
    FLOOR,
    "known_user",
    "known_user_session",
    "known_user_session_blend",
    "unknown_user_session",
    "unknown_user_session_blend",
    BLEND_FLOOR,
)
# mix -> the same paths sent to the blend server (HYBRIDREC_RERANKER_ENABLED=false). The floor pair is
# the null comparison: the same cheap route on both servers, so its ratio shows the noise of a pair.
BLEND_OF = {
    "known_user_session": "known_user_session_blend",
    "unknown_user_session": "unknown_user_session_blend",
    FLOOR: BLEND_FLOOR,
}
BLEND_SERVER_MIXES = frozenset(BLEND_OF.values())
EXPECTED_STRATEGY = {
    "known_user": "precomputed",
    "known_user_session": "reranked",
    "known_user_session_blend": "hybrid",
    "unknown_user_session": "reranked",
    "unknown_user_session_blend": "session",
}
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
        # per slice, in round order: a fallback that starts in one round and never ends shows here
        "strategies_per_round": [
            dict(collections.Counter(s for s, c in zip(raw["strategy"], raw["status"], strict=True) if s and c == 200))
            for raw in slices
        ],
        "reranker_over_budget_per_round": [
            sum("reranker_over_budget" in fl.split(",") for fl in raw["flags"]) for raw in slices
        ],
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
    for name, r in results.items():
        expected = EXPECTED_STRATEGY.get(name)
        r["expected_strategy"] = expected
        r["expected_strategy_share"] = (
            round(r["strategies"].get(expected, 0) / r["ok"], 4) if expected and r["ok"] else None
        )
    for mix, twin in BLEND_OF.items():
        if mix in results and twin in results:
            results[mix]["vs_blend"] = vs_blend(results[mix], results[twin], twin)


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 3)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 2)


def vs_blend(r: dict, b: dict, twin: str) -> dict:
    """What the re-ranker adds over the blend on the same paths (mix ``r`` minus its blend twin ``b``).

    ``p99_added_ms_median_of_rounds``: the median over rounds of (this round's p99 - the twin's p99 in the
    same round, run right after it): a paired difference, robust to one round hit by a stall.
    """
    lat, blat = r["latency_ms"], b["latency_ms"]
    paired = [_diff(x, y) for x, y in zip(r["p99_ms_per_round"], b["p99_ms_per_round"], strict=False)]
    w, bw = r["wrk"], b["wrk"]
    return {
        "blend_mix": twin,
        "p50_added_ms": _diff(lat["p50"], blat["p50"]),
        "p99_added_ms": _diff(lat["p99"], blat["p99"]),
        "p50_ratio": _ratio(lat["p50"], blat["p50"]),
        "p99_ratio": _ratio(lat["p99"], blat["p99"]),
        "p99_added_ms_per_round": paired,
        "p99_added_ms_median_of_rounds": _median([p for p in paired if p is not None]),
        "took_p50_added_ms": _diff(r["server_took_ms"]["p50"], b["server_took_ms"]["p50"]),
        "took_p99_added_ms": _diff(r["server_took_ms"]["p99"], b["server_took_ms"]["p99"]),
        "server_cpu_added_ms_per_request": _diff(r["server_cpu_ms_per_request"], b["server_cpu_ms_per_request"]),
        "wrk_rps_ratio": round(w["rps"] / bw["rps"], 3) if w and bw else None,
    }


def print_tables(results: dict[str, dict], args: argparse.Namespace) -> None:
    t = Table(
        title=f"Open loop at {args.rate:g} req/s, {args.duration:g}s per mix in {args.rounds} interleaved rounds "
        "(latency from the scheduled send time, ms)"
    )
    cols = ("mix", "achieved/s", "p50", "p95", "p99", "max", "err/non-200", "p99 vs floor")
    width = max(map(len, results), default=3)
    for col in (*cols, "same, median of rounds"):
        t.add_column(col, justify="left" if col == "mix" else "right", min_width=width if col == "mix" else None)
    t.add_column(f"p99<{TARGET_P99_MS:g}", justify="center")
    t.add_column(f"wrk -c{args.wrk_connections} max/s", justify="right")
    t.add_column("wrk vs floor", justify="right")
    t.add_column("p99 vs blend", justify="right")
    t.add_column("added p50/p99", justify="right")
    for name, r in results.items():
        lat, wrk, vb = r["latency_ms"], r["wrk"], r.get("vs_blend")
        t.add_row(
            name,
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
            fmt_ratio(vb["p99_ratio"]) if vb else "",
            f"{_signed(vb['p50_added_ms'])} / {_signed(vb['p99_added_ms'])}" if vb else "",
        )
    console.print(t)
    _print_pairs(results)
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


def _signed(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1f}"


def _print_pairs(results: dict[str, dict]) -> None:
    """Re-ranker server vs blend server on the same paths, one row per pair, with the routing check."""
    pairs = [(m, t) for m, t in BLEND_OF.items() if "vs_blend" in results.get(m, {})]
    if not pairs:
        return
    p = Table(
        title="Re-ranker vs blend: the same paths, Redis and version; the twin's server has "
        "HYBRIDREC_RERANKER_ENABLED=false. added = this mix - its twin (ms); paired median = median over rounds of "
        "(this round's p99 - the twin's p99 right after it); the floor pair is the null comparison"
    )
    cols = ("mix", "p50", "twin p50", "p99", "twin p99", "p99 ratio", "added p99", "paired median")
    for col in (*cols, "took added p50/p99", "CPU added", "wrk ratio", "strategies (this | twin)"):
        p.add_column(col, justify="left" if col in ("mix", "strategies (this | twin)") else "right")
    for mix, twin in pairs:
        r, b, vb = results[mix], results[twin], results[mix]["vs_blend"]

        def strat(x: dict) -> str:
            got = ", ".join(f"{k}={v}" for k, v in sorted(x["strategies"].items())) or "-"
            over = x["flags"].get("reranker_over_budget")
            return got + (f" (over budget {over})" if over else "")

        p.add_row(
            mix,
            fmt_ms(r["latency_ms"]["p50"]),
            fmt_ms(b["latency_ms"]["p50"]),
            fmt_ms(r["latency_ms"]["p99"]),
            fmt_ms(b["latency_ms"]["p99"]),
            fmt_ratio(vb["p99_ratio"]),
            _signed(vb["p99_added_ms"]),
            _signed(vb["p99_added_ms_median_of_rounds"]),
            f"{_signed(vb['took_p50_added_ms'])} / {_signed(vb['took_p99_added_ms'])}",
            _signed(vb["server_cpu_added_ms_per_request"]),
            fmt_ratio(vb["wrk_rps_ratio"]),
            f"{strat(r)} | {strat(b)}",
        )
    console.print(p)
    for mix, _ in pairs:  # a re-ranked mix the blend served (budget fallback) does not measure the re-ranker
        share = results[mix]["expected_strategy_share"]
        if share is not None and share < 0.99:
            console.print(
                f"[yellow]{mix}: only {share:.1%} served by reranked[/] (reranker_over_budget per round "
                f"{results[mix]['reranker_over_budget_per_round']}): its latency is partly the blend's"
            )
