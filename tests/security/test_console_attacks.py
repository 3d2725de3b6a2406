"""Attacks on the telnet console (issue 14, audit M1): no console beyond loopback without a login;
with credentials every session logs in and runs with its user's role; nobody reaches the manhole.

Real sockets on port 0; the telnet dialogue runs in a thread (the node shares the test's reactor)."""

from __future__ import annotations

import socket
import time

import pytest_twisted
from twisted.internet import reactor, threads

from anylog_tw.front import rest_users
from anylog_tw.node import Node
from tests.e2e.harness import TelnetClient
from tests.integration.rest_support import test_registry


class Dialogue(TelnetClient):
    """TelnetClient without the wait for a prompt at connect: the login comes first."""

    def __init__(self, port: int):  # noqa: the parent's __init__ waits for a prompt
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.timeout = 10.0
        self.text = ""

    def until(self, *marks: str) -> str:
        deadline = time.monotonic() + self.timeout
        while not any(m in self.text for m in marks):
            if time.monotonic() > deadline:
                raise AssertionError(f"waited for {marks}; got {self.text[-300:]!r}")
            data = self.sock.recv(65536)
            if not data:
                break
            self._feed(data)
        text, self.text = self.text, ""
        return text

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")


@pytest_twisted.async_yield_fixture
async def node(tmp_path):
    node = Node(str(tmp_path / "home"), name="demo", reactor=reactor, registry=test_registry(), on_exit=lambda: None)
    node.startService()
    yield node
    await node.stopService()


async def test_console_beyond_loopback_without_login_refuses_to_start(node):
    reply = await node.execute("run console where ip = 0.0.0.0 and port = 0")
    assert not reply.ok and "without authentication" in reply.text and "users = <file>" in reply.text
    assert node.process("Console") is None
    reply = await node.execute("run console where ip = 0.0.0.0 and port = 0 and auth = none")
    assert reply.ok and "WITHOUT a login" in reply.text
    assert "auth = none" in (await node.execute("get processes")).render()


async def test_loopback_console_is_admin_but_never_reaches_the_manhole(node):
    reply = await node.execute("run console where port = 0")
    assert reply.ok
    port = node.process("Console").address[1]

    def session():
        c = TelnetClient(port)
        try:
            return c.command("run manhole where port = 0 and user = a and password = bbbbbbbb")
        finally:
            c.close()

    text = await threads.deferToThread(session)
    assert "'owner'" in text and node.process("Manhole") is None


async def test_console_with_users_logs_in_and_runs_with_the_users_role(node, tmp_path):
    path = str(tmp_path / "users.txt")
    rest_users.add_user(path, "rita", "reader", "rita-password")
    reply = await node.execute(f"run console where port = 0 and users = {path}")
    assert reply.ok, reply.text
    port = node.process("Console").address[1]

    def wrong_three_times():
        c = Dialogue(port)
        try:
            for _ in range(3):
                c.until("Username:")
                c.send("rita")
                c.until("Password:")
                c.send("wrong")
            return c.until("too many tries")
        finally:
            c.close()

    assert "too many tries" in await threads.deferToThread(wrong_three_times)

    def as_reader():
        c = Dialogue(port)
        try:
            c.until("Username:")
            c.send("rita")
            c.until("Password:")
            c.send("rita-password")
            c.until("> ")
            c.send("get status")
            status = c.until("> ")
            c.send("run tcp server where external_ip = 127.0.0.1 and external_port = 0")
            refused = c.until("> ")
            return status, refused
        finally:
            c.close()

    status, refused = await threads.deferToThread(as_reader)
    assert "running" in status
    assert "'admin'" in refused and "rita" in refused
    assert node.process("TCP") is None
