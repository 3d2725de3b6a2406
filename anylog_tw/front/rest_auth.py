"""Who a REST (or console) caller is: one configured user, a bearer token, or the users file.

`Credentials.check(authorization)` turns an Authorization header into an `Identity` (a user and
its role: reader, writer or admin; never owner), or raises `AuthError` (401) saying which scheme
the server takes.  Secrets are never kept in clear: the configured password and token are kept as
keyed hashes (BLAKE2b) under a key made at start, and users-file passwords are scrypt hashes (front/rest_users.py).
Every comparison is constant-time.

A users-file password costs a scrypt run (~50 ms), done in the reactor's thread pool, never on the
reactor thread.  A header that verified is remembered for `CACHE_SECONDS` under a keyed hash (the
header itself is not kept), so a dashboard polling every second pays one scrypt a minute: `check`
answers at once from the cache and returns a Deferred only on a miss.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Callable

from twisted.internet.defer import Deferred, maybeDeferred

from anylog_tw.base.errors import AnyLogError
from anylog_tw.front.rest_users import ROLES, User, verify_password

CACHE_SECONDS = 60.0
CACHE_SIZE = 1024
DEFAULT_ROLE = "admin"  # the one user (or token) a script configures is the node's administrator


class AuthError(AnyLogError):
    code = "unauthorized"
    status = 401


@dataclass(frozen=True, slots=True)
class Identity:
    """A caller who proved who it is, and the role that gives its grant."""

    user: str
    role: str

    @property
    def grant(self) -> str:
        return ROLES[self.role]

    def __str__(self) -> str:
        return self.user


def check_role(role: str, what: str = "role") -> str:
    if role not in ROLES:
        raise AuthError(f"{what} {role!r} is not one of {', '.join(ROLES)} (owner is never given to a network user)")
    return role


class Credentials:
    """What a server accepts; an empty one accepts everyone (and the server then listens on loopback)."""

    def __init__(self, user: str = "", password: str = "", role: str = DEFAULT_ROLE, token: str = "",
                 token_role: str = DEFAULT_ROLE, users: dict[str, User] | None = None,
                 in_thread: Callable[..., Deferred] | None = None, clock: Callable[[], float] = time.monotonic):
        self._key = secrets.token_bytes(32)
        self.user = user
        self.role = check_role(role)
        self.token_role = check_role(token_role, "token_role")
        self._password = self._mac(password.encode("utf-8")) if password else None
        self._token = self._mac(token.encode("utf-8")) if token else None
        self.users = dict(users or {})
        self._in_thread = in_thread or maybeDeferred
        self._clock = clock
        self._cache: dict[bytes, tuple[Identity, float]] = {}

    def _mac(self, data: bytes) -> bytes:
        """A keyed BLAKE2b (one C call: an HMAC costs 4x more, and this runs on every request)."""
        return hashlib.blake2b(data, key=self._key, digest_size=32).digest()

    @property
    def required(self) -> bool:
        return bool(self._password or self._token or self.users)

    @property
    def password(self) -> bool:
        """Whether a user and password log in (the configured user or the users file)."""
        return bool(self._password or self.users)

    @property
    def token(self) -> bool:
        return self._token is not None

    @property
    def scheme(self) -> str:
        schemes = (["basic"] if self.password else []) + (["bearer"] if self.token else [])
        return " or ".join(schemes) if schemes else "none"

    def describe(self) -> str:
        """How `get rest server info` and `get processes` name the authentication (no secrets)."""
        parts = []
        if self._password:
            parts.append(f"user {self.user} ({self.role})")
        if self.users:
            parts.append(f"users file ({len(self.users)} users)")
        if self._token:
            parts.append(f"token ({self.token_role})")
        return ", ".join(parts) or "none"

    def challenge(self) -> bytes:
        return b'Basic realm="anylog"' if self.password else b'Bearer realm="anylog"'

    # -- checking -------------------------------------------------------------------------------

    def _cached(self, key: bytes) -> Identity | None:
        hit = self._cache.get(key)
        if hit is None:
            return None
        identity, until = hit
        if self._clock() > until:
            del self._cache[key]
            return None
        return identity

    def _remember(self, key: bytes, identity: Identity) -> Identity:
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()  # rare (a thousand live credentials); a miss costs one scrypt
        self._cache[key] = (identity, self._clock() + CACHE_SECONDS)
        return identity

    def forget(self) -> None:
        self._cache.clear()

    def check(self, authorization: bytes | None) -> Identity | None | Deferred:
        """The identity the Authorization header proves: at once from the cache or a fast check, a
        Deferred when a users-file password must be verified; None when no credentials are set.
        Raises (or fails with) AuthError when they are needed and wrong."""
        if not self.required:
            return None
        if not authorization:
            raise AuthError(f"this REST server needs credentials ({self.scheme}): e.g. curl -u user:password, "
                            f"or -H 'Authorization: Bearer <token>'")
        key = self._mac(authorization)
        identity = self._cached(key)
        if identity is not None:
            return identity
        scheme, _, value = authorization.strip().partition(b" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == b"basic" and self.password:
            try:
                user, sep, password = base64.b64decode(value, validate=True).partition(b":")
            except (binascii.Error, ValueError):
                raise AuthError("the basic credentials are not base64 'user:password'") from None
            if not sep:
                raise AuthError("the basic credentials are not 'user:password'")
            found = self.verify(user.decode("utf-8", "replace"), password)
            if isinstance(found, Deferred):
                return found.addCallback(self._proved, key)
            return self._proved(found, key)
        if scheme == b"bearer" and self.token:
            if hmac.compare_digest(self._mac(value), self._token):
                return self._remember(key, Identity("token", self.token_role))
            raise AuthError("wrong bearer token")
        raise AuthError(f"this REST server takes {self.scheme} authentication, not {scheme.decode('latin-1')!r}")

    def _proved(self, identity: Identity | None, key: bytes) -> Identity:
        if identity is None:
            raise AuthError("wrong user or password")
        return self._remember(key, identity)

    def verify(self, user: str, password: bytes | str) -> Identity | None | Deferred:
        """The identity a user and password prove, or None: the configured user at once, a users-file
        user through scrypt in a thread (a Deferred)."""
        raw = password.encode("utf-8") if isinstance(password, str) else password
        if self._password is not None:
            ok_user = hmac.compare_digest(user.encode("utf-8"), self.user.encode("utf-8"))
            ok_password = hmac.compare_digest(self._mac(raw), self._password)
            if ok_user and ok_password:
                return Identity(self.user, self.role)
        found = self.users.get(user)
        if found is None:
            return None
        d = self._in_thread(verify_password, raw, found.hash)
        return d.addCallback(lambda ok: Identity(found.name, found.role) if ok else None)

    def login(self, user: str, password: str) -> Deferred:
        """A login form's or the console's answer: the identity, or None.  A token typed as the
        password (with any user name) logs in as the token."""
        key = self._mac(b"login\0" + user.encode("utf-8") + b"\0" + password.encode("utf-8"))
        identity = self._cached(key)
        if identity is not None:
            return maybeDeferred(lambda: identity)
        if self._token is not None and hmac.compare_digest(self._mac(password.encode("utf-8")), self._token):
            return maybeDeferred(lambda: self._remember(key, Identity(user or "token", self.token_role)))
        d = maybeDeferred(self.verify, user, password)
        return d.addCallback(lambda found: self._remember(key, found) if found is not None else None)
