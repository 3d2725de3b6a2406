"""The "TCP" process (`run tcp server`): where to listen, and the service that owns the port.

`listen_plan` applies AnyLog's listening rules to the options as a pure function, so the rules
are tested without sockets; the service only holds the bound port and the addresses.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from anylog_tw.base.errors import OptionError
from anylog_tw.base.process import ListeningProcess


@dataclass(frozen=True)
class ListenPlan:
    bind_ip: str  # "" = every interface
    port: int
    external_ip: str
    external_port: int | None  # None: the port actually bound
    internal_ip: str
    internal_port: int | None


def listen_plan(external_ip: str | None, external_port: int | None, internal_ip: str | None,
                internal_port: int | None, bind: bool, default_ip: str = "127.0.0.1") -> ListenPlan:
    """AnyLog's rules: with `bind`, listen on the internal IP when both are given, else on the one
    given; without `bind`, on every interface.  The port bound is the internal port when given,
    else the external one; at least one port is required.  The external address is the node's
    identity for peers (it may differ from the bound one behind NAT).
    """
    for what, port in (("external_port", external_port), ("internal_port", internal_port)):
        if port is not None and not 0 <= port <= 65535:
            raise OptionError(f"{what} {port} is out of range (0-65535)")
    if external_port is None and internal_port is None:
        raise OptionError("run tcp server needs a port: external_port (or internal_port), "
                          "e.g. 'run tcp server where external_ip = !ip and external_port = 32048'")
    port = internal_port if internal_port is not None else external_port
    if bind:
        bind_ip = internal_ip or external_ip or ""
    else:
        bind_ip = ""
    ext_ip = external_ip or internal_ip or default_ip
    int_ip = internal_ip or external_ip or default_ip
    ext_port = external_port if external_port else None
    int_port = internal_port if internal_port else None
    return ListenPlan(bind_ip, port, ext_ip, ext_port, int_ip, int_port)


class TCPServer(ListeningProcess):
    """The peer messaging server; `external_address` is the node's identity (`get status`)."""

    name = "TCP"
    exit_command = "exit tcp"

    def __init__(self, port, factory, peers, plan: ListenPlan, threads: int, tls: bool, open_on_purpose: bool = False):
        ListeningProcess.__init__(self, port, factory)
        self.peers = peers
        bound = port.getHost().port
        self.external_address = (plan.external_ip, plan.external_port or bound)
        self.internal_address = (plan.internal_ip, plan.internal_port or bound)
        self.bind_address = (plan.bind_ip or "0.0.0.0", bound)
        self.threads = threads
        self.tls = tls
        self.open_on_purpose = open_on_purpose  # started with `auth = none` beyond loopback

    def needs_authentication(self) -> bool:
        """Whether peers must authenticate here: it listens beyond loopback, without TLS, and was not
        opened on purpose (`auth = none`)."""
        return not self.tls and not self.open_on_purpose and not is_loopback(self.bind_address[0])

    def authentication(self) -> str:
        """How peers prove they belong, as `get processes` and `test node` say it."""
        if self.tls:
            return "mutual TLS" + (" and network key" if self.peers.network_key else "")
        if self.peers.network_key:
            return "network key"
        if self.open_on_purpose:
            return "none (auth = none: anyone who reaches the port is a peer)"
        return "none (loopback only)"

    def details(self) -> str:
        ext = "%s:%d" % self.external_address
        internal = "%s:%d" % self.internal_address
        ssl = ", SSL: True" if self.tls else ""
        where = ext if ext == internal else f"{ext} and {internal}"  # one address when both are the same, as AnyLog
        return (f"Listening on: {where}, Threads Pool: {self.threads}{ssl}, Auth: {self.authentication()}, "
                f"Peer grant: {self.peers.peer_grant}")

    def close_connections(self) -> None:
        self.peers.close_inbound()


def is_loopback(host: str) -> bool:
    """Whether a bind address reaches only this host ("" and 0.0.0.0 are every interface)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # 0.0.0.0 is every interface; a host name may be anything
