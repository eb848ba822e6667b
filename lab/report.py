"""Write an evaluation report folder: ``report.json``, ``report.md`` and (with matplotlib) PNG plots.

``report.json`` holds ``{"data": name, "notes": [str], "protocol": {"name": "temporal" | "random" |
"lastfm", "reason": str, ...}, "static": [run_static_protocol results], "replay": evaluate_replay result
or null}`` (null when the log has no time order to replay). The plots need the optional ``eval`` extra
(matplotlib); without it they are skipped and the returned notes say so.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from batch.artifacts import write_json
from batch.metrics import METRICS
from lab.static import markdown_table


def _cell(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:.4f}"


def replay_table(replay: Mapping) -> str:
    """The replay metrics as markdown: one row per (variant, k), one column per metric."""
    lines = ["| variant | k | " + " | ".join(METRICS) + " |", "|" + "---|" * (len(METRICS) + 2)]
    for name, by_k in replay["variants"].items():
        for k, row in by_k.items():
            lines.append(f"| {name} | {k} | " + " | ".join(_cell(row[m]) for m in METRICS) + " |")
    return "\n".join(lines)


def position_table(replay: Mapping) -> str:
    """HitRate@10 per target position (steps seen before the target), one column per variant."""
    by_pos, counts = replay["hit_rate_at_10_by_position"], replay["n_by_position"]
    variants = list(by_pos)
    lines = ["| position | n | " + " | ".join(variants) + " |", "|" + "---|" * (len(variants) + 2)]
    for label, n in counts.items():
        if n:
            lines.append(f"| {label} | {n} | " + " | ".join(_cell(by_pos[v][label]) for v in variants) + " |")
    return "\n".join(lines)


def seen_table(replay: Mapping) -> str:
    """Per variant: the share of served top-10 lists holding an item the user already had (their whole
    training history, and the published seen set the API reads)."""
    share, published = replay.get("seen_share_at_10", {}), replay.get("published_seen_share_at_10", {})
    lines = ["| variant | lists with an item of the training history | ... of the published seen set |"]
    lines += [
        "|---|---|---|",
        *[f"| {v} | {_cell(x)} | {_cell(published.get(v, float('nan')))} |" for v, x in share.items()],
    ]
    return "\n".join(lines)


def summary_lines(report: Mapping) -> list[str]:
    """The acceptance ratios: hybrid / batch-only HitRate@10 (replay), ALS / popularity NDCG@10 (static)."""
    out = []
    replay = report.get("replay")
    if replay is not None:
        out.append(f"- replay: hybrid / batch-only HitRate@10 = {replay['hybrid_over_batch_hit_rate_at_10']:.3f}")
        for name, p in replay.get("paired_hit_rate_at_10", {}).items():
            out.append(
                f"- replay: {name.replace('_vs_', ' - ')} HitRate@10 = {p['difference']:+.4f} (95% session-bootstrap "
                f"interval {p['ci95_low']:+.4f} .. {p['ci95_high']:+.4f}, {p['n_sessions']} sessions)"
            )
        variants = replay["variants"]
        if "reranked" in variants and "10" in variants["reranked"]:
            reranked, hybrid = variants["reranked"]["10"]["hit_rate"], variants["hybrid"]["10"]["hit_rate"]
            ratio = reranked / hybrid if hybrid > 0 else float("nan")
            out.append(
                f"- replay: re-ranked / hybrid (blend) HitRate@10 = {ratio:.3f} ({reranked:.4f} vs {hybrid:.4f})"
            )
        share = replay.get("seen_share_at_10", {})
        known = {v: x for v, x in share.items() if v != "session_only"}
        if known:
            worst = max(known.values())
            out.append(
                f"- replay: served top-10 lists holding an item the user already had: {worst:.4f} at most "
                f"({', '.join(f'{v} {x:.4f}' for v, x in known.items())}; session-only, anonymous: "
                f"{_cell(share.get('session_only', float('nan')))})"
            )
    for result in report["static"]:
        models = result["models"]
        if {"als", "popularity"} <= models.keys() and "10" in models["als"]:
            als, pop = models["als"]["10"]["ndcg"], models["popularity"]["10"]["ndcg"]
            ratio = als / pop if pop > 0 else float("nan")
            out.append(f"- static {result['protocol']['name']}: ALS / popularity NDCG@10 = {ratio:.3f}")
    return out


def protocol_lines(protocol: Mapping) -> list[str]:
    """The protocol section: name, why, the periods and what the test run trained on."""
    out = [f"- protocol: **{protocol.get('name', '?')}**: {protocol.get('reason', '')}"]
    periods = protocol.get("periods")
    if periods:
        ev = periods["events"]
        out.append(
            f"- periods (whole UTC days): training {periods['train'][0]}..{periods['train'][1]} ({ev['train']:,} "
            f"events), validation {periods['validation'][0]}..{periods['validation'][1]} ({ev['validation']:,}), "
            f"test {periods['test'][0]}..{periods['test'][1]} ({ev['test']:,})"
        )
    if "test_run" in protocol:
        w = protocol["test_run"]["window"]
        out.append(
            f"- the replayed model: batch run through {protocol['test_run']['train_through']} (window "
            f"{w['first_day']}..{w['end']}), ALS {protocol['als']} from {protocol['als_source']}"
        )
    if protocol.get("sessions"):
        out.append(f"- sessions from: {protocol['sessions']}")
    out.append(f"- tuning file: {protocol.get('tuning') or 'none (Settings and the configured blend)'}")
    return out


def markdown(report: Mapping) -> str:
    """The whole report as markdown."""
    replay = report["replay"]
    parts = [f"# Evaluation report: {report['data']}", "", *[f"- {n}" for n in report["notes"]], ""]
    if report.get("protocol"):
        parts += ["## Protocol", "", *protocol_lines(report["protocol"]), ""]
    parts += ["## Summary", "", *summary_lines(report), ""]
    for result in report["static"]:
        p, d = result["protocol"], result["data"]
        parts += [
            f"## Static protocol: {p['name']} ({', '.join(f'{k}={v}' for k, v in p.items() if k != 'name')})",
            "",
            f"{d['n_eval_users']} users evaluated, {d['n_heldout_pairs']} held-out pairs, {d['n_items']} items; "
            f"full ranking, train items excluded, seed {result['seed']}.",
            "",
            markdown_table(result),
            "",
        ]
    if replay is None:
        parts += [
            "## Session replay",
            "",
            "None: the log has no time order, so there is no later session to replay.",
            "",
        ]
        parts += [f"![{p}]({p})" for p in report.get("plots", [])]
        return "\n".join(parts) + "\n"
    d = replay["data"]
    dropped = ""
    if "period_n_sessions_unknown_user" in d:
        dropped = (
            f"The period held {d['period_n_events']:,} events in {d['period_n_sessions']:,} sessions; "
            f"{d['period_n_sessions_unknown_user']:,} sessions ({d['period_n_events_unknown_user']:,} events) of users "
            "the model does not know were left out (the protocol replays known users). "
        )
    parts += [
        "## Session replay (next item, through online.ranking.rank)",
        "",
        f"{dropped}{d['n_sessions']} sessions with at least two steps replayed, {d['n_targets']} targets; skipped "
        f"{d['n_skipped_repeat']} targets that repeat a session item, {d.get('n_skipped_history', 0)} in the user's "
        f"training history and {d['n_skipped_unknown_item']} unknown to the model; "
        f"{d['n_sessions_unknown_user']} sessions of users unknown to the model (batch-only serves them the "
        "popular list and hybrid the session path, as the API does).",
        "",
        replay_table(replay),
        "",
        "### Seen share: served top-10 lists holding an item the user already had",
        "",
        "History = the user's training window plus the session so far (batch-only is asked without the session). "
        "session_only is the same request sent anonymously, so the API cannot remove the user's history there. "
        "The published seen set holds a user's newest HYBRIDREC_SEEN_MAX_ITEMS items: a share above 0 against the "
        "history but 0 against the published set comes from users with more items than that.",
        "",
        seen_table(replay),
        "",
        "### HitRate@10 by session position",
        "",
        position_table(replay),
        "",
        f"Strategies the ranking reported: `{json.dumps(replay['strategies'], sort_keys=True)}`",
        "",
    ]
    parts += [f"![{p}]({p})" for p in report.get("plots", [])]
    return "\n".join(parts) + "\n"


def _plots(report: Mapping, out_dir: Path) -> list[str]:
    """PNG plots; an empty list when matplotlib is missing (the optional ``eval`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    replay, written = report["replay"], []
    if replay is None:
        return _static_plots(report, out_dir, plt)
    ks = replay["protocol"]["ks"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("hit_rate", "ndcg"), strict=True):
        for v in replay["variants"]:
            ax.plot(ks, [replay["variants"][v][str(k)][metric] for k in ks], marker="o", label=v)
        ax.set(xlabel="k", ylabel=f"{metric}@k", title=f"session replay: {metric}@k", xticks=ks)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out_dir / "replay_metric_vs_k.png", dpi=120)
    plt.close(fig)
    written.append("replay_metric_vs_k.png")

    labels = [label for label, n in replay["n_by_position"].items() if n]
    fig, ax = plt.subplots(figsize=(6, 4))
    for v in [v for v in ("reranked", "hybrid", "batch_only", "session_only") if v in replay["variants"]]:
        ax.plot(labels, [replay["hit_rate_at_10_by_position"][v][label] for label in labels], marker="o", label=v)
    ax.set(xlabel="session position (items seen before the target)", ylabel="HitRate@10", title="by session position")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "replay_hit_rate_by_position.png", dpi=120)
    plt.close(fig)
    written.append("replay_hit_rate_by_position.png")
    return written + _static_plots(report, out_dir, plt)


def _static_plots(report: Mapping, out_dir: Path, plt: Any) -> list[str]:
    written = []
    for result in report["static"]:
        name = result["protocol"]["name"]
        fig, ax = plt.subplots(figsize=(5, 4))
        for model, by_k in result["models"].items():
            ax.plot(result["ks"], [by_k[str(k)]["ndcg"] for k in result["ks"]], marker="o", label=model)
        ax.set(xlabel="k", ylabel="NDCG@k", title=f"static {name}: NDCG@k", xticks=result["ks"])
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / f"static_{name}_ndcg_vs_k.png", dpi=120)
        plt.close(fig)
        written.append(f"static_{name}_ndcg_vs_k.png")
    return written


def write_report(
    out_dir: Path,
    data: str,
    notes: Sequence[str],
    static: Sequence[Mapping],
    replay: Mapping | None,
    protocol: Mapping | None = None,
) -> tuple[dict, list[str]]:
    """Write the report folder; returns the report dict and notes for the console (e.g. plots skipped)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "data": data,
        "notes": list(notes),
        "protocol": dict(protocol or {}),
        "static": list(static),
        "replay": dict(replay) if replay is not None else None,
    }
    messages = []
    plots = _plots(report, out_dir)
    if plots:
        report["plots"] = plots
    else:
        messages.append("matplotlib is not installed: plots skipped (install the `eval` extra to get them)")
    write_json(out_dir / "report.json", report)
    (out_dir / "report.md").write_text(markdown(report))
    return report, messages
