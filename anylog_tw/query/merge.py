"""The query node's merge of the operators' replies, in SQLite (in memory by default).

Each reply is one operator's answer for one table: its `extend` values and its rows in the
columns of `plan.remote_columns`.  `Merge` loads them into the merge table as they arrive and runs
the merge query at the end; `pass_through` streams rows of a query with nothing to merge and
stops at the LIMIT.  Both are plain blocking code over `sqlite3`, for a thread.
"""

from __future__ import annotations

import itertools
import sqlite3
from typing import Iterable, Iterator, Sequence

from anylog_tw.query.errors import QueryError
from anylog_tw.storage.sqlite import insert_blocks
from anylog_tw.query.plan import Plan


class Merge:
    """The merge table of one query in a SQLite database (`:memory:` unless given)."""

    def __init__(self, plan: Plan, table: str = "query_0", connection: sqlite3.Connection | None = None,
                 drop: bool = True):
        if plan.local is None:
            raise QueryError("a pass-through query has nothing to merge")
        self.plan, self.table = plan, table
        self.db = connection or sqlite3.connect(":memory:", check_same_thread=False)
        self.rows_in = 0
        if drop:
            self.db.execute(f'DROP TABLE IF EXISTS "{table}"')
        exists = self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                 (table,)).fetchone()
        if not exists:
            self.db.execute(plan.local_create(table))
        insert = plan.local_insert(table)
        self._head = insert[:insert.rindex(" VALUES ") + 8]

    def add(self, extend_values: Sequence, rows: Iterable[Sequence], source: str = "an operator") -> int:
        """Load one reply's rows; -> how many."""
        width = len(self.plan.remote_columns)
        prefix = tuple(extend_values)
        if len(prefix) != len(self.plan.extend):
            raise QueryError(f"{source}: {len(prefix)} extend values for {len(self.plan.extend)} columns")
        count = 0

        def checked():
            nonlocal count
            for row in rows:
                if len(row) != width:
                    raise QueryError(f"{source} replied {len(row)} columns where the query asked {width}")
                count += 1
                yield prefix + tuple(row)

        insert_blocks(self.db.cursor(), self._head, width + len(prefix), checked(), self.table)
        self.rows_in += count
        return count

    def result(self) -> tuple[list[str], list[tuple]]:
        """The merged answer: (titles, rows)."""
        cursor = self.db.execute(self.plan.local_sql(self.table))
        return self.plan.output_titles(), [tuple(r) for r in cursor]

    def close(self) -> None:
        self.db.close()


def merge(plan: Plan, replies: Iterable[tuple[Sequence, Iterable[Sequence]]]) -> tuple[list[str], list[tuple]]:
    """Merge replies [(extend values, rows)] in a fresh in-memory database."""
    m = Merge(plan)
    try:
        for ext, rows in replies:
            m.add(ext, rows)
        return m.result()
    finally:
        m.close()


def pass_through(plan: Plan, replies: Iterable[tuple[Sequence, Iterable[Sequence]]]) -> Iterator[tuple]:
    """Rows of a query with nothing to merge, extend values first, up to the LIMIT in total."""
    rows = (tuple(ext) + tuple(r) for ext, batch in replies for r in batch)
    return rows if plan.limit is None else itertools.islice(rows, plan.limit)
