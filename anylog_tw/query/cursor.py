"""An operator's open result of a network query part, handed out a page at a time.

A pass-through query can return millions of rows.  Instead of one reply holding them all, the
operator answers the first page and keeps the scan open: the scan's thread reads ahead at most
`AHEAD` pages and then waits for the query node to ask for the next one (`query next`), so memory
stays bounded on both nodes and a query node that has enough rows (LIMIT) closes the cursor.
A cursor nobody asks for within `IDLE` seconds is closed.

With `titles` (the query node streams the answer as JSON and applies nothing to the rows), each
page is rendered here, in the scan's thread, as the row objects of the final answer
(`Rendered`): the query node then passes the text on without decoding a row.
"""

from __future__ import annotations

import secrets
import threading
from collections import deque
from typing import NamedTuple

import orjson

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from anylog_tw.base.deadline import with_deadline
from anylog_tw.query.errors import QueryError
from anylog_tw.storage import sqlfmt

AHEAD = 2
IDLE = 60.0
_PLAIN = (str, int, float, type(None))


class _Stopped(Exception):
    pass


def convert(row) -> list:
    return [v if v.__class__ in _PLAIN else sqlfmt.json_value(v) for v in row]


class Rendered(NamedTuple):
    """A page as the answer's row objects, comma-joined, without brackets (what
    `output.dumps_rows` makes of the same rows on the query node)."""

    count: int
    text: bytes

    def __len__(self) -> int:  # counted like a page of rows
        return self.count


def render(titles: list[str], rows: list) -> Rendered:
    """The rows as the answer's objects, from the database's values as fetched: orjson writes
    str, int, float and None itself (as the general path ends up writing them, a non-finite float
    as null) and hands `sqlfmt.json_value` the rest (times, bytes, decimals)."""
    return Rendered(len(rows), orjson.dumps([dict(zip(titles, r)) for r in rows], default=sqlfmt.json_value,
                                            option=_OPTIONS)[1:-1])


_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class Cursor:
    def __init__(self, reactor, page: int, titles: list[str] | None = None):
        self.reactor, self.page, self.titles = reactor, page, titles
        self.id = secrets.token_hex(8)
        self.columns: list[str] | None = None
        self.pages: deque = deque()
        self.waiter: Deferred | None = None
        self.credit = threading.Semaphore(AHEAD)
        self.stopped = False
        self.finished = False
        self.error: Failure | None = None
        self.rows_out = 0
        self.timer = None

    # -- the scan's thread ------------------------------------------------------------------

    def produce(self, columns, batches) -> int:
        self.reactor.callFromThread(self._set_columns, list(columns))
        buf: list = []
        total = 0
        for batch in batches:
            buf.extend(batch if self.titles else map(convert, batch))  # render() converts what it must
            while len(buf) >= self.page:
                chunk, buf = buf[:self.page], buf[self.page:]
                total += len(chunk)
                self._put(render(self.titles, chunk) if self.titles else chunk, False)
        total += len(buf)
        self._put(render(self.titles, buf) if self.titles else buf, True)
        return total

    def _put(self, chunk: list, last: bool) -> None:
        while not self.credit.acquire(timeout=0.5):
            if self.stopped:
                raise _Stopped()
        if self.stopped:
            raise _Stopped()
        self.reactor.callFromThread(self._deliver, chunk, last)

    # -- the reactor ------------------------------------------------------------------------

    def _set_columns(self, columns) -> None:
        self.columns = columns

    def _deliver(self, chunk: list, last: bool) -> None:
        self.pages.append((chunk, last))
        self._wake()

    def failed(self, failure: Failure | None) -> None:
        """The scan ended: with a failure, or (None) after its last page."""
        if failure is not None and not failure.check(_Stopped):
            self.error = failure
        self.finished = True
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None:
            d, self.waiter = self.waiter, None
            d.callback(None)

    async def next_page(self) -> tuple[list, bool]:
        """(rows, last): the next page, waiting for the scan if it is not read yet."""
        while not self.pages:
            if self.error is not None:
                raise QueryError(self.error.getErrorMessage()) if not self.error.check(QueryError) else self.error.value
            if self.finished:
                return [], True
            self.waiter = Deferred()
            await self.waiter
        rows, last = self.pages.popleft()
        self.credit.release()
        self.rows_out += len(rows)
        return rows, last

    def stop(self) -> None:
        self.stopped = True
        self.pages.clear()
        self.credit.release()
        if self.timer is not None and self.timer.active():
            self.timer.cancel()


class Cursors:
    """A node component: the open cursors of the parts this operator answers."""

    def __init__(self, node=None):
        self.node = node
        self.open: dict[str, Cursor] = {}

    async def start(self, db, sql: str, page: int, timeout: float | None = None,
                    titles: list[str] | None = None) -> tuple[list[str], list, str | None]:
        """Run `sql` read-only; -> (columns, first page, cursor id or None when that was all).
        With `titles`, pages are `Rendered`.

        `timeout` bounds the wait for the first page (the operator's query deadline); later pages
        wait for the query node, and a cursor it stops asking for closes after `IDLE` seconds."""
        cursor = Cursor(self.node.reactor, page, titles)
        done = Deferred.fromCoroutine(db.scan(sql, None, cursor.produce, batch=min(page, 10000)))
        done.addCallbacks(lambda _: cursor.failed(None), cursor.failed)
        first = Deferred.fromCoroutine(cursor.next_page())
        if timeout:
            def expired():
                cursor.stop()
                raise QueryError(f"the query part gave no rows within {timeout:g} s (the operator's query "
                                 f"deadline)")

            first = with_deadline(first, timeout, self.node.reactor, expired)
        rows, last = await first
        if last:
            return cursor.columns or [], rows, None
        self.open[cursor.id] = cursor
        self._arm(cursor)
        return cursor.columns or [], rows, cursor.id

    async def next(self, cursor_id: str) -> tuple[list, str | None]:
        cursor = self.open.get(cursor_id)
        if cursor is None:
            raise QueryError(f"no open cursor '{cursor_id}' (it finished, was stopped, or idled out)")
        self._arm(cursor)
        rows, last = await cursor.next_page()
        if last:
            self.close_one(cursor_id)
            return rows, None
        return rows, cursor_id

    def close_one(self, cursor_id: str) -> bool:
        cursor = self.open.pop(cursor_id, None)
        if cursor is not None:
            cursor.stop()
        return cursor is not None

    def _arm(self, cursor: Cursor) -> None:
        if cursor.timer is not None and cursor.timer.active():
            cursor.timer.cancel()
        cursor.timer = self.node.reactor.callLater(IDLE, self.close_one, cursor.id)

    def close(self) -> None:
        """The node stops: every scan thread waiting for its next request ends."""
        for cid in list(self.open):
            self.close_one(cid)
