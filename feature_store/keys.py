"""Every Redis key hybridrec uses, built here and nowhere else.

Layout (``p`` = Settings.key_prefix, ``ver`` = a version id such as ``2026-11-27.3f9a0c1b2d``)::

    p:current                 string   id of the version readers serve
    p:previous                string   id of the version before it (``hybridrec rollback`` target)
    p:versions                zset     every version ever started, score = unix time it was started;
                                       the registry prune walks (a killed publish is found here too)
    p:v:ver:meta              string   JSON manifest, written LAST: its presence means "complete"
    p:v:ver:items             string   JSON, columnar catalogue (see codecs.encode_items)
    p:v:ver:item_factors      string   float32 LE, row-major (n_items, f)
    p:v:ver:neighbours        string   int32 LE (n_items, m), -1 padded
    p:v:ver:neighbour_scores  string   float16 LE (n_items, m)
    p:v:ver:covisit           string   int32 LE (n_items, m_c), -1 padded: co-visitation neighbours,
                                       m_c = meta n_covisit (batch.covisit)
    p:v:ver:covisit_scores    string   float16 LE (n_items, m_c), -inf where the id is -1
    p:v:ver:popularity        string   float32 LE (n_items,) recency-decayed popularity
    p:v:ver:popular:<cat>     string   int32 LE item indices, best first; <cat> = ALL_CATEGORIES for the global list
    p:v:ver:u:<user_id>       string   user record (codecs.encode_user): vector + candidate indices
    p:sess:<session_id>       list     JSON session events, oldest first, capped, with a TTL
    p:events                  stream   every accepted live event (durable log drained by compaction)
    p:stats:served            hash     requests served per routing tier / flag, summed over API workers
                                       (each worker flushes its counts every few seconds);
                                       fields event_id, user_id, session_id, item_id, event_type (str,
                                       '' for a missing id), ts (repr of float unix seconds), weight
                                       (repr of float, '' if none). Consumer group COMPACTION_GROUP
                                       reads it; an entry is XACKed and XDELed once it is on disk.

Versioned keys are immutable once the version's meta exists; readers never mix versions because
they address every versioned key through the one version id they loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_CATEGORIES = "__all__"
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
    def events_stream(self) -> str:
        return f"{self.prefix}:events"

    @property
    def served_counters(self) -> str:
        return f"{self.prefix}:stats:served"

    def version_pattern(self, version: str) -> str:
        """SCAN pattern of all keys of one version (prefix and version ids contain no glob characters)."""
        return f"{self.prefix}:v:{version}:*"

    def user_pattern(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:u:*"

    def meta(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:meta"

    def items(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:items"

    def item_factors(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:item_factors"

    def neighbours(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:neighbours"

    def neighbour_scores(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:neighbour_scores"

    def covisit(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:covisit"

    def covisit_scores(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:covisit_scores"

    def popularity(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:popularity"

    def popular(self, version: str, category: str = ALL_CATEGORIES) -> str:
        return f"{self.prefix}:v:{version}:popular:{category}"

    def popular_pattern(self, version: str) -> str:
        return f"{self.prefix}:v:{version}:popular:*"

    def user(self, version: str, user_id: str) -> str:
        return f"{self.prefix}:v:{version}:u:{user_id}"

    def session(self, session_id: str) -> str:
        return f"{self.prefix}:sess:{session_id}"
