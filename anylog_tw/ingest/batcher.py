"""Group commit: small files waiting for the same dbms share one insert transaction.

A commit costs a disk flush (PostgreSQL with its durable defaults: several milliseconds), which
for files of a few rows costs more than the rows.  Files that reach the insert while another
transaction of the same dbms is being committed wait, and then all go in the next transaction
together (at most `max_files` files or `max_rows` rows).  Each file's rows keep their own
(tsd_name, tsd_id) tag and each file's TSD row is still marked done on its own afterwards, so
exactly-once holds as for a file alone.  If a shared transaction fails, its files are inserted
again one by one, so one bad file never fails the others.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from anylog_tw.ingest import pipeline


def insert_many(tx, items: list[tuple]) -> list[int]:
    """Several files' rows in one transaction (each item: the arguments of `insert_small`)."""
    return [pipeline.insert_small(tx, *item) for item in items]


class GroupCommit:
    log = Logger()

    def __init__(self, db, max_files: int = 64, max_rows: int = 50_000):
        self.db = db
        self.max_files = max_files
        self.max_rows = max_rows
        self.pending: list[tuple[tuple, int, Deferred]] = []
        self.busy = False
        self.transactions = 0
        self.files = 0

    async def insert(self, item: tuple, rows: int) -> int:
        """Insert one small file's rows (the arguments of `insert_small`); its row count."""
        d: Deferred = Deferred()
        self.pending.append((item, rows, d))
        if not self.busy:
            self.busy = True
            Deferred.fromCoroutine(self._run()).addErrback(
                lambda f: self.log.failure("group commit on {dbms} failed", f, dbms=self.db.name))
        return await d

    def _take(self) -> list[tuple[tuple, int, Deferred]]:
        batch, rows = [], 0
        while self.pending and len(batch) < self.max_files:
            if batch and rows + self.pending[0][1] > self.max_rows:
                break
            entry = self.pending.pop(0)
            batch.append(entry)
            rows += entry[1]
        return batch

    async def _run(self) -> None:
        try:
            while self.pending:
                batch = self._take()
                self.transactions += 1
                self.files += len(batch)
                if len(batch) == 1:
                    await self._one(batch[0])
                    continue
                try:
                    counts = await self.db.transaction(insert_many, [item for item, _, _ in batch])
                except Exception:
                    for entry in batch:  # find the bad file: each alone, each its own outcome
                        await self._one(entry)
                    continue
                for (_, _, d), n in zip(batch, counts):
                    d.callback(n)
        finally:
            self.busy = False

    async def _one(self, entry: tuple[tuple, int, Deferred]) -> None:
        item, _, d = entry
        try:
            n: Any = await self.db.transaction(pipeline.insert_small, *item)
        except Exception as e:
            d.errback(e)
        else:
            d.callback(n)
