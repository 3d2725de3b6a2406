"""Periodic: survives failures, never overlaps itself, coalesces call_soon, waits for the run on stop."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from anylog_tw.base.periodic import Periodic
from tests.helpers import fired


class Work:
    def __init__(self, clock, hold=False, fail_on=()):
        self.clock = clock
        self.hold = hold
        self.fail_on = set(fail_on)
        self.calls: list[float] = []
        self.pending: Deferred | None = None

    def __call__(self):
        self.calls.append(self.clock.seconds())
        if len(self.calls) in self.fail_on:
            raise RuntimeError(f"run {len(self.calls)} broke")
        if self.hold:
            self.pending = Deferred()
            return self.pending
        return None

    def finish(self):
        d, self.pending = self.pending, None
        d.callback(None)


def test_runs_at_start_then_every_interval_counted_from_the_end_of_the_run():
    clock = Clock()
    work = Work(clock, hold=True)
    p = Periodic(clock, 10, work)
    p.start()
    assert work.calls == [0]
    clock.advance(30)  # the first run is still going: nothing else starts
    assert work.calls == [0]
    work.finish()
    clock.advance(9)
    assert work.calls == [0]
    clock.advance(1)
    assert work.calls == [0, 40]
    work.finish()
    fired(p.stop())


@pytest.mark.allow_logged_errors
def test_a_failure_is_logged_and_counted_and_the_loop_goes_on():
    clock = Clock()
    work = Work(clock, fail_on={1, 2})
    p = Periodic(clock, 5, work, name="flaky", now=False)
    p.start()
    for _ in range(4):
        clock.advance(5)
    assert work.calls == [5, 10, 15, 20]
    assert (p.runs, p.failures, p.last_error) == (4, 2, "RuntimeError: run 2 broke")
    fired(p.stop())
    assert clock.getDelayedCalls() == []


def test_call_soon_runs_at_once_when_idle_and_reports_success():
    clock = Clock()
    work = Work(clock)
    p = Periodic(clock, 60, work, now=False)
    p.start()
    clock.advance(10)
    assert fired(p.call_soon()) is True
    assert work.calls == [10]
    assert [c.getTime() for c in clock.getDelayedCalls()] == [70]  # the interval restarts after the run
    fired(p.stop())


def test_call_soon_during_a_run_is_coalesced_into_one_more_run():
    clock = Clock()
    work = Work(clock, hold=True)
    p = Periodic(clock, 60, work)
    p.start()
    a, b, c = p.call_soon(), p.call_soon(), p.call_soon()
    assert not a.called
    work.finish()  # the first run ends: exactly one more starts at once for the three requests
    assert work.calls == [0, 0] and not a.called
    work.finish()
    assert fired(a) is fired(b) is fired(c) is True
    assert len(work.calls) == 2
    fired(p.stop())


def test_stop_waits_for_the_run_in_flight_and_then_nothing_runs():
    clock = Clock()
    work = Work(clock, hold=True)
    svc = Periodic(clock, 1, work)
    svc.start()
    waiting = svc.call_soon()
    d = svc.stop()
    assert not d.called and fired(waiting) is False
    work.finish()
    assert d.called and clock.getDelayedCalls() == []
    clock.advance(100)
    assert work.calls == [0]
    assert fired(svc.call_soon()) is False


def test_an_async_function_is_awaited():
    clock = Clock()
    seen = []

    async def job():
        seen.append(clock.seconds())

    p = Periodic(clock, 2, job)
    p.start()
    clock.advance(2)
    assert seen == [0, 2] and p.failures == 0
    fired(p.stop())


def test_a_bad_interval_is_refused():
    with pytest.raises(ValueError, match="positive"):
        Periodic(Clock(), 0, lambda: None)
