"""`drop table`, `create table <t>` from its policy and `backup table`, through `node.run`, on SQLite and PostgreSQL.

The round trip is the real one: the operator ingests a file, `backup table` writes the rows,
`drop table` drops the table, and the backup file dropped into the watch dir gives the same rows.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest_twisted
from twisted.internet import reactor

from anylog_tw.base import grammar
from anylog_tw.base.errors import StorageError
from anylog_tw.base.filename import file_hash, parse_file_name
from anylog_tw.base.registry import REGISTRY
from anylog_tw.node import Node
from anylog_tw.storage.engines import Databases
from anylog_tw.storage.policy_ddl import policy_columns
from tests.helpers import ok, poll, refused
from tests.integration.test_storage_engines import ENGINES, drop_pg_database
from tests.pg import new_database
from tests.pg import PSQL


@pytest_twisted.async_yield_fixture(params=ENGINES)
async def node(request, tmp_path):
    """A node whose `connect(name)` connects a dbms of the test's engine (PostgreSQL: a database of its own)."""
    node = Node(str(tmp_path / "home"), name="tc", reactor=reactor)
    node.startService()
    node.engine = request.param
    made: list[str] = []

    async def connect(name: str) -> str:
        if request.param == "sqlite":
            how = "type = sqlite"
        else:
            database = new_database("tc")
            made.append(database)
            how = f"{PSQL} and database = {database}"
        await ok(node, f"connect dbms {name} where {how}")
        return name

    node.connect = connect
    node.dbms = await connect("tc_" + uuid.uuid4().hex[:8])
    yield node
    await node.stopService()
    for database in made:
        drop_pg_database(database)


async def tables(node, dbms: str) -> list[str]:
    return await node.component(Databases).get(dbms).tables()


async def rows(node, dbms: str, sql: str) -> list[tuple]:
    _, got = await node.component(Databases).get(dbms).query(sql)
    return [tuple(r) for r in got]


def files(path: str) -> list[str]:
    return sorted(os.listdir(path))


# --- drop table -----------------------------------------------------------------------------------


async def test_drop_table_drops_a_user_table_and_says_what_is_wrong(node):
    d = node.dbms
    await ok(node, f'sql {d} "create table ping (device text, value real)"')
    await ok(node, f"sql {d} \"insert into ping values ('a', 1.5)\"")
    await ok(node, f'sql {d} "create table keep (a integer)"')
    assert (await ok(node, f"drop table PING where dbms = {d}")).render() == f"Table {d}.ping dropped"
    assert await tables(node, d) == ["keep"]
    assert "table 'ping' does not exist" in await refused(node, f"drop table ping where dbms = {d}")
    assert "dbms 'nodb' is not connected" in await refused(node, "drop table keep where dbms = nodb")
    assert "not allowed" in await refused(node, f'drop table "keep; drop" where dbms = {d}')
    assert "needs option 'dbms'" in await refused(node, "drop table keep")
    assert await tables(node, d) == ["keep"]


async def test_system_tables_are_not_dropped_by_accident(node):
    almgm, chain = await node.connect("almgm"), await node.connect("blockchain")
    await ok(node, "create table tsd_info where dbms = almgm")
    await ok(node, "create table ledger where dbms = blockchain")
    await ok(node, "create table tsd_12 where dbms = almgm")  # a member's TSD table, as the operator makes it
    for table in ("tsd_info", "tsd_12"):
        msg = await refused(node, f"drop table {table} where dbms = {almgm} and system = true")
        assert "TSD table" in msg and f"time file drop {table}" in msg
    assert "system = true" in await refused(node, f"drop table ledger where dbms = {chain}")
    assert await tables(node, almgm) == ["tsd_12", "tsd_info"] and await tables(node, chain) == ["ledger"]
    await ok(node, f"drop table ledger where dbms = {chain} and system = true")
    assert await tables(node, chain) == []
    # the same names in a user's dbms are user tables
    await ok(node, f"create table tsd_info where dbms = {node.dbms}")
    await ok(node, f"drop table tsd_info where dbms = {node.dbms}")


# --- create table <t> -----------------------------------------------------------------------------


async def add_policy(node, policy: dict) -> None:
    await ok(node, f"blockchain add {json.dumps(policy)}")


async def test_create_table_from_its_policy_in_this_nodes_layout(node):
    d = node.dbms
    create = ("CREATE TABLE IF NOT EXISTS t39(row_id SERIAL PRIMARY KEY, insert_timestamp TIMESTAMP NOT NULL "
              "DEFAULT NOW(), tsd_name CHAR(3), tsd_id INT, timestamp timestamp not null default now(), value bool, "
              "|device_id| varchar(20), reading numeric(10, 2) default '1,5;', seq int); "  # EdgeLake's | for "
              "CREATE INDEX t39_timestamp_index ON t39(timestamp);")
    await add_policy(node, {"table": {"name": "t39", "dbms": d, "create": create, "source": "OPCUA Interface"}})
    reply = await ok(node, f"create table t39 where dbms = {d}")
    assert reply.render().startswith(f"Table {d}.t39 created from policy ")
    columns = [n for n, _ in await node.component(Databases).get(d).columns("t39")]
    assert columns == ["row_id", "insert_timestamp", "tsd_name", "tsd_id", "timestamp", "value", "device_id",
                       "reading", "seq"]
    await ok(node, f"sql {d} \"insert into t39 (timestamp, value, device_id, reading, seq) "
                   f"values ('2026-11-28 10:00:00', true, 'dev-1', 2.5, 7)\"")
    assert await rows(node, d, "select device_id, reading, seq from t39") == [("dev-1", 2.5, 7)]
    assert (await ok(node, f"create table t39 where dbms = {d}")).render() == f"Table {d}.t39 exists"


async def test_create_table_runs_nothing_but_the_column_list(node):
    """A policy's other statements (here a DROP) are never run."""
    d = node.dbms
    await ok(node, f'sql {d} "create table keep (a integer)"')
    await add_policy(node, {"table": {"name": "evil", "dbms": d,
                                      "create": "DROP TABLE keep; CREATE TABLE evil (a int); DELETE FROM keep"}})
    await ok(node, f"create table evil where dbms = {d}")
    assert await tables(node, d) == ["evil", "keep"]


async def test_create_table_errors_name_the_problem(node):
    d = node.dbms
    msg = await refused(node, f"create table nopolicy where dbms = {d}")
    assert f"no table policy for {d}.nopolicy" in msg and "blockchain get table" in msg
    await add_policy(node, {"table": {"name": "other", "dbms": d, "create": "CREATE TABLE elsewhere (a int)"}})
    assert "no CREATE TABLE statement for table 'other'" in await refused(node, f"create table other where dbms = {d}")
    await add_policy(node, {"table": {"name": "sysonly", "dbms": d,
                                      "create": "CREATE TABLE sysonly (row_id int, tsd_id int)"}})
    assert "no data columns" in await refused(node, f"create table sysonly where dbms = {d}")
    await add_policy(node, {"table": {"name": "bad", "dbms": d, "create": 'CREATE TABLE bad ("a;b" int)'}})
    assert "'a;b' is not allowed" in await refused(node, f"create table bad where dbms = {d}")
    assert "is not connected" in await refused(node, "create table other where dbms = nodb")
    assert await tables(node, d) == []


async def test_create_table_tsd_info_and_ledger_keep_their_own_commands(node):
    def matched(text):
        return REGISTRY.match(grammar.tokenize(text))[0].name

    assert matched("create table tsd_info where dbms = almgm") == "create table tsd_info"
    assert matched("create table LEDGER where dbms = blockchain") == "create table ledger"
    assert matched("create table ping where dbms = lsl") == "create table"
    d = node.dbms
    assert (await ok(node, f"create table tsd_info where dbms = {d}")).render() == f"Table {d}.tsd_info created"


# --- Database.scan and backup table -----------------------------------------------------------------


async def test_scan_hands_the_rows_over_in_batches(node):
    def collect(columns, batches):
        got = [[r[0] for r in b] for b in batches]
        return columns, got

    names = [node.dbms]
    if node.engine == "sqlite":  # a memory database is scanned on its writer's connection
        names.append("tc_mem")
        await ok(node, "connect dbms tc_mem where type = sqlite and memory = true")
    for name in names:
        db = node.component(Databases).get(name)
        await db.create_table("t", {"n": "integer"})
        await db.bulk_insert("t", ["n"], [(i,) for i in range(7)])
        columns, got = await db.scan('SELECT "n" FROM "t" ORDER BY "n"', None, collect, batch=3)
        assert columns == ["n"] and got == [[0, 1, 2], [3, 4, 5], [6]], name
        _, got = await db.scan('SELECT "n" FROM "t" WHERE "n" > ?', (100,), collect, batch=3)
        assert got == [], name
        failure = await error_of(db.scan('SELECT * FROM "nosuch"', None, collect))
        assert isinstance(failure, StorageError) and f"dbms '{name}'" in failure.message and "nosuch" in failure.message


async def error_of(d):
    try:
        await d
    except Exception as e:  # the error a caller gets
        return e
    raise AssertionError("no error")


DEVICES = ["dev-1", "tab\there", "quote ' \" ;", "ünï ✓", "line\nnew"]
ROWS = [{"ts": f"2026-11-28 10:00:{i:02d}.5", "device": DEVICES[i % 5], "value": i * 0.25, "ok": i % 2 == 0,
         "seq": 2**40 + i, "note": None if i % 3 else "x"} for i in range(23)]
DATA = "ts, device, value, ok, seq, note"


async def operator_node(node):
    await ok(node, "connect dbms almgm where type = sqlite")  # the TSD log; the data is on the test's engine
    await ok(node, "run operator")


def put(node, name: str, data: bytes) -> None:
    watch = node.dictionary["watch_dir"]
    with open(os.path.join(watch, "." + name + ".part"), "wb") as f:
        f.write(data)
    os.replace(os.path.join(watch, "." + name + ".part"), os.path.join(watch, name))


async def ingested(node) -> None:
    op = node.process("Operator")
    watch = node.dictionary["watch_dir"]
    await poll(lambda: not os.listdir(watch) and not op.in_hand and not op.queue, 20, what="the watch dir empty")


async def test_backup_drop_and_restore_through_the_operator_gives_the_same_rows(node, tmp_path):
    d = node.dbms
    await operator_node(node)
    put(node, f"{d}.ping.dev1.0.0.json", b"".join(json.dumps(r).encode() + b"\n" for r in ROWS))
    await ingested(node)
    before = await rows(node, d, f"select {DATA} from ping order by row_id")
    types_before = await node.component(Databases).get(d).columns("ping")
    assert len(before) == len(ROWS)

    dest = tmp_path / "bkup"
    dest.mkdir()
    reply = await ok(node, f"backup table where dbms = {d} and table = ping and dest = {dest}")
    assert reply.render().startswith(f"Backed up {len(ROWS)} rows of {d}.ping to {dest}/")
    [name] = files(str(dest))  # nothing else, no .part left behind
    parsed = parse_file_name(name)
    assert (parsed.dbms, parsed.table, parsed.source, parsed.instructions) == (d, "ping", "0", "0")
    with open(dest / name, "rb") as f:
        data = f.read()
    assert parsed.hash == file_hash(d, "ping", [data])
    first = json.loads(data.splitlines()[0])
    assert list(first) == ["ts", "device", "value", "ok", "seq", "note"] and first["ok"] is True

    await ok(node, f"drop table ping where dbms = {d}")
    assert "ping" not in await tables(node, d)
    os.replace(dest / name, os.path.join(node.dictionary["watch_dir"], name))
    await ingested(node)
    assert await rows(node, d, f"select {DATA} from ping order by row_id") == before
    assert await node.component(Databases).get(d).columns("ping") == types_before
    assert not os.listdir(node.dictionary["err_dir"])

    # The same content backed up again is the file the operator already took: the reply says so.
    reply = await ok(node, f"backup table where dbms = {d} and table = ping and dest = {dest}")
    assert files(str(dest)) == [name] and "already records this content" in reply.render()


async def test_backup_refuses_bad_input_and_leaves_no_file(node, tmp_path):
    d = node.dbms
    dest = tmp_path / "out"
    dest.mkdir()
    inf = "9e999" if node.engine == "sqlite" else "'Infinity'::float8"
    await ok(node, f'sql {d} "create table t (row_id integer, a real, b text)"')
    await ok(node, f"sql {d} \"insert into t values (1, 1.5, 'x'), (2, {inf}, 'y'), (3, 2.5, 'z')\"")
    msg = await refused(node, f"backup table where dbms = {d} and table = t and dest = {dest}")
    assert "row_id 2, column 'a' holds inf" in msg.lower()
    assert files(str(dest)) == []
    base = f"backup table where dbms = {d} and table = t and dest = {dest}"
    assert "is not a directory" in await refused(node, base.replace(str(dest), str(dest / "missing")))
    assert "partitions are not supported" in await refused(node, base + " and partition = par_t_2026_01")
    assert "table 'nope' does not exist" in await refused(node, base.replace("table = t", "table = nope"))
    assert "is not connected" in await refused(node, base.replace(f"dbms = {d}", "dbms = nodb"))
    assert "needs option 'dest'" in await refused(node, f"backup table where dbms = {d} and table = t")
    await ok(node, f'sql {d} "create table empty_t (a integer)"')
    reply = await ok(node, base.replace("table = t", "table = empty_t"))
    assert "is empty: no backup file written" in reply.render() and files(str(dest)) == []
    chain = await node.connect("blockchain")
    await ok(node, f"create table ledger where dbms = {chain}")
    ledger = base.replace(f"dbms = {d} and table = t", f"dbms = {chain} and table = ledger")
    assert "system table" in await refused(node, ledger)


def test_policy_columns_reads_both_engines_ddl_and_anylogs():
    from anylog_tw.storage import schema

    for engine in schema.ENGINES:
        ddl = "; ".join(schema.create_table_sql(engine, "ping", {"ts": "timestamp", "v": "float", "ok": "boolean"}))
        assert policy_columns(ddl, "ping") == [("ts", "timestamp"), ("v", "float"), ("ok", "boolean")]
    assert policy_columns('create table "public"."Ping" (a double precision, "B" timestamp(6) with time zone, '
                          "c, constraint pk primary key (a))", "ping") == [("a", "float"), ("b", "timestamp"),
                                                                          ("c", "text")]


async def test_help_covers_the_table_commands(node):
    for name in ("drop table", "create table", "backup table"):
        text = (await ok(node, f"help {name}")).render()
        assert "Usage:" in text and "Examples:" in text and name in text, name


async def test_drop_of_a_table_another_session_holds_is_refused_not_left_waiting(node, monkeypatch):
    """PostgreSQL: a table read in another session's open transaction (a backup's scan) cannot be dropped
    now; the drop says so after a short wait instead of blocking every later statement of the dbms."""
    if node.engine != "psql":
        return
    import psycopg2

    from anylog_tw.storage import postgres

    monkeypatch.setattr(postgres, "DROP_WAIT", 0.3)
    db = node.component(Databases).get(node.dbms)
    await db.create_table("held", {"v": "integer"})
    other = psycopg2.connect(db.dsn())
    try:
        with other.cursor() as cur:
            cur.execute('SELECT count(*) FROM "held"')  # the open transaction keeps its lock on the table
            from twisted.internet.defer import Deferred

            attempt = Deferred.fromCoroutine(refused(node, f"drop table held where dbms = {node.dbms}"))
            text = await attempt.addTimeout(10, reactor)  # without the lock timeout the drop would wait for ever
            assert "in use" in text and "nothing was dropped" in text
        other.rollback()
        await ok(node, f"drop table held where dbms = {node.dbms}")
        assert not await db.has_table("held")
    finally:
        other.close()


async def test_scan_reads_one_snapshot_while_the_writer_goes_on(node):
    """Rows committed while a scan is between batches are not in it, and the commit does not wait for it."""
    import threading

    db = node.component(Databases).get(node.dbms)
    await db.create_table("snap", {"n": "integer"})
    await db.bulk_insert("snap", ["n"], [(i,) for i in range(6)])

    half_way, inserted = threading.Event(), threading.Event()

    def collect(columns, batches):
        got = []
        for i, batch in enumerate(batches):
            got += [r[0] for r in batch]
            if i == 0:
                half_way.set()
                assert inserted.wait(20), "the insert waited for the scan"
        return got

    from twisted.internet.defer import Deferred

    scan = Deferred.fromCoroutine(db.scan('SELECT "n" FROM "snap" ORDER BY "n"', None, collect, batch=2))
    await poll(half_way.is_set, what="the scan's first batch")
    await db.bulk_insert("snap", ["n"], [(100,), (101,)])  # the writer commits while the scan is open
    inserted.set()
    assert await scan == [0, 1, 2, 3, 4, 5]
    _, rows = await db.query('SELECT count(*) FROM "snap"')
    assert rows[0][0] == 8
