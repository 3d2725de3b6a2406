"""The deadline of a user's statement, and the statements a dbms has in flight.

A user's `sql` must not hold the node (issue 16): each statement gets a `Deadline` that the
engine checks where it can (SQLite's progress handler, in the statement's own thread;
PostgreSQL's `statement_timeout`, on the server) and that can be cancelled from the reactor
thread (the node is stopping: `Running.cancel_all`).  Cancelling calls what the engine gave to
stop the statement at once (`sqlite3.Connection.interrupt`, a PostgreSQL cancel request), both
safe to call from another thread.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from anylog_tw.storage.confine import SQLDeadline

DEFAULT_QUERY_TIMEOUT = 20.0  # seconds; `sql ... timeout = N` or `set query timeout = N` change it
DEFAULT_ROW_LIMIT = 10_000  # rows a reply holds unless `sql ... limit = N` raises it


class Deadline:
    """When a statement must end; `stopped()` is cheap enough for SQLite's progress handler."""

    def __init__(self, seconds: float | None, dbms: str = "", clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self.dbms = dbms
        self._clock = clock
        self._end = clock() + seconds if seconds else None
        self.reason = ""  # why it was cancelled, when it was
        self._lock = threading.Lock()
        self._stoppers: list[Callable[[], None]] = []

    def expired(self) -> bool:
        return self._end is not None and self._clock() >= self._end

    def stopped(self) -> bool:
        return bool(self.reason) or self.expired()

    def progress(self) -> int:
        """SQLite's progress handler: non-zero interrupts the statement."""
        return 1 if self.stopped() else 0

    def remaining(self) -> float | None:
        return None if self._end is None else max(0.0, self._end - self._clock())

    def on_cancel(self, stop: Callable[[], None]) -> Callable[[], None]:
        """Call `stop` when the statement is cancelled (at once if it was already); returns the undo."""
        with self._lock:
            cancelled = bool(self.reason)
            if not cancelled:
                self._stoppers.append(stop)
        if cancelled:
            stop()

        def forget() -> None:
            with self._lock:
                if stop in self._stoppers:
                    self._stoppers.remove(stop)

        return forget

    def cancel(self, reason: str) -> None:
        with self._lock:
            if self.reason:
                return
            self.reason = reason
            stoppers, self._stoppers = self._stoppers, []
        for stop in stoppers:
            try:
                stop()
            except Exception:  # a connection already closed has nothing left to stop
                pass

    def error(self) -> SQLDeadline:
        """The error of a statement stopped by this deadline."""
        dbms = self.dbms
        if self.reason:
            return SQLDeadline(f"dbms '{dbms}': the statement was stopped because {self.reason}; nothing it "
                               f"changed was kept")
        return SQLDeadline(f"dbms '{dbms}': the statement ran past its deadline of {self.seconds:g} s and was "
                           f"stopped (nothing it changed was kept); give it longer with 'sql {dbms} timeout = "
                           f"{max(60, int(self.seconds or 0) * 3)} \"...\"', or every query on this node with "
                           f"'set query timeout = <seconds>'")


class Running:
    """The user statements a dbms has in flight, so closing it can stop them instead of waiting."""

    def __init__(self) -> None:
        self._deadlines: set[Deadline] = set()

    def add(self, deadline: Deadline) -> None:
        self._deadlines.add(deadline)

    def discard(self, deadline: Deadline) -> None:
        self._deadlines.discard(deadline)

    def __len__(self) -> int:
        return len(self._deadlines)

    def cancel_all(self, reason: str) -> None:
        for deadline in list(self._deadlines):
            deadline.cancel(reason)
