"""with_deadline: the result in time, the expiry's outcome after it, late results dropped."""

from __future__ import annotations

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from anylog_tw.base.deadline import with_deadline


class Late(Exception):
    pass


def outcome(d: Deferred):
    box = []
    d.addBoth(box.append)
    return box[0] if box else "pending"


def test_the_result_in_time_is_passed_on_and_the_timer_is_gone():
    clock, work = Clock(), Deferred()
    out = with_deadline(work, 5, clock, lambda: "expired")
    clock.advance(4)
    work.callback("answer")
    assert outcome(out) == "answer" and clock.getDelayedCalls() == []


def test_a_failure_in_time_is_passed_on():
    clock, work = Clock(), Deferred()
    out = with_deadline(work, 5, clock, lambda: "expired")
    work.errback(ValueError("bad"))
    assert outcome(out).check(ValueError)


def test_after_the_deadline_the_expiry_answers_and_the_late_result_is_dropped():
    clock, work = Clock(), Deferred()
    out = with_deadline(work, 5, clock, lambda: "gave up")
    clock.advance(5)
    assert outcome(out) == "gave up"
    work.errback(ValueError("too late"))  # not an unhandled error: dropped
    assert outcome(work) is None


def test_an_expiry_that_raises_fails_the_deadline():
    def expired():
        raise Late("no answer within 5 seconds")

    clock = Clock()
    out = with_deadline(Deferred(), 5, clock, expired)
    clock.advance(5)
    assert outcome(out).check(Late)


@pytest.mark.parametrize("canceller_fails_with", [None, ConnectionError])
def test_cancel_stops_the_work_and_the_expiry_replaces_the_cancel_failure(canceller_fails_with):
    cancelled = []

    def canceller(d):
        cancelled.append(True)
        if canceller_fails_with is not None:
            d.errback(canceller_fails_with("the client's own wording"))

    def expired():
        raise Late("timed out")

    clock, work = Clock(), Deferred(canceller)
    out = with_deadline(work, 2, clock, expired, cancel=True)
    clock.advance(2)
    assert cancelled == [True]
    assert outcome(out).check(Late)
    assert outcome(work) is None  # the CancelledError, or the client's own failure, was consumed
