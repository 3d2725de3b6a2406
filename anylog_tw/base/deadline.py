"""The one way to put a deadline on a Deferred.

Three places need one and want different things at expiry: REST answers 408 while the command
goes on (its reply is dropped), the scheduler gives up waiting for task runs when the node
stops, and the outbound REST client cancels its request.  `with_deadline` covers all three:
the result of `d` if it comes first, else whatever `expired()` returns or raises; with
`cancel=True` the work is cancelled too, and the failure cancelling causes is replaced by
`expired()`'s outcome, so callers see one kind of timeout.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, maybeDeferred


def with_deadline(d: Deferred, seconds: float, clock, expired: Callable[[], Any], cancel: bool = False) -> Deferred:
    """`d`'s result, or `expired()`'s after `seconds` on `clock` (d's late result is then dropped)."""
    out: Deferred = Deferred()
    state = {"expired": False}

    def expire() -> None:
        state["expired"] = True
        if cancel:
            d.cancel()  # `d` fires (with a failure) and `finished` below answers for it
        if not out.called:
            maybeDeferred(expired).chainDeferred(out)

    timer = clock.callLater(seconds, expire)

    def finished(result):
        if timer.active():
            timer.cancel()
        if not state["expired"] and not out.called:
            out.callback(result)
        return None  # a late result or failure is dropped, never "unhandled"

    d.addBoth(finished)
    return out
