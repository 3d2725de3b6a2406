"""The node's memory budget for bytes that peers make it hold: reply bodies, held commands, file chunks.

Each connection already has its own limits, but a node has many connections, so per-connection
limits alone still add up to more memory than the machine has.  One budget per node bounds the
sum: a reply body is buffered only if its whole size fits (else it is skipped and the request
fails with the reason), a peer whose held commands would pass it is disconnected, and a file
body waiting for the disk past it pauses the connection that sends it.

It is counted from the reactor thread and from transfer threads, hence the lock.
"""

from __future__ import annotations

import threading

DEFAULT_BUDGET = 256 * 1024 * 1024


class MemoryBudget:
    """Bytes held against a limit; `peak` and `refused` are for `get connections`."""

    def __init__(self, limit: int = DEFAULT_BUDGET):
        self.limit = limit
        self.used = 0
        self.peak = 0
        self.refused = 0  # reservations that did not fit
        self._lock = threading.Lock()

    def reserve(self, n: int) -> bool:
        """Hold `n` bytes if they fit under the limit; False (and nothing held) if not."""
        with self._lock:
            if self.used + n > self.limit:
                self.refused += 1
                return False
            self._take(n)
            return True

    def add(self, n: int) -> None:
        """Hold `n` bytes whether or not they fit (data already in memory); see `over`."""
        with self._lock:
            self._take(n)

    def _take(self, n: int) -> None:
        self.used += n
        if self.used > self.peak:
            self.peak = self.used

    def release(self, n: int) -> None:
        with self._lock:
            self.used = max(0, self.used - n)

    @property
    def over(self) -> bool:
        return self.used > self.limit
