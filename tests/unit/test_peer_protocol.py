"""The peer protocol without sockets: StringTransport, iosim and the node's Clock."""

from __future__ import annotations

import json

import pytest
from twisted.internet.defer import TimeoutError
from twisted.internet.testing import StringTransport
from twisted.test import iosim

from anylog_tw.base.errors import CommandError, PeerError
from anylog_tw.net import auth, wire
from anylog_tw.net.payload import reply_from_frame
from anylog_tw.net.peer import PeerProtocol
from anylog_tw.net.peers import Peers
from tests.helpers import fired, unit_node

WAITING: list = []  # Deferreds the "test peer wait" command is waiting on


def frames(transport: StringTransport) -> list[dict]:
    events = wire.Decoder().feed(transport.value())
    transport.clear()
    return [dict(e[1], body=e[2]) for e in events if e[0] == wire.FRAME]


def connected(tmp_path, role="client", key=None, name="n"):
    node = unit_node(tmp_path / name)
    peers = node.component(Peers)
    peers.set_network_key(key)
    proto = PeerProtocol(peers, role)
    transport = StringTransport()
    proto.makeConnection(transport)
    return node, proto, transport


def hello(**extra) -> bytes:
    return wire.encode({"kind": "hello", "id": 0, "name": "other", "addr": "10.0.0.9:32048",
                        "nonce": auth.new_nonce(), **extra})


def reply(re: int, text: str) -> bytes:
    return wire.encode({"kind": "reply", "id": 0, "re": re, "ok": True, "format": "text"}, text.encode())


def test_hello_first_then_requests_matched_by_id_in_any_order(tmp_path):
    _, proto, t = connected(tmp_path)
    [h] = frames(t)
    assert h["kind"] == "hello" and auth.valid_nonce(h["nonce"]) and "auth" not in h
    proto.dataReceived(hello())
    assert proto.authenticated and proto.peer_name == "other" and proto.label == "10.0.0.9:32048"
    d1, d2 = proto.request("get a"), proto.request("get b")
    sent = frames(t)
    assert [(f["kind"], f["id"], f["cmd"]) for f in sent] == [("cmd", 1, "get a"), ("cmd", 2, "get b")]
    proto.dataReceived(reply(2, "B") + reply(1, "A"))
    assert fired(d1).text == "A" and fired(d2).text == "B"


def test_request_times_out_on_the_clock_and_late_reply_is_ignored(tmp_path):
    node, proto, t = connected(tmp_path)
    proto.dataReceived(hello())
    d = proto.request("slow", timeout=5)
    node.reactor.advance(4.9)
    assert not d.called
    node.reactor.advance(0.2)
    with pytest.raises(TimeoutError):
        fired(d)
    proto.dataReceived(reply(1, "late"))  # no waiter: dropped, no error
    assert not proto._waiting


def test_connection_loss_fails_every_waiter(tmp_path):
    _, proto, t = connected(tmp_path)
    proto.dataReceived(hello())
    waiting = [proto.request(f"c{i}") for i in range(3)]
    proto.connectionLost(None)
    for d in waiting:
        with pytest.raises(PeerError, match="lost"):
            fired(d)


def test_commands_run_and_reply_on_the_same_connection(tmp_path):
    node, proto, t = connected(tmp_path, role="server")
    node.dictionary["zq"] = "42"
    frames(t)
    proto.dataReceived(hello() + wire.encode({"kind": "cmd", "id": 7, "cmd": "echo !zq"})
                       + wire.encode({"kind": "cmd", "id": 8, "cmd": "get dictionary zq where format = json"}))
    out = frames(t)
    assert [(f["re"], f["ok"], f["format"]) for f in out] == [(7, True, "text"), (8, True, "table")]
    assert out[0]["body"] == b"42" and out[1]["fmt"] == "json"
    assert json.loads(reply_from_frame(out[1], out[1]["body"]).render()) == {"zq": "42"}
    assert node.events.entries(None)[-1][2].startswith("peer 10.0.0.9:32048")


def test_command_before_hello_is_refused_and_not_run(tmp_path):
    node, proto, t = connected(tmp_path, role="server")
    frames(t)
    proto.dataReceived(wire.encode({"kind": "cmd", "id": 1, "cmd": "marker = set"}))
    [err] = frames(t)
    assert err["kind"] == "error" and err["code"] == "auth" and b"not authenticated" in err["body"]
    assert t.disconnecting and "marker" not in node.dictionary
    assert "not authenticated" in node.errors.entries(None)[-1][4]


def test_malformed_frame_gets_an_error_frame_and_a_closed_connection(tmp_path):
    node, proto, t = connected(tmp_path, role="server")
    proto.dataReceived(hello())
    frames(t)
    proto.dataReceived(b"this is not a frame\n")
    [err] = frames(t)
    assert err["kind"] == "error" and err["code"] == "bad_frame" and t.disconnecting
    proto.dataReceived(wire.encode({"kind": "cmd", "id": 1, "cmd": "marker = x"}))
    assert "marker" not in node.dictionary


def test_handshake_must_finish_in_time(tmp_path):
    node, proto, t = connected(tmp_path, role="server")
    node.reactor.advance(node.component(Peers).handshake_timeout + 0.1)
    assert t.disconnecting
    assert "no complete hello" in frames(t)[-1]["body"].decode()


def test_idle_connection_is_closed(tmp_path):
    node, proto, t = connected(tmp_path)
    proto.dataReceived(hello())
    peers = node.component(Peers)
    node.reactor.advance(peers.idle_timeout / 2)
    assert not t.disconnecting
    node.reactor.advance(peers.idle_timeout / 2 + 1)
    assert t.disconnecting


def test_keyless_node_refuses_a_peer_that_requires_a_key(tmp_path):
    _, proto, t = connected(tmp_path)
    frames(t)
    proto.dataReceived(hello(auth=auth.SCHEME))
    assert t.disconnecting and not proto.authenticated
    assert b"has none" in frames(t)[-1]["body"]


def pump_pair(tmp_path, server_key, client_key):
    server_node = unit_node(tmp_path / "s")
    client_node = unit_node(tmp_path / "c")
    server_node.component(Peers).set_network_key(server_key)
    client_node.component(Peers).set_network_key(client_key)
    server = PeerProtocol(server_node.component(Peers), "server")
    client = PeerProtocol(client_node.component(Peers), "client")
    pump = iosim.connect(server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client))
    return server_node, server, client, pump


def test_network_key_handshake_over_iosim(tmp_path):
    node, server, client, pump = pump_pair(tmp_path, "k" * 16, "k" * 16)
    assert server.authenticated and client.authenticated
    d = client.request("get node name")
    pump.flush()
    assert fired(d).ok


@pytest.mark.parametrize("server_key, client_key", [("k" * 16, "x" * 16), ("k" * 16, None), (None, "k" * 16)])
def test_wrong_or_missing_key_is_refused(tmp_path, server_key, client_key):
    node, server, client, pump = pump_pair(tmp_path, server_key, client_key)
    assert not server.authenticated
    assert not client.authenticated
    assert any("key" in e[4] for e in node.errors.entries(None)) or server_key is None


def test_proof_cannot_be_reflected():
    """A proof made by a client does not pass as a server's proof for the same nonces."""
    key = b"k" * 16
    a, b = auth.new_nonce(), auth.new_nonce()
    client_proof = auth.proof(key, "client", a, b)
    assert auth.check_proof(key, "client", a, b, client_proof)
    assert not auth.check_proof(key, "server", a, b, client_proof)
    assert not auth.check_proof(b"other-key-123456", "client", a, b, client_proof)


def test_deadlines_one_timer_many_requests(tmp_path):
    """Thousands of requests in flight arm one timer; each expires at its own deadline."""
    node, proto, t = connected(tmp_path)
    proto.dataReceived(hello())
    clock = node.reactor
    before = len(clock.getDelayedCalls())
    slow = [proto.request(f"c{i}", timeout=10) for i in range(5000)]
    quick = proto.request("q", timeout=2)
    assert len(clock.getDelayedCalls()) == before + 1
    clock.advance(2)
    with pytest.raises(TimeoutError):
        fired(quick)
    assert not any(d.called for d in slow)
    proto.dataReceived(b"".join(reply(i + 1, "ok") for i in range(0, 5000, 2)))  # answer half
    clock.advance(8)
    assert all(d.called for d in slow)
    for i, d in enumerate(slow):
        if i % 2 == 0:
            assert fired(d).text == "ok"
        else:
            with pytest.raises(TimeoutError):
                fired(d)
    assert len(clock.getDelayedCalls()) == before and not proto._waiting


def test_cancelled_request_is_forgotten(tmp_path):
    node, proto, t = connected(tmp_path)
    proto.dataReceived(hello())
    d = proto.request("x", timeout=5)
    d.cancel()
    d.addErrback(lambda f: None)
    assert not proto._waiting
    node.reactor.advance(6)  # the deadline surfaces and finds nothing to expire


def test_request_made_while_expiring_keeps_one_timer(tmp_path):
    """A timeout handler that sends the next request (as a retry loop does) leaves one armed timer."""
    node, proto, t = connected(tmp_path)
    proto.dataReceived(hello())
    clock = node.reactor
    before = len(clock.getDelayedCalls())
    retried = []
    first = proto.request("a", timeout=1)
    first.addErrback(lambda f: retried.append(proto.request("b", timeout=5)))
    clock.advance(1)
    assert len(retried) == 1 and len([c for c in clock.getDelayedCalls() if c.active()]) == before + 1
    clock.advance(5)
    with pytest.raises(TimeoutError):
        fired(retried[0])
    assert len(clock.getDelayedCalls()) == before


def test_commands_that_wait_reply_when_they_finish(tmp_path):
    """A peer command that awaits is answered when it completes, success or failure, in any order."""
    from twisted.internet.defer import Deferred

    from anylog_tw.base.registry import REGISTRY, command

    if REGISTRY.get("test peer wait") is None:
        @command("test peer wait", grant="read", usage="test peer wait", text="waits for the test (tests only)", examples=(),
                 keywords=("test",))
        async def _wait(call):
            d = Deferred()
            WAITING.append(d)
            return await d

    WAITING.clear()
    pending = WAITING

    node, proto, t = connected(tmp_path, role="server")
    frames(t)
    proto.dataReceived(hello() + wire.encode({"kind": "cmd", "id": 1, "cmd": "test peer wait"})
                       + wire.encode({"kind": "cmd", "id": 2, "cmd": "test peer wait"})
                       + wire.encode({"kind": "cmd", "id": 3, "cmd": "echo now"}))
    first, second = list(pending)
    assert [(f["re"], f["body"]) for f in frames(t)] == [(3, b"now")]
    second.callback("two")
    first.errback(CommandError("boom"))
    out = {f["re"]: f for f in frames(t)}
    assert out[2]["body"] == b"two" and out[2]["ok"]
    assert not out[1]["ok"] and b"boom" in out[1]["body"]


def test_drive_resumes_on_already_fired_deferreds():
    from twisted.internet.defer import succeed

    from anylog_tw.net.peer import drive

    async def two_steps():
        a = await succeed(1)
        b = await succeed(2)
        return a + b

    got = []
    drive(two_steps(), lambda r, tag: got.append((r, tag)), "t")
    assert got == [(3, "t")]


def test_unauthenticated_peer_cannot_make_the_node_buffer_a_big_body(tmp_path):
    node, proto, t = connected(tmp_path, role="server")
    frames(t)
    proto.dataReceived(b'{"v":1,"id":1,"kind":"cmd","cmd":"x","size":10000000}\n')
    [err] = frames(t)
    assert err["code"] == "too_large" and t.disconnecting


def test_a_file_right_behind_the_hello_is_judged_after_authentication(tmp_path):
    """Hello and a big request in one TCP segment: the request gets the authenticated limits."""
    node, proto, t = connected(tmp_path, role="server")
    frames(t)
    body = b"x" * 200_000
    import hashlib

    proto.dataReceived(hello() + wire.encode({"kind": "file", "id": 4, "name": "f.bin", "dest": "nowhere",
                                              "md5": hashlib.md5(body).hexdigest()}, body))
    assert not t.disconnecting
    [refusal] = frames(t)
    assert refusal["re"] == 4 and not refusal["ok"] and b"no destination" in refusal["body"]


def test_decoder_pause_after(tmp_path):
    dec = wire.Decoder()
    dec.pause_after = frozenset({"hello"})
    stream = wire.encode({"kind": "hello", "id": 0}) + wire.encode({"kind": "cmd", "id": 1, "cmd": "a"})
    first = dec.feed(stream)
    assert [e[1]["kind"] for e in first] == ["hello"] and dec.stashed
    dec.pause_after = frozenset()
    assert [e[1]["kind"] for e in dec.feed(b"")] == ["cmd"] and not dec.stashed


def test_reconnect_backoff_doubles_up_to_the_cap_and_resets(tmp_path):
    node = unit_node(tmp_path)
    peers = node.component(Peers)
    st = peers._state("10.0.0.1:32048")
    st.keep = True
    delays = []
    for _ in range(9):
        peers._mark_down(st, "connection refused")
        delays.append(st.retry.getTime() - node.reactor.seconds())
        st.retry.cancel()
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert st.status == "not responding" and st.failures == 9
    peers._mark_up(st)
    assert (st.status, st.failures, st.backoff, st.retry) == ("active", 0, 0.0, None)
    row = [r for r in peers.rows() if r[0] == "10.0.0.1:32048"][0]
    assert row[3] == "active"
