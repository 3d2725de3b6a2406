"""The hello handshake of a peer connection: nonces, proofs, identities, certificates.

A mixin of `PeerProtocol` (peer.py), apart so that what decides whether a peer is who it says
is read in one place.  Each side sends a fresh nonce and its declared identity; with a network
key each proves it over the transcript of both (`auth.proof`: both nonces in a fixed order, both
roles, both identities), so a proof taken from one connection is useless on another, and a nonce
this node issued itself on another connection is refused (the relay of the node's own handshake),
unless it comes back on this very connection's far end (a node that dialled itself).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed

from anylog_tw.base.errors import PeerError
from anylog_tw.net import auth, wire


class Hello:
    """The handshake half of `PeerProtocol`; it calls `_authenticated` or `_refuse` on the protocol."""

    def _on_hello(self, header: dict) -> None:
        if self.authenticated:
            return self._refuse("a second hello after the handshake", "handshake")
        if "proof" in header:
            if not self.key or self._peer_nonce is None:
                return self._refuse("an unexpected hello proof", "handshake")
            peer_role = "server" if self.role == "client" else "client"
            if not auth.check_proof(self.key, peer_role, *self._transcript(), header["proof"]):
                return self._refuse("the peer does not know the network key, or its hello was altered on the way "
                                    "(hello proof failed)", "auth")
            self.identity_proven = True  # the proof covers the name and address it declared
            return self._authenticated()
        if self._peer_nonce is not None:
            return self._refuse("a second hello without a proof", "handshake")
        nonce = header.get("nonce")
        if not auth.valid_nonce(nonce):
            return self._refuse("the hello has no valid nonce", "handshake")
        ours, owner = self.peers.nonces.owner(nonce)
        if ours and not self._mirrors(owner):
            return self._refuse("the hello nonce is one this node issued itself on another connection: a relay of "
                                "this node's own handshake", "handshake")
        self._peer_nonce = nonce
        name, addr = header.get("name"), header.get("addr")
        self.peer_name = name[:200] if isinstance(name, str) else None
        self.peer_address = addr if isinstance(addr, str) and len(addr) < 300 else None
        self._peer_id = auth.identity(name, addr)
        scheme = header.get("auth")
        if scheme and not self.key:
            return self._refuse("the peer requires a network key and this node has none "
                                "(set the same one on both with 'set network key = ...')", "auth")
        if self.key:
            if scheme in auth.OLD_SCHEMES:
                return self._refuse(f"the peer speaks version 1 of the hello handshake (an older anylog-tw); this "
                                    f"node requires version {auth.HANDSHAKE}, as version 1 proofs can be relayed: "
                                    f"upgrade the peer", "version")
            if scheme != auth.SCHEME:
                return self._refuse("the peer offers no network key proof (this node requires one)", "auth")
            self._write(wire.encode({"kind": "hello", "id": 0,
                                     "proof": auth.proof(self.key, self.role, *self._transcript())}))
            return None
        return self._authenticated()

    def _transcript(self) -> tuple[str, str, list, list]:
        """This connection's nonces and identities in the proof's fixed order: the initiator's first."""
        if self.role == "client":
            return self._nonce, self._peer_nonce, self._own_id, self._peer_id
        return self._peer_nonce, self._nonce, self._peer_id, self._own_id

    def _mirrors(self, other) -> bool:
        """Whether `other` is this node's far end of this very TCP connection (a node that dialled
        itself); a relay runs over the attacker's sockets, so its endpoints never mirror."""
        if other is None or other is self or getattr(other, "role", self.role) == self.role:
            return False
        try:
            return (_endpoint(other.transport.getHost()) == _endpoint(self.transport.getPeer())
                    and _endpoint(other.transport.getPeer()) == _endpoint(self.transport.getHost()))
        except AttributeError:
            return False

    def when_ready(self) -> Deferred:
        """Fires with this protocol once the handshake succeeds, or fails with PeerError."""
        if self.authenticated:
            return succeed(self)
        if not self.open and self.transport is not None:
            return fail(PeerError(f"the connection to peer {self.label} was lost ({self._closed_reason})"))
        d: Deferred = Deferred()
        self._ready_waiters.append(d)
        return d

    def _gate(self, what: str) -> bool:
        if self.authenticated:
            return True
        self._refuse(f"a {what} before the hello handshake completed (not authenticated)", "auth")
        return False

    # -- certificates ------------------------------------------------------------------------

    def _certificate(self):
        """The peer's certificate when the connection is mutual TLS (the CA signed it), else None."""
        get = getattr(self.transport, "getPeerCertificate", None)
        if get is None or self.peers.tls is None:
            return None
        try:
            return get()
        except Exception:  # not a TLS transport after all
            return None

    def _certificate_names_peer(self) -> bool:
        """Whether the peer's certificate names the host of the address it declared."""
        cert = self._certificate()
        if cert is None or not self.peer_address:
            return False
        host = self.peer_address.rsplit(":", 1)[0].strip("[]")
        try:
            return auth.certificate_names_host(auth.certificate_names(cert), host)
        except Exception:
            self.log.failure("reading the certificate of peer {peer}", peer=self.remote)
            return False



def _endpoint(address) -> tuple:
    return getattr(address, "host", None), getattr(address, "port", None)
