"""The Database interface on the real SQLite and the real PostgreSQL: every behaviour on both engines.

Each PostgreSQL test gets its own database (created by the engine itself, as `connect dbms`
does) and drops it afterwards.
"""

from __future__ import annotations

import datetime
import os
import sqlite3
import uuid

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from anylog_tw.base.errors import NotFound, StorageError
from anylog_tw.storage.postgres import PostgresDatabase
from anylog_tw.storage.sqlite import SQLiteDatabase
from tests.pg import PG, drop_pg_database, kill_backends, pg_admin  # noqa: F401 (others import them from here)

ENGINES = ["sqlite", pytest.param("psql", marks=pytest.mark.postgres)]
@pytest_twisted.async_yield_fixture(params=ENGINES)
async def db(request, tmp_path):
    name = "st_" + uuid.uuid4().hex[:10]
    if request.param == "sqlite":
        database = SQLiteDatabase(name, reactor, directory=str(tmp_path / "dbms"))
    else:
        database = PostgresDatabase(name, reactor, **PG)
    await database.open()
    yield database
    await database.close()
    if request.param == "psql":
        drop_pg_database(name)


PING = {"ts": "timestamp", "device": "text", "value": "float", "ok": "boolean", "seq": "integer"}
COLS = list(PING)


def ping_rows(n: int, start: int = 0):
    return [(f"2026-11-28 10:00:{i % 60:02d}", f"dev-{i % 3}", i * 0.5, i % 2 == 0, i) for i in range(start, start + n)]


async def test_bulk_insert_round_trips_every_kind_of_value(db):
    """Text with tabs, newlines, backslashes, quotes and unicode, '' apart from NULL, big ints, floats, booleans."""
    await db.create_table("t", {"s": "text", "i": "integer", "f": "float", "b": "boolean", "ts": "timestamp"})
    tricky = ["a\tb", "line1\nline2\r\n", "back\\slash\\N", "quote ' \" ;", "ünïcødé ✓", "", "\\N", "x" * 5000]
    rows = [(s, 2**62 + k, k / 3, k % 2 == 1, "2026-11-28 10:00:00.5") for k, s in enumerate(tricky)]
    rows.append((None, None, None, None, None))
    assert await db.bulk_insert("t", ["s", "i", "f", "b", "ts"], rows) == len(rows)
    _, got = await db.query('SELECT s, i, f, b, ts FROM "t" ORDER BY row_id')
    assert [r[0] for r in got] == tricky + [None]
    assert [r[1] for r in got] == [2**62 + k for k in range(len(tricky))] + [None]
    assert [r[2] for r in got][:-1] == [k / 3 for k in range(len(tricky))]
    assert [bool(r[3]) if r[3] is not None else None for r in got] == [k % 2 == 1 for k in range(len(tricky))] + [None]
    assert str(got[0][4]).startswith("2026-11-28 10:00:00.5")


async def test_system_columns_are_filled_by_the_database(db):
    await db.create_table("ping", PING)
    await db.bulk_insert("ping", COLS + ["tsd_name", "tsd_id"], [r + ("0", 7) for r in ping_rows(3)])
    _, got = await db.query('SELECT row_id, insert_timestamp, tsd_name, tsd_id FROM "ping" ORDER BY row_id')
    assert [r[0] for r in got] == [1, 2, 3]
    assert all(r[1] is not None and r[2] == "0" and r[3] == 7 for r in got)


async def test_a_bad_row_lands_nothing_and_the_database_stays_usable(db):
    await db.create_table("ping", PING)
    rows = ping_rows(100)
    rows[57] = ("not a time" if db.engine == "psql" else None, "d", "x", True, 1)  # wrong value
    rows.insert(80, ("2026-11-28 10:00:00", "d"))  # wrong width
    with pytest.raises(StorageError) as err:
        await db.bulk_insert("ping", COLS, rows)
    assert f"dbms '{db.name}'" in err.value.message
    _, got = await db.query('SELECT count(*) FROM "ping"')
    assert got[0][0] == 0
    assert await db.bulk_insert("ping", COLS, ping_rows(5)) == 5


async def test_transaction_commits_together_or_not_at_all(db):
    await db.create_table("ping", PING)
    await db.create_tsd_table()

    def load(tx, file_id, rows, fail):
        tx.execute("DELETE FROM ping WHERE tsd_id = ?", (file_id,))
        n = tx.insert_rows("ping", COLS + ["tsd_id"], [r + (file_id,) for r in rows])
        tx.execute("INSERT INTO tsd_info (file_id, dbms_name, table_name, source, file_hash, instructions, "
                   "file_time, rows) VALUES (?, 'd', 'ping', '0', ?, '0', '2026-11-28 10:00:00', ?)",
                   (file_id, f"h{file_id}", n))
        cols, got = tx.query("SELECT count(*) FROM ping WHERE tsd_id = ?", (file_id,))
        if fail:
            raise RuntimeError("the operator changed its mind")
        return got[0][0]

    assert await db.transaction(load, 1, ping_rows(10), False) == 10
    with pytest.raises(RuntimeError):
        await db.transaction(load, 2, ping_rows(10), True)
    with pytest.raises(StorageError, match="(?i)unique"):  # the hash is the duplicate key
        await db.transaction(load, 1, ping_rows(3), False)
    _, got = await db.query("SELECT tsd_id, count(*) FROM ping GROUP BY tsd_id")
    assert [tuple(r) for r in got] == [(1, 10)]
    _, got = await db.query("SELECT file_id, rows FROM tsd_info")
    assert [tuple(r) for r in got] == [(1, 10)]


async def test_sql_errors_name_the_problem_and_leave_the_connection_usable(db):
    with pytest.raises(StorageError) as err:
        await db.query("SELEC 1")
    assert "SELEC" in err.value.message and f"dbms '{db.name}'" in err.value.message
    with pytest.raises(StorageError, match="nosuchtable"):
        await db.query("SELECT * FROM nosuchtable")
    assert (await db.query("SELECT 1 + ?", (1,)))[1][0][0] == 2


async def test_placeholders_are_bound_and_question_marks_in_literals_kept(db):
    await db.create_table("t", {"s": "text", "n": "integer"})
    hostile = "x'); DROP TABLE t; --"
    assert await db.execute("INSERT INTO t (s, n) VALUES (?, ?)", (hostile, 1)) == 1
    cols, rows = await db.query("SELECT s, '?%' AS lit, n FROM t WHERE s = ? AND n = ?", (hostile, 1))
    assert cols == ["s", "lit", "n"] and rows == [(hostile, "?%", 1)]
    assert await db.execute("UPDATE t SET n = n + 1 WHERE s LIKE '%DROP%'") == 1


async def test_untrusted_names_never_reach_sql(db):
    for bad in ('t"; DROP TABLE x; --', "1t", "a b"):
        with pytest.raises(StorageError, match="not allowed"):
            await db.bulk_insert(bad, ["a"], [(1,)])
        with pytest.raises(StorageError, match="not allowed"):
            await db.create_table("t", {bad: "text"})
    with pytest.raises(StorageError, match="not allowed"):
        await db.bulk_insert("t", ['a"b'], [(1,)])
    assert await db.tables() == []


async def test_tables_columns_and_added_columns(db):
    assert await db.create_table("Ping", PING) is True
    assert await db.create_table("ping", PING) is False
    assert await db.tables() == ["ping"] and await db.has_table("PING")
    names = [c for c, _ in await db.columns("ping")]
    assert names == ["row_id", "insert_timestamp", "tsd_name", "tsd_id", *COLS]
    await db.bulk_insert("ping", COLS, ping_rows(2))
    added = await db.add_columns("ping", [("status", "text"), ("value", "float"), ("extra", "integer")])
    assert added == ["status", "extra"]
    await db.bulk_insert("ping", COLS + ["status"], [r + ("new",) for r in ping_rows(1)])
    _, got = await db.query("SELECT status, extra FROM ping ORDER BY row_id")
    assert [tuple(r) for r in got] == [(None, None), (None, None), ("new", None)]
    with pytest.raises(NotFound, match="nosuch"):
        await db.columns("nosuch")


async def test_statement_reports_result_sets_and_row_counts(db):
    cols, rows, _ = await db.statement("CREATE TABLE s (a INTEGER)")
    assert cols is None and rows == []
    cols, rows, count = await db.statement("INSERT INTO s VALUES (1), (2), (3)")
    assert cols is None and count == 3
    cols, rows, _ = await db.statement("SELECT a FROM s ORDER BY a")
    assert cols == ["a"] and rows == [(1,), (2,), (3,)]
    with pytest.raises(StorageError, match="transaction statements are not allowed"):
        await db.statement("BEGIN")
    assert (await db.statement("DELETE FROM s WHERE a > 1"))[2] == 2  # not stuck in a transaction
    _, rows = await db.query("SELECT count(*) FROM s")
    assert rows == [(1,)]


async def test_concurrent_calls_are_all_answered(db):
    await db.create_table("ping", PING)
    inserts = [db.bulk_insert("ping", COLS, ping_rows(50, k * 50)) for k in range(10)]
    queries = [db.query("SELECT ? + 1", (k,)) for k in range(30)]
    results = await defer.gatherResults([defer.ensureDeferred(c) for c in inserts + queries])
    assert results[:10] == [50] * 10
    assert [r[1][0][0] for r in results[10:]] == [k + 1 for k in range(30)]
    _, rows = await db.query("SELECT count(DISTINCT seq) FROM ping")
    assert rows[0][0] == 500


async def test_the_reactor_runs_during_a_bulk_insert(db):
    """The insert happens off the reactor thread: a timer fires while 200,000 rows go in."""
    await db.create_table("ping", PING)
    insert = defer.ensureDeferred(db.bulk_insert("ping", COLS, ping_rows(200_000)))
    ticks = []
    loop = task.LoopingCall(lambda: ticks.append(insert.called))
    loop.start(0.005)
    try:
        assert await insert == 200_000
    finally:
        loop.stop()
    assert ticks.count(False) >= 3  # several ticks while the insert was running


async def test_queries_answer_while_a_write_transaction_is_open(db):
    """Reads do not wait behind ingest: a select answers, with the last committed state, while the
    writer thread sits inside a transaction."""
    import threading

    await db.create_table("ping", PING)
    await db.bulk_insert("ping", COLS, ping_rows(5))
    inside, release = threading.Event(), threading.Event()

    def long_load(tx):
        tx.insert_rows("ping", COLS, ping_rows(100, 5))
        inside.set()
        release.wait(10)
        return "done"

    load = defer.ensureDeferred(db.transaction(long_load))
    try:
        from tests.helpers import poll
        await poll(inside.is_set, 5, what="the transaction to start")
        assert (await db.query("SELECT count(*) FROM ping"))[1][0][0] == 5
        assert (await db.statement("SELECT count(*) FROM ping"))[1][0][0] == 5
        assert not load.called
    finally:
        release.set()
    assert await load == "done"
    assert (await db.query("SELECT count(*) FROM ping"))[1][0][0] == 105


async def test_a_closed_database_says_so(db):
    await db.close()
    with pytest.raises(StorageError, match="disconnected"):
        await db.query("SELECT 1")
    with pytest.raises(StorageError, match="disconnected"):
        await db.bulk_insert("t", ["a"], [(1,)])


async def test_tsd_and_ledger_tables(db):
    assert await db.create_tsd_table() is True
    assert await db.create_tsd_table() is False
    assert await db.create_tsd_table("tsd_12") is True
    assert await db.create_ledger_table() is True
    assert {"tsd_info", "tsd_12", "ledger"} <= set(await db.tables())
    await db.execute("INSERT INTO ledger (policy_type, policy_id, policy) VALUES (?, ?, ?)", ("operator", "abc", "{}"))
    with pytest.raises(StorageError, match="(?i)unique"):
        await db.execute("INSERT INTO ledger (policy_type, policy_id, policy) VALUES (?, ?, ?)", ("x", "abc", "{}"))
    _, rows = await db.query("SELECT sequence_id, date FROM ledger")
    assert rows[0][0] == 1 and rows[0][1] is not None


# --- engine specifics -----------------------------------------------------------------------------


async def test_sqlite_file_wal_and_persistence(tmp_path):
    directory = str(tmp_path / "dbms")
    db = SQLiteDatabase("keep", reactor, directory=directory)
    await db.open()
    await db.create_table("t", {"v": "integer"})
    await db.bulk_insert("t", ["v"], [(1,), (2,)])
    assert (await db.query("PRAGMA journal_mode"))[1] == [("wal",)]
    await db.close()
    assert os.path.exists(os.path.join(directory, "keep.dbms"))
    conn = sqlite3.connect(os.path.join(directory, "keep.dbms"))
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)
    conn.close()
    again = SQLiteDatabase("keep", reactor, directory=directory)
    await again.open()
    assert (await again.query("SELECT sum(v) FROM t"))[1] == [(3,)]
    await again.close()


async def test_sqlite_memory_database_leaves_no_file(tmp_path):
    db = SQLiteDatabase("mem", reactor, directory=str(tmp_path), memory=True)
    await db.open()
    await db.create_table("t", {"v": "integer"})
    assert await db.bulk_insert("t", ["v"], [(1,)]) == 1
    await db.close()
    assert os.listdir(tmp_path) == []


async def test_sqlite_adapts_datetimes_and_objects(tmp_path):
    db = SQLiteDatabase("ad", reactor, directory=str(tmp_path))
    await db.open()
    try:
        await db.create_table("t", {"ts": "timestamp", "j": "text"})
        await db.bulk_insert("t", ["ts", "j"], [(datetime.datetime(2026, 1, 2, 3, 4, 5), {"a": [1]})])
        assert (await db.query("SELECT ts, j FROM t"))[1] == [("2026-01-02 03:04:05", '{"a":[1]}')]
    finally:
        await db.close()


@pytest.mark.postgres
async def test_postgres_database_is_created_when_missing_and_named_by_option():
    name = "st_" + uuid.uuid4().hex[:10]
    other = name + "_db"
    db = PostgresDatabase(name, reactor, database=other, **PG)
    try:
        await db.open()
        assert pg_admin(f"SELECT 1 FROM pg_database WHERE datname = '{other}'") == [(1,)]
        assert pg_admin(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") == []
        assert (await db.query("SELECT current_database()"))[1] == [(other,)]
    finally:
        await db.close()
        drop_pg_database(other)


@pytest.mark.postgres
async def test_postgres_server_not_there_is_an_error_at_once():
    db = PostgresDatabase("nothere", reactor, ip="127.0.0.1", port=1, user=PG["user"])
    started = reactor.seconds()
    with pytest.raises(StorageError, match="cannot connect to PostgreSQL at 127.0.0.1:1"):
        await db.open()
    assert reactor.seconds() - started < 2
    with pytest.raises(StorageError, match="disconnected"):
        await db.query("SELECT 1")


@pytest.mark.postgres
async def test_postgres_survives_a_server_side_disconnect_between_calls():
    """What a server restart does to idle sessions: the next calls (query and COPY) reconnect."""
    name = "st_" + uuid.uuid4().hex[:10]
    db = PostgresDatabase(name, reactor, **PG)
    await db.open()
    try:
        await db.create_table("t", {"v": "integer"})
        assert await db.bulk_insert("t", ["v"], [(1,)]) == 1
        assert kill_backends(name) == 2  # the txpostgres session and the COPY session
        from tests.helpers import poll
        await poll(lambda: db._conn is None or db._conn.lost, 5, what="the lost connection noticed")
        assert (await db.query("SELECT count(*) FROM t"))[1] == [(1,)]
        assert await db.bulk_insert("t", ["v"], [(2,)]) == 1
        assert (await db.query("SELECT sum(v) FROM t"))[1] == [(3,)]
    finally:
        await db.close()
        drop_pg_database(name)


@pytest.mark.postgres
async def test_postgres_call_in_flight_fails_clearly_and_the_next_reconnects():
    name = "st_" + uuid.uuid4().hex[:10]
    db = PostgresDatabase(name, reactor, **PG)
    await db.open()
    try:
        slow = defer.ensureDeferred(db.query("SELECT pg_sleep(10)"))
        from tests.helpers import poll
        await poll(lambda: pg_admin(f"SELECT 1 FROM pg_stat_activity WHERE datname = '{name}' "
                                    f"AND query LIKE 'SELECT pg_sleep%'"), 5, what="the slow query running")
        kill_backends(name)
        with pytest.raises(StorageError, match="connection to PostgreSQL at 127.0.0.1:5432 was lost"):
            await slow
        assert (await db.query("SELECT 41 + 1"))[1] == [(42,)]

        def slow_copy(tx):
            tx.execute("SELECT pg_sleep(10)")

        slow = defer.ensureDeferred(db.transaction(slow_copy))
        await poll(lambda: pg_admin(f"SELECT 1 FROM pg_stat_activity WHERE datname = '{name}' "
                                    f"AND query LIKE 'SELECT pg_sleep%'"), 5, what="the slow transaction running")
        kill_backends(name)
        with pytest.raises(StorageError, match="lost during the transaction"):
            await slow
        assert await db.transaction(lambda tx: tx.query("SELECT 1")[1]) == [(1,)]
    finally:
        await db.close()
        drop_pg_database(name)


@pytest.mark.parametrize("n", [0, 1, 3, 1023, 1024, 1025, 2500])
async def test_bulk_insert_lands_every_row_in_order_whatever_the_count(db, n):
    """SQLite inserts in blocks of up to 1,024 rows and power-of-two remainders: no row lost,
    doubled or reordered at a block's edge."""
    await db.create_table("ping", PING)
    assert await db.bulk_insert("ping", COLS, ping_rows(n)) == n
    _, got = await db.query('SELECT seq FROM "ping" ORDER BY row_id')
    assert [r[0] for r in got] == list(range(n))


async def test_rows_of_the_wrong_width_are_refused_even_when_they_pair_up(db):
    """A short row next to a long one holds the right number of values in all; still refused,
    naming the row, and nothing lands."""
    await db.create_table("ping", PING)
    rows = ping_rows(10)
    rows[3] = rows[3][:4]
    rows[4] = rows[4] + ("extra",)
    with pytest.raises(StorageError) as err:
        await db.bulk_insert("ping", COLS, rows)
    if db.engine == "sqlite":
        assert "row 4 " in err.value.message and "4 values for 5 columns" in err.value.message
    _, got = await db.query('SELECT count(*) FROM "ping"')
    assert got[0][0] == 0


async def test_sqlite_blocks_stay_within_the_builds_variable_limit(tmp_path):
    """An old SQLite allows 999 bound values a statement: a 40-column insert goes 16 rows at a time."""
    from anylog_tw.storage.sqlite import block_rows

    assert block_rows(5, 32766) == 1024 and block_rows(40, 32766) == 512
    assert block_rows(40, 999) == 16 and block_rows(2000, 999) == 1
    db = SQLiteDatabase("wide", reactor, directory=str(tmp_path))
    await db.open()
    try:
        db._conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        columns = {f"c{i}": "integer" for i in range(40)}
        await db.create_table("wide", columns)
        rows = [tuple(range(k, k + 40)) for k in range(100)]
        assert await db.bulk_insert("wide", list(columns), rows) == 100
        _, got = await db.query('SELECT c0, c39 FROM "wide" ORDER BY row_id')
        assert got == [(k, k + 39) for k in range(100)]
    finally:
        await db.close()
