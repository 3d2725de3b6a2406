"""The eager writer over real TCP sockets: bytes go out at once, in order, and errors stay Twisted's."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport

from anylog_tw.net.eager import EAGER_MAX, eager_writer
from tests.helpers import poll


class Sink(Protocol):
    """Collects what arrives; can hold reading to let the sender's socket buffer fill."""

    def __init__(self):
        self.data = bytearray()
        self.lost = Deferred()

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason=None):
        self.lost.callback(None)


class Sender(Protocol):
    def __init__(self):
        self.lost = Deferred()
        self.reason = None

    def connectionLost(self, reason=None):
        self.reason = reason
        self.lost.callback(None)


@pytest_twisted.async_yield_fixture
async def link():
    sinks: list[Sink] = []

    def make():
        sinks.append(Sink())
        return sinks[-1]

    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Factory.forProtocol(make))
    sender = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), Sender())
    await poll(lambda: sinks, what="the accepted connection")
    yield sender, sinks[0]
    if not sender.lost.called:
        sender.transport.abortConnection()
    await sender.lost
    if not sinks[0].lost.called:
        sinks[0].transport.abortConnection()
    await sinks[0].lost
    await port.stopListening()


async def test_a_small_write_leaves_at_once(link):
    """Nothing waits in Twisted's buffer and the socket is not registered for writing."""
    sender, sink = link
    write = eager_writer(sender.transport)
    assert write != sender.transport.write
    write(b"hello\n")
    assert not sender.transport._tempDataBuffer and not sender.transport.dataBuffer
    assert sender.transport not in reactor.getWriters()
    await poll(lambda: bytes(sink.data) == b"hello\n", what="the bytes at the receiver")


async def test_order_is_kept_when_twisted_holds_bytes(link):
    """Writes behind a buffered big write, and a flood that fills the socket, arrive in order."""
    sender, sink = link
    sink.transport.pauseProducing()  # the receiver stops reading: the sender's socket fills up
    write = eager_writer(sender.transport)
    expected = bytearray()
    partial = 0
    for i in range(20_000):
        if i % 5000 == 2500:
            piece = b"<%d>" % i * EAGER_MAX  # bigger than eager writes take: Twisted buffers it
        elif i % 10 == 0:
            piece = b"[%d]" % i * (EAGER_MAX // 8)  # big enough that the kernel may take part of it
        else:
            piece = b"%d," % i
        held = sender.transport._tempDataBuffer or sender.transport.dataBuffer
        write(piece)
        if not held and len(piece) <= EAGER_MAX and sender.transport._tempDataBuffer:
            partial += sender.transport._tempDataBuffer[-1] != piece  # only the rest was left to Twisted
        expected += piece
    assert sender.transport._tempDataBuffer or sender.transport.dataBuffer, "the socket never filled up"
    assert partial, "no write was partly sent: the test does not cover that path"
    sink.transport.resumeProducing()
    await poll(lambda: len(sink.data) >= len(expected), timeout=30, what="all the bytes")
    assert bytes(sink.data) == bytes(expected)


async def test_a_broken_connection_is_reported_by_twisted(link):
    """A write to a peer that is gone raises nothing; the sender sees connectionLost as usual."""
    sender, sink = link
    sender.transport.pauseProducing()  # not reading: only the write path can find the break
    write = eager_writer(sender.transport)
    sink.transport.abortConnection()
    await sink.lost
    for _ in range(1000):  # until the reset arrives, sends may still succeed
        if sender.lost.called:
            break
        write(b"x" * 1000)
        await poll(lambda: True)
    await sender.lost
    assert "non-clean" in sender.reason.getErrorMessage()


def test_other_transports_keep_their_own_write():
    transport = StringTransport()
    assert eager_writer(transport) == transport.write
