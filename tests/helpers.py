"""Small helpers the tests share."""

from __future__ import annotations

import re
import time

from twisted.internet import task
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.testing import MemoryReactorClock

from anylog_tw.base.origin import LOCAL, Origin
from anylog_tw.node import Node


def fired(d):
    """The result of a Deferred (or a coroutine, such as `node.execute(...)`) that has already fired
    (unit tests run without a reactor)."""
    d = ensureDeferred(d)
    results, failures = [], []
    d.addCallbacks(results.append, failures.append)
    if failures:
        failures[0].raiseException()
    assert results, "the Deferred has not fired"
    return results[0]


def unit_node(tmp_path, **kwargs) -> Node:
    """A node on a memory reactor with a clock: no sockets, no real time."""
    return Node(str(tmp_path / "home"), reactor=MemoryReactorClock(), **kwargs)


def run(node: Node, text: str):
    """Run a command on a unit node and return its Reply (handlers that wait are not for this)."""
    return fired(node.execute(text))


ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[78=>cDEMH]|\xff[\xfb-\xfe].|\xff[\xf0-\xfa]")


def strip_terminal(data: bytes) -> str:
    """Bytes a telnet console sent, without escape sequences and telnet negotiation."""
    return ANSI.sub(b"", data).replace(b"\r", b"").decode("utf-8", "replace")


async def poll(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Wait until predicate() is true, checking every `interval`; fail after `timeout` seconds."""
    from twisted.internet import reactor

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await task.deferLater(reactor, interval, lambda: None)


def as_origin(origin: "Origin | str") -> Origin:
    """An Origin for a test's shorthand: "peer ..." holds what a peer holds, "REST ..." what REST
    without credentials gives, "console ..." admin, anything else is the owner at the prompt."""
    if isinstance(origin, Origin):
        return origin
    if origin == "local":
        return LOCAL
    low = origin.lower()
    if low.startswith("peer"):
        return Origin(origin, "write", "peer", origin[5:])
    if low.startswith("rest"):
        return Origin(origin, "write", "rest")
    if low.startswith("console"):
        return Origin(origin, "admin", "console")
    return Origin(origin, "owner", "local")


async def ok(node: Node, text: str, origin: "Origin | str" = "local"):
    """Run a command on a node and fail the test unless it succeeds; returns the Reply."""
    reply = await node.execute(text, as_origin(origin))
    assert reply.ok, f"{text}: {reply.render()}"
    return reply


async def refused(node: Node, text: str, origin: "Origin | str" = "local") -> str:
    """Run a command that must fail with a message for the user (no traceback); returns the message."""
    reply = await node.execute(text, as_origin(origin))
    assert not reply.ok, f"{text} should fail: {reply.render()}"
    assert "Traceback" not in reply.text and "internal error" not in reply.text, reply.text
    return reply.text
