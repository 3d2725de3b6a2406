"""Peers that belong: the network key proof exchanged in `hello`, and mutual TLS options.

With a network key, each side sends a fresh random nonce in its first `hello`, and once it has
the other side's nonce, a second `hello` carrying HMAC-SHA256(key, label | role | their nonce |
own nonce).  The role ("client"/"server") is in the MAC so a proof cannot be reflected back to
the node that issued it; fresh nonces on both sides mean a recorded proof is useless later.
The key itself never crosses the wire.

TLS (`ssl = true and cert = .. and key = .. and ca = ..`) is mutual: both ends present a
certificate signed by the network's CA and both require one.  Host names are not checked: the
CA is private to the network and nodes are addressed by IP.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from twisted.internet.interfaces import IOpenSSLContextFactory
from zope.interface import implementer

LABEL = b"anylog-tw peer hello v1"
NONCE_BYTES = 16
SCHEME = "hmac-sha256"


def new_nonce() -> str:
    return os.urandom(NONCE_BYTES).hex()


def proof(key: bytes, role: str, their_nonce: str, own_nonce: str) -> str:
    """What a node of `role` sends to show it knows `key`."""
    msg = b"|".join((LABEL, role.encode(), their_nonce.encode(), own_nonce.encode()))
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def check_proof(key: bytes, peer_role: str, own_nonce: str, peer_nonce: str, given: object) -> bool:
    """Whether `given` is the proof a peer of `peer_role` that knows `key` would send us."""
    if not isinstance(given, str):
        return False
    expected = proof(key, peer_role, own_nonce, peer_nonce)
    return hmac.compare_digest(expected, given)


def valid_nonce(value: object) -> bool:
    return isinstance(value, str) and len(value) == 2 * NONCE_BYTES and all(c in "0123456789abcdef" for c in value)


# --- TLS -------------------------------------------------------------------------------------


@implementer(IOpenSSLContextFactory)
class TLSConfig:
    """The node's certificate, key and the network CA; builds OpenSSL contexts for both directions.

    Both directions present the node's certificate and require the peer's, signed by the CA
    (TLS 1.2 or newer).  Files are read by OpenSSL directly, so a bad file is an error here.
    """

    def __init__(self, cert_path: str, key_path: str, ca_path: str):
        for path in (cert_path, key_path, ca_path):
            if not os.path.isfile(path):
                raise ValueError(f"TLS file {path} does not exist")
        self.paths = (cert_path, key_path, ca_path)
        self._context = self._make()

    def _make(self):
        from OpenSSL import SSL

        cert_path, key_path, ca_path = self.paths
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        try:
            ctx.use_certificate_chain_file(cert_path)
            ctx.use_privatekey_file(key_path)
            ctx.check_privatekey()
            ctx.load_verify_locations(ca_path)
        except SSL.Error as e:
            raise ValueError(f"the TLS certificate, key or CA does not load: {e}") from None
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _verified)
        ctx.set_session_id(b"anylog-tw-peer")
        return ctx

    def options(self) -> "TLSConfig":
        """A context factory (server and client endpoints take an object with getContext())."""
        return self

    def getContext(self):
        return self._context


def _verified(connection, x509, errno, depth, ok) -> bool:
    return bool(ok)
