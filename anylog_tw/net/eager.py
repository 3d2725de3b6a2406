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
_NEEDED = ("socket", "dataBuffer", "offset", "_tempDataBuffer", "_tempDataLen", "_writeDisconnected", "connected",
           "disconnecting")


def _tcp(transport):
    """The TCP connection under `transport` (TLS wraps it), when it has what this module reads."""
    for _ in range(3):
        if isinstance(transport, tcp.Connection):
            return transport if all(hasattr(transport, a) for a in _NEEDED) else None
        transport = getattr(transport, "transport", None)
    return None


def eager_writer(transport) -> Callable[[bytes], bool | None]:
    """A `write(bytes)` for `transport` that sends small frames at once where it safely can.

    It returns False when the bytes have all left, True when some wait in Twisted's buffer;
    the plain `transport.write` it falls back to returns None (not known).
    """
    write = transport.write
    if not isinstance(transport, tcp.Connection) or _tcp(transport) is None:
        return write
    send = transport.socket.send

    def eager(data: bytes) -> bool:
        t = transport
        if (len(data) > EAGER_MAX or t.dataBuffer or t._tempDataBuffer or not t.connected
                or t.disconnecting or t._writeDisconnected or getattr(t, "_aborting", False)):
            write(data)
            return True
        try:
            sent = send(data)
        except OSError:  # would block, interrupted, or broken: Twisted's path retries or reports it
            sent = 0
        if sent < len(data):
            write(data[sent:] if sent else data)
            return True
        return False

    return eager


def buffered_bytes(transport) -> int:
    """Bytes written to `transport` that Twisted has not handed to the kernel yet (0 when unknown)."""
    t = _tcp(transport)
    if t is None:
        return 0
    return len(t.dataBuffer) - t.offset + t._tempDataLen
