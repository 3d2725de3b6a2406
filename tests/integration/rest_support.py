"""Helpers for the REST tests: a node with a REST server on port 0, and a keep-alive treq client."""

from __future__ import annotations

import hashlib
import os

import treq
from twisted.internet import reactor, task
from twisted.web.client import Agent, HTTPConnectionPool

from anylog_tw.base.registry import Registry
from anylog_tw.commands import load_commands
from anylog_tw.node import Node


def test_registry() -> Registry:
    """The real commands plus `test sleep <seconds>`, a command that takes its time."""
    registry = Registry()
    for cmd in load_commands():
        registry.add(cmd)

    @registry.command("test sleep", grant="read", usage="test sleep <seconds>", text="Wait, then answer (tests only).",
                      examples=("test sleep 1",), keywords=("test",), nargs=(1, 1), readonly=True)
    async def test_sleep(call):
        await task.deferLater(reactor, float(call.args[0]), lambda: None)
        return "slept"

    return registry


async def start_node(tmp_path, options: str = "", name: str = "demo") -> Node:
    """A node named `name` running `run rest server` on a free port, with `options` added."""
    node = Node(str(tmp_path / "home"), name=name, reactor=reactor, registry=test_registry(),
                on_exit=lambda: None)
    node.startService()
    extra = f" and {options}" if options else ""
    reply = await node.execute(f"run rest server where internal_ip = 127.0.0.1 and internal_port = 0{extra}")
    assert reply.ok, reply.render()
    return node


def url(node, path: str = "/") -> str:
    host, port = node.process("REST").address
    return f"http://{host}:{port}{path}"


class Client:
    """treq over a persistent pool (keep-alive), closed at the end of the test."""

    def __init__(self, node):
        self.node = node
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.http = treq.client.HTTPClient(Agent(reactor, pool=self.pool))

    async def call(self, method: str = "GET", path: str = "/", headers: dict | None = None, body: bytes | None = None):
        """(status, headers, body bytes)."""
        response = await self.http.request(method, url(self.node, path), headers=headers or {}, data=body)
        content = await response.content()
        return response.code, response.headers, content

    async def command(self, text: str, method: str = "GET", **headers):
        hdrs = {"User-Agent": "AnyLog/1.23", "command": text}
        hdrs.update({k.replace("_", "-"): v for k, v in headers.items()})
        return await self.call(method, "/", hdrs)

    async def close(self):
        await self.pool.closeCachedConnections()


def md5_name(dbms: str, table: str, data: bytes) -> str:
    return hashlib.md5(f"{dbms}.{table}".encode() + data).hexdigest()


def watch_files(node, key: str = "watch_dir") -> list[str]:
    path = node.dictionary[key]
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def read_watch(node, name: str, key: str = "watch_dir") -> bytes:
    with open(os.path.join(node.dictionary[key], name), "rb") as f:
        return f.read()
