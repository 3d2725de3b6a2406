"""The insert stage of one file: its rows for each dbms in one transaction, undone together.

A file's rows usually go to one table.  A mapping policy that brings the dbms or the table from
the data can send them to several, in several dbms: each dbms gets one transaction holding all
of the file's tables there (small files through that dbms's group commit, batcher.py; big files
read again chunk by chunk, pipeline.insert_big).  If a later dbms refuses its rows, the rows the
earlier ones committed are deleted again (every row carries the file's (tsd_name, tsd_id)), so
the file goes to the error dir with no row of it anywhere.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from twisted.logger import Logger

from anylog_tw.ingest import pipeline
from anylog_tw.ingest.batcher import GroupCommit
from anylog_tw.ingest.jobs import Job, OperatorConfig, Target


def by_dbms(targets: list[Target]) -> list[tuple[Any, list[Target]]]:
    """The targets grouped by their database, in the order they first appear."""
    groups: dict[str, tuple[Any, list[Target]]] = {}
    for t in targets:
        groups.setdefault(t.db.name, (t.db, []))[1].append(t)
    return list(groups.values())


class Inserter:
    log = Logger()

    def __init__(self, config: OperatorConfig):
        self.config = config
        self.groups: dict[str, GroupCommit] = {}

    async def insert(self, job: Job, path: str) -> int:
        """All of a file's rows, committed (and synced when durable), or none of them: the rows."""
        rows = 0
        committed: list[tuple[Any, list[Target]]] = []
        try:
            for db, targets in by_dbms(job.targets):
                rows += await self._one(job, db, targets, path)
                committed.append((db, targets))
                if self.config.durable:
                    await db.sync()  # the rows on disk before the TSD row says so
        except BaseException:
            await self._undo(job, committed)
            raise
        return rows

    async def _one(self, job: Job, db, targets: list[Target], path: str) -> int:
        ddl = [s for t in targets for s in t.ddl]
        if job.big:
            tables = {(t.dbms, t.table): t.columns for t in targets}
            return await db.transaction(pipeline.insert_big, tables, path,
                                        replace(job.fname, dbms=job.dbms, table=job.table), job.policy,
                                        job.tsd_name, job.tsd_id, job.redo, None, self.config.limits, ddl,
                                        self.config.blobs_dir)
        parts = [(t.table, t.columns, t.adapted, t.ddl) for t in targets]
        for t in targets:
            t.adapted = None
        item = (parts, job.tsd_name, job.tsd_id, job.redo)
        group = self.groups.get(db.name)
        if group is None or group.db is not db:
            group = self.groups[db.name] = GroupCommit(db)
        return await group.insert(item, sum(t.rows for t in targets))

    async def _undo(self, job: Job, committed: list) -> None:
        for db, targets in committed:
            try:
                await db.transaction(pipeline.delete_tagged, [t.table for t in targets], job.tsd_name, job.tsd_id)
            except Exception as e:
                self.log.error("cannot remove the rows of failed file {name} from {dbms}: {error}", name=job.name,
                               dbms=db.name, error=e)
