"""SQLite, the embedded default: one file per dbms, one writer thread per database.

The file is `<dbms_dir>/<dbms>.dbms` (or RAM with `memory = true`).  Every statement runs on a
thread pool of exactly one thread that belongs to this database (started on open, stopped on
close; not the reactor's shared pool), so SQLite sees a single connection used by a single
thread, and a slow statement of one dbms never delays another dbms or the reactor.  WAL with
synchronous=NORMAL: a commit is one WAL append, durable across a process crash (the OS keeps
the WAL), which is what the operator's exactly-once bookkeeping needs.  Durable across a power
loss too once `sync()` has run: it fsyncs the WAL, which holds every commit since the last
checkpoint (a checkpoint syncs what it copies), and callers arriving while one fsync runs share
the next one, so many files' commits cost one flush (group commit for the disk).

Reads: a file database also has a read-only connection (`PRAGMA query_only`) on a second
one-thread pool, and `select` statements go there.  WAL lets it read the last committed state
while the writer is inside a long transaction, so a user's query does not wait behind a
million-row insert (measured in bench/storage.py: the latency of a count during a bulk insert).
Every write is committed before its call returns, so a read issued after it sees it.  A memory
database has only the writer connection (a second connection would see another database).

Users' `sql` (`statement`) has reader connections of its own, an authorizer for the caller's grant
and a deadline (sqlite_user.py); it reaches the writer only for what the grant lets it write.
"""

from __future__ import annotations

import datetime
import decimal
import functools
import itertools
import json
import os
import sqlite3
from typing import Any, Callable, Iterable, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from anylog_tw.base.atomic import fsync_dir
from anylog_tw.base.errors import NotFound, StorageError
from anylog_tw.base.registry import grant_allows
from anylog_tw.storage import schema, sqlfmt
from anylog_tw.storage.base import Database, Params, Transaction
from anylog_tw.storage.confine import Authorizer
from anylog_tw.storage.deadline import Deadline
from anylog_tw.storage.sqlite_user import NeedsGrant, Shape, UserReaders, plain_shape, run_confined

# Values sqlite3 cannot bind by itself, stored the way schema.adapt stores them (global to the
# sqlite3 module, as its adapters are; the forms match what PostgreSQL receives).
sqlite3.register_adapter(datetime.datetime, schema.format_timestamp)
sqlite3.register_adapter(datetime.date, lambda d: d.isoformat())
sqlite3.register_adapter(decimal.Decimal, float)
sqlite3.register_adapter(dict, lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False))
sqlite3.register_adapter(list, lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False))


class SQLiteTransaction(Transaction):
    engine = schema.SQLITE

    def execute(self, sql: str, params: Params = None) -> int:
        self.cursor.execute(sql, params or ())
        return self.cursor.rowcount

    def insert_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        statement = schema.insert_sql(table, columns)
        return insert_blocks(self.cursor, statement[:statement.rindex(" VALUES ") + 8], len(columns), rows, table)


BLOCK_ROWS = 1024


def insert_blocks(cursor: sqlite3.Cursor, head: str, width: int, rows: Iterable[Sequence[Any]], what: str) -> int:
    """Rows as multi-row INSERTs (`head` is `INSERT INTO "t" ("a", "b") VALUES `) of up to
    BLOCK_ROWS rows, not `executemany`; -> the rows inserted.

    sqlite3 lets go of the GIL around every step, and `executemany` steps once a row: while
    the reactor thread is busy (a burst of messages), each step then waits for the GIL to
    come back: 1,300-row inserts beside a spinning thread ran at 1,400 rows/s.  One statement
    of many rows steps once: 30,000 rows/s there, and 1.7x executemany's rate on a quiet
    machine (bench/storage.py).  A block shorter than BLOCK_ROWS goes as power-of-two
    statements, so a table has at most eleven statement texts and sqlite3's statement cache
    compiles each once (compiling costs about 1 µs a row, five times the insert).
    """
    per = block_rows(width, cursor.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    it = iter(rows)
    total = 0
    while True:
        block = list(itertools.islice(it, per))
        if not block:
            return total
        if any(len(row) != width for row in block):  # flattened, a short and a long row would pair up
            k, row = next((k, row) for k, row in enumerate(block) if len(row) != width)
            raise sqlite3.ProgrammingError(f"row {total + k + 1} of the insert into {what!r} has {len(row)} "
                                           f"values for {width} columns")
        start, left = 0, len(block)
        while left:
            n = per if left >= per else 1 << (left.bit_length() - 1)
            cursor.execute(_block_sql(head, width, n), list(itertools.chain.from_iterable(block[start:start + n])))
            total += cursor.rowcount
            start, left = start + n, left - n


def block_rows(width: int, max_variables: int) -> int:
    """Rows in one INSERT of `width` columns: a power of two, at most BLOCK_ROWS, and within
    the build's limit of bound variables (32,766 since SQLite 3.32, 999 before)."""
    fits = max(1, max_variables // max(1, width))
    return min(BLOCK_ROWS, 1 << (fits.bit_length() - 1))


@functools.lru_cache(maxsize=256)
def _block_sql(head: str, width: int, n: int) -> str:
    row = "(" + ", ".join(["?"] * width) + ")"
    return head + ", ".join([row] * n)


class SQLiteDatabase(Database):
    engine = schema.SQLITE

    def __init__(self, name: str, reactor, directory: str | None = None, memory: bool = False):
        super().__init__(name, reactor)
        self.memory = memory
        if not memory and not directory:
            raise StorageError(f"dbms '{self.name}': no directory for the database file (dbms_dir is not set)")
        self.path = ":memory:" if memory else os.path.join(directory, f"{self.name}.dbms")
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=f"sqlite-{self.name}")
        self._conn: sqlite3.Connection | None = None
        self._rpool = None if memory else ThreadPool(minthreads=1, maxthreads=1, name=f"sqlite-{self.name}-read")
        self._rconn: sqlite3.Connection | None = None
        self._users = None if memory else UserReaders(self.path, self.name, reactor)
        self._sync_waiting: list[Deferred] = []
        self._syncing = False
        self._dir_synced = False
        self.syncs = 0  # fsyncs done (each may serve many callers)

    # -- the writer thread -------------------------------------------------------------------

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        self._check_open()
        return await deferToThreadPool(self.reactor, self._pool, fn, *args)

    def _reads(self, sql: str) -> bool:
        """Whether the statement runs on the reader connection (file databases, plain selects)."""
        return self._rpool is not None and sqlfmt.statement_kind(sql) == "select"

    async def _read(self, fn: Callable[..., Any]) -> Any:
        self._check_open()
        return await deferToThreadPool(self.reactor, self._rpool, fn)

    def _connect_reader(self) -> None:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA query_only = 1")
        self._rconn = conn

    def _connect(self) -> None:
        if not self.memory:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        try:
            if not self.memory:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error:
            conn.close()
            raise
        self._conn = conn

    async def open(self) -> None:
        self._pool.start()
        if self._rpool is not None:
            self._rpool.start()
            self._users.start()
        try:
            await self._call(self._guard(self._connect, None))
            if self._rpool is not None:
                await self._read(self._guard(self._connect_reader, None))
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.interrupt("the dbms is being disconnected (or the node is stopping)")
        if self._users is not None:
            # In a thread: stop() joins the reader threads, which the interrupt has just set free.
            await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._users.stop)
        for pool, attr in ((self._rpool, "_rconn"), (self._pool, "_conn")):
            if pool is None:
                continue
            conn = getattr(self, attr)
            setattr(self, attr, None)
            try:
                # Queued behind any statement in flight, so the thread is idle when stop() joins it.
                if conn is not None:
                    await deferToThreadPool(self.reactor, pool, conn.close)
            finally:
                pool.stop()

    async def sync(self) -> None:
        if self.memory:
            return
        self._check_open()
        d: Deferred = Deferred()
        self._sync_waiting.append(d)
        if not self._syncing:
            self._syncing = True
            Deferred.fromCoroutine(self._sync_rounds())
        await d

    async def _sync_rounds(self) -> None:
        """fsync rounds until nobody waits; a caller that came during a round waits for the next,
        since its commit may have landed after that fsync began."""
        try:
            while self._sync_waiting:
                batch, self._sync_waiting = self._sync_waiting, []
                try:
                    await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._fsync_wal)
                except Exception as e:
                    error = e if isinstance(e, StorageError) else StorageError(
                        f"dbms '{self.name}': cannot sync {self.path}: {e}")
                    error.__cause__ = e
                    for d in batch:
                        d.errback(error)
                else:
                    self.syncs += 1
                    for d in batch:
                        d.callback(None)
        finally:
            self._syncing = False

    def _fsync_wal(self) -> None:
        if not self._dir_synced:  # the WAL's own name, made when the database was opened
            fsync_dir(os.path.dirname(self.path))
            self._dir_synced = True
        try:
            fd = os.open(self.path + "-wal", os.O_RDONLY)
        except FileNotFoundError:  # no WAL (yet): everything is in the database file
            fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def describe(self) -> dict[str, str]:
        return {"Type": "sqlite", "Owner": "", "IP:Port": "",
                "Configuration": "memory" if self.memory else "WAL, synchronous=NORMAL",
                "Storage": "memory" if self.memory else self.path}

    # -- statements --------------------------------------------------------------------------

    def _guard(self, fn: Callable[..., Any], sql: str | None) -> Callable[..., Any]:
        """fn, with sqlite3 errors turned into StorageErrors naming the statement (in the thread)."""

        def guarded(*args: Any) -> Any:
            try:
                return fn(*args)
            except sqlite3.Error as e:
                raise self.failed(e, sql) from None

        return guarded

    def _cursor(self) -> sqlite3.Cursor:
        if self._conn is None:
            raise StorageError(f"dbms '{self.name}' is disconnected")
        return self._conn.cursor()

    async def execute(self, sql: str, params: Params = None) -> int:
        def run() -> int:
            return SQLiteTransaction(self._cursor()).execute(sql, params)

        return await self._call(self._guard(run, sql))

    async def query(self, sql: str, params: Params = None) -> tuple[list[str], list[tuple]]:
        if self._reads(sql):
            def read() -> tuple[list[str], list[tuple]]:
                return SQLiteTransaction(self._reader()).query(sql, params)

            return await self._read(self._guard(read, sql))

        def run() -> tuple[list[str], list[tuple]]:
            return SQLiteTransaction(self._cursor()).query(sql, params)

        return await self._call(self._guard(run, sql))

    def _reader(self) -> sqlite3.Cursor:
        if self._rconn is None:
            raise StorageError(f"dbms '{self.name}' is disconnected")
        return self._rconn.cursor()

    async def statement(self, sql: str, grant: str = "owner", timeout: float | None = None,
                        limit: int | None = None, shape: Shape | None = None) -> Any:
        """On a user reader as `read` first; on the writer, under the caller's grant, only when it must
        (see sqlite_user.py).  The deadline covers both, queueing included."""
        self._check_open()
        shape = shape or plain_shape
        deadline = Deadline(timeout, self.name)
        self.running.add(deadline)
        try:
            if self._users is not None:
                try:
                    return await self._users.run(self._guard(run_confined, sql), sql, Authorizer("read"), deadline,
                                                 limit, shape, True)
                except NeedsGrant as e:
                    needs = e.authorizer.needs()
                    if needs == "transaction" or not (grant == "owner" or grant_allows(grant, needs)):
                        raise e.authorizer.refusal(self.name, grant) from None
                except StorageError:
                    # What the owner attached lives on the writer's connection only: an owner's statement
                    # the readers cannot run gets its chance there.
                    if grant != "owner" or deadline.stopped():
                        raise

            def on_writer() -> Any:
                return run_confined(self._cursor().connection, sql, Authorizer(grant), deadline, limit, shape, False)

            try:
                return await self._call(self._guard(on_writer, sql))
            except NeedsGrant as e:
                raise e.authorizer.refusal(self.name, grant) from None
        finally:
            self.running.discard(deadline)

    async def transaction(self, fn: Callable[..., Any], *args: Any) -> Any:
        def run() -> Any:
            conn = self._conn
            if conn is None:
                raise StorageError(f"dbms '{self.name}' is disconnected")
            cur = conn.cursor()
            cur.execute("BEGIN")
            try:
                result = fn(SQLiteTransaction(cur), *args)
                cur.execute("COMMIT")
                return result
            except BaseException as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    raise self.failed(e, getattr(e, "sql", None)) from None
                raise
            finally:
                cur.close()

        return await self._call(run)

    async def scan(self, sql: str, params: Params, fn: Callable[..., Any], *args: Any, batch: int = 5000) -> Any:
        self._check_open()
        if self.memory:  # the writer's connection is the only one that sees a memory database
            return await self._call(self._guard(self._scan_on, sql), self._cursor, sql, params, fn, args, batch)

        def scan_file() -> Any:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            try:
                conn.execute("PRAGMA query_only = 1")
                conn.execute("BEGIN")  # one WAL snapshot for the whole read
                return self._scan_on(conn.cursor, sql, params, fn, args, batch)
            finally:
                conn.close()

        return await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._guard(scan_file, sql))

    @staticmethod
    def _scan_on(cursor: Callable[[], sqlite3.Cursor], sql: str, params: Params, fn: Callable[..., Any],
                 args: tuple, batch: int) -> Any:
        cur = cursor()
        try:
            cur.execute(sql, params or ())
            columns = [d[0] for d in cur.description or ()]
            return fn(columns, iter(lambda: cur.fetchmany(batch), []), *args)
        finally:
            cur.close()

    # -- tables ------------------------------------------------------------------------------

    async def tables(self) -> list[str]:
        _, rows = await self.query("SELECT name FROM sqlite_master WHERE type = 'table' "
                                   "AND name NOT LIKE 'sqlite_%' ORDER BY name")
        return [r[0] for r in rows]

    async def columns(self, table: str) -> list[tuple[str, str]]:
        _, rows = await self.query(f"PRAGMA table_info({schema.quote(table, 'table name')})")
        if not rows:
            raise NotFound(f"table '{table}' does not exist in dbms '{self.name}'")
        return [(r[1], r[2]) for r in rows]
