"""Listening endpoints with the node's defaults: a backlog that survives connection bursts."""

from __future__ import annotations

from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint

BACKLOG = 1024  # Twisted's default of 50 drops connections under bursts (see README, figures)


def tcp_server_endpoint(reactor, ip: str, port: int, backlog: int = BACKLOG):
    """A TCP server endpoint on `ip` (IPv4 or IPv6; empty or 0.0.0.0 for every interface)."""
    if ":" in ip:
        return TCP6ServerEndpoint(reactor, port, backlog=backlog, interface=ip)
    return TCP4ServerEndpoint(reactor, port, backlog=backlog, interface=ip or "")
