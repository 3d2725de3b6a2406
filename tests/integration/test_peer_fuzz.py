"""Random and truncated frames thrown at a real TCP server port: the node refuses each and serves on."""

from __future__ import annotations

import json
import os
import random

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from anylog_tw.net import auth, wire
from anylog_tw.net.peers import Peers
from tests.helpers import poll
from tests.integration.test_peer import addr, start_node


class Thrower(Protocol):
    """Writes the given bytes (optionally in pieces), then reads until the server closes."""

    def __init__(self, pieces, close_after: bool):
        self.pieces = pieces
        self.close_after = close_after
        self.received = b""
        self.closed = Deferred()

    def connectionMade(self):
        for piece in self.pieces:
            self.transport.write(piece)
        if self.close_after:
            self.transport.loseConnection()

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason=None):
        self.closed.callback(self.received)


def hello() -> bytes:
    return wire.encode({"kind": "hello", "id": 0, "name": "fuzz", "nonce": auth.new_nonce()})


def cases(rng: random.Random):
    """(name, bytes, close after sending?) : every kind of bad input the issue names, and random ones."""
    good = hello() + wire.encode({"kind": "cmd", "id": 1, "cmd": "get node name"})
    yield "random bytes", rng.randbytes(3000) + b"\n", False
    yield "header past the limit", b"{" + b" " * (wire.MAX_HEADER + 10), False
    yield "body shorter than announced", hello() + b'{"v":1,"id":2,"kind":"cmd","size":100}\nabc', True
    yield "command before hello", wire.encode({"kind": "cmd", "id": 1, "cmd": "x = 1"}), False
    yield "unknown kind", hello() + b'{"v":1,"id":1,"kind":"nope"}\n', False
    yield "body over the limit", hello() + b'{"v":1,"id":1,"kind":"cmd","size":999999999999}\n', False
    yield "file with bad md5 header then cut", hello() + wire.encode_header(
        {"kind": "file", "id": 3, "name": "f", "size": 10**6, "md5": "0" * 32, "dest": "watch"}) + b"x" * 1000, True
    for i in range(25):
        cut = rng.randrange(len(good))
        yield f"truncated at {cut}", good[:cut], True
    for i in range(15):
        data = bytearray(good)
        for _ in range(rng.randrange(1, 5)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        yield f"mutated {i}", bytes(data), True  # may still be valid: close rather than wait


@pytest_twisted.async_yield_fixture
async def target(tmp_path):
    node = await start_node(tmp_path, "target")
    node.component(Peers).handshake_timeout = 0.5
    yield node
    await node.stopService()


@pytest.mark.allow_logged_errors
async def test_fuzzed_frames_are_refused_and_the_node_serves_on(target, tmp_path):
    host, port = target.process("TCP").external_address
    rng = random.Random(4)
    for name, data, close_after in cases(rng):
        pieces = [data[i:i + 97] for i in range(0, len(data), 97)] if rng.random() < 0.5 else [data]
        proto = await connectProtocol(TCP4ClientEndpoint(reactor, host, port), Thrower(pieces, close_after))
        received = await proto.closed
        if not close_after:
            assert received.startswith(b"{") and b'"kind":"error"' in received, name  # refused, with a reason
        for line in received.split(b"\n"):
            if b'"kind":"error"' in line:
                json.loads(line)  # error frames are well formed
    await poll(lambda: not target.component(Peers).live, 5, what="all fuzz connections closed")
    assert not os.listdir(target.dictionary["watch_dir"]) and not os.listdir(target.dictionary["tmp_dir"])
    # A real peer is still served.
    other = await start_node(tmp_path, "other")
    try:
        assert (await other.execute(f"run client {addr(target)} get node name")).text == "target"
    finally:
        await other.stopService()
