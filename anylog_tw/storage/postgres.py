"""PostgreSQL: txpostgres for statements and DDL, psycopg2 COPY on a writer thread for bulk work.

Users' `sql` has connections of its own (pg_user.py: psycopg 3, read-only for `read`, a deadline).
Besides those, two connections per dbms, each with one job:
* a txpostgres (non-blocking psycopg2) connection for `execute`, `query`, `statement`, DDL and
  catalog reads.  It is opened by `connect dbms` (so a server that is not there is an error at
  once) and re-opened lazily by the next call after it was lost (server restart, terminated
  backend): the call that was in flight fails with a clear error, later calls reconnect.
* a blocking psycopg2 connection owned by a one-thread pool of this dbms, for `transaction` and
  `bulk_insert`, which uses COPY (txpostgres cannot COPY, and a COPY sent through it wedges the
  connection).  It is made on first use, pinged when the server wrote to it while idle, and replaced when lost.

As in AnyLog the PostgreSQL database is named after the dbms unless `database = ..` names
another, and it is created (from the `postgres` maintenance database) when missing.
"""

from __future__ import annotations

import itertools
import select
from typing import Any, Callable, Iterable, Sequence

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from twisted.internet import main
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from txpostgres import txpostgres

from anylog_tw.base.errors import NotFound, StorageError
from anylog_tw.storage import confine, schema, sqlfmt
from anylog_tw.storage.base import Database, Params, Transaction, cursor_result
from anylog_tw.storage.deadline import Deadline
from anylog_tw.storage.pg_user import PostgresUsers

CONNECT_TIMEOUT = 10.0  # seconds; async libpq connects have no timeout of their own
BACKSTOP = 5.0  # seconds past a user statement's deadline before the node cancels it itself


def _params(sql: str, params: Params) -> tuple[str, Any]:
    """The statement and parameters as psycopg2 wants them (`%s`, and no formatting without params)."""
    if params is None or len(params) == 0:
        return sql, None
    return sqlfmt.to_pyformat(sql), tuple(params)


class PostgresTransaction(Transaction):
    engine = schema.PSQL

    def execute(self, sql: str, params: Params = None) -> int:
        self.cursor.execute(*_params(sql, params))
        return self.cursor.rowcount

    def insert_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        if not columns:
            raise StorageError(f"an insert into {table!r} needs at least one column")
        cols = ", ".join(schema.quote(c, "column name") for c in columns)
        reader = sqlfmt.CopyReader(rows, len(columns))
        self.cursor.copy_expert(f"COPY {schema.quote(table, 'table name')} ({cols}) FROM STDIN", reader,
                                size=1 << 20)
        return reader.count


class _Connection(txpostgres.Connection):
    """A txpostgres connection that notices, quietly, when the server closes it while idle.

    Stock txpostgres raises out of `doRead` when an idle connection is closed by the server, and
    the reactor logs that as an unhandled error; here it only marks the connection lost, and
    the Database opens a new one on the next call.
    """

    lost = False

    def doRead(self):
        try:
            return txpostgres.Connection.doRead(self)
        except psycopg2.Error:
            self.lost = True
            return main.CONNECTION_LOST

    def connectionLost(self, reason):
        self.lost = True
        txpostgres.Connection.connectionLost(self, reason)

    @property
    def usable(self) -> bool:
        return not self.lost and self._connection is not None and not self._connection.closed


DROP_WAIT = 5.0  # seconds a drop table waits for a table another session holds


class PostgresDatabase(Database):
    engine = schema.PSQL

    def __init__(self, name: str, reactor, ip: str | None = None, port: int | None = None,
                 user: str | None = None, password: str | None = None, database: str | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT):
        super().__init__(name, reactor)
        self.ip = ip or "127.0.0.1"
        self.port = int(port or 5432)
        self.user = user or "postgres"
        self.database = schema.check_name(database or self.name, "database name")
        self._password = password or ""
        self.connect_timeout = connect_timeout
        self._conn: _Connection | None = None
        self._connecting: Deferred | None = None
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=f"psql-{self.name}")
        self._writer: psycopg2.extensions.connection | None = None
        self._users = PostgresUsers(self)
        self.powers: list[str] = []  # what the role may do on the server's files and programs (confine.py)

    def dsn(self, database: str | None = None) -> str:
        return psycopg2.extensions.make_dsn(host=self.ip, port=self.port, user=self.user,
                                            password=self._password or None, dbname=database or self.database,
                                            connect_timeout=int(self.connect_timeout),
                                            application_name=f"anylog-tw:{self.name}")

    @property
    def where(self) -> str:
        return f"PostgreSQL at {self.ip}:{self.port}"

    # -- the txpostgres connection -----------------------------------------------------------

    async def _open_connection(self, database: str) -> _Connection:
        conn = _Connection(self.reactor)
        timer = self.reactor.callLater(self.connect_timeout, conn.close)
        try:
            await conn.connect(self.dsn(database))
        except Exception as e:  # psycopg2.Error, or ConnectionDone when the timer closed it
            if not timer.active():
                raise StorageError(f"dbms '{self.name}': no answer from {self.where} within "
                                   f"{self.connect_timeout:g}s") from None
            text = " ".join(str(e).split())
            raise StorageError(f"dbms '{self.name}': cannot connect to {self.where} "
                               f"(database '{database}', user '{self.user}'): {text}") from None
        finally:
            if timer.active():
                timer.cancel()
        return conn

    async def _connection(self) -> _Connection:
        self._check_open()
        if self._conn is not None and self._conn.usable:
            return self._conn
        if self._conn is not None:
            self._drop_connection()
        if self._connecting is None:
            self._connecting = Deferred.fromCoroutine(self._open_connection(self.database))
            self._connecting.addBoth(self._connected)
        waiter: Deferred = Deferred()
        self._connecting.addBoth(lambda r: (waiter.callback(r), r)[1])
        conn = await waiter
        if self.closed:  # disconnected while connecting
            conn.close()
            self._check_open()
        return conn

    def _connected(self, result):
        self._connecting = None
        if isinstance(result, _Connection):
            self._conn = result
        return result

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and conn._connection is not None:
            conn.close()

    async def _run(self, sql: str, params: Params, want: str) -> Any:
        conn = await self._connection()
        pysql, args = _params(sql, params)

        def run():
            cur = conn.cursor()
            return cur.execute(pysql, args).addCallback(cursor_result)

        try:
            columns, rows, count = await conn.lock.run(run)
        except psycopg2.Error as e:
            raise self._failed_on(conn, e, sql) from None
        finally:
            await self._end_stray_transaction(conn)
        if want == "count":
            return count
        if want == "rows":
            return (columns or [], rows)
        return columns, rows, count

    def _failed_on(self, conn: _Connection, error: Exception, sql: str | None) -> StorageError:
        if not conn.usable or isinstance(error, psycopg2.InterfaceError):
            if conn is self._conn:
                self._drop_connection()
            return StorageError(f"dbms '{self.name}': the connection to {self.where} was lost while running "
                                f"the statement ({' '.join(str(error).split())}); it reconnects on the next call")
        return self.failed(error, sql)

    async def _end_stray_transaction(self, conn: _Connection) -> None:
        """Roll back a transaction a user's BEGIN left open: every call commits on its own."""
        if not conn.usable:
            return
        status = conn._connection.info.transaction_status
        if status in (psycopg2.extensions.TRANSACTION_STATUS_INTRANS,
                      psycopg2.extensions.TRANSACTION_STATUS_INERROR):
            try:
                await conn.runOperation("ROLLBACK")
            except psycopg2.Error:
                self._drop_connection()
            raise StorageError(f"dbms '{self.name}': transaction statements are not allowed in 'sql'; "
                               f"each statement commits on its own")

    # -- life cycle --------------------------------------------------------------------------

    async def open(self) -> None:
        self._pool.start()
        try:
            try:
                self._conn = await self._open_connection(self.database)
            except StorageError as e:
                if "does not exist" not in e.message:
                    raise
                await self._create_database()
                self._conn = await self._open_connection(self.database)
            self.powers = confine.pg_powers((await self.query(confine.PG_POWER_QUERY))[1][0])
            if self.powers:
                self.log.warn("dbms {dbms} connects to PostgreSQL as {user}, a role with {powers}: sql from callers "
                              "other than the owner runs read-only on it, and reading server files or running "
                              "programs is refused by a parser only; connect as a non-superuser role "
                              "(docs/storage.md)", dbms=self.name, user=self.user, powers=", ".join(self.powers))
            self._users.start()
        except BaseException:
            self.closed = True
            self._pool.stop()
            raise

    async def _create_database(self) -> None:
        admin = await self._open_connection("postgres")
        try:
            await admin.runOperation(f"CREATE DATABASE {schema.quote(self.database, 'database name')}")
            self.log.info("created PostgreSQL database {database} for dbms {dbms}",
                          database=self.database, dbms=self.name)
        except psycopg2.errors.DuplicateDatabase:
            pass  # created meanwhile by someone else: what we wanted
        except psycopg2.Error as e:
            raise StorageError(f"dbms '{self.name}': database '{self.database}' does not exist on {self.where} "
                               f"and creating it failed: {' '.join(str(e).split())}") from None
        finally:
            admin.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.interrupt("the dbms is being disconnected (or the node is stopping)")
        if self._conn is not None:
            self._drop_connection()
        if self._users.pool.started:
            # In a thread: stop() joins the users' threads, which the cancel has just set free.
            await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), self._users.stop)

        def close_writer() -> None:
            writer, self._writer = self._writer, None
            if writer is not None and not writer.closed:
                writer.close()

        try:
            await deferToThreadPool(self.reactor, self._pool, close_writer)
        finally:
            self._pool.stop()

    def describe(self) -> dict[str, str]:
        powers = f", role has {' and '.join(self.powers)} (see docs/storage.md)" if self.powers else ""
        return {"Type": "psql", "Owner": self.user, "IP:Port": f"{self.ip}:{self.port}",
                "Configuration": f"database = {self.database}{powers}", "Storage": ""}

    # -- statements --------------------------------------------------------------------------

    async def execute(self, sql: str, params: Params = None) -> int:
        return await self._run(sql, params, "count")

    async def query(self, sql: str, params: Params = None) -> tuple[list[str], list[tuple]]:
        return await self._run(sql, params, "rows")

    async def statement(self, sql: str, grant: str = "owner", timeout: float | None = None,
                        limit: int | None = None, shape: Callable[..., Any] | None = None) -> Any:
        """On a connection of the users' pool (pg_user.py): read-only for `read`, and for everyone but the
        owner when the role can reach the server's files or programs (then `pg_owner_only` also applies)."""
        self._check_open()
        powerful = bool(self.powers) and grant != "owner"
        if powerful:
            found = confine.pg_owner_only(sql)
            if found:
                raise confine.refusal(self.name, f"{found} (this dbms connects as '{self.user}', a role with "
                                                 f"{', '.join(self.powers)})", "owner", grant)
        deadline = Deadline(timeout, self.name)
        self.running.add(deadline)
        # The server's statement_timeout stops the statement; this stops a wait on a server that is gone.
        backstop = None if timeout is None else self.reactor.callLater(
            timeout + BACKSTOP, deadline.cancel, f"the server did not stop it {BACKSTOP:g} s after its deadline")
        try:
            return await self._users.run(sql, grant == "read" or powerful, grant, deadline, limit,
                                         shape or (lambda columns, rows, count, cut: (columns, rows, count)))
        finally:
            self.running.discard(deadline)
            if backstop is not None and backstop.active():
                backstop.cancel()

    # -- the writer thread -------------------------------------------------------------------

    def _writer_connection(self) -> psycopg2.extensions.connection:
        """The blocking connection (in the writer thread): made, checked or replaced as needed.

        An idle connection has nothing to read unless the server wrote to it, which it does when
        it terminates the session (restart, admin kill) or closes the socket: then ping it, and
        replace it when the ping fails.  Costs one poll(0) per transaction otherwise.
        """
        w = self._writer
        if w is not None and not w.closed and _readable(w.fileno()):
            try:
                with w.cursor() as cur:
                    cur.execute("SELECT 1")
                w.rollback()
            except psycopg2.Error:
                w.close()
        if w is None or w.closed:
            try:
                w = self._writer = psycopg2.connect(self.dsn())
            except psycopg2.Error as e:
                self._writer = None
                raise StorageError(f"dbms '{self.name}': cannot connect to {self.where}: "
                                   f"{' '.join(str(e).split())}") from None
        return w

    async def transaction(self, fn: Callable[..., Any], *args: Any) -> Any:
        self._check_open()

        def run() -> Any:
            conn = self._writer_connection()
            try:
                with conn.cursor() as cur:
                    result = fn(PostgresTransaction(cur), *args)
                conn.commit()
                return result
            except BaseException as e:
                try:
                    conn.rollback()
                except psycopg2.Error:
                    pass
                if conn.closed:
                    self._writer = None
                    raise StorageError(f"dbms '{self.name}': the connection to {self.where} was lost during "
                                       f"the transaction (nothing of it was committed); it reconnects on the "
                                       f"next call") from None
                if isinstance(e, psycopg2.Error):
                    raise self.failed(e) from None
                raise

        return await deferToThreadPool(self.reactor, self._pool, run)

    async def scan(self, sql: str, params: Params, fn: Callable[..., Any], *args: Any, batch: int = 5000) -> Any:
        """On a connection of its own with a server-side cursor: the server holds the snapshot and
        sends `batch` rows at a time, and the writer thread stays free for ingest meanwhile."""
        self._check_open()

        def run() -> Any:
            try:
                conn = psycopg2.connect(self.dsn())
            except psycopg2.Error as e:
                raise StorageError(f"dbms '{self.name}': cannot connect to {self.where}: "
                                   f"{' '.join(str(e).split())}") from None
            try:
                conn.set_session(readonly=True)
                with conn.cursor(name="anylog_tw_scan") as cur:
                    cur.itersize = batch
                    cur.execute(*_params(sql, params))
                    first = cur.fetchmany(batch)
                    columns = [d[0] for d in cur.description or ()]
                    rest = iter(lambda: cur.fetchmany(batch), [])
                    return fn(columns, itertools.chain([first] if first else [], rest), *args)
            except psycopg2.Error as e:
                raise self.failed(e, sql) from None
            finally:
                conn.close()

        return await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), run)

    async def drop_table(self, table: str) -> bool:
        """As on SQLite, but a table another session holds (a backup's scan, a long query) is an error
        after DROP_WAIT seconds instead of a DROP that waits, with every later statement behind it."""
        existed = await self.has_table(table)
        try:
            await self.script([f"SET LOCAL lock_timeout = '{DROP_WAIT * 1000:.0f}ms'",
                               f"DROP TABLE IF EXISTS {schema.quote(table, 'table name')}"])
        except StorageError as e:
            if "lock timeout" in e.message:
                raise StorageError(f"dbms '{self.name}': table {table} is in use (a backup or a long query reads "
                                   f"it): nothing was dropped; try again when it is done") from None
            raise
        return existed

    # -- tables ------------------------------------------------------------------------------

    async def tables(self) -> list[str]:
        _, rows = await self.query(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') ORDER BY 1")
        return [r[0] for r in rows]

    async def columns(self, table: str) -> list[tuple[str, str]]:
        _, rows = await self.query(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relname = ? AND c.relkind IN ('r', 'p') "
            "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (schema.check_name(table, "table name"),))
        if not rows:
            raise NotFound(f"table '{table}' does not exist in dbms '{self.name}'")
        return [(r[0], r[1]) for r in rows]


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    return bool(poller.poll(0))
