"""Periodic work that survives its own failures: `Periodic`, the one loop every process uses.

A bare `LoopingCall` (and `TimerService`, built on it) stops for good the first time its
function raises; a node's pollers, synchronizers and flushers must not.  `Periodic`:

* runs `fn` (plain, async, or returning a Deferred) every `interval` seconds, the interval
  counted from the end of one run to the start of the next, so a slow run never overlaps the
  next one;
* logs and counts a failure (`failures`, `last_error`) and carries on;
* `call_soon()` asks for a run now: it starts at once when idle, and while a run is in flight
  any number of requests are coalesced into ONE more run right after it; the Deferred it returns
  fires when that run has ended (with `True` for success, `False` for a failure, and `False` at
  once if the periodic is stopped before that run starts);
* `stop()` cancels the pending timer and returns a Deferred that fires when the run in flight,
  if any, has ended.

The clock is handed in (the node's reactor; a `task.Clock` in tests).  The synchronizer is the
example to read (metadata/sync.py)::

    self.periodic = Periodic(self.node.reactor, self.interval, self.sync_once, name="blockchain sync")
    self.periodic.start()              # in startService
    await self.periodic.call_soon()    # `run blockchain sync` with no options: sync now
    return self.periodic.stop()        # in stopService: fires when the sync in flight has ended
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger


class Periodic:
    """Run `fn` every `interval` seconds on `clock`, forever, whatever it raises."""

    log = Logger()

    def __init__(self, clock, interval: float, fn: Callable[[], Any], name: str = "", now: bool = True):
        if interval <= 0:
            raise ValueError(f"the interval must be positive, not {interval}")
        self.clock = clock
        self.interval = interval
        self.fn = fn
        self.name = name or getattr(fn, "__qualname__", repr(fn))
        self.now = now  # first run at once when started (else one interval after)
        self.running = False
        self.runs = 0
        self.failures = 0
        self.last_error = ""
        self.last_run: float | None = None
        self._timer = None
        self._inflight: Deferred | None = None
        self._waiters: list[Deferred] = []  # call_soon() callers of the run to come

    @property
    def busy(self) -> bool:
        return self._inflight is not None

    def start(self) -> None:
        if self.running:
            return
        self.running = True
        if self.now:
            self._run()
        else:
            self._schedule(self.interval)

    def stop(self) -> Deferred:
        """No more runs; the Deferred fires when the run in flight (if any) has ended."""
        self.running = False
        self._cancel_timer()
        waiters, self._waiters = self._waiters, []
        for w in waiters:  # the runs they asked for will not happen
            w.callback(False)
        if self._inflight is None:
            return succeed(None)
        done: Deferred = Deferred()

        def ended(result):
            done.callback(None)
            return result

        self._inflight.addBoth(ended)
        return done

    def call_soon(self) -> Deferred:
        """Run as soon as possible (coalesced with other requests); fires with the run's success."""
        waiter: Deferred = Deferred()
        if not self.running:
            waiter.callback(False)
            return waiter
        self._waiters.append(waiter)
        if self._inflight is None:
            self._cancel_timer()
            self._run()
        return waiter

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _schedule(self, delay: float) -> None:
        self._cancel_timer()
        if self.running:
            self._timer = self.clock.callLater(delay, self._run)

    def _run(self) -> None:
        self._timer = None
        waiters, self._waiters = self._waiters, []
        d = Deferred.fromCoroutine(self._call())
        if d.called:
            outcome: list[bool] = []
            d.addCallback(outcome.append)
            self._after(bool(outcome and outcome[0]), waiters)
            return
        self._inflight = d
        d.addCallback(lambda ok: self._after(ok, waiters))

    def _after(self, ok: bool, waiters: list[Deferred]) -> None:
        self._inflight = None
        for w in waiters:
            w.callback(ok)
        if not self.running:
            return
        if self._waiters:  # asked for while that run was in flight: one more run, now
            self._run()
        else:
            self._schedule(self.interval)

    async def _call(self) -> bool:
        self.runs += 1
        self.last_run = self.clock.seconds()
        try:
            result = self.fn()
            if inspect.isawaitable(result):
                await result
        except Exception as e:
            self.failures += 1
            self.last_error = f"{type(e).__name__}: {e}"
            self.log.failure("periodic {name} failed (it keeps running)", name=self.name)
            return False
        return True
