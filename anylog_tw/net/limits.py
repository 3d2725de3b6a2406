"""Connection limits for every listener: caps, a deadline for unfinished requests, a reserve of descriptors.

Each open connection holds a file descriptor, and the process has a fixed number of them
(RLIMIT_NOFILE).  A flood of connections that never finish a request would otherwise use them all:
then the node can neither accept its users nor open its databases and files.  So each listener
(REST, TCP, console; the MQTT broker can use the same) goes through a `Gate`:

- at most `max_connections` open connections, and `max_per_address` from one IP address (past it,
  that address's longest-waiting unfinished connection makes room, so a flood from a shared address
  does not lock out the next user there);
- a connection must finish its request or handshake within `idle_timeout` seconds of starting it
  (a slow body keeps its connection while at least `PROGRESS` bytes arrive per period);
- the node keeps `reserve` descriptors free: when a new connection would eat into them, or a
  listener is full, the connection that has waited longest without finishing a request is
  dropped to make room, then the one idle longest between requests; connections whose request is
  being answered are never dropped.  Only when there is nothing to drop is the new one refused.

A protocol tells its ticket how far it got (`find_ticket(self)` from anywhere under the guarded
protocol: TLS and telnet wrap the application protocol): `idle()` when a request or handshake is
finished and it waits for the next one, `working()` while a request is answered (REST),
`receiving(n)` when bytes of a new request arrive, and `touch()` on activity.  A protocol that
reports nothing is held to `idle_timeout` from its start.  Nothing here wraps the transport:
the gate builds the listener's own protocols and only watches them.

A new listener (the MQTT broker, say) takes its gate from the node and listens through it::

    gate = node.component(ConnectionGuard).gate("Broker", ConnectionLimits(256, 32, 10.0))
    port = await listen_guarded(node.reactor, ip, port_number, factory, gate)   # net/endpoints.py
    service.gate = gate                      # ListeningProcess forgets it when the process stops
    ...
    find_ticket(self).idle()                 # in the protocol, once CONNECT is accepted
"""

from __future__ import annotations

import socket
import struct
from collections import OrderedDict
from dataclasses import dataclass

from twisted.internet.protocol import Factory
from twisted.logger import Logger

from anylog_tw.net.descriptors import count_open_fds, fd_limits

NEW, READING, WORKING, IDLE, CLOSED = "new", "reading", "working", "idle", "closed"
PROGRESS = 64 * 1024  # bytes of an unfinished request that buy it another `idle_timeout`
DEFAULT_RESERVE = 64  # descriptors kept free for databases, files and outbound connections
SAMPLE_EVERY = 0.1  # seconds between exact counts of the open descriptors
WARN_EVERY = 10.0  # seconds between log lines about refused or dropped connections, per listener
_log = Logger()


@dataclass(frozen=True)
class ConnectionLimits:
    """One listener's limits (options of `run rest server`, `run tcp server`, `run console`)."""

    max_connections: int = 1024
    max_per_address: int = 256
    idle_timeout: float = 20.0  # seconds to finish a request or handshake; 0 for no deadline

    def problems(self) -> list[str]:
        out = []
        if self.max_connections < 1:
            out.append("'max connections' must be at least 1")
        if self.max_per_address < 1:
            out.append("'max per address' must be at least 1")
        if self.idle_timeout < 0:
            out.append("'idle timeout' cannot be negative (0: no deadline)")
        return out


class Ticket:
    """What a gate knows of one accepted connection; the protocol reports its progress here."""

    __slots__ = ("gate", "proto", "host", "state", "since", "due", "progress")

    def __init__(self, gate: "Gate", proto, host: str, now: float):
        self.gate = gate
        self.proto = proto
        self.host = host
        self.state = NEW
        self.since = now  # when the current state began (for NEW, the connection's start)
        self.due: float | None = None  # when an unfinished request or handshake times out
        self.progress = 0

    def idle(self) -> None:
        """A request or handshake is finished; the connection waits for the next request."""
        self.gate._move(self, IDLE)

    def working(self) -> None:
        """A request is received and being answered: no deadline, never dropped to make room."""
        self.gate._move(self, WORKING)

    def receiving(self, n: int) -> None:
        """`n` bytes of a request arrived: a new request starts, or an unfinished one makes progress."""
        state = self.state
        if state == IDLE:
            self.gate._move(self, READING)
        elif state in (NEW, READING):
            self.progress += n
            if self.progress >= PROGRESS:
                self.progress = 0
                self.gate._arm(self)

    def touch(self) -> None:
        """Activity on a settled connection: it is not the idlest any more."""
        if self.state == IDLE:
            self.gate._touch(self)


class _NoTicket:
    """The ticket of a protocol that no gate watches (tests, outbound connections)."""

    state = WORKING

    def idle(self) -> None:
        pass

    working = touch = idle

    def receiving(self, n: int) -> None:
        pass


NO_TICKET = _NoTicket()


def find_ticket(proto) -> Ticket | _NoTicket:
    """The ticket of the guarded protocol `proto` is, or runs under (through its transports)."""
    for _ in range(5):
        if proto is None:
            break
        ticket = getattr(proto, "connection_ticket", None)
        if ticket is not None:
            return ticket
        proto = getattr(proto, "transport", None)
    return NO_TICKET


class GuardedFactory(Factory):
    """The factory a port listens with: asks the gate, then builds with the listener's own factory."""

    def __init__(self, gate: "Gate", inner):
        self.gate = gate
        self.inner = inner

    def doStart(self):
        self.inner.doStart()

    def doStop(self):
        self.inner.doStop()

    def logPrefix(self):
        return self.inner.logPrefix() if hasattr(self.inner, "logPrefix") else self.gate.name

    def buildProtocol(self, addr):
        host = getattr(addr, "host", "?")
        if not self.gate.admit(host):
            return None  # the port closes the socket at once
        proto = self.inner.buildProtocol(addr)
        if proto is not None:
            self.gate.track(proto, host)
        return proto


class Gate:
    """One listener's connections and counters (see the module doc)."""

    log = _log

    def __init__(self, guard: "ConnectionGuard", name: str, limits: ConnectionLimits):
        self.guard = guard
        self.name = name
        self.limits = limits
        self.clock = guard.clock
        self.open = 0
        self.per_address: dict[str, int] = {}
        self._unsettled: OrderedDict[Ticket, None] = OrderedDict()  # NEW and READING, oldest first
        self._idle: OrderedDict[Ticket, None] = OrderedDict()  # IDLE, least recently active first
        self.accepted = self.refused_full = self.refused_address = self.refused_fds = 0
        self.timed_out = self.dropped = self.peak = 0
        self._warned = -WARN_EVERY
        self._sweep_call = None  # the one timer of the gate's deadlines (see _arm)

    def factory(self, inner) -> GuardedFactory:
        return GuardedFactory(self, inner)

    # -- admission -------------------------------------------------------------------------------

    def admit(self, host: str) -> bool:
        """Whether a connection from `host` may be served, after making room if need be."""
        limits = self.limits
        if self.per_address.get(host, 0) >= limits.max_per_address:
            victim = self._oldest_of(host)
            if victim is None:
                self.refused_address += 1
                self._warn("refused a connection from {host}: it has {n} open, all busy (max per address = {max})",
                           host=host, n=self.per_address[host], max=limits.max_per_address)
                return False
            self.drop(victim, f"{host} is at its {limits.max_per_address} connections (max per address)")
        if self.open >= limits.max_connections and not self.guard.make_room(self):
            self.refused_full += 1
            self._warn("refused a connection from {host}: {n} connections are open and all are busy "
                       "(max connections = {max})", host=host, n=self.open, max=limits.max_connections)
            return False
        if self.guard.short_of_fds() and not self.guard.make_room(None):
            self.refused_fds += 1
            self._warn("refused a connection from {host}: the node keeps {reserve} file descriptors free and "
                       "every connection is busy", host=host, reserve=self.guard.reserve)
            return False
        return True

    def track(self, proto, host: str) -> Ticket:
        ticket = Ticket(self, proto, host, self.clock.seconds())
        proto.connection_ticket = ticket
        self.open += 1
        self.peak = max(self.peak, self.open)
        self.accepted += 1
        self.per_address[host] = self.per_address.get(host, 0) + 1
        self.guard.opened()
        self._unsettled[ticket] = None
        self._arm(ticket)
        lost = proto.connectionLost

        def connection_lost(reason=None, _lost=lost, _ticket=ticket):
            self._lost(_ticket)
            return _lost(reason)

        proto.connectionLost = connection_lost
        return ticket

    # -- states ------------------------------------------------------------------------------------

    def _move(self, ticket: Ticket, state: str) -> None:
        if ticket.state in (state, CLOSED):
            return
        self._unsettled.pop(ticket, None)
        self._idle.pop(ticket, None)
        ticket.state = state
        ticket.since = self.clock.seconds()
        ticket.progress = 0
        if state == READING:
            self._unsettled[ticket] = None
            self._arm(ticket)
            return
        self._disarm(ticket)
        if state == IDLE:
            self._idle[ticket] = None

    def _touch(self, ticket: Ticket) -> None:
        ticket.since = self.clock.seconds()
        self._idle.move_to_end(ticket)

    # Deadlines: `_unsettled` is kept in the order of `due` (every deadline is now + the same timeout,
    # and a re-armed ticket moves to the end), so one timer per gate, set for the head, serves them
    # all: no timer is made or cancelled per request.

    def _arm(self, ticket: Ticket) -> None:
        if not self.limits.idle_timeout:
            return
        ticket.due = self.clock.seconds() + self.limits.idle_timeout
        self._unsettled.move_to_end(ticket)
        if self._sweep_call is None:
            self._sweep_call = self.clock.callLater(self.limits.idle_timeout, self._sweep)

    @staticmethod
    def _disarm(ticket: Ticket) -> None:
        ticket.due = None

    def _sweep(self) -> None:
        self._sweep_call = None
        now = self.clock.seconds()
        while self._unsettled:
            head = next(iter(self._unsettled))
            if head.due is None:
                return  # not armed (no timeout on this gate)
            if head.due > now:
                self._sweep_call = self.clock.callLater(head.due - now, self._sweep)
                return
            self._expire(head)

    def _expire(self, ticket: Ticket) -> None:
        self.timed_out += 1
        what = "its first request or handshake" if ticket.state == NEW else "a request"
        self._warn("closed a connection from {host} that did not finish {what} within {t:g} s",
                   host=ticket.host, what=what, t=self.limits.idle_timeout)
        self._close(ticket)  # and out of the queue

    def _lost(self, ticket: Ticket) -> None:
        self._forget(ticket)

    def _forget(self, ticket: Ticket) -> None:
        """The connection no longer counts (lost, or dropped: its descriptor is closed already)."""
        if ticket.proto is None:
            return
        self._disarm(ticket)
        self._unsettled.pop(ticket, None)
        self._idle.pop(ticket, None)
        ticket.state = CLOSED
        ticket.proto = None
        self.open -= 1
        left = self.per_address.get(ticket.host, 1) - 1
        if left > 0:
            self.per_address[ticket.host] = left
        else:
            self.per_address.pop(ticket.host, None)
        self.guard.closed()

    def _close(self, ticket: Ticket) -> None:
        """Drop a connection now (abort: a client that does not read would hold a graceful close).

        Twisted completes an abort on the reactor's next turn, but one turn may accept a hundred
        connections, each dropping another to make room: so the socket is reset and its descriptor
        freed here (the abort has already taken it out of the reactor).
        """
        transport = getattr(ticket.proto, "transport", None)
        self._forget(ticket)
        if transport is None:
            return
        transport.abortConnection()
        sock = getattr(transport, "socket", None)
        if isinstance(sock, socket.socket):
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            sock.close()

    # -- making room -----------------------------------------------------------------------------

    def oldest_droppable(self) -> Ticket | None:
        """The connection to drop first: the longest unfinished, else the longest idle."""
        for queue in (self._unsettled, self._idle):
            for ticket in queue:
                return ticket
        return None

    def _oldest_of(self, host: str) -> Ticket | None:
        """The connection of `host` to drop first (so a flood from one address makes room for that
        address's newest connection, often the user's, instead of locking the address out)."""
        for queue in (self._unsettled, self._idle):
            for ticket in queue:
                if ticket.host == host:
                    return ticket
        return None

    def drop(self, ticket: Ticket, why: str) -> None:
        self.dropped += 1
        self._warn("dropped the connection from {host} ({state} for {t:.1f} s) to make room: {why}",
                   host=ticket.host, state=ticket.state, t=self.clock.seconds() - ticket.since, why=why)
        self._close(ticket)

    def _warn(self, fmt: str, **fields) -> None:
        """Log refusals and drops, at most one line per `WARN_EVERY` seconds (a flood must not flood the log)."""
        now = self.clock.seconds()
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            self.log.warn(self.name + " " + fmt, **fields)

    def close(self) -> None:
        """The listener stopped: forget the gate (its connections are closed by the listener)."""
        if self._sweep_call is not None and self._sweep_call.active():
            self._sweep_call.cancel()
        self._sweep_call = None
        self.guard.remove(self)

    def summary(self) -> dict:
        limits = self.limits
        return {"Listener": self.name, "Open": self.open, "Peak": self.peak, "Max": limits.max_connections,
                "Max Per Address": limits.max_per_address, "Idle Timeout": limits.idle_timeout,
                "Accepted": self.accepted, "Refused": self.refused_full + self.refused_address + self.refused_fds,
                "Timed Out": self.timed_out, "Dropped": self.dropped}


class ConnectionGuard:
    """The node's gates and its descriptor reserve (a node component: `node.component(ConnectionGuard)`)."""

    log = _log

    def __init__(self, node, reserve: int = DEFAULT_RESERVE, count=count_open_fds, limits=fd_limits):
        self.clock = node.reactor
        self.reserve = reserve
        self.gates: dict[str, Gate] = {}
        self._count = count
        self._limits = limits
        self._sampled: int | None = None
        self._sampled_at = -SAMPLE_EVERY
        self._delta = 0  # guarded connections opened minus closed since the last count
        self.raised_from: int | None = None  # the soft limit before the node raised it

    def gate(self, name: str, limits: ConnectionLimits) -> Gate:
        gate = self.gates[name] = Gate(self, name, limits)
        return gate

    def remove(self, gate: Gate) -> None:
        if self.gates.get(gate.name) is gate:
            del self.gates[gate.name]

    def opened(self) -> None:
        self._delta += 1

    def closed(self) -> None:
        self._delta -= 1

    def open_fds(self) -> int | None:
        """Descriptors in use: counted at most every SAMPLE_EVERY s, and always when close to the limit."""
        now = self.clock.seconds()
        estimate = None if self._sampled is None else self._sampled + self._delta
        limits = self._limits()
        near = limits is not None and estimate is not None and limits[0] - estimate < 2 * self.reserve
        if estimate is None or near or now - self._sampled_at >= SAMPLE_EVERY:
            self._sampled = self._count()
            self._sampled_at = now
            self._delta = 0
            return self._sampled
        return estimate

    def short_of_fds(self) -> bool:
        """Would one more connection eat into the reserve? (The new socket is already open.)"""
        limits = self._limits()
        used = self.open_fds()
        if limits is None or used is None:
            return False
        return limits[0] - used < self.reserve

    def make_room(self, gate: Gate | None) -> bool:
        """Drop the connection that has waited longest (of `gate`, or of any listener); False if none can go."""
        best, best_gate = None, None
        for g in ([gate] if gate is not None else self.gates.values()):
            t = g.oldest_droppable()
            if t is None:
                continue
            rank = (t.state == IDLE, t.since)
            if best is None or rank < best:
                best, best_gate = rank, (g, t)
        if best_gate is None:
            return False
        g, t = best_gate
        why = f"{gate.name} is at its {gate.limits.max_connections} connections" if gate is not None else \
            f"the node keeps {self.reserve} file descriptors free"
        g.drop(t, why)
        return True

    def summary(self) -> dict:
        limits = self._limits()
        return {"open_fds": self.open_fds(), "soft_limit": limits[0] if limits else None,
                "hard_limit": limits[1] if limits else None, "raised_from": self.raised_from,
                "reserve": self.reserve}
