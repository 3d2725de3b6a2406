"""Connection limits on real sockets: REST, TCP and the console refuse, time out and report."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol

from anylog_tw.net import auth, wire
from anylog_tw.node import Node
from tests.helpers import ok, poll
from tests.integration.rest_support import Client, start_node


class Raw(Protocol):
    """A client that sends what it is told and records whether the server closed on it."""

    def __init__(self, first: bytes = b""):
        self.first = first
        self.received = b""
        self.closed: Deferred = Deferred()

    def connectionMade(self):
        if self.first:
            self.transport.write(self.first)

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason=None):
        self.closed.callback(None)


async def raw(port: int, first: bytes = b"") -> Raw:
    return await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), Raw(first))


async def close_all(clients):
    for c in clients:
        if not c.closed.called:
            c.transport.loseConnection()
            await c.closed


@pytest_twisted.ensureDeferred
async def test_rest_half_request_is_closed_at_the_deadline_while_real_requests_are_served(tmp_path):
    node = await start_node(tmp_path, "idle timeout = 0.5")
    client = Client(node)
    try:
        port = node.process("REST").address[1]
        half = await raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n")
        status, _, body = await client.command("get status")
        assert status == 200
        await half.closed  # closed by the gate, well before Twisted's own 60 s
        gate = node.process("REST").gate
        assert gate.timed_out == 1
        status, _, _ = await client.command("get status")  # the keep-alive connection was not timed out
        assert status == 200 and gate.timed_out == 1
    finally:
        await client.close()
        await node.stopService()


@pytest_twisted.ensureDeferred
async def test_rest_per_address_cap_makes_room_and_get_connections_shows_it(tmp_path):
    node = await start_node(tmp_path, "max per address = 3")
    client = Client(node)
    held = []
    try:
        port = node.process("REST").address[1]
        status, _, _ = await client.command("get status")  # one keep-alive connection of the 3
        held = [await raw(port) for _ in range(2)]
        newest = await raw(port)  # the address is at its cap: its longest-waiting half-open connection goes
        held.append(newest)
        await held[0].closed
        assert not held[1].closed.called and not newest.closed.called
        reply = await ok(node, "get connections")
        text = reply.render()
        assert "Max Per Address" in text and "File descriptors:" in text and "Peer frame budget" in text
        data = (await ok(node, "get connections where format = json")).data
        [rest] = data["limits"]["listeners"]
        assert rest["Listener"] == "REST" and rest["Dropped"] == 1 and rest["Open"] == 3
        assert rest["Max Per Address"] == 3 and data["limits"]["file_descriptors"]["reserve"] > 0
    finally:
        await close_all(held)
        await client.close()
        await node.stopService()


@pytest_twisted.ensureDeferred
async def test_bad_limit_options_are_clear_errors(tmp_path):
    node = Node(str(tmp_path / "n"), reactor=reactor, environ={})
    node.startService()
    try:
        for text, why in (
                ("run rest server where internal_ip = 127.0.0.1 and internal_port = 0 and max connections = 0",
                 "'max connections' must be at least 1"),
                ("run console where port = 0 and idle timeout = soon", "'idle timeout': 'soon' is not a time"),
                ("run tcp server where external_ip = 127.0.0.1 and external_port = 0 and max per address = 0",
                 "'max per address' must be at least 1")):
            reply = await node.execute(text)
            assert not reply.ok and why in reply.text, reply.text
        reply = await node.execute("run tcp server where external_ip = 127.0.0.1 and external_port = 0 and "
                               "max reply = 1GB and frame budget = 10MB")
        assert not reply.ok and "frame budget" in reply.text
        assert node.process("TCP") is None and node.process("REST") is None
    finally:
        await node.stopService()


@pytest_twisted.ensureDeferred
async def test_tcp_peer_must_finish_its_hello_in_time_and_then_stays(tmp_path):
    node = Node(str(tmp_path / "n"), reactor=reactor, environ={})
    node.startService()
    try:
        await ok(node, "run tcp server where external_ip = 127.0.0.1 and external_port = 0 and bind = true and "
                       "idle timeout = 0.3")
        port = node.process("TCP").external_address[1]
        silent = await raw(port)
        hello = wire.encode({"kind": "hello", "id": 0, "name": "p", "nonce": auth.new_nonce(), "role": "client"})
        peer = await raw(port, hello)
        await silent.closed
        gate = node.process("TCP").gate
        assert gate.timed_out == 1 and not peer.closed.called
        peer.transport.write(wire.encode_cmd(1, "get status"))
        await poll(lambda: b'"re":1' in peer.received, what="the answer to the peer's command")
        await close_all([peer])
    finally:
        await node.stopService()


@pytest_twisted.ensureDeferred
async def test_console_session_that_types_nothing_is_closed_and_one_that_types_stays(tmp_path):
    node = Node(str(tmp_path / "n"), reactor=reactor, environ={})
    node.startService()
    try:
        await ok(node, "run console where port = 0 and idle timeout = 0.4 and max connections = 3")
        port = node.process("Console").address[1]
        quiet = await raw(port)
        typing = await raw(port, b"get status\r\n")
        await quiet.closed
        await poll(lambda: b"running" in typing.received or b"Status" in typing.received.replace(b"\x1b", b""),
                   what="the console's answer")
        assert not typing.closed.called and node.process("Console").gate.timed_out == 1
        await close_all([typing])
    finally:
        await node.stopService()
