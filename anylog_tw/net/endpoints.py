"""Listening endpoints with the node's defaults: a backlog that survives connection bursts."""

from __future__ import annotations

from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint

BACKLOG = 1024  # Twisted's default of 50 drops connections under bursts (see README, figures)


def tcp_server_endpoint(reactor, ip: str, port: int, backlog: int = BACKLOG):
    """A TCP server endpoint on `ip` (IPv4 or IPv6; empty or 0.0.0.0 for every interface)."""
    if ":" in ip:
        return TCP6ServerEndpoint(reactor, port, backlog=backlog, interface=ip)
    return TCP4ServerEndpoint(reactor, port, backlog=backlog, interface=ip or "")


async def listen_guarded(reactor, ip: str, port: int, factory, gate, tls_options=None):
    """Listen on ip:port with `factory` behind the connection gate `gate` (net/limits.py).

    The gate is outermost, under TLS too (TLS wraps the listener's factory, the gate wraps TLS),
    so a connection refused or dropped never costs a handshake.  The gate is forgotten if the port
    cannot be bound.
    """
    if tls_options is not None:
        from twisted.protocols.tls import TLSMemoryBIOFactory

        factory = TLSMemoryBIOFactory(tls_options, False, factory)
    try:
        return await tcp_server_endpoint(reactor, ip, port).listen(gate.factory(factory))
    except BaseException:
        gate.close()
        raise
