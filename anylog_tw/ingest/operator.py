"""The operator (`run operator`): JSON files in the watch dir become rows in the local databases.

Each file goes through one pipeline (spec §2.4, DESIGN "Data flow of a file"):

    parse the name -> first pass in a worker thread (hash, parse, map) -> table ensured (one
    file at a time per table) -> values adapted to the columns -> TSD row registered and the
    file renamed to its 8-segment name -> rows inserted in one transaction tagged with
    (tsd_name, tsd_id) -> TSD row marked done -> file archived (or deleted)

and any failure moves the file to the error dir with the reason, and the operator goes on; but
no space left (disk, quota, database) is no fault of the file: it stays in the watch dir and
ingest pauses until the retry goes through (`pause.py`).

Exactly once across a crash: every step is either idempotent or recorded before the next one
(see `tsd.py`).  With `durable` (the default) that holds across a power loss too: the rows'
commit is synced before the TSD row is marked done, that mark is synced, and the archived copy
is synced with its directory, all before the source file is removed (`Database.sync` shares one
flush among the files committing at the same time).  On restart the scan at start finds what was left in the watch dir: a file
whose TSD row is done is only archived; one whose row is pending is inserted again, after the
rows of the earlier attempt are deleted in the same transaction.

Up to `threads` workers run at once, each preparing one file (parsing, in the operator's
threads) while up to 16 small files it prepared before wait for their group commit on the
database's writer thread, which releases the GIL: parsing overlaps inserting.
"""

from __future__ import annotations

import datetime
import os
import time
from collections import deque
from dataclasses import replace

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from anylog_tw.base.errors import AnyLogError, StorageError, no_space
from anylog_tw.base.filename import KEEP_SCHEMA, FileName, parse_file_name, tsd_date
from anylog_tw.base.ingest_errors import IngestError
from anylog_tw.base.metrics import Metrics
from anylog_tw.base.process import NodeProcess
from anylog_tw.base.timefmt import format_utc
from anylog_tw.ingest import archive, pipeline, reader, tsd
from anylog_tw.ingest.handoff import Handoff
from anylog_tw.ingest.inserts import Inserter
from anylog_tw.ingest.jobs import SMALL_IN_FLIGHT, Job, OperatorConfig, Target
from anylog_tw.ingest.ledger_link import LedgerLink
from anylog_tw.ingest.mapping_policy import PolicyCache
from anylog_tw.ingest.pause import SpacePause
from anylog_tw.ingest.stats import OperatorStats
from anylog_tw.ingest.tables import TableKeeper
from anylog_tw.ingest.watcher import DirectoryWatcher
from anylog_tw.storage import schema
from anylog_tw.storage.engines import Databases


class Operator(NodeProcess):
    name = "Operator"
    exit_command = "exit operator"

    def __init__(self, config: OperatorConfig, link: LedgerLink):
        self.config = config
        self.link = link
        self.stats: OperatorStats | None = None
        self.watcher: DirectoryWatcher | None = None
        self.pool: ThreadPool | None = None
        self.queue: deque[str] = deque()
        self.queued: set[str] = set()
        self.in_hand: set[str] = set()
        self.stuck: set[str] = set()
        self._hashes: set[str] = set()
        self._tasks: set[Deferred] = set()
        self.tables = TableKeeper(self)
        self.inserter = Inserter(config)
        self._tsd_tables: set[str] = set()
        self.policies = PolicyCache()
        self._busy_since: float | None = None
        self.started_at = 0.0
        self.pause: SpacePause | None = None
        # Called as fn(job, rows) after each file is committed and archived (job.tsd_table and
        # job.tsd_id say which TSD row, job.name its 8-segment name): HA pushes on it.
        self.observers: list = []

    # -- life cycle --------------------------------------------------------------------------


    def startService(self) -> None:
        NodeProcess.startService(self)
        self.started_at = self.reactor.seconds()
        self.stats = OperatorStats(self.started_at)
        self.pause = SpacePause(self.reactor, self._kick)
        # Two threads per worker: one prepares a file while the other archives the previous one.
        self.pool = ThreadPool(minthreads=0, maxthreads=2 * max(1, self.config.threads), name="operator")
        self.pool.start()
        for path in (self.config.watch_dir, self.config.err_dir, self.config.archive_dir):
            os.makedirs(path, exist_ok=True)
        self.watcher = DirectoryWatcher(self.reactor, self.config.watch_dir, self.offer,
                                        rescan=self.config.rescan, use_inotify=self.config.use_inotify,
                                        in_thread=self.node.in_thread)
        self.watcher.start()
        sweep = self.node.in_thread(archive.sweep, self.config.watch_dir, self.config.err_dir, self.config.archive_dir,
                                     time.time())
        sweep.addErrback(lambda f: self.log.failure("removing stale temp files failed", f))
        metrics = self._metrics()
        metrics.watch_queue("operator", lambda: len(self.queue) + len(self.in_hand))

    def stopService(self) -> Deferred:
        NodeProcess.stopService(self)
        watching = self.watcher.stop() if self.watcher is not None else None
        if self.pause is not None:
            self.pause.stop()
        self.queue.clear()
        self.queued.clear()
        metrics = self._metrics()
        metrics.forget_queue("operator")

        async def drain() -> None:
            if watching is not None:
                await watching  # a scan in flight ends before the process is stopped
            if self._tasks:  # files in hand finish (a transaction cannot be abandoned half-way)
                await DeferredList(list(self._tasks), consumeErrors=True)
            if self.pool is not None:
                self.pool.stop()

        return Deferred.fromCoroutine(drain())

    def status(self) -> str:
        """`Running`, or why ingest is paused (`get operator`, `get processes`, `test node`)."""
        return self.pause.status() if self.pause is not None else ("Running" if self.running else "Stopped")

    def details(self) -> str:
        c = self.config
        text = f"Cluster Member: {bool(c.cluster)}, Using Master: {c.master_node or 'none'}"
        if self.pause is not None and self.pause.since is not None:
            text = f"{self.pause.status()}. {text}"
        if self.watcher is not None:
            text += f", Watching: {c.watch_dir} ({self.watcher.mode}), Threads: {c.threads}"
        return text

    # -- the queue ---------------------------------------------------------------------------

    def offer(self, name: str) -> None:
        """The watcher says `name` is complete: queue it unless it is queued or in hand already."""
        if not self.running or name in self.queued or name in self.in_hand or name in self.stuck:
            return
        self.queued.add(name)
        self.queue.append(name)
        self._kick()

    def _kick(self) -> None:
        if self.pause is not None and self.pause.paused:
            return  # the pause's timer kicks again
        while self.queue and len(self._tasks) < max(1, self.config.threads):
            d = Deferred.fromCoroutine(self._worker())
            self._tasks.add(d)
            d.addBoth(self._worker_ended, d)
            d.addErrback(lambda f: self.log.failure("operator worker failed", f))

    def _worker_ended(self, result, d: Deferred):
        """A file offered while the last worker was finishing its final insert found every worker
        slot taken and was only queued (and the watcher does not offer a queued name again): the
        slot is free now, so start a worker for it."""
        self._tasks.discard(d)
        if self.queue and self.running:
            self._kick()
        return result

    async def _worker(self) -> None:
        """Take files from the queue; the next file is prepared while the previous one is inserted.

        Two stages per file: `_prepare` (parse, map, table, adapt, register: mostly worker
        threads) and `_finish` (insert, done, archive: mostly the database's writer thread).  A
        worker starts preparing its next file as soon as it has handed the previous one to its
        finish, so parsing overlaps inserting even with `threads = 1`.
        """
        finishing: deque[Deferred] = deque()
        try:
            while self.queue and self.running and not self.pause.paused:
                name = self.queue.popleft()
                self.queued.discard(name)
                if self._busy_since is None:
                    self._busy_since = self.reactor.seconds()
                job = await self._stage(self._prepare, Job(name))
                if job is not None:
                    finishing.append(Deferred.fromCoroutine(self._stage(self._finish, job)))
                    # Small files may wait for their insert in numbers (they share a commit);
                    # any other file waits for the previous one first.
                    limit = SMALL_IN_FLIGHT if job.small else 1
                    while len(finishing) > limit:
                        await finishing.popleft()
                self._idle_check()
        finally:
            while finishing:
                await finishing.popleft()
            self._idle_check()

    def _idle_check(self) -> None:
        if not self.in_hand and not self.queue and self._busy_since is not None:
            self.stats.processing += self.reactor.seconds() - self._busy_since
            self._busy_since = None

    # -- one file ----------------------------------------------------------------------------

    def _thread(self, fn, *args) -> Deferred:
        return deferToThreadPool(self.reactor, self.pool, fn, *args)

    def _path(self, name: str) -> str:
        return os.path.join(self.config.watch_dir, name)

    async def _stage(self, step, job: Job) -> Job | None:
        """Run one stage of a file; on failure the file goes to the error dir and None comes back.

        No space left (the disk, a quota, the database) is not the file's fault: the file stays
        in the watch dir for the retry, and ingest pauses (`_wait_for_space`).
        """
        try:
            return await step(job)
        except Exception as e:
            failure = e
        if no_space(failure):
            self._wait_for_space(job, failure)
            return None
        if isinstance(failure, IngestError):
            await self._fail(job, failure.reason, failure.message)
        elif isinstance(failure, StorageError):
            self.tables.forget(job.dbms, job.table)  # the table may have changed under us
            for t in job.targets:
                self.tables.forget(t.db.name, t.table)
            await self._fail(job, "insert", failure.message)
        elif isinstance(failure, AnyLogError):
            await self._fail(job, "insert", failure.message)
        else:
            self.log.failure("ingesting {name} failed", Failure(failure), name=job.name)
            await self._fail(job, "io", f"{type(failure).__name__}: {failure}")
        self._release(job)
        return None

    def _wait_for_space(self, job: Job, error: BaseException) -> None:
        """Keep the file in the watch dir, first in the queue, and pause until the retry."""
        self._release(job)
        if job.name and job.name not in self.queued:
            self.queued.add(job.name)
            self.queue.appendleft(job.name)
        self.pause.hold(getattr(error, "message", None) or str(error))

    def _release(self, job: Job) -> None:
        self.in_hand.discard(job.first_name)
        self.in_hand.discard(job.name)
        self._hashes.discard(job.hash)

    async def _prepare(self, job: Job) -> Job | None:
        """Everything up to the insert: None when the file is already handled (or was only archived)."""
        if job.name in self.in_hand or not os.path.isfile(self._path(job.name)):
            return None  # already handled (a second report of the same file)
        job.first_name = job.name
        job.start = self.reactor.seconds()
        self.in_hand.add(job.name)
        fname = job.fname = parse_file_name(job.name)
        job.dbms, job.table = fname.dbms, fname.table
        if fname.member == "@":  # the streamer inserted these rows already
            job.date = fname.tsd_date or tsd_date(self.reactor.seconds())
            await self._archive(job, fname.registered_as(self.config.member, fname.tsd_id, job.date))
            self._done(job, 0)
            return None
        policy = None
        keep_schema = fname.instructions == KEEP_SCHEMA
        if fname.instructions not in ("0", KEEP_SCHEMA) and fname.type == "json":
            found = self.link.mapping_policy(fname.instructions)
            if found is None:
                raise IngestError("mapping", f"no mapping policy {fname.instructions!r} in the ledger "
                                             f"(the file's instructions segment names it)")
            policy = job.policy = self.policies.compiled(found)
            job.dbms, job.table = policy.dbms or job.dbms, policy.table or job.table
        if policy is None or not policy.per_row:
            _find_dbms(self.node, job.dbms)
            self._check_limit(job.dbms, job.table)
        parsed = await self._thread(pipeline.first_pass, self._path(job.name), fname, policy,
                                    (job.dbms, job.table), self.config.blobs_dir, pipeline.SMALL, reader.CHUNK,
                                    self.config.limits, self.node.component(Handoff))
        job.big, job.rows = parsed.big, parsed.rows
        for (dbms, table), part in parsed.parts.items():
            self._check_limit(dbms, table)
            db = _find_dbms(self.node, dbms)
            columns, ddl = await self.tables.ensure(db, part, parsed.create.get((dbms, table)), keep_schema)
            target = Target(dbms, table, db, columns, part.rows, ddl=ddl)
            if not job.big:
                target.adapted = await self._thread(pipeline.adapt, part.batch, columns, db.engine)
                part.batch = None  # the adapted columns are all the insert needs
            job.targets.append(target)
        if self.config.update_tsd_info:
            await self._register(job, parsed)
            if job.done:  # inserted before a restart: only the archiving was left
                if self.config.durable:
                    await self._almgm().sync()  # the done row may be in the OS's cache only
                await self._archive(job, job.fname)
                self._done(job, 0)
                return None
        if not job.big:
            for t in job.targets:
                if t.db.engine == schema.PSQL:
                    t.adapted = await self._thread(pipeline.copy_text, t.adapted, job.tsd_name, job.tsd_id)
        return job

    def _check_limit(self, dbms: str, table: str) -> None:
        if not self.config.allows(dbms, table):
            raise IngestError("limit", f"table {dbms}.{table} is not in limit_tables "
                                       f"({', '.join(self.config.limit_tables)})")

    async def _finish(self, job: Job) -> None:
        """The insert (one transaction per dbms, inserts.py), the TSD row marked done, the file archived."""
        rows = await self.inserter.insert(job, self._path(job.name))
        for t in job.targets:
            if t.ddl:  # a .sql file's CREATE made the table: publish it like one we inferred
                await self.tables.created(t.db, t.table, t.ddl)
        if self.config.update_tsd_info:
            await self._almgm().transaction(tsd.mark_done, job.tsd_table, job.tsd_id, rows)
            if self.config.durable:
                await self._almgm().sync()  # "done" on disk before the source file goes
        await self._archive(job, job.fname)
        self._done(job, rows)

    def _done(self, job: Job, rows: int) -> None:
        now = self.reactor.seconds()
        metrics = self._metrics()
        targets = [(t.dbms, t.table, t.rows if rows else 0) for t in job.targets] or [(job.dbms, job.table, rows)]
        for dbms, table, n in targets:
            self.stats.file_done(dbms, table, n, now - job.start, now, job.kind)
            labels = metrics.table_labels(dbms, table)
            metrics.rows_ingested.labels(**labels).inc(n)
            metrics.files_ingested.labels(**labels).inc()
            metrics.ingest_history.add(dbms, table, rows=n, files=1)
        self.log.debug("ingested {rows} rows from {name}", rows=rows, name=job.name)
        self.pause.succeeded()
        for observer in list(self.observers):
            try:
                observer(job, rows)
            except Exception:
                self.log.failure("an ingest observer failed on {name}", name=job.name)
        self._release(job)

    # -- TSD -----------------------------------------------------------------------------------

    def _almgm(self):
        db = self.node.component(Databases).find(tsd.TSD_DBMS)
        if db is None:
            raise IngestError("dbms", "dbms 'almgm' is not connected: the operator records every file in "
                                      "almgm.tsd_info (connect dbms almgm where type = sqlite)")
        return db

    async def _register(self, job: Job, parsed: pipeline.Parsed) -> None:
        fname = job.fname
        job.tsd_table = tsd.tsd_table(fname.member, self.config.member)
        own = job.tsd_table == "tsd_info"
        job.hash = parsed.hash if fname.hash == "0" else fname.hash
        if job.hash in self._hashes:
            job.hash = ""
            raise IngestError("duplicate", f"a file with the same hash ({parsed.hash}) is being ingested now")
        self._hashes.add(job.hash)
        almgm = self._almgm()
        if job.tsd_table not in self._tsd_tables:
            await almgm.create_tsd_table(job.tsd_table)
            self._tsd_tables.add(job.tsd_table)
        now = self.reactor.seconds()
        row, new = await almgm.transaction(
            tsd.register, job.tsd_table, job.dbms, job.table, fname.source, job.hash, fname.instructions,
            schema.format_timestamp(_utc(now)), None if own else fname.tsd_id, True)
        same_file = fname.registered and fname.tsd_id == row.file_id
        job.done, job.redo = tsd.judge(row, new, job.tsd_table, job.hash, own, same_file, fname.tsd_id)
        job.tsd_id = row.file_id
        job.tsd_name = self.config.member if own else str(int(fname.member))
        job.date = fname.tsd_date if same_file and fname.tsd_date else tsd_date(now)
        if own:
            registered = replace(fname, hash=job.hash).registered_as(self.config.member, row.file_id, job.date)
            new_name = registered.format()
            if new_name != job.name:
                self.in_hand.add(new_name)
                await self._thread(archive.rename_in_place, self.config.watch_dir, job.name, new_name)
                self.in_hand.discard(job.name)
                job.name, job.fname = new_name, registered

    # -- disposal ------------------------------------------------------------------------------

    async def _archive(self, job: Job, fname: FileName) -> None:
        path = self._path(job.name)
        try:
            if self.config.archive_json:
                await self._thread(archive.archive, path, self.config.archive_dir,
                                   job.date or tsd_date(self.reactor.seconds()), fname.format(gz=False),
                                   fname.gz, self.config.compress_json, self.config.durable)
            else:
                await self._thread(archive.delete, path)
        except OSError as e:
            if no_space(e):
                raise  # a pause, not a bad file
            raise IngestError("archive", f"cannot archive {job.name}: {e}") from None

    async def _fail(self, job: Job, reason: str, message: str) -> None:
        now = self.reactor.seconds()
        text = f"{job.name}: {message}"
        self.stats.file_failed(job.dbms, job.table, reason, text, now, job.kind)
        self.node.errors.add("operator", job.name, text)
        self.log.error("operator: {name} failed ({reason}): {message}", name=job.name, reason=reason, message=message)
        metrics = self._metrics()
        metrics.ingest_errors.labels(stage=reason).inc()
        if job.dbms and job.table:
            metrics.ingest_history.add(job.dbms, job.table, errors=1)
        if job.tsd_id and not job.done and self.config.update_tsd_info:
            await self._mark_failed(job, f"{reason}: {message}")
        try:
            await self._thread(archive.move_to_error, self._path(job.name), self.config.err_dir, job.name, reason,
                               int(time.time()))
        except FileNotFoundError:
            pass
        except OSError as e:
            self.stuck.add(job.name)  # never retried in a loop; it stays in the watch dir
            self.log.error("cannot move {name} to the error dir: {error}", name=job.name, error=e)

    async def _mark_failed(self, job: Job, why: str) -> None:
        """The file's TSD row says it failed (before the file moves: a crash in between redoes it)."""
        try:
            await self._almgm().transaction(tsd.mark_failed, job.tsd_table, job.tsd_id, why)
        except Exception as e:  # almgm itself may be what failed; the file still goes to the error dir
            self.log.error("cannot record the failure of {name} in {table}: {error}", name=job.name,
                           table=job.tsd_table, error=e)

    def _metrics(self) -> Metrics:
        return self.node.component(Metrics)

    # -- status --------------------------------------------------------------------------------

    def config_row(self) -> list:
        c = self.config
        return [self.status() if self.running else "Stopped", format_utc(self.started_at), c.policy, c.cluster,
                c.member]


def _find_dbms(node, dbms: str):
    db = node.component(Databases).find(dbms)
    if db is None:
        raise IngestError("dbms", f"dbms '{dbms}' is not connected (connect dbms {dbms} where type = sqlite)")
    return db


def _utc(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).replace(tzinfo=None)


