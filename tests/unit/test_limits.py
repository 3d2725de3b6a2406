"""Connection gates without sockets: caps, the unfinished-request deadline, and making room (Clock)."""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from anylog_tw.net.limits import (
    IDLE,
    NEW,
    PROGRESS,
    WORKING,
    ConnectionGuard,
    ConnectionLimits,
    find_ticket,
)


class _Node:
    def __init__(self):
        self.reactor = Clock()


class Fds:
    """A fake descriptor table: `used` open of `soft`."""

    def __init__(self, used=10, soft=1000):
        self.used, self.soft = used, soft

    def count(self):
        return self.used

    def limits(self):
        return self.soft, self.soft


class Lost(Exception):
    pass


def _guard(fds=None, reserve=8):
    fds = fds or Fds()
    return ConnectionGuard(_Node(), reserve=reserve, count=fds.count, limits=fds.limits), fds


def _connect(factory, host="10.0.0.1", port=1000):
    proto = factory.buildProtocol(IPv4Address("TCP", host, port))
    if proto is None:
        return None
    proto.makeConnection(StringTransport())
    return proto


def _closed(proto) -> bool:
    return proto.transport.disconnecting


def _lose(proto):
    proto.connectionLost(None)


def _gate(guard, **kw):
    gate = guard.gate("REST", ConnectionLimits(**kw))
    return gate, gate.factory(Factory.forProtocol(Protocol))


def test_a_connection_that_never_finishes_its_request_is_closed_at_the_deadline():
    guard, _ = _guard()
    gate, factory = _gate(guard, idle_timeout=10)
    slow, quick = _connect(factory), _connect(factory)
    find_ticket(quick).idle()  # its request arrived: no deadline any more
    guard.clock.advance(9.9)
    assert not _closed(slow)
    guard.clock.advance(0.2)
    assert _closed(slow) and not _closed(quick) and gate.timed_out == 1
    _lose(slow)
    assert gate.open == 1 and not guard.clock.getDelayedCalls()
    _lose(quick)


def test_a_slow_body_keeps_its_connection_while_it_keeps_coming():
    guard, _ = _guard()
    gate, factory = _gate(guard, idle_timeout=10)
    upload = _connect(factory)
    ticket = find_ticket(upload)
    for _ in range(5):  # 64 KiB every 8 s: slow, but a real upload
        guard.clock.advance(8)
        ticket.receiving(PROGRESS)
    assert not _closed(upload)
    guard.clock.advance(5)
    ticket.receiving(10)  # a trickle does not buy time
    guard.clock.advance(5.1)
    assert _closed(upload)
    _lose(upload)


def test_a_keep_alive_connection_gets_a_new_deadline_for_each_request():
    guard, _ = _guard()
    gate, factory = _gate(guard, idle_timeout=10)
    proto = _connect(factory)
    ticket = find_ticket(proto)
    ticket.working()
    guard.clock.advance(100)  # a long command: never timed out while answered
    ticket.idle()
    guard.clock.advance(100)  # idle between requests: the deadline is Twisted's own idle timeout
    assert not _closed(proto)
    ticket.receiving(5)  # the next request starts ...
    guard.clock.advance(10.1)  # ... and never finishes
    assert _closed(proto)
    _lose(proto)


def test_per_address_cap_makes_room_within_that_address_and_refuses_when_all_are_busy():
    guard, _ = _guard()
    gate, factory = _gate(guard, max_per_address=2)
    b = _connect(factory, "10.0.0.2", 1)
    a1, a2 = _connect(factory, "10.0.0.1", 1), _connect(factory, "10.0.0.1", 2)
    a3 = _connect(factory, "10.0.0.1", 3)  # the address's oldest unfinished one goes, not b's
    assert a3 is not None and _closed(a1) and not _closed(a2) and not _closed(b)
    _lose(a1)
    find_ticket(a2).working()
    find_ticket(a3).working()
    assert _connect(factory, "10.0.0.1", 4) is None and gate.refused_address == 1
    assert _connect(factory, "10.0.0.2", 2) is not None


def test_a_full_listener_drops_its_longest_waiting_unfinished_connection_first():
    guard, _ = _guard()
    gate, factory = _gate(guard, max_connections=3, idle_timeout=0)
    busy = _connect(factory, port=1)
    find_ticket(busy).working()
    guard.clock.advance(1)
    idle = _connect(factory, port=2)
    find_ticket(idle).idle()
    guard.clock.advance(1)
    waiting = _connect(factory, port=3)
    newcomer = _connect(factory, port=4)
    assert newcomer is not None and _closed(waiting) and not _closed(idle) and not _closed(busy)
    _lose(waiting)
    find_ticket(newcomer).working()
    guard.clock.advance(1)
    last = _connect(factory, port=5)  # no unfinished one left: the idle one goes
    assert last is not None and _closed(idle) and gate.dropped == 2
    _lose(idle)
    find_ticket(last).working()
    assert _connect(factory, port=6) is None and gate.refused_full == 1  # everyone is busy: refuse


def test_the_descriptor_reserve_drops_across_listeners_and_keeps_users_in():
    """Idle half-requests on REST and TCP use the descriptors up: each new user connection drops the
    oldest unfinished one (of any listener) instead of being locked out."""
    fds = Fds(used=0, soft=100)
    guard, _ = _guard(fds, reserve=20)
    rest, rest_factory = _gate(guard, idle_timeout=0)
    tcp = guard.gate("TCP", ConnectionLimits(idle_timeout=0))
    tcp_factory = tcp.factory(Factory.forProtocol(Protocol))
    flood = []
    for i in range(80):
        fds.used += 1  # the accepted socket
        flood.append(_connect(rest_factory if i % 2 else tcp_factory, "10.6.6.6", i))
        guard.clock.advance(0.01)
    assert all(p is not None for p in flood)
    fds.used += 1
    user = _connect(rest_factory, "10.0.0.5", 1)
    assert user is not None and _closed(flood[0]) and not _closed(flood[1])
    assert tcp.dropped == 1 and rest.dropped == 0


def test_nothing_to_drop_and_no_descriptors_left_refuses():
    fds = Fds(used=95, soft=100)
    guard, _ = _guard(fds, reserve=10)
    gate, factory = _gate(guard)
    assert _connect(factory) is None and gate.refused_fds == 1


def test_a_stopped_listener_leaves_the_guard():
    guard, _ = _guard()
    gate, _ = _gate(guard)
    gate.close()
    assert guard.gates == {}


def test_find_ticket_walks_through_wrapping_transports():
    """TLS and telnet put protocols between the guarded one and the application: the ticket is found."""
    guard, _ = _guard()
    gate, factory = _gate(guard)
    outer = _connect(factory)

    class Inner:
        transport = outer

    class Innermost:
        transport = Inner()

    assert find_ticket(Innermost()) is find_ticket(outer) and find_ticket(outer).state == NEW
    find_ticket(Innermost()).working()
    assert find_ticket(outer).state == WORKING
    find_ticket(object()).idle()  # no gate: nothing happens
    find_ticket(outer).idle()
    assert find_ticket(outer).state == IDLE


def test_the_descriptor_count_is_sampled_not_read_at_every_accept():
    calls = []
    fds = Fds(used=10, soft=10_000)

    def count():
        calls.append(1)
        return fds.used

    guard = ConnectionGuard(_Node(), reserve=8, count=count, limits=fds.limits)
    gate, factory = _gate(guard)
    for i in range(50):
        _connect(factory, port=i)
    assert len(calls) == 1
    guard.clock.advance(0.2)
    _connect(factory, port=99)
    assert len(calls) == 2


def test_deadlines_cost_no_timer_per_request():
    """A keep-alive connection's requests arm and clear deadlines without making a timer each."""
    guard, _ = _guard()
    gate, factory = _gate(guard, idle_timeout=10)
    proto = _connect(factory)
    ticket = find_ticket(proto)
    ticket.working()
    made = []
    real = guard.clock.callLater
    guard.clock.callLater = lambda *a, **k: made.append(1) or real(*a, **k)
    for _ in range(100):
        ticket.idle()
        ticket.receiving(200)
        ticket.working()
    assert len(made) <= 1 and len(guard.clock.getDelayedCalls()) <= 1
    gate.close()
    assert not [c for c in guard.clock.getDelayedCalls() if c.active()]
    _lose(proto)
