"""Browser sessions of the web page: who logged in, and the token that proves a write came from the page.

A browser cannot be trusted to send only what the user meant: any site it visits may post to the
node.  So every write the page makes (a command, a query) carries the session's CSRF token in a
header (`X-AnyLog-CSRF`), which another site can neither read nor send without a preflight, and
the cookie is `SameSite=Strict` and `HttpOnly`.  With credentials configured, the session is made
by a login; without them, the page still gets an anonymous session, so writes need the token all
the same.

Sessions live in memory (a node restart logs everyone out), are bounded in number (the oldest
falls off) and expire after `IDLE` seconds without use; nothing runs on a timer.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

COOKIE = b"anylog_session"
CSRF_HEADER = b"x-anylog-csrf"
IDLE = 12 * 3600.0
MAX_SESSIONS = 1000


@dataclass
class Session:
    sid: str
    csrf: str
    user: str  # "" for the anonymous session of a node without credentials
    last: float
    identity: object = None  # what the REST server's login proved (the security model's identity)

    def token_ok(self, token: str | bytes | None) -> bool:
        """Whether `token` is this session's CSRF token (constant-time)."""
        if not token:
            return False
        if isinstance(token, str):
            token = token.encode("utf-8", "replace")
        return hmac.compare_digest(token, self.csrf.encode("ascii"))


class Sessions:
    """The page's sessions of one REST server."""

    def __init__(self, clock: Callable[[], float], idle: float = IDLE, limit: int = MAX_SESSIONS):
        self.clock = clock
        self.idle = idle
        self.limit = limit
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def new(self, user: str = "", identity: object = None) -> Session:
        session = Session(sid=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32), user=user,
                          last=self.clock(), identity=identity)
        self._by_id[session.sid] = session
        while len(self._by_id) > self.limit:
            self._by_id.popitem(last=False)
        return session

    def get(self, sid: str | bytes | None) -> Session | None:
        """The live session with this id, or None (unknown or expired)."""
        if not sid:
            return None
        if isinstance(sid, bytes):
            sid = sid.decode("ascii", "replace")
        session = self._by_id.get(sid)
        if session is None:
            return None
        now = self.clock()
        if now - session.last > self.idle:
            del self._by_id[sid]
            return None
        session.last = now
        self._by_id.move_to_end(sid)
        return session

    def drop(self, sid: str | bytes | None) -> None:
        if isinstance(sid, bytes):
            sid = sid.decode("ascii", "replace")
        if sid:
            self._by_id.pop(sid, None)

    def __len__(self) -> int:
        return len(self._by_id)


def cookie_header(session: Session | None, secure: bool) -> bytes:
    """The Set-Cookie value for a session (None: clear the cookie)."""
    value = session.sid.encode("ascii") if session else b""
    parts = [COOKIE + b"=" + value, b"Path=/", b"HttpOnly", b"SameSite=Strict"]
    if session is None:
        parts.append(b"Max-Age=0")
    if secure:
        parts.append(b"Secure")
    return b"; ".join(parts)
