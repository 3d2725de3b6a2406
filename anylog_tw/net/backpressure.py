"""Backpressure on a peer connection: stop running commands for a peer that does not read replies.

A peer can send commands and never read what comes back; the replies would pile up in
Twisted's write buffer without limit.  Once more than `REPLY_HIGH` bytes wait to go out, or more
than `MAX_RUNNING` of its commands are running (those that wait on a thread or a database answer
later, all at once), the peer's new `cmd` and `event` frames wait, unrun, in a backlog; when the
peer has read the pile down below `REPLY_LOW` and the running commands are down to half, they
run in order.

Reading itself never stops for this: the same connection carries the peer's replies to *our*
requests and its files, and two nodes that each held the other's replies back would wait for
each other forever.  A peer whose backlog passes `BACKLOG_MAX` bytes sends commands faster than
it reads their answers whatever we do: its connection is refused with the reason (it reconnects
and its requests fail cleanly).  So memory per connection stays bounded by the marks, and the held
frames count in the node's memory budget, so many such peers together stay bounded too.

The check costs nothing while replies leave at once (the eager writer says so); the wait for
draining polls on the node's clock (Twisted tells a registered producer when its buffer empties,
but the file sender holds that place while a file streams).
"""

from __future__ import annotations

from anylog_tw.net.eager import buffered_bytes

REPLY_HIGH = 8 * 1024 * 1024
REPLY_LOW = 1024 * 1024
MAX_RUNNING = 256  # a peer's commands running at once before its next ones wait
BACKLOG_MAX = 16 * 1024 * 1024  # bytes of a peer's waiting frames before its connection is refused
DRAIN_POLL = 0.01  # seconds between looks at the write buffer while commands wait


class ReadGate:
    """Pauses a transport's reading while any reason (a slow disk under an incoming file) holds it."""

    def __init__(self, transport):
        self.transport = transport
        self.holds: set[str] = set()

    def hold(self, reason: str) -> None:
        if not self.holds:
            self.transport.pauseProducing()
        self.holds.add(reason)

    def release(self, reason: str) -> None:
        if reason in self.holds:
            self.holds.discard(reason)
            if not self.holds:
                self.transport.resumeProducing()


class Backpressure:
    """Command backpressure for PeerProtocol (which provides _held_bytes, _handle, _refuse, clock, log)."""

    _backlog: list | None = None  # (event, size) of frames waiting while replies drain (None: not holding)
    _backlog_bytes = 0
    _drain_call = None
    running = 0  # the peer's commands started and not answered yet
    budget = None  # the node's MemoryBudget (net/budget.py), when the protocol has one

    def pending_out(self) -> int:
        """Bytes written to this peer that have not reached the kernel yet."""
        return buffered_bytes(self.transport) + self._held_bytes

    def _overloaded(self, high: bool = True) -> bool:
        if high:
            return self.running > MAX_RUNNING or self.pending_out() > REPLY_HIGH
        return self.running > MAX_RUNNING // 2 or self.pending_out() > REPLY_LOW

    def _check_pressure(self) -> None:
        if self._backlog is not None or not self._overloaded():
            return
        self.log.info("peer {peer} is not reading its replies ({n} bytes wait, {r} commands running): "
                      "holding its commands", peer=self.label, n=self.pending_out(), r=self.running)
        self._backlog, self._backlog_bytes = [], 0
        if self._drain_call is None:
            self._drain_call = self.clock.callLater(DRAIN_POLL, self._check_drained)

    def _defer(self, event: tuple, size: int) -> None:
        if self.budget is not None and not self.budget.reserve(size):
            self._refuse(f"the node's frame budget is full ({self.budget.used} of {self.budget.limit} bytes held) "
                         f"and this peer does not read its replies", "overload")
            return
        self._backlog.append(event)
        self._backlog_bytes += size
        if self._backlog_bytes > BACKLOG_MAX:
            self._refuse(f"the peer sends commands faster than it reads their replies ({self._backlog_bytes} "
                         f"bytes of commands wait, {self.pending_out()} bytes of replies)", "overload")

    def _release_backlog(self) -> None:
        if self.budget is not None and self._backlog_bytes:
            self.budget.release(self._backlog_bytes)
        self._backlog_bytes = 0

    def _check_drained(self) -> None:
        self._drain_call = None
        if not self.open:
            return
        if self._overloaded(high=False):
            self._drain_call = self.clock.callLater(DRAIN_POLL, self._check_drained)
            return
        backlog, self._backlog = self._backlog or [], None
        self._release_backlog()
        self._handle(backlog)  # may start holding again, with the rest

    def _stop_pressure(self) -> None:
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        self._drain_call = None
        self._backlog = None
        self._release_backlog()
