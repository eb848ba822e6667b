"""API keys: their scopes, how one is made, and the entry that configures it (only its hash).

An entry is ``<scope,scope>:<sha256 hex of the key>``, e.g. ``write-events,read-recs:9f86d0...``. The
server stores and compares hashes only, so a leaked configuration does not leak a key. Several entries
are separated by whitespace or ``;`` (``HYBRIDREC_API_KEYS``) or written one per line (the keys file,
``#`` starts a comment). ``hybridrec keys new --scopes ...`` prints a new key and its entry.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Final

SCOPES: Final[tuple[str, ...]] = ("write-events", "read-recs", "read-metrics", "admin")
# A scope that grants others with it: admin reads the metrics too, so a monitoring system can be given
# a key that reads /metrics and nothing else (read-metrics) without every admin key needing both.
IMPLIED: Final[dict[str, frozenset[str]]] = {"admin": frozenset({"read-metrics"})}
KEY_PREFIX: Final[str] = "hrk_"  # lets secret scanners and people recognise a hybridrec key
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class KeyEntry:
    scopes: frozenset[str]  # what the entry names, and what those imply (IMPLIED)
    sha256: str  # 64 lower-case hex digits

    @property
    def key_id(self) -> str:
        """A short, non-secret name for logs and rate-limit buckets."""
        return f"sha256:{self.sha256[:12]}"


def new_api_key() -> str:
    """A random key (256 bits of entropy)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_session_secret() -> str:
    """A random secret for ``HYBRIDREC_SESSION_SECRET`` (256 bits, hex)."""
    return secrets.token_hex(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_entry(key: str, scopes: frozenset[str] | tuple[str, ...] | list[str]) -> str:
    """The configuration entry for ``key``: ``scope,scope:<sha256 hex>``."""
    return f"{','.join(s for s in SCOPES if s in set(scopes))}:{hash_api_key(key)}"


def parse_scopes(text: str) -> frozenset[str]:
    scopes = frozenset(s.strip() for s in text.split(",") if s.strip())
    unknown = sorted(scopes - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes must be a comma-separated subset of {', '.join(SCOPES)}; got {text!r}")
    return scopes


def parse_key_entry(entry: str) -> KeyEntry:
    """One ``scope,scope:<sha256 hex>`` entry; ValueError naming what is wrong (never echoing a secret)."""
    scopes, sep, digest = entry.strip().rpartition(":")
    if not sep or not _HEX64.fullmatch(digest.lower()):
        shown = entry.strip()[:6]
        raise ValueError(
            f"API key entry {shown!r}... is not `scope,scope:<64 hex digits of the key's sha256>` "
            "(configure the hash, never the key: `hybridrec keys new` prints both)"
        )
    named = parse_scopes(scopes)
    return KeyEntry(named.union(*(IMPLIED.get(s, frozenset()) for s in named)), digest.lower())


def split_entries(text: str) -> list[str]:
    """Entries of a setting or a keys file: separated by whitespace or ``;``; ``#`` comments to end of line."""
    without_comments = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    return [e for e in re.split(r"[\s;]+", without_comments) if e]
