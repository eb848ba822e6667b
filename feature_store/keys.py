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
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_CATEGORIES = "__all__"
# How long a per-minute stats hash lives: the operator page reads the last minutes only.
STATS_TTL_S = 3 * 3600
# Consumer group of ``p:events`` whose pending-entries list tracks what compaction has read but not yet
# written to the interaction dataset (batch.compaction).
COMPACTION_GROUP = "compaction"


@dataclass(frozen=True)
class Keys:
    prefix: str

    @property
    def current(self) -> str:
        return f"{self.prefix}:current"

    @property
    def previous(self) -> str:
        return f"{self.prefix}:previous"

    @property
    def versions(self) -> str:
        return f"{self.prefix}:versions"

    @property
    def publish_lock(self) -> str:
        return f"{self.prefix}:lock:publish"

    @property
    def events_stream(self) -> str:
        return f"{self.prefix}:events"

    def stats_minute(self, minute: int) -> str:
        """The per-minute stats hash of ``minute`` (unix seconds // 60)."""
        return f"{self.prefix}:stats:m:{minute}"

    @property
    def gate_decision(self) -> str:
        return f"{self.prefix}:gate:last"

    def version_pattern(self, version: str) -> str:
        """SCAN pattern of all keys of one version (prefix and version ids contain no glob characters)."""
        return f"{self.prefix}:v:{version}:*"

    def user_pattern(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:u:*"

    def meta(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:meta"

    def staging(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:staging"

    def items(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:items"

    def item_array(self, version: str, name: str) -> str:
        """The key of item array ``name`` (a ``layout.ITEM_ARRAYS`` name) of ``version``."""
        return f"{self.prefix}:v:{version}:{name}"

    def popular(self, version: str, category: str = ALL_CATEGORIES) -> str:
        return f"{self.prefix}:v:{version}:popular:{category}"

    def popular_pattern(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:popular:*"

    def user(self, version: str, user_id: str) -> str:
        return f"{self.prefix}:v:{version}:u:{user_id}"

    def session(self, session_id: str) -> str:
        return f"{self.prefix}:sess:{session_id}"

    def session_seen(self, session_id: str) -> str:
        # not p:sess:<id>:seen, which is the list of a session whose id ends in ":seen"
        return f"{self.prefix}:seen:{session_id}"

    def event_id(self, event_id: str) -> str:
        return f"{self.prefix}:eid:{event_id}"
