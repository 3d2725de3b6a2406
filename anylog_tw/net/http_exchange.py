"""One outbound HTTP exchange for `rest get|post|put|delete`: treq over a non-persistent Agent, on the
reactor it is given, with one deadline for the whole exchange and a bound on how much of a reply
is kept.  Loaded only when a node calls out (twisted.web.client is not small).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.protocol import Protocol
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from anylog_tw.base.deadline import with_deadline
from anylog_tw.base.errors import PeerError
from anylog_tw.net.http_client import ReplyTooLarge, Request, failure_message


@dataclass(frozen=True)
class Response:
    code: int
    phrase: str
    content_type: str | None
    body: bytes


def _network_errors() -> tuple[type[BaseException], ...]:
    """What a failed exchange raises (imported late: a node that never calls out need not load them)."""
    from twisted.internet import defer, error
    from twisted.web import client
    from twisted.web.error import InfiniteRedirection, RedirectWithNoLocation

    return (ReplyTooLarge, defer.CancelledError, defer.TimeoutError, error.TimeoutError, error.ConnectError,
            OSError, client.ResponseNeverReceived, client.RequestTransmissionFailed, client.ResponseFailed,
            client.SchemeNotSupported, InfiniteRedirection, RedirectWithNoLocation)


async def exchange(reactor, request: Request, verb: str) -> Response:
    """Send the request and read the reply, all within `request.timeout` seconds.

    A fresh non-persistent connection per call: `rest` commands are occasional, and a kept-alive
    socket would outlive the command for nothing.  A network failure is a PeerError worded by
    `failure_message`; anything else is a bug and propagates as it is.
    """
    def expired():
        raise PeerError(failure_message(verb, request.url, TimeoutError(), request.timeout))

    # Cancelling makes the Agent fail with errors of its own (ResponseNeverReceived ...); the
    # deadline replaces them with the timeout's wording.
    d = with_deadline(Deferred.fromCoroutine(_exchange(reactor, request)), request.timeout, reactor, expired,
                      cancel=True)
    try:
        return await d
    except _network_errors() as e:
        raise PeerError(failure_message(verb, request.url, e, request.timeout)) from None


async def _exchange(reactor, request: Request) -> Response:
    from treq.client import HTTPClient
    from twisted.web.client import Agent, HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=False)
    http = HTTPClient(Agent(reactor, pool=pool), data_to_body_producer=_BytesProducer)
    headers = {}
    for name, value in request.headers:
        headers.setdefault(name, []).append(value)
    response = await http.request(request.method, request.url, headers=headers, data=request.body,
                                  unbuffered=True, reactor=reactor)
    body = await read_body(response, request.max_body)
    content_type = (response.headers.getRawHeaders("content-type") or [None])[-1]
    phrase = response.phrase.decode("latin-1", "replace") if isinstance(response.phrase, bytes) \
        else str(response.phrase or "")
    return Response(response.code, phrase, content_type, body)


def read_body(response, limit: int):
    """A Deferred of the whole body, refused (ReplyTooLarge, connection dropped) once over `limit`.

    Cancelling it drops the connection, so a timeout never leaves a reply streaming in.
    """
    from twisted.internet.defer import Deferred

    reader = _LimitedBody(limit, response.length if isinstance(response.length, int) else None)
    reader.finished = finished = Deferred(lambda _: reader.abort())
    response.deliverBody(reader)  # may read it all at once, and fire `finished`
    return finished


class _LimitedBody(Protocol):
    def __init__(self, limit: int, declared: int | None):
        self.limit = limit
        self.declared = declared
        self.size = 0
        self.parts: list[bytes] = []
        self.finished = None

    def connectionMade(self) -> None:
        if self.declared is not None and self.declared > self.limit:
            self._fail(ReplyTooLarge(self.limit))  # refused on its Content-Length, before any byte

    def dataReceived(self, data: bytes) -> None:
        if self.finished is None:
            return
        self.size += len(data)
        if self.size > self.limit:
            self._fail(ReplyTooLarge(self.limit))
            return
        self.parts.append(data)

    def _fail(self, exc: Exception) -> None:
        d, self.finished = self.finished, None
        self.parts = []
        self.transport.loseConnection()
        if d is not None:
            d.errback(exc)

    def abort(self) -> None:
        self.finished = None
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason) -> None:
        from twisted.web.client import ResponseDone
        from twisted.web.http import PotentialDataLoss

        d, self.finished = self.finished, None
        if d is None:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            d.callback(b"".join(self.parts))
        else:
            d.errback(reason)


@implementer(IBodyProducer)
class _BytesProducer:
    """The request body, written in one go: it is in memory already, and a FileBodyProducer would
    need the global reactor's cooperator."""

    def __init__(self, data: bytes):
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer):
        from twisted.internet.defer import succeed

        consumer.write(self.data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass
