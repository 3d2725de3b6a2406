"""A peer that sends commands and does not read the replies: the node holds its commands, bounded."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from anylog_tw.net import auth, wire
from anylog_tw.net.backpressure import MAX_RUNNING, REPLY_HIGH
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
    reply = await node.execute("run tcp server where external_ip = 127.0.0.1 and external_port = 0 and bind = true")
    assert reply.ok, reply.text
    node.dictionary["big"] = "x" * REPLY_SIZE
    yield node
    await node.stopService()


async def slow_peer(server):
    """A SlowReader connected and authenticated, and the server's side of its connection (watched:
    the most bytes waiting and the most commands running after each reply)."""
    port = server.process("TCP").external_address[1]
    client = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), SlowReader())
    await poll(lambda: any(h["kind"] == "hello" for h, _ in client.frames), what="the server's hello")
    peers = server.component(Peers)
    await poll(lambda: any(p.authenticated for p in peers.live), what="the handshake")
    [conn] = [p for p in peers.live if p.authenticated]
    conn.most_waiting = conn.most_running = 0
    send = conn._send_reply

    def watched(reply, ident):
        send(reply, ident)
        conn.most_waiting = max(conn.most_waiting, conn.pending_out())
        conn.most_running = max(conn.most_running, conn.running)

    conn._send_reply = watched
    return client, conn


async def read_all(client, n: int, size: int) -> None:
    client.transport.resumeProducing()
    await poll(lambda: len(client.frames) >= n + 1, timeout=60, what="every reply")
    replies = [(h["re"], len(body) >= size) for h, body in client.frames if h["kind"] == "reply"]
    assert replies == [(i, True) for i in range(1, n + 1)] or sorted(replies) == [(i, True) for i in range(1, n + 1)]


async def test_replies_pile_up_to_a_bound_then_every_command_is_answered(server):
    client, conn = await slow_peer(server)
    client.transport.pauseProducing()  # from now on the client reads nothing
    n = 2000  # 100 MB of replies if nothing held them back
    client.transport.write(b"".join(wire.encode_cmd(i, "echo !big") for i in range(1, n + 1)))
    await poll(lambda: conn._backlog is not None, timeout=30, what="the node to hold the commands")
    for _ in range(20):  # a while later it still holds
        await poll(lambda: True)
    assert conn._backlog is not None and server.commands_run < n
    assert conn.most_waiting <= REPLY_HIGH + REPLY_SIZE + 1000
    assert not conn.reading.holds  # reading goes on: the same connection carries the peer's replies to us
    await read_all(client, n, REPLY_SIZE)
    assert conn._backlog is None and conn.running == 0


async def test_commands_that_answer_later_are_bounded_by_the_running_count(server):
    """`sql` answers from the database's thread: all of a flood would start before any reply exists."""
    await server.execute("connect dbms d where type = sqlite")
    await server.execute('sql d "create table t (x text)"')
    await server.execute(f'sql d "insert into t (x) values (\'{"y" * 20_000}\')"')
    client, conn = await slow_peer(server)
    client.transport.pauseProducing()
    n = 1500
    client.transport.write(b"".join(wire.encode_cmd(i, 'sql d "select x from t"') for i in range(1, n + 1)))
    await read_all(client, n, 20_000)
    assert conn.most_running <= MAX_RUNNING + 1
    assert conn.most_waiting <= REPLY_HIGH + (MAX_RUNNING + 1) * 21_000


async def test_a_peer_whose_commands_pile_up_past_the_bound_is_refused(server):
    client, conn = await slow_peer(server)
    client.transport.pauseProducing()
    big = "x" * 60_000
    client.transport.write(b"".join(wire.encode_cmd(i, f"echo {big}") for i in range(1, 600)))  # 36 MB
    await poll(lambda: conn._closed_reason is not None, timeout=30, what="the connection refused")
    assert "faster than it reads their replies" in conn._closed_reason
    assert any("faster than it reads" in str(e) for e in server.errors.entries())


async def test_two_nodes_flooding_each_other_both_get_every_reply(tmp_path):
    """The connection carries both nodes' requests and replies: holding commands never stops replies."""
    nodes = []
    for name in ("alpha", "beta"):
        node = Node(str(tmp_path / name), name=name, reactor=reactor, environ={})
        node.startService()
        assert (await node.execute("run tcp server where external_ip = 127.0.0.1 and external_port = 0 "
                               "and bind = true")).ok
        node.dictionary["big"] = "x" * REPLY_SIZE
        nodes.append(node)
    a, b = nodes
    try:
        pa, pb = a.component(Peers), b.component(Peers)
        await pa.command("%s:%d" % b.process("TCP").external_address, "echo hi")
        [conn_a] = [p for p in pa.live if p.authenticated]
        await poll(lambda: any(p.authenticated for p in pb.live), what="beta's side")
        [conn_b] = [p for p in pb.live if p.authenticated]
        n = 600  # 30 MB each way
        waiting = [conn_a.request("echo !big", timeout=60) for _ in range(n)]
        waiting += [conn_b.request("echo !big", timeout=60) for _ in range(n)]
        replies = await gatherResults(waiting)
        assert len(replies) == 2 * n and all(len(r.text) == REPLY_SIZE for r in replies)
    finally:
        for node in nodes:
            await node.stopService()
