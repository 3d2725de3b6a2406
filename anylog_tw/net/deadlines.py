"""Request timeouts of one connection, on one timer.

`Deferred.addTimeout` costs a DelayedCall and two callbacks per request (about 11 us here, as
much as the rest of a round trip); a connection with thousands of requests in flight needs only
the earliest deadline armed.  Deadlines sit in a heap; the single timer fires at the earliest,
expires every request that is overdue and still waiting, and re-arms for the next.  Answered
requests are skipped when they surface, and the heap is compacted when they pile up.
"""

from __future__ import annotations

import heapq
from typing import Callable, Container


class Deadlines:
    def __init__(self, clock, expire: Callable[[int], None], waiting: Container[int]):
        self.clock = clock
        self.expire = expire  # called with each overdue request id still waiting
        self.waiting = waiting
        self._heap: list[tuple[float, int]] = []
        self._call = None

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, ident: int, timeout: float) -> None:
        when = self.clock.seconds() + timeout
        heap = self._heap
        if len(heap) > 4096 and len(heap) > 4 * len(self.waiting):  # type: ignore[arg-type]
            heap[:] = [entry for entry in heap if entry[1] in self.waiting]
            heapq.heapify(heap)
        heapq.heappush(heap, (when, ident))
        call = self._call
        if call is None or not call.active():
            self._call = self.clock.callLater(timeout, self._sweep)
        elif when < call.getTime():
            call.reset(timeout)

    def clear(self) -> None:
        self._heap = []
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _sweep(self) -> None:
        self._call = None
        now = self.clock.seconds()
        while self._heap and self._heap[0][0] <= now + 1e-9:
            _, ident = heapq.heappop(self._heap)
            if ident in self.waiting:
                self.expire(ident)  # may add requests (and arm the timer) from its callbacks
        heap = self._heap
        while heap and heap[0][1] not in self.waiting:
            heapq.heappop(heap)
        if not heap:
            return
        delay = max(0.0, heap[0][0] - self.clock.seconds())
        if self._call is None or not self._call.active():
            self._call = self.clock.callLater(delay, self._sweep)
        elif heap[0][0] < self._call.getTime():
            self._call.reset(delay)
