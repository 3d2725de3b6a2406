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


class TLSConfig:
    """The node's certificate, key and the network CA, loaded once; builds Twisted context factories."""

    def __init__(self, cert_path: str, key_path: str, ca_path: str):
        from twisted.internet import ssl

        try:
            with open(cert_path, "rb") as f:
                cert_pem = f.read()
            with open(key_path, "rb") as f:
                key_pem = f.read()
            with open(ca_path, "rb") as f:
                ca_pem = f.read()
        except OSError as e:
            raise ValueError(f"cannot read TLS file {e.filename}: {e.strerror}") from None
        try:
            self.private = ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
            self.ca = ssl.Certificate.loadPEM(ca_pem)
        except Exception as e:  # OpenSSL errors have no common base worth naming here
            raise ValueError(f"the TLS certificate, key or CA does not load: {e}") from None
        self.paths = (cert_path, key_path, ca_path)

    def options(self):
        """Context options for both directions: present our certificate, require the peer's."""
        from twisted.internet import ssl

        return ssl.CertificateOptions(privateKey=self.private.privateKey.original,
                                      certificate=self.private.original, verify=True,
                                      caCerts=[self.ca.original], requireCertificate=True)
