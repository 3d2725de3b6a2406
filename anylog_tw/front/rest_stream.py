"""A REST answer produced while it is sent: a reply with a `stream` (async iterator of bytes).

The body goes out with chunked encoding as the pieces come.  The stream is paused while the
client's connection has more than its buffer (Twisted calls the push producer's
`pauseProducing`), so a slow client slows the source instead of filling the node's memory; a
client that goes away closes the stream, which lets the source release what it holds.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()


@implementer(IPushProducer)
class _Gate:
    def __init__(self):
        self.paused: Deferred | None = None
        self.gone = False

    def pauseProducing(self):
        if self.paused is None:
            self.paused = Deferred()

    def resumeProducing(self):
        if self.paused is not None:
            d, self.paused = self.paused, None
            d.callback(None)

    def stopProducing(self):
        self.gone = True
        self.resumeProducing()


async def send_stream(request, stream, content_type: bytes) -> None:
    """Write the stream's pieces to the request as they come; the request is left to finish."""
    request.setResponseCode(200)
    request.responseHeaders.setRawHeaders(b"content-type", [content_type])
    gate = _Gate()
    request.registerProducer(gate, True)
    lost = request.notifyFinish()
    lost.addBoth(lambda _: setattr(gate, "gone", True))
    try:
        async for piece in stream:
            if gate.gone:
                break
            request.write(piece)
            if gate.paused is not None:
                await gate.paused
    except Exception as e:  # the status line is out: say it in the body, where the reader looks
        log.failure("a streamed answer failed") if not hasattr(e, "message") else None
        if not gate.gone:
            request.write(b'\n{"error": %s}' % _quote(getattr(e, "message", None) or str(e)))
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
        request.unregisterProducer()


def _quote(text: str) -> bytes:
    import json

    return json.dumps(text).encode("utf-8")
