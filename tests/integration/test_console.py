"""The telnet console over a real socket: commands, history, two sessions, errors, exit console."""

from __future__ import annotations

import re

import pytest_twisted
from twisted.conch.telnet import TelnetProtocol, TelnetTransport
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from anylog_tw.node import Node
from tests.helpers import poll, strip_terminal

UP_ARROW = b"\x1b[A"


class ConsoleClient(TelnetProtocol):
    """Collects what the console shows; refuses every telnet option, as simple clients do."""

    def __init__(self):
        self.data = b""

    def dataReceived(self, data):
        self.data += data

    @property
    def screen(self) -> str:
        return strip_terminal(self.data)

    def send(self, raw: bytes):
        self.transport.write(raw)


@pytest_twisted.async_yield_fixture
async def node(tmp_path):
    node = Node(str(tmp_path / "home"), name="cons", reactor=reactor)
    node.startService()
    reply = await node.execute("run console where ip = 127.0.0.1 and port = 0")
    assert reply.ok, reply.render()
    yield node
    await node.stopService()


async def connect(node) -> ConsoleClient:
    host, port = node.process("Console").address
    client = ConsoleClient()
    transport = TelnetTransport(lambda: client)
    await connectProtocol(TCP4ClientEndpoint(reactor, host, port), transport)
    await poll(lambda: client.screen.rstrip().endswith("AL cons >"), what="the first prompt")
    return client


async def ask(client: ConsoleClient, raw: bytes, expect: str) -> str:
    before = len(client.screen)
    client.send(raw)
    await poll(lambda: expect in client.screen[before:] and client.screen.rstrip().endswith(">"),
               what=f"{expect!r} on the console")
    return client.screen[before:]


async def test_command_history_and_errors(node):
    client = await connect(node)
    out = await ask(client, b"get status\r\n", "cons@127.0.0.1 running")
    assert "Error" not in out
    out = await ask(client, b"get statsu\r\n", "Error: unknown command")
    assert "did you mean: " in out and "get status" in out.split("did you mean: ", 1)[1]  # 'get stats' may come first
    # Up twice brings back 'get status' from the history; Enter runs it again.
    out = await ask(client, UP_ARROW + UP_ARROW + b"\r\n", "cons@127.0.0.1 running")
    assert node.events.entries()[-1][3] == "get status"
    client.transport.loseConnection()


async def test_two_sessions_share_the_node(node):
    first, second = await connect(node), await connect(node)
    await ask(first, b"shared = from-first\r\n", "AL cons >")
    await ask(second, b"echo !shared\r\n", "from-first")
    assert "Sessions: 2" in (await ask(first, b"get processes\r\n", "Console")).replace("  ", " ")
    first.transport.loseConnection()
    second.transport.loseConnection()


async def test_multi_line_command(node):
    client = await connect(node)
    client.send(b'<p = {"a":\r\n')
    await poll(lambda: client.screen.rstrip().endswith("..."), what="the continuation prompt")
    await ask(client, b'1}>\r\n', "AL cons >")
    assert node.dictionary["p"] == '{"a":\n1}'
    client.transport.loseConnection()


async def test_exit_console_closes_sessions_and_the_port(node):
    client = await connect(node)
    await ask(client, b"exit console\r\n", "Console stopping")
    await poll(lambda: node.process("Console") is None, what="the console to stop")
    await poll(lambda: not client.transport.transport.connected, what="the session to close")
    reply = await node.execute("exit console")
    assert not reply.ok and "not running" in reply.text


async def test_second_console_is_refused_and_a_busy_port_is_an_error(node):
    reply = await node.execute("run console where port = 0")
    assert not reply.ok and "already running" in reply.text
    host, port = node.process("Console").address
    other = Node(str(node.home) + "-2", name="other", reactor=reactor)
    reply = await other.execute(f"run console where ip = 127.0.0.1 and port = {port}")
    assert not reply.ok and re.search(r"cannot listen on 127.0.0.1:\d+", reply.text)


async def test_manhole_needs_the_password(node):
    reply = await node.execute("run manhole where port = 0 and user = admin and password = pw")
    assert reply.ok, reply.render()
    host, port = node.process("Manhole").address
    client = ConsoleClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, host, port), TelnetTransport(lambda: client))
    await poll(lambda: "Username" in client.screen, what="the login prompt")
    client.send(b"admin\r\n")
    await poll(lambda: "Password" in client.screen, what="the password prompt")
    client.send(b"pw\r\n")
    await poll(lambda: ">>>" in client.screen, what="the Python prompt")
    client.send(b"node.name.upper()\r\n")
    await poll(lambda: "'CONS'" in client.screen, what="the REPL to answer")
    client.transport.loseConnection()
    assert (await node.execute("exit manhole")).ok
