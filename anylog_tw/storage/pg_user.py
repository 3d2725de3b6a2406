"""Users' `sql` on PostgreSQL: a pool of connections of their own, a read-only transaction for
`read`, one statement at a time, a server-side deadline, and rows that arrive in chunks.

Why psycopg 3 here (psycopg2 and txpostgres serve the node's own statements): it speaks the
extended query protocol, in which the server itself refuses more than one statement per call, so
`select 1; commit; drop table t` cannot end the read-only transaction and write after it; it
asks the server whether a statement returns rows before running it (`describe`); it streams
rows in chunks, so a result past the row limit is never held whole; and it can cancel a
statement from another thread.  Each connection belongs to one thread of this dbms's small pool,
apart from the ingest writer and from the txpostgres connection, so a long query holds neither.

Per statement: `BEGIN READ ONLY` (or `BEGIN`), `SET LOCAL statement_timeout` to what is left of
the deadline, the statement, then `ROLLBACK` for a read or `COMMIT`.  A statement that ends the
transaction itself (`COMMIT`, `ROLLBACK`) is refused after the fact: for a read nothing could
have been written, and the server never ran a second statement.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable

import psycopg
from psycopg import capabilities, errors, pq
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from anylog_tw.base.errors import StorageError
from anylog_tw.storage.confine import SQLRefused, refusal, transaction_refused
from anylog_tw.storage.deadline import Deadline

READERS = 2  # user statements of one dbms that run at the same time; more wait their turn
CHUNK = 1000  # rows the server sends at a time
ACTIVE_TRANSACTION = "25001"


class PostgresUsers:
    """The connections of one dbms for users' statements, each owned by one thread of `pool`."""

    def __init__(self, db):
        self.db = db
        self.pool = ThreadPool(minthreads=0, maxthreads=READERS, name=f"psql-{db.name}-sql")
        self._local = threading.local()
        self._conns: list[psycopg.Connection] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        self.pool.start()

    def run(self, sql: str, read_only: bool, grant: str, deadline: Deadline, limit: int | None,
            shape: Callable[..., Any]):
        return deferToThreadPool(self.db.reactor, self.pool, self._run, sql, read_only, grant, deadline, limit,
                                 shape)

    def stop(self) -> None:
        """Stop the threads (statements in flight must have been cancelled) and close the connections."""
        self.pool.stop()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()

    # -- in a pool thread ----------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed and conn.info.transaction_status == pq.TransactionStatus.IDLE:
            return conn
        if conn is not None:
            self._forget(conn)
        try:
            conn = psycopg.connect(self.db.dsn(), autocommit=True)
        except psycopg.Error as e:
            raise StorageError(f"dbms '{self.db.name}': cannot connect to {self.db.where}: "
                               f"{' '.join(str(e).split())}") from None
        self._local.conn = conn
        self._local.notices = notices = []
        conn.add_notice_handler(lambda d: notices.append(d.sqlstate))
        with self._lock:
            self._conns.append(conn)
        return conn

    def _forget(self, conn: psycopg.Connection) -> None:
        self._local.conn = None
        with self._lock:
            if conn in self._conns:
                self._conns.remove(conn)
        conn.close()

    def _run(self, sql: str, read_only: bool, grant: str, deadline: Deadline, limit: int | None,
             shape: Callable[..., Any]) -> Any:
        if deadline.stopped():
            raise deadline.error()
        conn = self._connection()
        forget = deadline.on_cancel(lambda: _cancel(conn))
        try:
            conn.execute("BEGIN READ ONLY" if read_only else "BEGIN")
            left = deadline.remaining()
            if left is not None:
                conn.execute(f"SET LOCAL statement_timeout = {max(1, int(left * 1000))}")
            self._local.notices.clear()
            columns, rows, count, cut = self._statement(conn, sql, read_only, limit)
            status = conn.info.transaction_status
            # The statement ended our transaction (COMMIT, ROLLBACK), or began one inside it (the server's
            # notice 25001, "there is already a transaction in progress"): refused, and rolled back.
            if status == pq.TransactionStatus.IDLE or ACTIVE_TRANSACTION in self._local.notices:
                raise transaction_refused(self.db.name)
            conn.execute("ROLLBACK" if read_only or status != pq.TransactionStatus.INTRANS else "COMMIT")
        except psycopg.Error as e:
            raise self._failed(conn, e, sql, read_only, grant, deadline) from None
        except BaseException:
            self._end(conn)
            raise
        finally:
            forget()
        return shape(columns, rows, count, cut)

    @staticmethod
    def _statement(conn: psycopg.Connection, sql: str, read_only: bool, limit: int | None):
        cur = conn.cursor()
        if not _returns_rows(conn, sql):
            with conn.pipeline():  # the extended protocol: one statement, or the server refuses it
                cur.execute(sql)
            return None, [], cur.rowcount, False
        rows: list[tuple] = []
        cut = False
        size = CHUNK if capabilities.has_stream_chunked() else 1
        with contextlib.closing(cur.stream(sql, size=size)) as stream:
            for row in stream:
                if limit is not None and len(rows) >= limit:
                    cut = True
                    if read_only:
                        break  # closing the stream cancels the rest; a write (RETURNING) runs to its end
                    continue
                rows.append(row)
        return [c.name for c in cur.description or ()], rows, -1, cut

    def _end(self, conn: psycopg.Connection) -> None:
        """Leave the connection idle for the next statement, or drop it when it cannot be."""
        try:
            if conn.closed or conn.info.transaction_status in (pq.TransactionStatus.ACTIVE,
                                                               pq.TransactionStatus.UNKNOWN):
                raise psycopg.OperationalError("connection not reusable")
            if conn.info.transaction_status != pq.TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
        except psycopg.Error:
            self._forget(conn)

    def _failed(self, conn, e: psycopg.Error, sql: str, read_only: bool, grant: str,
                deadline: Deadline) -> StorageError:
        self._end(conn)
        name = self.db.name
        if isinstance(e, errors.QueryCanceled) or (deadline.stopped() and conn.closed):
            return deadline.error()
        if isinstance(e, errors.ReadOnlySqlTransaction):
            if grant in ("read",):
                return refusal(name, _server_text(e), "write", grant)
            return SQLRefused(f"dbms '{name}': not allowed: {_server_text(e)}: this dbms connects to PostgreSQL as "
                              f"'{self.db.user}', a role with {', '.join(self.db.powers)}, so sql from callers "
                              f"other than the node's owner runs read-only on it; connect the dbms as a "
                              f"non-superuser role to let writers write (docs/storage.md)")
        if isinstance(e, errors.InsufficientPrivilege):
            return SQLRefused(f"dbms '{name}': not allowed: {_server_text(e)} (the PostgreSQL role "
                              f"'{self.db.user}' does not hold that privilege); nothing was run")
        if "multiple commands" in str(e):
            return SQLRefused(f"dbms '{name}': one statement at a time in 'sql' (this text holds several); nothing "
                              f"was run")
        if getattr(e, "sqlstate", None) is None and "COPY" in str(e):
            return SQLRefused(f"dbms '{name}': COPY does not run through 'sql' (its rows do not come back as a "
                              f"reply); use a SELECT")
        if conn.closed:
            return StorageError(f"dbms '{name}': the connection to {self.db.where} was lost while running the "
                                f"statement ({_server_text(e)}); it reconnects on the next call")
        return self.db.failed(e, sql)


def _returns_rows(conn: psycopg.Connection, sql: str) -> bool:
    """Whether the statement returns rows, as the server says after parsing it (nothing runs yet)."""
    pgconn = conn.pgconn
    for result in (lambda: pgconn.prepare(b"", sql.encode()), lambda: pgconn.describe_prepared(b"")):
        res = result()
        if res.status != pq.ExecStatus.COMMAND_OK:
            raise errors.error_from_result(res, encoding=conn.info.encoding)
    return res.nfields > 0


def _cancel(conn: psycopg.Connection) -> None:
    cancel = getattr(conn, "cancel_safe", None)
    if cancel is not None:
        cancel(timeout=3.0)
    else:
        conn.cancel()


def _server_text(e: Exception) -> str:
    return " ".join(str(e).split("\n", 1)[0].split())
