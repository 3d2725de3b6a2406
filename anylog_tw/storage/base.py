"""The Database interface every engine implements, and `Databases`, the node's connected dbms.

Use from any area (operator, metadata master, HA)::

    dbs = node.component(Databases)
    db = dbs.get("lsl_demo")                      # NotFound with the connect command if missing
    await db.create_table("ping", {"ts": "timestamp", "value": "float"})   # schema.py DDL
    n = await db.bulk_insert("ping", ["ts", "value"], rows)       # one transaction, all or nothing
    columns, rows = await db.query("select count(*) from ping where value > ?", (10,))
    await db.execute("delete from ping where tsd_id = ?", (7,))   # -> rows affected
    await db.tables(); await db.columns("ping"); await db.add_columns("ping", [("status", "text")])

    def load_file(tx, rows):                       # runs in the engine's writer thread
        tx.execute('delete from "ping" where tsd_name = ? and tsd_id = ?', ("0", 7))
        tx.insert_rows("ping", ["ts", "value", "tsd_name", "tsd_id"], rows)   # COPY / executemany
        tx.execute('update tsd_info set rows = ? where file_id = ?', (len(rows), 7))
        return len(rows)
    n = await db.transaction(load_file, rows)      # committed, or rolled back and StorageError

Rules the engines keep:
* Placeholders are `?` on every engine (converted for psycopg2); values are always bound, or
  COPY-escaped; names go through `schema.quote`, never spliced raw.
* Nothing blocks the reactor thread: SQLite runs on one writer thread per database, PostgreSQL
  queries go through txpostgres (non-blocking) and bulk work through a blocking psycopg2
  connection on one writer thread per database.
* Every driver error becomes a `StorageError` that names the dbms, the problem and the
  statement, and leaves the database usable.
* `transaction(fn, *args)` calls `fn(tx, *args)` in the writer thread; `tx` is a `Transaction`
  (execute / query / insert_rows / `cursor`, the raw DB-API cursor).  `fn` must not touch the
  reactor; it returns plain data.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

from twisted.logger import Logger

from anylog_tw.base.errors import StorageError
from anylog_tw.storage import schema
from anylog_tw.storage.deadline import Running

Params = Sequence[Any] | None


def cursor_result(cursor) -> tuple[list[str] | None, list[tuple], int]:
    """(column names or None when the statement has no result set, rows, rowcount) of a DB-API cursor."""
    if cursor.description is None:
        return None, [], cursor.rowcount
    return [d[0] for d in cursor.description], cursor.fetchall(), cursor.rowcount


class Transaction:
    """What a `transaction` function gets: blocking calls on the writer thread's connection."""

    engine = ""

    def __init__(self, cursor):
        self.cursor = cursor

    def execute(self, sql: str, params: Params = None) -> int:
        raise NotImplementedError

    def query(self, sql: str, params: Params = None) -> tuple[list[str], list[tuple]]:
        self.execute(sql, params)
        columns, rows, _ = cursor_result(self.cursor)
        return columns or [], rows

    def insert_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        raise NotImplementedError


class Database:
    """One connected dbms.  Subclasses implement the `_`-methods and the engine specifics."""

    log = Logger()
    engine = ""

    def __init__(self, name: str, reactor):
        self.name = schema.check_name(name, "dbms name")
        self.reactor = reactor
        self.closed = False
        self.running = Running()  # users' statements in flight, stopped by `interrupt`

    # -- life cycle ------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect (and create the database when missing); errors are StorageErrors."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def describe(self) -> dict[str, str]:
        """A row of `get databases`: Type, Owner, IP:Port, Configuration, Storage."""
        raise NotImplementedError

    # -- statements -------------------------------------------------------------------------

    async def execute(self, sql: str, params: Params = None) -> int:
        """Run one statement; the number of rows it changed (-1 when the driver cannot tell)."""
        raise NotImplementedError

    async def query(self, sql: str, params: Params = None) -> tuple[list[str], list[tuple]]:
        """Run one statement; (column names, rows).  A statement without rows gives ([], [])."""
        raise NotImplementedError

    async def statement(self, sql: str, grant: str = "owner", timeout: float | None = None,
                        limit: int | None = None, shape: Callable[..., Any] | None = None) -> Any:
        """A user's statement (`sql` command), confined to what `grant` allows (`confine.py`).

        It runs apart from the ingest writer whenever it only reads, ends with `SQLDeadline` after
        `timeout` seconds, keeps at most `limit` rows, and answers `shape(columns or None, rows,
        rowcount, cut)` made in the statement's thread (default: (columns, rows, rowcount)), so a
        big result is never shaped on the reactor.  A refusal is `SQLRefused`, and nothing ran.
        """
        raise NotImplementedError

    def interrupt(self, reason: str) -> None:
        """Stop every user statement in flight (they end with `SQLDeadline` naming the reason)."""
        self.running.cancel_all(reason)

    async def transaction(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(tx, *args)` in the writer thread inside one transaction: committed or rolled back."""
        raise NotImplementedError

    async def bulk_insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Insert many rows in one transaction (COPY on PostgreSQL); all or none land."""

        def insert(tx: Transaction) -> int:
            return tx.insert_rows(table, columns, rows)

        return await self.transaction(insert)

    async def script(self, statements: Sequence[str]) -> None:
        """Several statements (DDL) in one transaction."""

        def run(tx: Transaction) -> None:
            for sql in statements:
                tx.execute(sql)

        await self.transaction(run)

    # -- tables -----------------------------------------------------------------------------

    async def tables(self) -> list[str]:
        raise NotImplementedError

    async def columns(self, table: str) -> list[tuple[str, str]]:
        """(name, declared type) of a table's columns, in order; NotFound when it is missing."""
        raise NotImplementedError

    async def has_table(self, table: str) -> bool:
        return schema.check_name(table, "table name") in await self.tables()

    async def create_table(self, table: str, columns: Sequence[tuple[str, str]] | Mapping[str, str | None],
                           time_columns: Sequence[str] | None = None, system: bool = True) -> bool:
        """Create a user table with schema.py's layout unless it exists; True when it was created."""
        statements = schema.create_table_sql(self.engine, table, columns, time_columns, system)
        existed = await self.has_table(table)
        await self.script(statements)
        return not existed

    async def add_columns(self, table: str, columns: Sequence[tuple[str, str]]) -> list[str]:
        """Add the nullable columns the table does not have yet; the names added."""
        have = {name for name, _ in await self.columns(table)}
        new = [(schema.check_name(n, "column name"), k) for n, k in columns]
        new = [(n, k) for n, k in dict(new).items() if n not in have]
        if new:
            await self.script(schema.add_columns_sql(self.engine, table, new))
        return [n for n, _ in new]

    async def drop_table(self, table: str) -> bool:
        """Drop a table with its indexes; False when it did not exist (nothing happens then)."""
        existed = await self.has_table(table)
        await self.execute(f"DROP TABLE IF EXISTS {schema.quote(table, 'table name')}")
        return existed

    async def scan(self, sql: str, params: Params, fn: Callable[..., Any], *args: Any, batch: int = 5000) -> Any:
        """`fn(columns, batches, *args)` in a thread, where `batches` yields the query's rows `batch` at a time.

        For reading a whole table (backup) without holding it in memory: the rows come from one
        consistent snapshot on a connection of the scan's own, so neither the writer nor the
        readers of `query` wait behind it.  `fn` must not touch the reactor; it returns plain data.
        """
        raise NotImplementedError

    async def create_tsd_table(self, table: str = "tsd_info") -> bool:
        existed = await self.has_table(table)
        await self.script(schema.tsd_table_sql(self.engine, table))
        return not existed

    async def create_ledger_table(self) -> bool:
        existed = await self.has_table("ledger")
        await self.script(schema.ledger_table_sql(self.engine))
        return not existed

    # -- errors -----------------------------------------------------------------------------

    def failed(self, error: Exception, sql: str | None = None) -> StorageError:
        """A driver error as a StorageError naming the dbms, the problem and the statement."""
        if isinstance(error, StorageError):
            return error
        text = str(error).strip().replace("\n", " ") or type(error).__name__
        where = ""
        if sql:
            shown = " ".join(sql.split())
            where = f" (statement: {shown[:200]}{'...' if len(shown) > 200 else ''})"
        return StorageError(f"dbms '{self.name}': {text}{where}")

    def _check_open(self) -> None:
        if self.closed:
            raise StorageError(f"dbms '{self.name}' is disconnected")
