"""Pass-through queries as a stream: pages from the operators' cursors to the caller, in order of
parts, stopping at the LIMIT, rendered chunk by chunk in AnyLog's formats.

Memory on the query node is a page per operator plus what the caller's connection holds: the
REST server pauses the stream when its client reads slowly (a push producer), and the
operators' scans wait for `query next` meanwhile.
"""

from __future__ import annotations

import datetime
from typing import AsyncIterator, Callable

from twisted.internet.defer import Deferred

from anylog_tw.base.reply import Reply
from anylog_tw.query import output
from anylog_tw.query.errors import QueryError

PAGE = 20000


async def pages(ask, parts: list, plan, deadline: float, job) -> AsyncIterator[list[tuple]]:
    """Row batches of a pass-through answer: `parts` are (extend values, first rows, columns,
    cursor, address, PartRun); the cursors are read on until the LIMIT is reached."""
    remaining = plan.limit
    open_cursors = {p[3]: p[4] for p in parts if p[3]}
    try:
        for ext, rows, _columns, cursor, address, run in parts:
            while True:
                if job.stopped:
                    raise QueryError(f"query {job.id} was stopped")
                if remaining is not None:
                    rows = rows[:remaining]
                    remaining -= len(rows)
                if rows:
                    yield [ext + tuple(r) for r in rows] if ext else rows
                if cursor is None or remaining == 0:
                    break
                reply = await ask(address, f"query next where cursor = {cursor}", deadline)
                if not reply.ok:
                    raise QueryError(f"operator {address}: {reply.text}")
                rows = reply.rows or []
                run.rows += len(rows)
                open_cursors.pop(cursor, None)
                cursor = (reply.data or {}).get("cursor")
                if cursor:
                    open_cursors[cursor] = address
    finally:
        for cursor, address in open_cursors.items():  # LIMIT reached or the caller went away
            d = Deferred.fromCoroutine(ask(address, f"query next where cursor = {cursor} and stop = true", deadline))
            d.addErrback(lambda _: None)


async def chunks(fmt: str, titles: list[str], batches: AsyncIterator[list], shape: Callable[[list], list],
                 stat: bool, statistics: Callable[[int], dict]) -> AsyncIterator[bytes]:
    """The answer's text in pieces: rows as they come, the statistics at the end."""
    count = 0
    first = True
    async for batch in batches:
        rows = list(shape(batch))
        if not rows:
            continue
        if fmt == "json":
            yield (('{"Query":[' if first else ",") + output.dumps_rows(titles, rows)).encode("utf-8")
        elif fmt == "json:list":
            yield (("[" if first else ",") + output.dumps_rows(titles, rows)).encode("utf-8")
        elif fmt == "json:output":
            yield ("".join(output.dumps(dict(zip(titles, r))) + "\n" for r in rows)).encode("utf-8")
        else:  # table: each batch its own block, as AnyLog prints each operator's rows
            yield (("" if first else "\n") + output.table_text(titles, rows) + "\n").encode("utf-8")
        first = False
        count += len(rows)
    stats = statistics(count) if stat else None
    if count == 0:
        yield (output.stats_json(stats) if stats else '{"reply" : "Empty data set"}').encode("utf-8")
        return
    if fmt == "json":
        yield (("],\n" + output.stats_json(stats)[1:]) if stats else "]}").encode("utf-8")
    elif fmt == "json:list":
        yield ("]" + ("\n" + output.stats_json(stats) if stats else "")).encode("utf-8")
    elif fmt == "json:output":
        yield (output.stats_json(stats) if stats else "").encode("utf-8")
    elif stats:
        yield ("\n" + output.stats_json(stats, pretty=True)).encode("utf-8")


class StreamReply(Reply):
    """A Reply whose body is produced as it is sent (the REST server streams `stream`)."""

    __slots__ = ("stream", "json_body")

    def __init__(self, stream: AsyncIterator[bytes], json_body: bool):
        super().__init__(text="")
        self.stream = stream
        self.json_body = json_body

    def renders_json(self, fmt: str | None = None) -> bool:
        return self.json_body

    def render(self, fmt: str | None = None) -> str:
        raise QueryError("a streamed query answer can only be sent by the REST server")


def now_utc(clock) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(clock.seconds(), datetime.timezone.utc).replace(tzinfo=None)
