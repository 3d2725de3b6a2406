"""The operator's side of a network query: run the query node's portable SELECT, read-only.

The statement arrives in SQLite's dialect; it is parsed (it must be one SELECT, which the
parser says, not a look at the text) and written in the dbms's own dialect.  It runs through
the engine's read-only scan (`PRAGMA query_only` / a read-only PostgreSQL session, on a
connection of its own), so a network query can never change an operator's data whatever it
holds, and the rows are made JSON values in the scan's thread.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

from anylog_tw.query.errors import QueryError
from anylog_tw.query.plan import translate
from anylog_tw.storage import sqlfmt

MAX_ROWS = 5_000_000  # one part's rows; past it the operator refuses rather than exhaust memory


@functools.lru_cache(maxsize=512)
def check_select(sql: str) -> None:
    """A network part is one SELECT and nothing else (remembered: dashboards repeat themselves)."""
    try:
        trees = [t for t in sqlglot.parse(sql, read="sqlite") if t is not None]
    except sqlglot.errors.SqlglotError as e:
        raise QueryError(f"SQL Failure: {e}") from None
    if len(trees) != 1 or not isinstance(trees[0], exp.Select):
        raise QueryError("a network query part must be one SELECT statement")


def _collect(columns, batches, max_rows: int):
    rows: list[list] = []
    jv = sqlfmt.json_value
    plain = (str, int, float, type(None))
    for batch in batches:
        for row in batch:
            rows.append([v if v.__class__ in plain else jv(v) for v in row])
        if len(rows) > max_rows:
            raise QueryError(f"the query returns more than {max_rows} rows from this operator "
                             f"(add a LIMIT, a WHERE range, or an aggregate)")
    return columns, rows


async def run_part(db, portable_sql: str, timeout: float | None = None,
                   max_rows: int = MAX_ROWS) -> tuple[list[str], list[list]]:
    """The part as a user's read (`Database.statement` with the read grant: the engine refuses
    anything else), under the operator's query deadline; rows made JSON values in its thread."""
    check_select(portable_sql)
    sql = translate(portable_sql, db.engine)

    def shape(columns, rows, _count, cut):
        return columns or [], [[v if v.__class__ in _PLAIN else sqlfmt.json_value(v) for v in row] for row in rows], cut

    columns, rows, cut = await db.statement(sql, grant="read", timeout=timeout, limit=max_rows, shape=shape)
    if cut:
        raise QueryError(f"the query returns more than {max_rows} rows from this operator "
                         f"(add a LIMIT, a WHERE range, or an aggregate)")
    return columns, rows


_PLAIN = (str, int, float, type(None))


@dataclass
class PartRecord:
    """One part this operator ran, for `get query execution`."""

    node: str
    job: str
    dbms: str
    table: str
    rows: int = 0
    seconds: float = 0.0
    error: str = ""
    started: float = 0.0


class PartLog:
    """The recent parts an operator ran (a node component)."""

    def __init__(self, node=None, size: int = 500):
        self.records: deque[PartRecord] = deque(maxlen=size)

    def add(self, record: PartRecord) -> None:
        self.records.append(record)

    def rows(self, node: str | None = None, job: str | None = None) -> list[tuple]:
        return [(r.node, r.job, r.dbms, r.table, r.rows, f"{r.seconds:.3f}", r.error or "",
                 time.strftime("%H:%M:%S", time.gmtime(r.started)))
                for r in self.records if (node is None or r.node == node) and (job is None or r.job == job)]
