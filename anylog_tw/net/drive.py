"""Running a peer's command without a Deferred when it does not wait (see `drive`)."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure


def drive(coro, done, *args, failure: Failure | None = None) -> None:
    """Run a coroutine to its end and call `done(result, *args)`, without a Deferred when it does not wait.

    Most commands a peer sends finish without waiting; `Deferred.fromCoroutine` would cost about
    as much as the rest of serving them.  When the coroutine awaits a Deferred, it is resumed
    from that Deferred's callback (a failure is thrown in at the await, as Twisted does).
    `Node.execute` returns every error as a Reply, so an exception here is a bug and is logged.
    """
    while True:
        try:
            if failure is not None:
                waited = failure.throwExceptionIntoGenerator(coro)
                failure = None
            else:
                waited = coro.send(None)
        except StopIteration as stop:
            try:
                done(stop.value, *args)
            except Exception:
                _log.failure("sending the reply of a peer command failed")
            return
        except Exception:
            _log.failure("a peer command failed outside the node's error handling")
            return
        if not isinstance(waited, Deferred):
            coro.close()
            _log.error("a peer command awaited {what!r}, which is not a Deferred", what=waited)
            return
        waited.addBoth(_resume, coro, done, args)
        return


def _resume(result, coro, done, args):
    drive(coro, done, *args, failure=result if isinstance(result, Failure) else None)
    return None  # the coroutine took the result (a failure was thrown into it): nothing left to report


_log = Logger()
