"""REST authentication: HTTP basic auth or a bearer token, compared in constant time.

When a user and password (or a token) are set, every route but `/health` (and the CORS
preflight `OPTIONS`, which browsers send without credentials) needs them.  A failure is a 401
that says which scheme the server takes.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from anylog_tw.base.errors import AnyLogError


class AuthError(AnyLogError):
    code = "unauthorized"
    status = 401


class Credentials:
    """What the server accepts; an empty one accepts everyone."""

    def __init__(self, user: str = "", password: str = "", token: str = ""):
        self.user = user.encode("utf-8")
        self.password = password.encode("utf-8")
        self.token = token.encode("utf-8")

    @property
    def required(self) -> bool:
        return bool(self.password or self.token)

    @property
    def scheme(self) -> str:
        schemes = (["basic"] if self.password else []) + (["bearer"] if self.token else [])
        return " or ".join(schemes) if schemes else "none"

    def challenge(self) -> bytes:
        return b'Basic realm="anylog"' if self.password else b'Bearer realm="anylog"'

    def check(self, authorization: bytes | None) -> None:
        """Raise AuthError unless the Authorization header value carries valid credentials."""
        if not self.required:
            return
        if not authorization:
            raise AuthError(f"this REST server needs credentials ({self.scheme}): e.g. curl -u user:password")
        scheme, _, value = authorization.strip().partition(b" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == b"basic" and self.password:
            try:
                user, sep, password = base64.b64decode(value, validate=True).partition(b":")
            except (binascii.Error, ValueError):
                raise AuthError("the basic credentials are not base64 'user:password'") from None
            ok_user = hmac.compare_digest(user, self.user)
            ok_password = hmac.compare_digest(password, self.password)
            if sep and ok_user and ok_password:
                return
            raise AuthError("wrong user or password")
        if scheme == b"bearer" and self.token:
            if hmac.compare_digest(value, self.token):
                return
            raise AuthError("wrong bearer token")
        raise AuthError(f"this REST server takes {self.scheme} authentication, not {scheme.decode('latin-1')!r}")
