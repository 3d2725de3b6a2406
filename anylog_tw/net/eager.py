"""Send small frames at once instead of on the reactor's next turn.

Twisted's TCP `transport.write` only buffers: the bytes go out when the reactor next finds the
socket writable, which costs two `epoll_ctl` calls, one more `epoll_wait` and a `doWrite` for
every message (a third of a sequential round trip on loopback, measured in bench/peer.py).
When nothing is buffered the socket is almost always writable, so a small frame can be handed
to `send()` right away, as asyncio's transports do; whatever the kernel does not take, and
every write while Twisted still holds bytes, goes through `transport.write` as before, so the
order of bytes on the wire never changes.  Errors are left to Twisted: the bytes are buffered
and its own write path meets the error and closes the connection the usual way.

This reads attributes of `twisted.internet.tcp.Connection` that are not public API; when a
transport lacks them (TLS, a test transport, another Twisted) the plain `transport.write` is used.
"""

from __future__ import annotations

from typing import Callable

from twisted.internet import tcp

EAGER_MAX = 64 * 1024  # bigger writes are buffered as usual (no copying of a partly sent big body)
_NEEDED = ("socket", "dataBuffer", "_tempDataBuffer", "_writeDisconnected", "connected", "disconnecting")


def eager_writer(transport) -> Callable[[bytes], None]:
    """A `write(bytes)` for `transport` that sends small frames at once where it safely can."""
    write = transport.write
    if not isinstance(transport, tcp.Connection) or not all(hasattr(transport, a) for a in _NEEDED):
        return write
    send = transport.socket.send

    def eager(data: bytes) -> None:
        t = transport
        if (len(data) > EAGER_MAX or t.dataBuffer or t._tempDataBuffer or not t.connected
                or t.disconnecting or t._writeDisconnected):
            write(data)
            return
        try:
            sent = send(data)
        except OSError:  # would block, interrupted, or broken: Twisted's path retries or reports it
            sent = 0
        if sent < len(data):
            write(data[sent:] if sent else data)

    return eager
