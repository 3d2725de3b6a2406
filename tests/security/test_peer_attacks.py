"""Every peer attack of issue 14 and the audit (C2, H1), each checked for its refusal and that
nothing happened on disk or in the node's state."""

from __future__ import annotations

import hashlib
import os

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.test import iosim
from twisted.internet.defer import ensureDeferred

from anylog_tw.base import layout
from anylog_tw.net import auth, wire
from anylog_tw.net.peer import PeerProtocol
from anylog_tw.net.peers import Peers
from anylog_tw.net.transfer import file_destinations
from tests.helpers import fired, run, unit_node

KEY = "attack-test-network-key"


def frames(transport: StringTransport) -> list[dict]:
    events = wire.Decoder().feed(transport.value())
    transport.clear()
    return [dict(e[1], body=e[2]) for e in events if e[0] == wire.FRAME]


class InlinePool:
    """A thread pool that runs the work at once (the file receiver's final rename, without threads)."""

    def callInThreadWithCallback(self, on_result, func, *args, **kwargs):
        try:
            result, ok = func(*args, **kwargs), True
        except Exception:
            from twisted.python.failure import Failure

            result, ok = Failure(), False
        on_result(ok, result)


def keyless_peer(tmp_path, addr="127.0.0.1:40001"):
    """A node of a keyless (loopback) network and a peer connected to it, past the hello."""
    node = unit_node(tmp_path / "node")
    node.reactor.getThreadPool = InlinePool
    node.reactor.callFromThread = lambda f, *a, **kw: f(*a, **kw)
    layout.create_work_directories(node.home)
    proto = PeerProtocol(node.component(Peers), "server")
    t = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 32048),
                        peerAddress=IPv4Address("TCP", "127.0.0.1", 50100))
    proto.makeConnection(t)
    proto.dataReceived(wire.encode({"kind": "hello", "id": 0, "hs": 2, "name": "intruder", "addr": addr,
                                    "nonce": auth.new_nonce(), "role": "client"}))
    frames(t)
    assert proto.authenticated
    return node, proto, t


def command(proto, t, text: str, **extra) -> dict:
    proto.dataReceived(wire.encode({"kind": "cmd", "id": 9, "cmd": text, **extra}))
    [answer] = frames(t)
    return answer


def send_file(proto, t, dest, name="f.json", body=b'{"a": 1}\n') -> dict:
    proto.dataReceived(wire.encode({"kind": "file", "id": 5, "name": name, "dest": dest,
                                    "md5": hashlib.md5(body).hexdigest()}, body))
    [answer] = frames(t)
    return answer


def test_keyless_peer_cannot_set_tmp_dir(tmp_path):
    node, proto, t = keyless_peer(tmp_path)
    before = node.dictionary["tmp_dir"]
    answer = command(proto, t, "tmp_dir = /")
    assert not answer["ok"] and b"needs the 'owner' grant" in answer["body"]
    assert node.dictionary["tmp_dir"] == before


def test_directories_a_peer_assigns_do_not_move_where_its_files_land(tmp_path):
    node, proto, t = keyless_peer(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    watch = file_destinations(proto.node.dirs).dests["watch"]
    for text in (f"watch_dir = {outside}", f"tmp_dir = {outside}"):
        command(proto, t, text)  # refused once grants land; harmless either way
    answer = send_file(proto, t, "watch")
    assert answer["ok"], answer["body"]
    assert os.listdir(outside) == [] and os.listdir(watch) == ["f.json"]


@pytest.mark.parametrize("dest", ["evil", "/tmp", "../../etc", "tmp", "err", "watch_dir", None, 7])
def test_a_file_frame_goes_only_to_a_fixed_destination(tmp_path, dest):
    node, proto, t = keyless_peer(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    command(proto, t, f"evil_dir = {outside}")  # audit C2: a key the peer just set
    answer = send_file(proto, t, dest, name="authorized_keys")
    assert not answer["ok"] and b"is not a file destination" in answer["body"]
    assert b"watch, bwatch, bkup, blobs, prep" in answer["body"]
    assert os.listdir(outside) == []
    for d in file_destinations(proto.node.dirs).dests.values():
        assert "authorized_keys" not in os.listdir(d)
    assert not t.disconnecting  # a refused file is an answer, not a broken stream


def test_set_network_key_from_a_peer_is_refused(tmp_path):
    node, proto, t = keyless_peer(tmp_path)
    node.component(Peers).set_network_key(KEY)  # new connections need it; this one was made before
    answer = command(proto, t, 'set network key = ""')
    assert not answer["ok"] and b"needs the 'admin' grant" in answer["body"] and b"holds 'write'" in answer["body"]
    assert node.component(Peers).network_key == KEY.encode()


def test_run_manhole_from_a_peer_is_refused_even_if_the_frame_claims_owner(tmp_path):
    node, proto, t = keyless_peer(tmp_path)
    answer = command(proto, t, "run manhole where port = 0 and user = u and password = p", grant="owner")
    assert not answer["ok"] and b"'run manhole' needs the 'owner' grant" in answer["body"]
    assert b"holds 'write'" in answer["body"]
    assert node.process("Manhole") is None and not node.reactor.tcpServers


def test_a_frame_grant_that_is_no_grant_is_refused(tmp_path):
    node, proto, t = keyless_peer(tmp_path)
    answer = command(proto, t, "marker = 1", grant="root")
    assert not answer["ok"] and b"is not one of read, write, admin, owner" in answer["body"]
    assert "marker" not in node.dictionary


def test_run_client_from_a_peer_cannot_relay_what_the_peer_may_not_do(tmp_path):
    node, proto, t = keyless_peer(tmp_path)
    answer = command(proto, t, 'run client (127.0.0.1:40999) set network key = ""')
    assert not answer["ok"]
    assert b"run client 'set network key' needs the 'admin' grant" in answer["body"]
    answer = command(proto, t, "run client (127.0.0.1:40999) frobnicate the node")
    assert not answer["ok"] and b"run client 'frobnicate' (a command this node does not know) needs the 'admin' grant" in answer["body"]
    assert not node.component(Peers).states  # nothing was dialled


def keyed_pair(tmp_path, b_grant="write"):
    a, b = unit_node(tmp_path / "a"), unit_node(tmp_path / "b")
    for n in (a, b):
        n.component(Peers).set_network_key(KEY)
    b.component(Peers).peer_grant = b_grant
    a.component(Peers).own_address = lambda: "10.0.0.1:32048"
    client = PeerProtocol(a.component(Peers), "client")
    server = PeerProtocol(b.component(Peers), "server")
    pump = iosim.connect(server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client))
    assert client.authenticated and server.authenticated
    a.component(Peers)._state("10.0.0.2:32048").conn = client  # a's connection to b
    return a, b, client, server, pump


def test_run_client_runs_with_no_more_than_the_remote_gives_peers(tmp_path):
    """The owner of a runs `run client (b) ...`: b runs it with b's peer grant, never a's owner grant."""
    a, b, client, server, pump = keyed_pair(tmp_path)
    d = ensureDeferred(a.execute('run client (10.0.0.2:32048) set network key = ""'))
    pump.flush()
    reply = fired(d)
    assert not reply.ok and "needs the 'admin' grant" in reply.text and "holds 'write'" in reply.text
    assert b.component(Peers).network_key == KEY.encode()
    d = ensureDeferred(a.execute("run client (10.0.0.2:32048) get node name"))
    pump.flush()
    assert fired(d).text == b.name


def test_run_client_carries_the_callers_grant(tmp_path):
    """Even where b gives its peers admin, a caller holding only read on a gets read on b."""
    from anylog_tw.base.origin import Origin

    a, b, client, server, pump = keyed_pair(tmp_path, b_grant="admin")
    reader = Origin("rest reader", "read", "rest")
    d = ensureDeferred(a.execute('run client (10.0.0.2:32048) set network key = ""', reader))
    pump.flush()
    reply = fired(d)
    assert not reply.ok and "run client 'set network key' needs the 'admin' grant" in reply.text
    assert b.component(Peers).network_key == KEY.encode() and client.requests_out == 0  # refused on a
    asked = client.request('set network key = ""', grant="read")  # a frame a caller holding read sends
    pump.flush()
    assert "needs the 'admin' grant" in fired(asked).text and b.component(Peers).network_key == KEY.encode()
    d = ensureDeferred(a.execute("run client (10.0.0.2:32048) get node name", reader))
    pump.flush()
    assert fired(d).text == b.name


def test_an_accepted_keyless_connection_is_never_reused_for_its_declared_address(tmp_path):
    node, proto, t = keyless_peer(tmp_path, addr="10.0.0.9:32048")
    st = node.component(Peers).states.get("10.0.0.9:32048")
    assert st is None or st.conn is not proto
    assert not proto.identity_proven and proto.command_origin().user == ""


def test_an_accepted_keyed_connection_is_reused_once_the_proof_covers_the_address(tmp_path):
    a, b, client, server, pump = keyed_pair(tmp_path)
    assert server.peer_address == "10.0.0.1:32048" and server.identity_proven
    assert b.component(Peers).states["10.0.0.1:32048"].conn is server


def test_peer_grant_admin_needs_authenticated_peers(tmp_path):
    node = unit_node(tmp_path / "n")
    reply = run(node, "run tcp server where external_ip = 127.0.0.1 and external_port = 32048 and bind = true "
                      "and peer grant = admin")
    assert not reply.ok and "peer grant = admin" in reply.text and "set network key" in reply.text
    assert node.process("TCP") is None and not node.reactor.tcpServers


def test_keyless_tcp_server_beyond_loopback_refuses_to_start(tmp_path):
    node = unit_node(tmp_path / "n")
    reply = run(node, "run tcp server where external_ip = 10.0.0.5 and external_port = 32048")
    assert not reply.ok and "every interface with no authentication" in reply.text
    for how in ("set network key from file", "--network-key-file", "$ANYLOG_NETWORK_KEY", "ssl = true",
                "auth = none"):
        assert how in reply.text
    assert node.process("TCP") is None and not node.reactor.tcpServers


def test_a_key_from_a_file_lets_it_start_and_is_never_shown(tmp_path):
    node = unit_node(tmp_path / "n")
    key_file = tmp_path / "network.key"
    key_file.write_text("s3cret-network-key\n")
    reply = run(node, f"set network key from file {key_file}")
    assert reply.ok and "s3cret" not in reply.render()
    reply = run(node, "run tcp server where external_ip = 10.0.0.5 and external_port = 32048")
    assert reply.ok, reply.text
    assert "Auth: network key" in run(node, "get processes").render()
    removed = run(node, 'set network key = ""')
    assert not removed.ok and "exit tcp" in removed.text
    assert node.component(Peers).network_key == b"s3cret-network-key"
    for entry in node.events.entries(None):
        assert "s3cret" not in str(entry)
