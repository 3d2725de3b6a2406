"""Peers that belong: the network key proof exchanged in `hello`, and mutual TLS options.

With a network key, each side sends a fresh random nonce and the identity it declares (its node
name and TCP address) in its first `hello`, and once it has the other side's, a second `hello`
carrying HMAC-SHA256(key, transcript), where the transcript is, in a fixed order: the label, the
prover's role, the initiator's nonce, the acceptor's nonce, the initiator's identity and the
acceptor's identity.  Both sides compute the same transcript whatever their role, so:

- the role in it stops a proof being reflected back on the connection it came from;
- both nonces in a fixed order tie a proof to the one connection whose two nonces they are, and
  a node refuses a peer nonce that is one of its own outstanding nonces (`NonceBook`), so a proof
  the node made on one of its connections cannot be relayed into another one (audit H1: a relay
  between the node's outbound and inbound connections);
- the identities in it mean the declared name and address are proven along with the key, which
  is what lets an accepted connection carry our requests to the address the peer declared.

Fresh nonces on both sides mean a recorded proof is useless later.  The key never crosses the
wire.  A shared key proves membership of the network, not which member: any key holder can
declare any identity.  Mutual TLS is the stronger option: each node's certificate names its own
address, and that, not a declaration, is what an accepted TLS connection is reused for.

TLS (`ssl = true and cert = .. and key = .. and ca = ..`) is mutual: both ends present a
certificate signed by the network's CA and both require one.  Host names are not checked when
dialling (nodes are addressed by IP and the CA is private to the network); instead a peer's
certificate must name the address it declares before its accepted connection is reused.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os

from twisted.internet.interfaces import IOpenSSLContextFactory
from zope.interface import implementer

HANDSHAKE = 2  # the `hs` field of a hello; a hello without it is the version 1 handshake
LABEL = "anylog-tw peer hello v2"
NONCE_BYTES = 16
SCHEME = "hmac-sha256-v2"
OLD_SCHEMES = frozenset({"hmac-sha256"})  # the version 1 proof (role | their nonce | own nonce), refused
ROLES = ("client", "server")  # the initiator (dialled out) and the acceptor
RECENT = 60.0  # seconds a finished connection's nonce is still refused as a peer nonce


def new_nonce() -> str:
    return os.urandom(NONCE_BYTES).hex()


def identity(name: object, addr: object) -> list:
    """A declared identity as the transcript holds it: [name, addr], each a string or null."""
    return [name if isinstance(name, str) else None, addr if isinstance(addr, str) else None]


def transcript(role: str, initiator_nonce: str, acceptor_nonce: str, initiator_id: list, acceptor_id: list) -> bytes:
    """The bytes a proof signs: canonical JSON, so no field can bleed into the next."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {ROLES}")
    return json.dumps([LABEL, role, initiator_nonce, acceptor_nonce, initiator_id, acceptor_id],
                      separators=(",", ":"), ensure_ascii=True).encode("ascii")


def proof(key: bytes, role: str, initiator_nonce: str, acceptor_nonce: str, initiator_id: list,
          acceptor_id: list) -> str:
    """What the side of `role` sends to show it knows `key`, for this connection's nonces and identities."""
    msg = transcript(role, initiator_nonce, acceptor_nonce, initiator_id, acceptor_id)
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def check_proof(key: bytes, peer_role: str, initiator_nonce: str, acceptor_nonce: str, initiator_id: list,
                acceptor_id: list, given: object) -> bool:
    """Whether `given` is the proof a peer of `peer_role` that knows `key` would send on this connection."""
    if not isinstance(given, str):
        return False
    expected = proof(key, peer_role, initiator_nonce, acceptor_nonce, initiator_id, acceptor_id)
    return hmac.compare_digest(expected, given)


def valid_nonce(value: object) -> bool:
    return isinstance(value, str) and len(value) == 2 * NONCE_BYTES and all(c in "0123456789abcdef" for c in value)


class NonceBook:
    """The nonces this node has issued for its connections, live and recently finished.

    A peer that answers with one of them is either the node talking to itself (a real
    self-connection: the caller checks the sockets mirror each other) or someone relaying the
    node's own words back to it.
    """

    def __init__(self, clock, recent: float = RECENT):
        self.clock = clock
        self.recent = recent
        self._live: dict[str, object] = {}  # nonce -> the connection that issued it
        self._retired: dict[str, float] = {}  # nonce -> when it stops being refused

    def issue(self, owner: object) -> str:
        nonce = new_nonce()
        self._live[nonce] = owner
        return nonce

    def retire(self, nonce: str) -> None:
        if self._live.pop(nonce, None) is not None:
            now = self.clock.seconds()
            self._retired = {n: t for n, t in self._retired.items() if t > now}
            self._retired[nonce] = now + self.recent

    def owner(self, nonce: str) -> tuple[bool, object]:
        """(whether the nonce is ours, the live connection that issued it or None)."""
        if nonce in self._live:
            return True, self._live[nonce]
        until = self._retired.get(nonce)
        return (until is not None and until > self.clock.seconds()), None

    def __len__(self) -> int:
        return len(self._live)


# --- TLS -------------------------------------------------------------------------------------


def certificate_names(x509) -> set[str]:
    """The addresses and host names a peer certificate names: its subjectAltName entries, else its CN."""
    from cryptography import x509 as cx
    from cryptography.x509.oid import NameOID

    cert = x509.to_cryptography()
    names: set[str] = set()
    try:
        san = cert.extensions.get_extension_for_class(cx.SubjectAlternativeName).value
    except cx.ExtensionNotFound:
        san = None
    if san is not None:
        names.update(str(ip) for ip in san.get_values_for_type(cx.IPAddress))
        names.update(n.lower() for n in san.get_values_for_type(cx.DNSName))
    else:
        names.update(a.value.lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
                     if isinstance(a.value, str))
    return names


def certificate_names_host(names: set[str], host: str) -> bool:
    """Whether `host` (an IP or a host name from a declared address) is one of the certificate's names."""
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        host = host.lower()
    return host in names


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
