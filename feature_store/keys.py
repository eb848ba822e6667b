"""Every Redis key hybridrec uses, built here and nowhere else.

Layout (``p`` = Settings.key_prefix, ``ver`` = a version id such as ``2026-11-27.3f9a0c1b2d``)::

    p:current                 string   id of the version readers serve
    p:previous                string   id of the version before it (``hybridrec rollback`` target)
    p:versions                zset     every version ever started, score = unix time it was started;
                                       the registry prune walks (a killed publish is found here too)
    p:lock:publish            string   the publish lock: a token naming its holder (host:pid:start:random),
                                       with a TTL renewed while held (feature_store.redis_lock)
    p:v:ver:meta              string   JSON manifest, written LAST: its presence means "complete"
    p:v:ver:staging           string   while a sharded publish stages the version: a token that its
                                       shard writers fence on, with a TTL (the staging lease) renewed as
                                       they write; prune keeps an incomplete version while it exists
    p:v:ver:items             string   JSON, columnar catalogue (see codecs.encode_catalogue)
    p:v:ver:<array>           string   one per item array of layout.ITEM_ARRAYS (item_factors, neighbours,
                                       neighbour_scores, covisit, covisit_scores, popularity, ...): the
                                       row-major array in its wire dtype (see layout.py for each one)
    p:v:ver:popular:<cat>     string   int32 LE item indices, best first; <cat> = ALL_CATEGORIES for the global list
    p:v:ver:u:<user_id>       string   user record (codecs.encode_user): the user arrays of layout.USER_ARRAYS
    p:sess:<session_id>       list     session events (codecs.encode_session_event), oldest first, capped, TTL
    p:seen:<session_id>       set      the session's item ids (not capped by the list; at most
                                       session_seen_max_items), same TTL
    p:eid:<event_id>          string   "1": a client-supplied event id already accepted (de-duplication),
                                       TTL event_id_ttl_s
    p:events                  stream   every accepted live event (durable log drained by compaction): the
                                       fields of codecs.encode_stream_event. Consumer group
                                       COMPACTION_GROUP (created with the stream) reads it; an entry is
                                       XACKed and XDELed once it is on disk.
    p:stats:m:<minute>        hash     what the API served in one minute (``minute`` = unix time // 60),
                                       summed over API workers and replicas (each flushes its counts every
                                       few seconds): fields ``tier:<strategy>``, ``flag:<flag>``,
                                       ``lat:<strategy>:<bucket>``, ``store_error:<kind>``,
                                       ``events:<outcome>`` (online.window); TTL STATS_TTL_S
    p:gate:last               string   JSON, the daily quality gate's latest decision (batch.daily.gate)

Versioned keys are immutable once the version's meta exists; readers never mix versions because
they address every versioned key through the one version id they loaded.

**On Redis Cluster** (``Keys(prefix, cluster=True)``; a ``redis+cluster://`` URL) the same keys carry hash
tags (only the text between the first ``{`` and the next ``}`` picks the slot), so that every multi-key
script and transaction touches ONE slot and every request reads from ONE node::

    {p}:current, {p}:previous, {p}:versions, {p}:lock:publish, {p}:gate:last
    {p}:v:ver:meta, {p}:v:ver:items, {p}:v:ver:<array>, {p}:v:ver:popular:<cat>
                              the control slot: pointers, lock, registry and every version-wide key, so the
                              flip (lock + meta + pointers) stays one script and a version's item blobs are
                              written fenced with the lock and read at model load from one node
    p:v:ver:u:{uid}           a user record, in the user's slot
    p:sess:{uid}:<sid>        the list and seen set of a session issued FOR user uid (its id has the form
    p:seen:{uid}:<sid>        ``u<random>.<mac>``, shared.ids.session_owner): the user's slot, so a request
                              reads record, list and seen set with one script on one node
    p:sess:{<sid>}            any other session (anonymous, or an id a client chose with auth off): the
    p:seen:{<sid>}            session's own slot
    {p:events}                the live-events stream, and the de-duplication keys in its slot, so that
    {p:events}:eid:<id>       de-duplication and the append to the stream stay one script
    p:stats:m:<minute>        unchanged (each command touches one key)

A tag never holds ``}`` (an id containing one is tagged by a digest: ``{#<16 hex>}<id>``), so a tag is
never empty and ids stay unique. Single-node key names are the ones above without braces.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from shared.ids import session_owner

ALL_CATEGORIES = "__all__"
# How long a per-minute stats hash lives: the operator page reads the last minutes only.
STATS_TTL_S = 3 * 3600
# Consumer group of ``p:events`` whose pending-entries list tracks what compaction has read but not yet
# written to the interaction dataset (batch.compaction).
COMPACTION_GROUP = "compaction"


def tagged(ident: str) -> str:
    """``{ident}``: a hash tag of ``ident`` (cluster mode), or ``{#<digest>}ident`` when ``ident`` contains
    ``}``, which would end the tag early (or leave it empty, and an empty tag hashes the whole key)."""
    if "}" not in ident:
        return f"{{{ident}}}"
    return f"{{#{hashlib.blake2b(ident.encode(), digest_size=8).hexdigest()}}}{ident}"


def untagged(part: str) -> str:
    """The id in a :func:`tagged` key part."""
    close = part.index("}")
    return part[1:close] if close == len(part) - 1 else part[close + 1 :]


@dataclass(frozen=True)
class Keys:
    prefix: str
    cluster: bool = False  # hash-tagged names for Redis Cluster (see the module docstring)

    @property
    def _ctl(self) -> str:
        """Start of the control keys: the prefix, hash-tagged on a cluster (the control slot)."""
        return f"{{{self.prefix}}}" if self.cluster else self.prefix

    @property
    def current(self) -> str:
        return f"{self._ctl}:current"

    @property
    def previous(self) -> str:
        return f"{self._ctl}:previous"

    @property
    def versions(self) -> str:
        return f"{self._ctl}:versions"

    @property
    def publish_lock(self) -> str:
        return f"{self._ctl}:lock:publish"

    @property
    def events_stream(self) -> str:
        return f"{{{self.prefix}:events}}" if self.cluster else f"{self.prefix}:events"

    @property
    def replication_fence(self) -> str:
        """Written by every append that waits for replicas (one server): WAIT counts the replicas that have
        its connection's last write, and a retry whose events were all stored before writes nothing else
        (Redis 7.0 counts such a connection from the server's offset anyway; the fence does not rely on it)."""
        return f"{self._ctl}:replication-fence"

    def stats_minute(self, minute: int) -> str:
        """The per-minute stats hash of ``minute`` (unix seconds // 60)."""
        return f"{self.prefix}:stats:m:{minute}"

    @property
    def gate_decision(self) -> str:
        return f"{self._ctl}:gate:last"

    def version_pattern(self, version: str) -> str:
        """SCAN pattern of the version-wide keys of one version: on one server all its keys, user records
        included; on a cluster the control slot's (user records: :meth:`user_pattern`). Prefix and
        version ids contain no glob characters."""
        return f"{self._ctl}:v:{version}:*"

    def version_patterns(self, version: str) -> tuple[str, ...]:
        """SCAN patterns that together match every key of one version, each once."""
        return (
            (self.version_pattern(version), self.user_pattern(version))
            if self.cluster
            else (self.version_pattern(version),)
        )

    def user_pattern(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:u:*"

    def meta(self, version: str) -> str:
        return f"{self._ctl}:v:{version}:meta"

    def staging(self, version: str) -> str:
        return f"{self._ctl}:v:{version}:staging"  # the control slot: fenced writes of blobs WATCH it

    def items(self, version: str) -> str:
        return f"{self._ctl}:v:{version}:items"

    def item_array(self, version: str, name: str) -> str:
        """The key of item array ``name`` (a ``layout.ITEM_ARRAYS`` name) of ``version``."""
        return f"{self._ctl}:v:{version}:{name}"

    def popular(self, version: str, category: str = ALL_CATEGORIES) -> str:
        return f"{self._ctl}:v:{version}:popular:{category}"

    def popular_pattern(self, version: str) -> str:
        return f"{self._ctl}:v:{version}:popular:*"

    def user(self, version: str, user_id: str) -> str:
        return f"{self.prefix}:v:{version}:u:{tagged(user_id) if self.cluster else user_id}"

    def user_id_of(self, version: str, key: str) -> str:
        """The user id in a user record's key of ``version`` (the inverse of :meth:`user`)."""
        part = key[len(f"{self.prefix}:v:{version}:u:") :]
        return untagged(part) if self.cluster else part

    def session(self, session_id: str, user_id: str | None = None) -> str:
        """The list of ``session_id``; ``user_id``: the user of the event written or the request read
        (only a cluster's key depends on it, through ``shared.ids.session_owner``)."""
        return f"{self.prefix}:sess:{self._session_part(session_id, user_id)}"

    def session_seen(self, session_id: str, user_id: str | None = None) -> str:
        # not p:sess:<id>:seen, which is the list of a session whose id ends in ":seen"
        return f"{self.prefix}:seen:{self._session_part(session_id, user_id)}"

    def _session_part(self, session_id: str, user_id: str | None) -> str:
        if not self.cluster:
            return session_id
        owner = session_owner(session_id, user_id)
        return f"{tagged(owner)}:{session_id}" if owner is not None else tagged(session_id)

    def event_id(self, event_id: str) -> str:
        return f"{self.events_stream}:eid:{event_id}" if self.cluster else f"{self.prefix}:eid:{event_id}"
