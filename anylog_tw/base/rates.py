"""Per-table ingest counts over the last hour, in fixed time buckets, for the node's web page.

The page charts each table's ingest rate over the last hour; Prometheus counters only keep
totals, and sampling them on a timer would cost a node with no page open.  So the operator adds
to a `RateHistory` as it commits (one dict lookup and an addition), and the history keeps, per
table, the totals since the node started and a ring of `slots` buckets of `bucket` seconds.
Nothing runs on a timer: a bucket is rolled over lazily, when it is written or read, so an
idle node does no work and the memory per table is fixed (`slots` small integers x 3).

The number of tables is bounded too (`max_tables`): past it, the least recently written table
is dropped, so file names that mint table after table cannot grow the node's memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

BUCKET_SECONDS = 10
SLOTS = 360  # 360 x 10 s: the last hour
MAX_TABLES = 2000


@dataclass
class TableRates:
    """One table's totals since start and its ring of recent buckets."""

    rows: int = 0
    files: int = 0
    errors: int = 0
    last: float | None = None  # when the last file or error was counted
    head: int = -1  # the bucket number (time // bucket) of the newest slot
    ring_rows: list[int] = field(default_factory=list)
    ring_files: list[int] = field(default_factory=list)
    ring_errors: list[int] = field(default_factory=list)


class RateHistory:
    """Rows, files and errors per (dbms, table): totals, and per bucket over the last hour."""

    def __init__(self, clock: Callable[[], float] = time.time, bucket: int = BUCKET_SECONDS, slots: int = SLOTS,
                 max_tables: int = MAX_TABLES):
        self.clock = clock
        self.bucket = bucket
        self.slots = slots
        self.max_tables = max_tables
        self._tables: OrderedDict[tuple[str, str], TableRates] = OrderedDict()

    def add(self, dbms: str, table: str, rows: int = 0, files: int = 0, errors: int = 0) -> None:
        """Count a committed file (rows, files=1) or a failed one (errors=1) for dbms.table."""
        key = (dbms, table)
        t = self._tables.get(key)
        if t is None:
            t = self._tables[key] = TableRates(ring_rows=[0] * self.slots, ring_files=[0] * self.slots,
                                               ring_errors=[0] * self.slots)
            while len(self._tables) > self.max_tables:
                self._tables.popitem(last=False)
        else:
            self._tables.move_to_end(key)
        now = self.clock()
        self._roll(t, int(now // self.bucket))
        i = t.head % self.slots
        t.rows += rows
        t.files += files
        t.errors += errors
        t.ring_rows[i] += rows
        t.ring_files[i] += files
        t.ring_errors[i] += errors
        t.last = now

    def _roll(self, t: TableRates, number: int) -> None:
        """Move the ring's head to bucket `number`, zeroing the buckets skipped over."""
        if number <= t.head:
            return
        gap = number - t.head if t.head >= 0 else self.slots
        for k in range(min(gap, self.slots)):
            i = (number - k) % self.slots
            t.ring_rows[i] = t.ring_files[i] = t.ring_errors[i] = 0
        t.head = number

    def tables(self) -> list[tuple[str, str]]:
        return sorted(self._tables)

    def totals(self, dbms: str, table: str) -> TableRates | None:
        return self._tables.get((dbms, table))

    def series(self, dbms: str, table: str, what: str = "rows") -> list[int]:
        """The counts of the last `slots` buckets, oldest first, the current bucket last."""
        t = self._tables.get((dbms, table))
        if t is None:
            return [0] * self.slots
        self._roll(t, int(self.clock() // self.bucket))
        ring = {"rows": t.ring_rows, "files": t.ring_files, "errors": t.ring_errors}[what]
        start = t.head + 1
        return [ring[(start + k) % self.slots] for k in range(self.slots)]

    def end(self) -> float:
        """The start time of the current bucket (the last point of every series)."""
        return (self.clock() // self.bucket) * self.bucket

    def __len__(self) -> int:
        return len(self._tables)
