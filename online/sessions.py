"""Session ids that the server issues and signs, so a client can use only the sessions it was given.

A session id is ``<random>.<mac>`` (46 characters, URL-safe):

* ``random``: ``u`` (bound to a user) or ``a`` (anonymous), then 16 random bytes in URL-safe base64;
* ``mac``: the first 16 bytes of HMAC-SHA256(``session_secret``, ``random`` + newline + user id, or
  nothing for an anonymous session), in URL-safe base64.

Ids contain no whitespace, so the newline cannot be forged into a user id. Checking an id costs one
HMAC (about a microsecond) and no store access. Rules, with auth on:

* an event may go into a session bound to its ``user_id``, or into an anonymous one if it has no
  ``user_id``: nobody can write into another's session, or attribute a user's events to a session
  issued for someone else;
* ``GET /recommendations/{user_id}?session_id=`` reads a session bound to that user, or an anonymous
  one: holding an anonymous session's id is what makes it yours.

With auth off, ids are issued the same way but any session id is accepted (the development mode of
older clients that chose their own).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from shared.ids import ANONYMOUS_SESSION, USER_SESSION

_CONTEXT = b"hybridrec-session\n"  # domain separation: this key signs nothing else
_MAC_BYTES = 16


class SessionIds:
    def __init__(self, secret: bytes | None, verify: bool) -> None:
        if verify and not secret:
            raise ValueError("verifying session ids needs a secret")
        # the keyed state once; each mac copies it (about 30% cheaper than hmac.digest with the key)
        self._keyed = hmac.new(secret or secrets.token_bytes(32), _CONTEXT, hashlib.sha256)
        self.verify = verify

    def _mac(self, random_part: str, user_id: str | None) -> bytes:
        mac = self._keyed.copy()
        mac.update(random_part.encode() + b"\n" + (user_id or "").encode())
        return base64.urlsafe_b64encode(mac.digest()[:_MAC_BYTES]).rstrip(b"=")

    def issue(self, user_id: str | None) -> str:
        random_part = (USER_SESSION if user_id else ANONYMOUS_SESSION) + secrets.token_urlsafe(16)
        return f"{random_part}.{self._mac(random_part, user_id).decode()}"

    def check_write(self, session_id: str, user_id: str | None) -> str | None:
        """None if an event of ``user_id`` may go into ``session_id``, else why not (for a 422)."""
        if not self.verify:
            return None
        random_part, mac = _split(session_id)
        if random_part is None:
            return _NOT_OURS
        if (random_part[0] == USER_SESSION) != bool(user_id):
            if user_id:
                return f"this session id is anonymous; events of user {user_id!r} need a session issued for that user"
            return "this session id belongs to a user: send that user_id with its events"
        return None if hmac.compare_digest(mac, self._mac(random_part, user_id)) else _not_for(user_id)

    def check_read(self, session_id: str, user_id: str) -> str | None:
        """None if ``/recommendations/{user_id}`` may read ``session_id``, else why not (for a 422)."""
        if not self.verify:
            return None
        random_part, mac = _split(session_id)
        if random_part is None:
            return _NOT_OURS
        bound = user_id if random_part[0] == USER_SESSION else None
        return None if hmac.compare_digest(mac, self._mac(random_part, bound)) else _not_for(bound)


_NOT_OURS = "not a session id issued by this server (get one from POST /sessions)"


def _not_for(user_id: str | None) -> str:
    whose = f"user {user_id!r}" if user_id else "an anonymous visitor"
    return f"not a session id issued for {whose} (get one from POST /sessions)"


def _split(session_id: str) -> tuple[str | None, bytes]:
    random_part, dot, mac = session_id.rpartition(".")
    if not dot or len(random_part) < 2 or random_part[0] not in (USER_SESSION, ANONYMOUS_SESSION):
        return None, b""
    return random_part, mac.encode()
