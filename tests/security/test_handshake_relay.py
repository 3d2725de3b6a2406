"""The network-key handshake cannot be relayed (audit H1, issue 14 item 6).

The attack: an attacker without the key opens a connection to the victim (inbound) and gets the
victim to dial it (outbound), then feeds each connection the other's nonce, so the proof the
victim makes as a client on its outbound connection is the very proof it expects from a client
on its inbound one.  Under the version 1 layout (`role | their nonce | own nonce`) that worked;
these tests build that layout, show the relay is sound arithmetic against it, and run it
against the node: it is refused, and the key cannot be removed through it.
"""

from __future__ import annotations

import hashlib
import hmac

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.test import iosim

from anylog_tw.net import auth, wire
from anylog_tw.net.peer import PeerProtocol
from anylog_tw.net.peers import Peers
from tests.helpers import fired, unit_node

KEY = "relay-test-network-key"


def old_proof(key: bytes, role: str, their_nonce: str, own_nonce: str) -> str:
    """The version 1 proof, as anylog-tw sent it before issue 14."""
    msg = b"|".join((b"anylog-tw peer hello v1", role.encode(), their_nonce.encode(), own_nonce.encode()))
    return hmac.new(key, msg, hashlib.sha256).hexdigest()


def frames(transport: StringTransport) -> list[dict]:
    events = wire.Decoder().feed(transport.value())
    transport.clear()
    return [dict(e[1], body=e[2]) for e in events if e[0] == wire.FRAME]


def attach(peers: Peers, role: str, host: tuple, peer: tuple) -> tuple[PeerProtocol, StringTransport]:
    proto = PeerProtocol(peers, role)
    transport = StringTransport(hostAddress=IPv4Address("TCP", *host), peerAddress=IPv4Address("TCP", *peer))
    proto.makeConnection(transport)
    return proto, transport


def victim(tmp_path, key=KEY):
    node = unit_node(tmp_path / "victim")
    node.component(Peers).set_network_key(key)
    return node, node.component(Peers)


def test_the_relay_is_sound_against_the_version_1_layout():
    """The old server check accepts the old client proof made for the relayed nonces: the attack is real."""
    key = KEY.encode()
    inbound_nonce, outbound_nonce = auth.new_nonce(), auth.new_nonce()
    # Outbound: the attacker answered with the inbound nonce; the victim (client) signs its view.
    made = old_proof(key, "client", inbound_nonce, outbound_nonce)
    # Inbound: the attacker declared the outbound nonce; the victim (server) expects this from a client.
    expected = old_proof(key, "client", inbound_nonce, outbound_nonce)
    assert made == expected
    # The version 2 transcripts of the two connections differ, so the same relay gives two proofs.
    v, a = auth.identity("victim", "127.0.0.1:32048"), auth.identity("x", "127.0.0.1:40199")
    out = auth.proof(key, "client", outbound_nonce, inbound_nonce, v, a)
    assert not auth.check_proof(key, "client", outbound_nonce, inbound_nonce, a, v, out)


def test_relaying_the_nodes_own_nonces_between_its_connections_is_refused(tmp_path):
    node, peers = victim(tmp_path)
    inbound, t_in = attach(peers, "server", ("127.0.0.1", 32048), ("127.0.0.1", 50001))
    outbound, t_out = attach(peers, "client", ("127.0.0.1", 41000), ("127.0.0.1", 40199))
    [hello_in], [hello_out] = frames(t_in), frames(t_out)
    ns, nc = hello_in["nonce"], hello_out["nonce"]
    assert hello_in["hs"] == auth.HANDSHAKE == 2 and hello_in["auth"] == auth.SCHEME

    # Step 3 of the audit: answer the outbound connection with the inbound connection's nonce.
    outbound.dataReceived(wire.encode({"kind": "hello", "id": 0, "name": "x", "addr": "127.0.0.1:40199",
                                       "nonce": ns, "role": "server", "auth": auth.SCHEME, "hs": 2}))
    [refusal] = frames(t_out)
    assert refusal["kind"] == "error" and b"issued itself on another connection" in refusal["body"]
    assert t_out.disconnecting and not outbound.authenticated  # and no proof left the node

    # Step 4: the inbound connection presents the outbound nonce and the proof the old node would have made.
    forged = old_proof(KEY.encode(), "client", ns, nc)
    inbound.dataReceived(wire.encode({"kind": "hello", "id": 0, "name": "x", "addr": "127.0.0.1:40199",
                                      "nonce": nc, "role": "client", "auth": auth.SCHEME, "hs": 2})
                         + wire.encode({"kind": "hello", "id": 0, "proof": forged})
                         + wire.encode({"kind": "cmd", "id": 1, "cmd": 'set network key = ""'}))
    [refusal] = frames(t_in)
    assert refusal["kind"] == "error" and b"issued itself" in refusal["body"]
    assert t_in.disconnecting and not inbound.authenticated
    assert peers.network_key == KEY.encode()  # the key is still required
    assert "issued itself" in node.errors.entries(None)[-1][4]


def test_a_proof_relayed_from_another_connection_with_fresh_nonces_fails(tmp_path):
    """Without reusing the node's nonces the attacker gets a proof bound to the wrong connection."""
    node, peers = victim(tmp_path)
    inbound, t_in = attach(peers, "server", ("127.0.0.1", 32048), ("127.0.0.1", 50002))
    outbound, t_out = attach(peers, "client", ("127.0.0.1", 41001), ("127.0.0.1", 40199))
    frames(t_in), frames(t_out)
    outbound.dataReceived(wire.encode({"kind": "hello", "id": 0, "name": "x", "addr": "127.0.0.1:40199",
                                       "nonce": auth.new_nonce(), "role": "server", "auth": auth.SCHEME, "hs": 2}))
    [proof] = frames(t_out)
    assert "proof" in proof and not t_out.disconnecting
    inbound.dataReceived(wire.encode({"kind": "hello", "id": 0, "name": "victim", "addr": None,
                                      "nonce": auth.new_nonce(), "role": "client", "auth": auth.SCHEME, "hs": 2}))
    frames(t_in)  # the victim's own proof for the inbound connection
    inbound.dataReceived(wire.encode({"kind": "hello", "id": 0, "proof": proof["proof"]})
                         + wire.encode({"kind": "cmd", "id": 1, "cmd": 'set network key = ""'}))
    [refusal] = frames(t_in)
    assert refusal["code"] == "auth" and b"hello proof failed" in refusal["body"]
    assert not inbound.authenticated and peers.network_key == KEY.encode()


def test_a_version_1_peer_gets_a_clear_error(tmp_path):
    node, peers = victim(tmp_path)
    inbound, t_in = attach(peers, "server", ("127.0.0.1", 32048), ("127.0.0.1", 50003))
    frames(t_in)
    inbound.dataReceived(wire.encode({"kind": "hello", "id": 0, "name": "old", "addr": None,
                                      "nonce": auth.new_nonce(), "role": "client", "auth": "hmac-sha256"}))
    [refusal] = frames(t_in)
    assert refusal["code"] == "version" and b"version 1 of the hello handshake" in refusal["body"]
    assert b"upgrade the peer" in refusal["body"] and not inbound.authenticated


def pair(tmp_path, key_a=KEY, key_b=KEY):
    a, b = unit_node(tmp_path / "a"), unit_node(tmp_path / "b")
    a.component(Peers).set_network_key(key_a)
    b.component(Peers).set_network_key(key_b)
    client = PeerProtocol(a.component(Peers), "client")
    server = PeerProtocol(b.component(Peers), "server")
    return a, b, client, server


def test_the_new_handshake_authenticates_both_ways_and_proves_identities(tmp_path):
    a, b, client, server = pair(tmp_path)
    pump = iosim.connect(server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client))
    assert client.authenticated and server.authenticated
    assert client.identity_proven and server.identity_proven
    assert server.peer_name == a.name and client.peer_name == b.name
    ask_b, ask_a = client.request("get node name"), server.request("get node name")
    pump.flush()
    assert fired(ask_b).text == b.name and fired(ask_a).text == a.name


def test_an_altered_declared_identity_fails_the_proof(tmp_path):
    """A man in the middle who rewrites the address a node declares breaks the handshake."""
    a, b, client, server = pair(tmp_path)
    t_client, t_server = StringTransport(), StringTransport()
    client.makeConnection(t_client)
    server.makeConnection(t_server)
    [hello_a], [hello_b] = frames(t_client), frames(t_server)
    hello_a = {k: v for k, v in hello_a.items() if k not in ("body", "v")}
    hello_a["addr"] = "10.6.6.6:32048"  # the identity the man in the middle wants reused
    server.dataReceived(wire.encode(hello_a))
    client.dataReceived(wire.encode({k: v for k, v in hello_b.items() if k not in ("body", "v")}))
    [proof_b] = frames(t_server)
    [proof_a] = frames(t_client)
    server.dataReceived(wire.encode({"kind": "hello", "id": 0, "proof": proof_a["proof"]}))
    client.dataReceived(wire.encode({"kind": "hello", "id": 0, "proof": proof_b["proof"]}))
    [refusal] = frames(t_server)
    assert refusal["code"] == "auth" and b"hello proof failed" in refusal["body"]
    assert not server.authenticated and not client.authenticated  # a's check of b's proof failed too
    assert "10.6.6.6:32048" not in b.component(Peers).states


def test_a_node_that_dials_itself_still_authenticates(tmp_path):
    """A real self-connection mirrors its sockets, so its own nonce coming back is not a relay."""
    node, peers = victim(tmp_path)
    outbound, t_out = attach(peers, "client", ("127.0.0.1", 41002), ("127.0.0.1", 32048))
    inbound, t_in = attach(peers, "server", ("127.0.0.1", 32048), ("127.0.0.1", 41002))
    for _ in range(3):
        to_in, to_out = t_out.value(), t_in.value()
        t_out.clear(), t_in.clear()
        inbound.dataReceived(to_in)
        outbound.dataReceived(to_out)
    assert inbound.authenticated and outbound.authenticated
