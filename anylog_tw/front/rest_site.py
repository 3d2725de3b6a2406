"""The HTTP side of the REST server: a body-size limit, connection tracking, and the REST process.

The limit is enforced as the body arrives: a Content-Length over it, or a chunked body growing
past it, gets a 413 at once and the connection is closed, so a client cannot fill the node's
memory.  Bodies under the limit are kept in memory (twisted.web would spool bodies over 100 KB to
a temporary file, then we would read it back).  The site tracks its connections so `exit rest`
closes keep-alive sessions instead of leaving them to time out, and tells the listener's connection
gate (net/limits.py) where each connection is: reading a request, answering it, or idle between
requests.
"""

from __future__ import annotations

import io

import orjson
from twisted.web import http, server

from anylog_tw.base.process import ListeningProcess
from anylog_tw.front.rest_request import DEFAULT_MAX_BODY
from anylog_tw.net.limits import NO_TICKET, find_ticket


def _too_large(limit: int) -> bytes:
    body = orjson.dumps({"error": {"code": "too_large", "message": f"the body is over the limit of {limit:,} bytes "
                                   f"(send smaller requests, or raise 'max body' on run rest server)"}})
    return (b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


class LimitedRequest(server.Request):
    """A request whose body may not exceed the site's `max_body`."""

    _refused = False
    _received = 0

    def gotLength(self, length):
        limit = self.channel.site.max_body
        if length is not None and length > limit:
            self._refuse(limit)
            return
        self.content = io.BytesIO()

    def handleContentChunk(self, data):
        if self._refused:
            return
        self._received += len(data)
        limit = self.channel.site.max_body
        if self._received > limit:
            self._refuse(limit)
            return
        self.content.write(data)

    def _refuse(self, limit: int) -> None:
        self._refused = True
        self.content = io.BytesIO()
        self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after our final answer
        self.channel.site.on_refused(self)
        self.channel.transport.write(_too_large(limit))
        self.channel.loseConnection()

    def process(self):
        if not self._refused:
            server.Request.process(self)


class GatedChannel(http.HTTPChannel):
    """An HTTP connection that reports to its gate: bytes of a request, a request answered, idle again.

    (Plain HTTP/1.1: Twisted's default wraps each channel for an HTTP/2 upgrade, which needs the
    h2 package this node does not install.)
    """

    ticket = NO_TICKET

    def connectionMade(self):
        self.ticket = find_ticket(self)
        http.HTTPChannel.connectionMade(self)

    def dataReceived(self, data):
        self.ticket.receiving(len(data))
        http.HTTPChannel.dataReceived(self, data)

    def allContentReceived(self):
        self.ticket.working()
        http.HTTPChannel.allContentReceived(self)

    def requestDone(self, request):
        self.ticket.idle()  # before: a pipelined request buffered meanwhile is fed from in here
        http.HTTPChannel.requestDone(self, request)


class RestSite(server.Site):
    """A Site with a body limit that knows its open connections."""

    requestFactory = LimitedRequest
    protocol = GatedChannel
    displayTracebacks = False

    def __init__(self, resource, max_body: int = DEFAULT_MAX_BODY, on_refused=None, **kwargs):
        server.Site.__init__(self, resource, **kwargs)
        self.max_body = max_body
        self.channels: set = set()
        self._on_refused = on_refused

    def on_refused(self, request) -> None:
        if self._on_refused is not None:
            self._on_refused(request)

    def buildProtocol(self, addr):
        channel = server.Site.buildProtocol(self, addr)
        self.channels.add(channel)
        lost = channel.connectionLost

        def connection_lost(reason, _lost=lost, _channel=channel):
            self.channels.discard(_channel)
            return _lost(reason)

        channel.connectionLost = connection_lost
        return channel

    def log(self, request):
        """No access log line per request (metrics and `get rest calls` count them)."""


class RestService(ListeningProcess):
    """The "REST" process: the listening port of a `RestApi`."""

    name = "REST"
    exit_command = "exit rest"

    def __init__(self, port, site: RestSite, api, listen_text: str):
        ListeningProcess.__init__(self, port, site)
        self.api = api
        self.listen_text = listen_text

    def details(self) -> str:
        c = self.api.config
        host, port = self.address
        return (f"Listening on: {host}:{port}, Threads Pool: {c.threads}, Timeout: {c.timeout:g}, "
                f"SSL: {c.ssl}, Auth: {self.api.auth_text()}")

    def close_connections(self) -> None:
        for channel in list(self.factory.channels):
            inner = getattr(channel, "_channel", channel)  # Site wraps each HTTPChannel for HTTP/2 upgrades
            if inner.transport is not None:
                inner.transport.loseConnection()
