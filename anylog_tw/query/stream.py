"""Pass-through queries as a stream: pages from the operators' cursors to the caller, in order of
parts, stopping at the LIMIT, rendered chunk by chunk in AnyLog's formats.

Memory on the query node is a page per operator plus what the caller's connection holds: the
REST server pauses the stream when its client reads slowly (a push producer), and the
operators' scans wait for `query next` meanwhile.
"""

from __future__ import annotations

import datetime
import json
from typing import AsyncIterator, Callable

import orjson
from twisted.internet.defer import Deferred

from anylog_tw.base.reply import Reply
from anylog_tw.query import output
from anylog_tw.query.cursor import Rendered
from anylog_tw.query.errors import QueryError

PAGE = 20000


async def pages(ask, parts: list, plan, deadline: float, job) -> AsyncIterator[list[tuple] | Rendered]:
    """Row batches of a pass-through answer: `parts` are (extend values, first rows, columns,
    cursor, address, PartRun); the cursors are read on until the LIMIT is reached.  A batch is a
    list of rows, or a `Rendered` page when the operators render them (see `NetworkQuery.run`).

    The next page of a cursor is asked for before the current one is handed on, so the operator's
    answer travels while the caller writes (the operator's scan has it read ahead already)."""
    remaining = plan.limit
    open_cursors = {p[3]: p[4] for p in parts if p[3]}
    ahead: Deferred | None = None
    try:
        for ext, rows, _columns, cursor, address, run in parts:
            while True:
                if job.stopped:
                    raise QueryError(f"query {job.id} was stopped")
                if cursor is not None and (remaining is None or remaining > len(rows)):
                    ahead = Deferred.fromCoroutine(ask(address, f"query next where cursor = {cursor}", deadline))
                if remaining is not None and len(rows) > remaining:
                    rows = first_rows(rows, remaining)
                if remaining is not None:
                    remaining -= len(rows)
                if rows:
                    yield [ext + tuple(r) for r in rows] if ext else rows
                if ahead is None:
                    break
                reply, ahead = await ahead, None
                if not reply.ok:
                    raise QueryError(f"operator {address}: {reply.text}")
                rows, nxt = page_of(reply)
                run.rows += len(rows)
                open_cursors.pop(cursor, None)
                cursor = nxt
                if cursor:
                    open_cursors[cursor] = address
    finally:
        if ahead is not None:  # the caller went away while a page was on its way
            ahead.addErrback(lambda _: None)
        for cursor, address in open_cursors.items():  # LIMIT reached or the caller went away
            d = Deferred.fromCoroutine(ask(address, f"query next where cursor = {cursor} and stop = true", deadline))
            d.addErrback(lambda _: None)


def page_of(reply) -> tuple[list | Rendered, str | None]:
    """(rows, cursor) of an operator's `query part`/`query next` reply: a table, or a rendered
    page (a text reply: a JSON header line {"cursor", "rows"}, then the row objects)."""
    if reply.columns is None and reply.text is not None:
        head, _, body = reply.text.partition("\n")
        try:
            meta = json.loads(head)
            page = Rendered(int(meta["rows"]), body.encode("utf-8"))
        except (ValueError, TypeError, KeyError):
            raise QueryError(f"an operator sent a page that does not read: {head[:80]!r}") from None
        return page, meta.get("cursor")
    data = reply.data if isinstance(reply.data, dict) else {}
    return reply.rows or [], data.get("cursor")


def row_objects(page: Rendered) -> list[dict]:
    return orjson.loads(b"[" + page.text + b"]") if page.count else []


def first_rows(rows: list | Rendered, n: int) -> list | Rendered:
    if isinstance(rows, Rendered):  # only at the LIMIT: the one page read and cut
        return render_objects(row_objects(rows)[:n])
    return rows[:n]


def render_objects(objects: list[dict]) -> Rendered:
    return Rendered(len(objects), orjson.dumps(objects, default=str)[1:-1])


def rows_of(batch: list | Rendered) -> list:
    """A batch as rows (a rendered page read back, for a caller that collects the answer)."""
    if isinstance(batch, Rendered):
        return [tuple(o.values()) for o in row_objects(batch)]
    return batch


async def chunks(fmt: str, titles: list[str], batches: AsyncIterator[list], shape: Callable[[list], list],
                 stat: bool, statistics: Callable[[int], dict]) -> AsyncIterator[bytes]:
    """The answer's text in pieces: rows as they come, the statistics at the end.  Rendered pages
    come only for the JSON shapes (`json`, `json:list`) and need no `shape`."""
    count = 0
    first = True
    async for batch in batches:
        if isinstance(batch, Rendered):  # the operator wrote the row objects: passed on as they are
            if batch.count:
                yield ('{"Query":[' if first else ",").encode() + batch.text if fmt == "json" else \
                    ("[" if first else ",").encode() + batch.text
                first = False
                count += batch.count
            continue
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
