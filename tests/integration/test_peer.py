"""Two nodes in one process over real sockets on 127.0.0.1: commands, replies, files, keys, TLS."""

from __future__ import annotations

import hashlib
import os

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults

from anylog_tw.errors import PeerError, Timeout
from anylog_tw.net.peers import Peers
from anylog_tw.node import Node
from tests.helpers import poll


async def start_node(tmp_path, name: str, *setup: str) -> Node:
    node = Node(str(tmp_path / name), name=name, reactor=reactor, environ={})
    node.startService()
    for line in setup:
        reply = await node.run(line)
        assert reply.ok, reply.text
    reply = await node.run("run tcp server where external_ip = 127.0.0.1 and external_port = 0 and bind = true")
    assert reply.ok, reply.text
    return node


def addr(node: Node) -> str:
    return "%s:%d" % node.process("TCP").external_address


@pytest_twisted.async_yield_fixture
async def pair(tmp_path):
    a = await start_node(tmp_path, "alpha")
    b = await start_node(tmp_path, "beta")
    yield a, b
    await a.stopService()
    await b.stopService()


async def test_run_client_gets_the_remote_status(pair):
    """`run client (ip:port) get status` returns the remote node's own status line."""
    a, b = pair
    reply = await a.run(f"run client ({addr(b)}) get status")
    assert reply.ok, reply.text
    assert reply.render() == f"beta@{addr(b)} running"


async def test_get_status_shows_tcp_identity(pair):
    a, _ = pair
    reply = await a.run("get status")
    assert reply.render() == f"alpha@{addr(a)} running"
