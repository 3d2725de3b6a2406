"""Users' `sql` on SQLite: reader connections of their own, the grant's authorizer, and a deadline.

Every user statement runs first on a reader connection (WAL: it reads the last commit while
ingest writes) under the `read` authorizer, whatever the caller holds.  SQLite calls the
authorizer while it compiles, so a statement that would write is denied before any of it runs;
the denied actions say which grant it needs.  If the caller holds it, the statement runs again
on the dbms's writer thread under the caller's own authorizer (`Authorizer(grant)`), still with
its deadline, so a runaway write holds ingest for at most that long.  Reader connections are also
`query_only` and may attach nothing (`SQLITE_LIMIT_ATTACHED` = 0): three locks, any one enough.

These readers are separate from the dbms's own reader (which serves the node's internal queries)
so a user's long query never delays `get tables`, the operator's bookkeeping or the metadata.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any, Callable

from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from anylog_tw.storage.confine import Authorizer, transaction_refused
from anylog_tw.storage.deadline import Deadline

PROGRESS_STEPS = 4000  # SQLite VM steps between deadline checks (well under a millisecond)
READERS = 2  # user statements of one dbms that run at the same time; more wait their turn
FETCH = 2000

# shape(columns or None, rows, rowcount, cut) -> what the caller wants, made in the statement's thread
Shape = Callable[[list[str] | None, list[tuple], int, bool], Any]


class NeedsGrant(Exception):
    """The statement needs more than the connection's authorizer allowed (nothing ran)."""

    def __init__(self, authorizer: Authorizer):
        super().__init__(authorizer.needs())
        self.authorizer = authorizer


def plain_shape(columns, rows, count, cut):
    return columns, rows, count


def run_confined(conn: sqlite3.Connection, sql: str, authorizer: Authorizer, deadline: Deadline,
                 limit: int | None, shape: Shape, reader: bool) -> Any:
    """Run one user statement on `conn` in this thread, under `authorizer` and `deadline`.

    On a reader, rows past `limit` are not fetched; on the writer the statement runs to its end
    (a write with RETURNING must finish) and the extra rows are dropped as they come.
    """
    dbms = deadline.dbms
    forget = deadline.on_cancel(conn.interrupt)
    attached = None if reader or authorizer.held == "owner" else conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    conn.set_authorizer(authorizer)
    conn.set_progress_handler(deadline.progress, PROGRESS_STEPS)
    cur = conn.cursor()
    changes = conn.total_changes
    try:
        cur.execute(sql)
        if cur.description is None:
            columns, rows, cut = None, [], False
        else:
            columns = [d[0] for d in cur.description]
            rows, cut = _fetch(cur, limit, drain=not reader)
        # sqlite3 counts only statements that start with INSERT/UPDATE/DELETE; a WITH ... DELETE too here
        count = cur.rowcount if cur.rowcount >= 0 else (conn.total_changes - changes) or -1
        if conn.in_transaction:  # BEGIN, SAVEPOINT: never leave a transaction open between calls
            conn.rollback()
            raise transaction_refused(dbms)
    except sqlite3.Error as e:
        if authorizer.denied:
            raise NeedsGrant(authorizer) from None
        if reader and getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_READONLY:
            authorizer.denied.append((sqlite3.SQLITE_INSERT, None, None))  # it writes in a way SQLite did not ask about
            raise NeedsGrant(authorizer) from None
        if deadline.stopped():
            raise deadline.error() from None
        raise
    finally:
        cur.close()
        conn.set_authorizer(None)
        conn.set_progress_handler(None, 0)
        if attached is not None:
            conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, attached)
        forget()
    return shape(columns, rows, count, cut)


def _fetch(cur: sqlite3.Cursor, limit: int | None, drain: bool) -> tuple[list[tuple], bool]:
    rows: list[tuple] = []
    while True:
        batch = cur.fetchmany(FETCH)
        if not batch:
            return rows, False
        if limit is not None and len(rows) + len(batch) > limit:
            rows.extend(batch[: limit - len(rows)])
            while drain and cur.fetchmany(FETCH):
                pass
            return rows, True
        rows.extend(batch)


class UserReaders:
    """The reader connections of one file database for users' statements, each owned by one thread."""

    def __init__(self, path: str, name: str, reactor):
        self.path = path
        self.reactor = reactor
        self.pool = ThreadPool(minthreads=0, maxthreads=READERS, name=f"sqlite-{name}-sql")
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        self.pool.start()

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            conn.execute("PRAGMA query_only = 1")
            conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def run(self, fn: Callable[..., Any], *args: Any):
        """A Deferred of `fn(conn, *args)` on one of the reader threads."""
        return deferToThreadPool(self.reactor, self.pool, lambda: fn(self._connection(), *args))

    def stop(self) -> None:
        """Stop the threads (statements in flight must have been interrupted) and close the connections."""
        self.pool.stop()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
