"""Issue 8's session replay driven through the real HTTP API (for bench/api_replay.py).

For each sampled session of the test period (``lab.replay.iter_targets``: the same sessions, steps,
targets and skips as ``hybridrec evaluate --data-dir`` and ``lab.replay.replay_targets``), the
client opens two sessions with ``POST /sessions``: one issued for the session's (known) user and a
parallel one for a user id the model does not know. Then, step by step: the events before the target
are sent to both sessions in one ``POST /events`` (the known copy under the user, the parallel copy
under the unknown id, each with its own event id), and the target is asked with ``GET
/recommendations/{user}?k=10``:

- ``hybrid``: the known user with their session;
- ``session_only``: the unknown user id with the parallel session (what an anonymous visitor gets);
- ``batch_only``: the known user without a session (the precomputed tier), asked at every step;
- ``reranked`` (a version with a learned re-ranker): the known user with their session on the server
  that re-ranks; the other three go to a server started with the re-ranker off, so they are the blend.

Events after the last target of a session are not posted: no request reads them. A read the API
answers degraded (``store_timeout``/``store_unavailable``: the popular list, under machine load) is
asked again, up to ``RETRIES`` times, and counted; a ``POST /events`` answered 503 is sent again with
the same event ids (the API stores each id once).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import httpx
import numpy as np
import pandas as pd

from feature_store.base import SessionEvent
from lab.replay import TargetCounts, iter_targets
from lab.serving import ServingModel
from online.blend import BlendParams
from shared.apikeys import key_entry, new_api_key, new_session_secret

K = 10
RETRIES = 5
DEGRADED = {"store_timeout", "store_unavailable"}
ANON_PREFIX = "apireplay-anon-"
ROUTES = ("post_sessions", "post_events", "get_recommendations", "get_metrics")


@dataclass(frozen=True)
class Keys:
    """Credentials made for one run, as an operator makes them (``hybridrec keys new`` / ``keys secret``):
    a key for the replay (write-events, read-recs), one for ``/metrics`` (admin) and the session secret."""

    replay: str
    admin: str
    secret: str

    @classmethod
    def new(cls) -> Keys:
        return cls(new_api_key(), new_api_key(), new_session_secret())

    def env(self) -> dict[str, str]:
        """The API's configuration: only the keys' hashes, never the keys."""
        entries = [key_entry(self.replay, ["write-events", "read-recs"]), key_entry(self.admin, ["admin"])]
        return {
            "HYBRIDREC_AUTH": "on",
            "HYBRIDREC_API_KEYS": " ".join(entries),
            "HYBRIDREC_SESSION_SECRET": self.secret,
        }


@dataclass
class ApiOutcome:
    """What the API served, one row per target in ``iter_targets`` order."""

    ranked: dict[str, np.ndarray] = field(default_factory=dict)  # variant -> int64 (n_targets, K), -1 padded
    strategies: dict[str, Counter] = field(default_factory=dict)  # variant -> strategy -> responses
    flags: dict[str, Counter] = field(default_factory=dict)  # variant -> flag -> responses
    targets: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # int64 (n_targets,)
    sessions: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # int64 (n_targets,) ordinal
    had_seen: dict[str, np.ndarray] = field(default_factory=dict)  # variant -> bool (n_targets,): history/session
    had_published: dict[str, np.ndarray] = field(default_factory=dict)  # the same against the published seen set
    requests: Counter = field(default_factory=Counter)  # route -> requests sent (retries included)
    responses: Counter = field(default_factory=Counter)  # strategy -> every 200 of /recommendations, retried too
    retried: Counter = field(default_factory=Counter)  # "degraded_read", "events_503"
    latency_ms: dict[str, list[float]] = field(default_factory=dict)  # route -> client-side latency of each
    events_posted: int = 0  # events the API stored (both copies)
    counts: TargetCounts = field(default_factory=TargetCounts)
    wall_s: float = 0.0


class ApiClient:
    """One httpx client per server, all sending the replay key; counts and times every request."""

    def __init__(self, bases: Mapping[str, str], key: str, out: ApiOutcome) -> None:
        headers = {"authorization": f"Bearer {key}"}
        self.http = {name: httpx.Client(base_url=b, headers=headers, timeout=30) for name, b in bases.items()}
        self.out = out

    def close(self) -> None:
        for client in self.http.values():
            client.close()

    def _send(self, route: str, server: str, method: str, url: str, **kw: object) -> httpx.Response:
        start = time.perf_counter()
        resp = self.http[server].request(method, url, **kw)  # type: ignore[arg-type]
        self.out.latency_ms.setdefault(route, []).append((time.perf_counter() - start) * 1000)
        self.out.requests[route] += 1
        return resp

    def session(self, server: str, user_id: str) -> str:
        resp = self._send("post_sessions", server, "POST", "/sessions", json={"user_id": user_id})
        if resp.status_code != 201:
            raise RuntimeError(f"POST /sessions answered {resp.status_code}: {resp.text[:300]}")
        return str(resp.json()["session_id"])

    def post(self, server: str, events: list[dict]) -> None:
        for attempt in range(RETRIES + 1):
            resp = self._send("post_events", server, "POST", "/events", json=events)
            if resp.status_code == 202:
                body = resp.json()
                if body["accepted"] + len(body["duplicates"]) != len(events):
                    raise RuntimeError(f"POST /events acknowledged {body} for {len(events)} events")
                self.out.events_posted += body["accepted"]
                return
            if resp.status_code != 503 or attempt == RETRIES:
                raise RuntimeError(f"POST /events answered {resp.status_code}: {resp.text[:300]}")
            self.out.retried["events_503"] += 1
            time.sleep(0.05 * (attempt + 1))

    def recommend(self, server: str, user_id: str, session_id: str | None) -> dict:
        params: dict[str, str | int] = {"k": K} | ({"session_id": session_id} if session_id else {})
        for attempt in range(RETRIES + 1):
            resp = self._send("get_recommendations", server, "GET", f"/recommendations/{user_id}", params=params)
            if resp.status_code != 200:
                raise RuntimeError(f"GET /recommendations/{user_id} answered {resp.status_code}: {resp.text[:300]}")
            body = resp.json()
            self.out.responses[body["strategy"]] += 1  # what the server counts, whether we keep it or not
            if attempt == RETRIES or not DEGRADED & set(body["flags"]):
                return body
            self.out.retried["degraded_read"] += 1
            time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def metrics(self, server: str, admin_key: str) -> str:
        resp = self._send("get_metrics", server, "GET", "/metrics", headers={"authorization": f"Bearer {admin_key}"})
        if resp.status_code != 200:
            raise RuntimeError(f"GET /metrics answered {resp.status_code}: {resp.text[:300]}")
        return resp.text


def _event(ev: SessionEvent, session_id: str, user_id: str, tag: str) -> dict:
    """``ev`` as the client posts it: the log's type and time, an event id of its own per copy."""
    return {
        "session_id": session_id,
        "user_id": user_id,
        "item_id": ev.item_id,
        "event_type": ev.event_type,
        "ts": ev.ts,
        "event_id": f"{tag}:{ev.event_id}",
    }


def replay_via_api(
    client: ApiClient,
    serving: ServingModel,
    sessions: pd.DataFrame,
    params: BlendParams,
    routes: Mapping[str, str],
    history_of: Mapping[str, frozenset[int]],
    progress: Callable[[int], None] | None = None,
) -> ApiOutcome:
    """Replay ``sessions`` (as ``lab.replay.sample_sessions`` returns them) through the API.

    ``routes``: variant -> server name of ``client`` ("hybrid", "session_only", "batch_only" and
    optionally "reranked"). ``history_of``: user_id -> item indices of the user's training window, for the
    seen share (as ``evaluate``). Returns the served lists in ``iter_targets`` order.
    """
    out = client.out
    index = serving.model.bundle.item_index
    rows: dict[str, list[np.ndarray]] = {v: [] for v in routes}
    out.strategies = {v: Counter() for v in routes}
    out.flags = {v: Counter() for v in routes}
    seen_rows: dict[str, list[bool]] = {v: [] for v in routes}
    published_rows: dict[str, list[bool]] = {v: [] for v in routes}
    targets: list[int] = []
    session_of: list[int] = []
    writer = routes["hybrid"]  # every server reads the same Redis: one of them takes the writes
    start = time.perf_counter()
    for s, (events, user, found) in enumerate(iter_targets(serving, sessions, params, out.counts)):
        user_id = str(events[0].user_id)
        anon = f"{ANON_PREFIX}{s:06d}"
        if anon in serving.users:
            raise RuntimeError(f"{anon} is a user of the model: the session-only variant needs an unknown id")
        sid_user, sid_anon = client.session(writer, user_id), client.session(writer, anon)
        had = history_of.get(user_id, frozenset())
        published = frozenset(user.seen.tolist()) if user is not None else frozenset()
        posted = 0
        for q in found:
            new = events[posted : len(q.context)]
            if new:
                copies = [_event(e, sid_user, user_id, "u") for e in new] + [
                    _event(e, sid_anon, anon, "a") for e in new
                ]
                client.post(writer, copies)
                posted = len(q.context)
            asks = {"hybrid": (user_id, sid_user), "session_only": (anon, sid_anon), "batch_only": (user_id, None)}
            asks["reranked"] = (user_id, sid_user)
            for variant, server in routes.items():
                body = client.recommend(server, *asks[variant])
                ids = [index.get(item["item_id"], -2) for item in body["items"]][:K]  # -2: not in the model
                row = np.full(K, -1, dtype=np.int64)
                row[: len(ids)] = ids
                rows[variant].append(row)
                out.strategies[variant][body["strategy"]] += 1
                out.flags[variant].update(body["flags"])
                context = frozenset() if variant == "batch_only" else q.seen
                top = set(row.tolist())
                seen_rows[variant].append(not top.isdisjoint(had | context))
                published_rows[variant].append(not top.isdisjoint(published | context))
            targets.append(q.target)
            session_of.append(s)
        if progress is not None:
            progress(1)
    out.wall_s = time.perf_counter() - start
    empty = np.empty((0, K), dtype=np.int64)
    out.ranked = {v: np.vstack(r) if r else empty for v, r in rows.items()}
    out.targets = np.asarray(targets, dtype=np.int64)
    out.sessions = np.asarray(session_of, dtype=np.int64)
    out.had_seen = {v: np.asarray(r, dtype=bool) for v, r in seen_rows.items()}
    out.had_published = {v: np.asarray(r, dtype=bool) for v, r in published_rows.items()}
    return out


def sum_counts(counts: Iterable[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    """``server_counts`` of several servers, added up per family and label."""
    total: dict[str, dict[str, int]] = {}
    for one in counts:
        for family, values in one.items():
            for label, n in values.items():
                total.setdefault(family, {})[label] = total.get(family, {}).get(label, 0) + n
    return total


def server_counts(metrics_text: str) -> dict[str, dict[str, int]]:
    """The Prometheus text of ``/metrics`` as {"requests": {strategy: n}, "flags": {...}, "events": {...}}."""
    families = {"hybridrec_requests_total": "requests", "hybridrec_request_flags_total": "flags",
                "hybridrec_events_total": "events"}  # fmt: skip
    out: dict[str, dict[str, int]] = {name: {} for name in families.values()}
    for line in metrics_text.splitlines():
        if line.startswith("#") or "{" not in line:
            continue
        metric, rest = line.split("{", 1)
        if metric in families:
            label, value = rest.rsplit("} ", 1)
            out[families[metric]][label.split('"')[1]] = int(float(value))
    return out
