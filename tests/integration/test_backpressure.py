"""A peer that sends commands and does not read the replies: the node holds its commands, bounded."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from anylog_tw.net import auth, wire
from anylog_tw.net.backpressure import REPLY_HIGH
from anylog_tw.net.peers import Peers
from anylog_tw.node import Node
from tests.helpers import poll

REPLY_SIZE = 50_000


class SlowReader(Protocol):
    """A hand-made peer: says hello, then sends commands while it reads nothing."""

    def __init__(self):
        self.decoder = wire.Decoder()
        self.frames: list[tuple[dict, bytes]] = []

    def connectionMade(self):
        self.transport.write(wire.encode({"kind": "hello", "id": 0, "name": "slow", "addr": "127.0.0.1:1",
                                          "nonce": auth.new_nonce(), "role": "client"}))

    def dataReceived(self, data):
        self.frames.extend((e[1], e[2]) for e in self.decoder.feed(data) if e[0] == wire.FRAME)


@pytest_twisted.async_yield_fixture
async def server(tmp_path):
    node = Node(str(tmp_path / "server"), name="server", reactor=reactor, environ={})
    node.startService()
    reply = await node.run("run tcp server where external_ip = 127.0.0.1 and external_port = 0 and bind = true")
    assert reply.ok, reply.text
    node.dictionary["big"] = "x" * REPLY_SIZE
    yield node
    await node.stopService()


async def test_replies_pile_up_to_a_bound_then_every_command_is_answered(server):
    port = server.process("TCP").external_address[1]
    client = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), SlowReader())
    await poll(lambda: any(h["kind"] == "hello" for h, _ in client.frames), what="the server's hello")
    peers = server.component(Peers)
    await poll(lambda: any(p.authenticated for p in peers.live), what="the handshake")
    [conn] = [p for p in peers.live if p.authenticated]

    client.transport.pauseProducing()  # from now on the client reads nothing
    n = 2000  # 100 MB of replies if nothing held them back
    client.transport.write(b"".join(wire.encode_cmd(i, "echo !big") for i in range(1, n + 1)))
    await poll(lambda: "replies" in conn.reading.holds, timeout=30, what="the node to hold the commands")
    most = 0
    for _ in range(20):  # a while later it still holds, and the pile has not grown past the bound
        most = max(most, conn.pending_out())
        await poll(lambda: True)
    assert "replies" in conn.reading.holds and conn._backlog is not None
    assert most <= REPLY_HIGH + REPLY_SIZE + 1000
    assert server.commands_run < n

    client.transport.resumeProducing()
    await poll(lambda: len(client.frames) >= n + 1, timeout=60, what="every reply")
    replies = [(h["re"], len(body)) for h, body in client.frames if h["kind"] == "reply"]
    assert replies == [(i, REPLY_SIZE) for i in range(1, n + 1)]
    assert not conn.reading.holds and conn._backlog is None
    client.transport.loseConnection()
