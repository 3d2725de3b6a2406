"""Ingest held back while there is no space left, and tried again with a growing wait.

A full disk (ENOSPC), a full quota (EDQUOT) or a full database (SQLITE_FULL, PostgreSQL 53100)
says nothing about the file being ingested: moving it to the error dir, as a bad file, would
need a person to move it back, and a sender that was told "received" would never send it again.
So the operator keeps the file in the watch dir, stops taking files, and tries the same file
again after 1 s, 2 s, 4 s ... up to `longest`; the first file that goes through ends the pause.
Nothing is half-written meanwhile: a transaction that failed rolled back, a copy that failed was
removed (`base/atomic.py`), and the file's TSD row, if it got one, stays pending and is taken
over when the file is tried again.
"""

from __future__ import annotations

import time
from typing import Callable

from twisted.logger import Logger


class SpacePause:
    """The operator's pause: whether it holds, since when, why, and when it tries again."""

    log = Logger()

    def __init__(self, reactor, resume: Callable[[], None], first: float = 1.0, longest: float = 30.0):
        self.reactor = reactor
        self.resume = resume
        self.first = first
        self.longest = longest
        self.paused = False
        self.since: float | None = None  # start of the episode (it lasts until a file goes through)
        self.reason = ""
        self.retry_at = 0.0
        self.episodes = 0
        self._wait = first
        self._timer = None

    def hold(self, reason: str) -> None:
        """A file failed for want of space: pause (or stay paused) and plan the next try."""
        self.reason = reason
        if self.paused:
            return
        now = self.reactor.seconds()
        if self.since is None:
            self.since = now
            self.episodes += 1
            self.log.warn("ingest paused: no space left ({reason}); the file stays in the watch dir and is "
                          "tried again", reason=reason)
        self.paused = True
        delay, self._wait = self._wait, min(self._wait * 2, self.longest)
        self.retry_at = now + delay
        self._timer = self.reactor.callLater(delay, self._retry)

    def _retry(self) -> None:
        self._timer = None
        self.paused = False
        self.resume()

    def succeeded(self) -> None:
        """A file went through: space is back, the episode ends."""
        if self.since is None:
            return
        self.log.info("ingest resumed: space is back after {seconds:.0f} s",
                      seconds=self.reactor.seconds() - self.since)
        self.since = None
        self.reason = ""
        self._wait = self.first

    def stop(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def status(self) -> str:
        """`Running`, or what `get operator` and `test node` say while paused."""
        if self.since is None:
            return "Running"
        left = max(0.0, self.retry_at - self.reactor.seconds()) if self.paused else 0.0
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.since))
        state = f"next try in {left:.0f} s" if self.paused else "trying again now"
        return f"Paused: no space left since {since} UTC ({self.reason}); {state}"
