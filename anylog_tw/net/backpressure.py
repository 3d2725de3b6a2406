"""Backpressure on a peer connection: stop taking commands from a peer that does not read replies.

A peer can send commands and never read what comes back; the replies would pile up in
Twisted's write buffer without limit.  Once more than `REPLY_HIGH` bytes wait to go out, the
connection stops reading and the frames already decoded wait, unrun, in a backlog; when the
peer has read the pile down below `REPLY_LOW` they are run and reading resumes.  Memory per
connection is then bounded by the high mark plus one socket read of commands and their replies.

The check costs nothing while replies leave at once (the eager writer says so); it runs only
when bytes are left in Twisted's buffer, and the wait for draining polls on the node's clock
(Twisted tells a registered producer when its buffer empties, but the file sender holds that
place while a file streams).
"""

from __future__ import annotations

from anylog_tw.net.eager import buffered_bytes

REPLY_HIGH = 8 * 1024 * 1024
REPLY_LOW = 1024 * 1024
DRAIN_POLL = 0.01  # seconds between looks at the write buffer while reading is held


class ReadGate:
    """Pauses a transport's reading while any reason (disk, replies) holds it."""

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
    """Reply backpressure for PeerProtocol (which provides reading, _held_bytes, _handle, clock, log)."""

    _backlog: list | None = None  # decoded frames waiting while replies drain (None: not holding)
    _drain_call = None

    def pending_out(self) -> int:
        """Bytes written to this peer that have not reached the kernel yet."""
        return buffered_bytes(self.transport) + self._held_bytes

    def _check_pressure(self) -> None:
        if self._backlog is not None or self.pending_out() <= REPLY_HIGH:
            return
        self.log.info("peer {peer} is not reading its replies ({n} bytes wait): holding its commands",
                      peer=self.label, n=self.pending_out())
        self._backlog = []
        self.reading.hold("replies")
        if self._drain_call is None:
            self._drain_call = self.clock.callLater(DRAIN_POLL, self._check_drained)

    def _check_drained(self) -> None:
        self._drain_call = None
        if not self.open:
            return
        if self.pending_out() > REPLY_LOW:
            self._drain_call = self.clock.callLater(DRAIN_POLL, self._check_drained)
            return
        backlog, self._backlog = self._backlog or [], None
        self._handle(backlog)
        if self._backlog is None:  # the backlog ran without filling the buffer again
            self.reading.release("replies")

    def _stop_pressure(self) -> None:
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        self._drain_call = None
        self._backlog = None
