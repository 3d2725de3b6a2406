"""What a peer can make the node hold: per-kind body limits, replies only when awaited, one node budget."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport

from anylog_tw.base.errors import PeerError
from anylog_tw.net import auth, wire
from anylog_tw.net.budget import MemoryBudget
from anylog_tw.net.chunkworker import ChunkWorker
from anylog_tw.net.peer import PeerProtocol
from anylog_tw.net.peers import Peers
from tests.helpers import fired, unit_node


def _connected(tmp_path, role="client"):
    node = unit_node(tmp_path)
    peers = node.component(Peers)
    proto = PeerProtocol(peers, role)
    t = StringTransport()
    proto.makeConnection(t)
    proto.dataReceived(wire.encode({"kind": "hello", "id": 0, "name": "other", "addr": "10.0.0.9:32048",
                                    "nonce": auth.new_nonce()}))
    assert proto.authenticated
    t.clear()
    return node, peers, proto, t


def _reply_header(re: int, size: int) -> bytes:
    return wire.encode_header({"kind": "reply", "id": 0, "re": re, "ok": True, "format": "text", "size": size})


@pytest.mark.parametrize("kind, size", [("cmd", wire.SMALL_BODY + 1), ("event", wire.SMALL_BODY + 1),
                                        ("error", wire.SMALL_BODY + 1), ("hello", 1)])
def test_small_kinds_are_refused_at_the_header(kind, size):
    """A cmd/event/error/hello body past its kind's limit is refused before a byte of it is read."""
    dec = wire.Decoder(max_body=wire.MAX_FILE)
    with pytest.raises(wire.WireError) as e:
        dec.feed(wire.encode_header({"kind": kind, "id": 1, "size": size}))
    assert e.value.code == "too_large" and kind in e.value.reason


def test_a_skipped_body_is_counted_off_and_never_kept():
    """`admit` refusing a body: a skip event, no chunk of it kept, and the next frame decodes."""
    dec = wire.Decoder()
    dec.admit = lambda header: "not wanted"
    events = dec.feed(_reply_header(1, 1000) + b"x" * 400)
    assert events == [(wire.SKIP, events[0][1], "not wanted")] and dec._chunks == []
    after = wire.encode({"kind": "cmd", "id": 2, "cmd": "next"})
    events = dec.feed(b"x" * 600 + after)
    assert [e[0] for e in events] == [wire.FRAME] and events[0][1]["cmd"] == "next"


@given(st.lists(st.integers(1, 97), min_size=1, max_size=30), st.booleans())
def test_skip_and_keep_agree_on_frame_boundaries_however_the_bytes_are_split(cuts, skip):
    """Whether the body is kept or skipped, the frames after it decode the same, for any segmentation."""
    data = (_reply_header(1, 150) + b"y" * 150 + wire.encode({"kind": "cmd", "id": 3, "cmd": "after"}))
    dec = wire.Decoder()
    dec.admit = (lambda h: "no") if skip else (lambda h: None)
    events, pos, i = [], 0, 0
    while pos < len(data):
        step = cuts[i % len(cuts)]
        events += dec.feed(data[pos:pos + step])
        pos += step
        i += 1
    kinds = [e[0] for e in events]
    assert kinds == ([wire.SKIP, wire.FRAME] if skip else [wire.FRAME, wire.FRAME])
    assert events[-1][1]["cmd"] == "after"
    if not skip:
        assert events[0][2] == b"y" * 150


def test_a_reply_nobody_waits_for_is_dropped_and_the_connection_goes_on(tmp_path):
    """A (hostile or late) reply body with no waiting request is read and dropped, never buffered."""
    _, peers, proto, t = _connected(tmp_path)
    proto.dataReceived(_reply_header(99, 300_000_000) + b"z" * 65536)
    assert proto.decoder._chunks == [] and peers.budget.used == 0 and not t.disconnecting
    assert "short of its announced size" in proto.decoder.pending()


def test_a_reply_over_max_reply_fails_its_request_and_not_the_connection(tmp_path):
    _, peers, proto, t = _connected(tmp_path)
    peers.max_reply = 1000
    big, small = proto.request("get big"), proto.request("get small")
    proto.dataReceived(_reply_header(1, 5000) + b"b" * 5000)
    with pytest.raises(PeerError, match="over this node's 'max reply' of 1,000 bytes"):
        fired(big)
    proto.dataReceived(wire.encode({"kind": "reply", "id": 0, "re": 2, "ok": True, "format": "text"}, b"ok"))
    assert fired(small).text == "ok" and not t.disconnecting and peers.budget.used == 0


def test_replies_share_one_node_budget(tmp_path):
    """Two connections' reply bodies in flight at once: the second one that does not fit fails clearly."""
    node, peers, first, _ = _connected(tmp_path)
    peers.budget = MemoryBudget(10_000)
    first.budget = peers.budget
    second = PeerProtocol(peers, "client")
    second.makeConnection(StringTransport())
    second.dataReceived(wire.encode({"kind": "hello", "id": 0, "name": "o2", "nonce": auth.new_nonce()}))
    a, b = first.request("a"), second.request("b")
    first.dataReceived(_reply_header(1, 8000) + b"a" * 100)  # 8000 held while the body arrives
    assert peers.budget.used == 8000
    second.dataReceived(_reply_header(1, 8000) + b"b" * 8000)
    with pytest.raises(PeerError, match="does not fit in the node's frame budget"):
        fired(b)
    first.dataReceived(b"a" * 7900)
    assert fired(a).text == "a" * 8000 and peers.budget.used == 0 and peers.budget.refused == 1


def test_a_half_received_reply_is_released_when_the_connection_drops(tmp_path):
    _, peers, proto, _ = _connected(tmp_path)
    d = proto.request("x")
    proto.dataReceived(_reply_header(1, 50_000) + b"p" * 10)
    assert peers.budget.used == 50_000
    proto.connectionLost(None)
    assert peers.budget.used == 0
    with pytest.raises(PeerError, match="lost"):
        fired(d)


def test_held_commands_count_in_the_budget(tmp_path):
    """A peer that does not read its replies: its held commands are in the node budget, and it is
    refused when they do not fit (instead of 16 MiB per connection, times every connection)."""
    _, peers, proto, t = _connected(tmp_path, role="server")
    peers.budget = MemoryBudget(1000)
    proto.budget = peers.budget
    proto._backlog, proto._backlog_bytes = [], 0  # as if its replies had piled up
    proto.dataReceived(b"".join(wire.encode({"kind": "cmd", "id": i, "cmd": "get status " + "x" * 200})
                                for i in range(1, 4)))
    assert peers.budget.used > 0
    proto.dataReceived(wire.encode({"kind": "cmd", "id": 9, "cmd": "get status " + "x" * 400}))
    assert t.disconnecting and "frame budget" in t.value().decode()
    proto.connectionLost(None)
    assert peers.budget.used == 0


class _NoThreadReactor:
    def __init__(self):
        self.calls = []

    def callFromThread(self, f, *args):
        self.calls.append((f, args))


def test_file_chunks_waiting_for_the_disk_pause_their_sender_when_the_node_is_over_budget():
    budget = MemoryBudget(100)
    budget.add(200)  # other transfers hold more than the budget
    paused = []
    gate = __import__("threading").Event()
    worker = ChunkWorker(_NoThreadReactor(), lambda chunk: gate.wait(5), lambda: paused.append(1),
                         lambda: None, budget=budget)
    worker.put(b"c" * 10)  # its own queue is tiny, but the node is over budget: pause
    assert paused == [1] and budget.used == 210
    gate.set()
    worker.finish()
    worker._thread.join(5)
    assert budget.used == 200
