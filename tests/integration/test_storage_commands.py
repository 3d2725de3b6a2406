"""The storage commands through `node.run`, as a console, a script or REST runs them, on both engines."""

from __future__ import annotations

import json
import os

import pytest
import pytest_twisted
from twisted.internet import reactor

from anylog_tw.node import Node
from anylog_tw.storage.engines import Databases
from tests.helpers import ok, refused
from tests.integration.test_storage_engines import ENGINES, drop_pg_database
from tests.pg import new_database
from tests.pg import PSQL


@pytest_twisted.async_yield_fixture
async def node(tmp_path):
    node = Node(str(tmp_path / "home"), name="st", reactor=reactor)
    node.startService()
    yield node
    await node.stopService()


@pytest_twisted.async_yield_fixture(params=ENGINES)
async def dbms(request, node):
    """A connected dbms named after the test, on each engine: (node, name)."""
    name = new_database("sc")
    how = "type = sqlite" if request.param == "sqlite" else PSQL
    reply = await node.execute(f"connect dbms {name} where {how}")
    assert reply.ok, reply.render()
    yield node, name
    await node.execute(f"disconnect dbms {name}")
    if request.param == "psql":
        drop_pg_database(name)


async def fill(node, name: str) -> None:
    await ok(node, f'sql {name} "create table ping (device text, value real, seq integer)"')
    await ok(node, f"sql {name} \"insert into ping values ('dev-1', 1.5, 1), ('dev-2', 2.5, 2), ('dev-3', 3.5, 3)\"")


async def test_sql_answers_anylogs_query_shape(dbms):
    node, name = dbms
    await fill(node, name)
    reply = await ok(node, f'sql {name} format = json "select device, value, seq from ping order by seq"')
    data = json.loads(reply.render())
    assert data["Query"] == [{"device": "dev-1", "value": 1.5, "seq": 1}, {"device": "dev-2", "value": 2.5, "seq": 2},
                             {"device": "dev-3", "value": 3.5, "seq": 3}]
    assert data["Statistics"] == [{"Count": 3, "Time": "00:00:00", "Nodes": 0}]
    count = json.loads((await ok(node, f'sql {name} "select count(*) as n from ping"')).render())
    assert count["Query"] == [{"n": 3}]


async def test_sql_format_table_and_unquoted_statements(dbms):
    node, name = dbms
    await fill(node, name)
    text = (await ok(node, f'sql {name} format = table "select device, seq from ping where seq < 3 order by seq"')).render()
    lines = text.splitlines()
    assert lines[0].split() == ["device", "seq"] and lines[2].startswith("dev-1") and lines[3].startswith("dev-2")
    assert json.loads(text[text.index("{"):]) == {"Statistics": [{"Count": 2, "Time": "00:00:00", "Nodes": 0}]}
    reply = await ok(node, f"sql {name} select max(seq) as top from ping")
    assert json.loads(reply.render())["Query"] == [{"top": 3}]


async def test_sql_statements_without_rows_report_changes(dbms):
    node, name = dbms
    await fill(node, name)
    reply = await ok(node, f'sql {name} "update ping set seq = seq + 10 where seq > 1"')
    assert json.loads(reply.render())["Statistics"][0]["Count"] == 2
    assert (await ok(node, f'sql {name} format = table "delete from ping"')).render() == "3 rows affected"


async def test_sql_errors_are_readable_and_the_dbms_stays_usable(dbms):
    node, name = dbms
    await fill(node, name)
    msg = await refused(node, f'sql {name} "selec count(*) frm ping"')
    assert f"dbms '{name}'" in msg and "selec" in msg
    assert "nosuchtable" in await refused(node, f'sql {name} "select * from nosuchtable"')
    assert "transaction statements are not allowed" in await refused(node, f'sql {name} "begin"')
    assert "no option 'dest'" in await refused(node, f'sql {name} dest = stdout "select 1"')
    assert "must be one of" in await refused(node, f'sql {name} format = xml "select 1"')
    assert "no statement" in await refused(node, f"sql {name}")
    await ok(node, f'sql {name} "select 1"')


async def test_tables_columns_and_databases(dbms):
    node, name = dbms
    await fill(node, name)
    reply = await ok(node, f"get tables where dbms = {name} and format = json")
    assert json.loads(reply.render()) == [{"Database": name, "Table name": "ping"}]
    reply = await ok(node, f"get table columns where dbms = {name} and table = ping")
    assert [row[0] for row in reply.rows] == ["device", "value", "seq"]
    assert "does not exist" in await refused(node, f"get table columns where dbms = {name} and table = nope")
    reply = await ok(node, "get databases where format = json")
    entry = [d for d in json.loads(reply.render()) if d["Logical DBMS"] == name][0]
    assert entry["Database Type"] in ("sqlite", "psql")
    reply = await ok(node, "get tables where dbms = *")
    assert (name, "ping") in [tuple(r) for r in reply.rows]


async def test_system_tables_are_created_once(dbms):
    node, name = dbms
    assert (await ok(node, f"create table tsd_info where dbms = {name}")).render() == f"Table {name}.tsd_info created"
    assert (await ok(node, f"create table tsd_info where dbms = {name}")).render() == f"Table {name}.tsd_info exists"
    assert (await ok(node, f"create table ledger where dbms = {name}")).render() == f"Table {name}.ledger created"
    reply = await ok(node, f"get table columns where dbms = {name} and table = tsd_info")
    assert [r[0] for r in reply.rows][:5] == ["file_id", "dbms_name", "table_name", "source", "file_hash"]
    reply = await ok(node, f'sql {name} "select * from ledger"')
    assert json.loads(reply.render())["Query"] == []


async def test_default_system_dbms_names(node):
    assert "dbms 'almgm' is not connected" in await refused(node, "create table tsd_info")
    await ok(node, "connect dbms almgm where type = sqlite and memory = true")
    await ok(node, "connect dbms blockchain where type = sqlite and memory = true")
    await ok(node, "create table tsd_info")
    await ok(node, "create table ledger")
    assert (await node.component(Databases).get("blockchain").tables()) == ["ledger"]


async def test_connect_sqlite_file_and_disconnect(node):
    await ok(node, "connect dbms lsl_demo where type = sqlite")
    assert os.path.exists(os.path.join(node.dictionary["dbms_dir"], "lsl_demo.dbms"))
    assert "already connected" in await refused(node, "connect dbms LSL_demo where type = sqlite")
    await ok(node, 'sql lsl_demo "create table t (a integer)"')
    await ok(node, "disconnect dbms lsl_demo")
    assert "not connected" in await refused(node, 'sql lsl_demo "select 1"')
    assert "not connected" in await refused(node, "disconnect dbms lsl_demo")
    await ok(node, "connect dbms lsl_demo where type = sqlite")
    assert (await ok(node, "get tables where dbms = lsl_demo")).rows == [["lsl_demo", "t"]]


async def test_connect_refuses_bad_input_clearly(node):
    assert "not allowed" in await refused(node, 'connect dbms "x; drop" where type = sqlite')
    assert "must be one of" in await refused(node, "connect dbms a where type = oracle")
    assert "needs option 'type'" in await refused(node, "connect dbms a")
    assert "for psql" in await refused(node, "connect dbms a where type = sqlite and ip = 1.2.3.4")
    assert "sqlite only" in await refused(node, "connect dbms a where type = psql and memory = true")
    assert (await node.execute("get databases")).rows == []


@pytest.mark.postgres
async def test_connect_psql_creates_the_database_and_refuses_a_missing_server(node):
    name = new_database("sc")
    try:
        reply = await ok(node, f"connect dbms {name} where {PSQL}")
        assert "127.0.0.1:5432" in reply.render()
        reply = await ok(node, f'sql {name} "select current_database() as db"')
        assert json.loads(reply.render())["Query"] == [{"db": name}]
    finally:
        await node.execute(f"disconnect dbms {name}")
        drop_pg_database(name)
    msg = await refused(node, "connect dbms far where type = psql and ip = 127.0.0.1 and port = 1 and user = anylog")
    assert "cannot connect to PostgreSQL at 127.0.0.1:1" in msg
    assert "far" not in [r[0] for r in (await node.execute("get databases")).rows]


async def test_help_covers_the_storage_commands(node):
    for name in ("connect dbms", "disconnect dbms", "get databases", "get tables", "get table columns", "sql",
                 "create table tsd_info", "create table ledger"):
        text = (await ok(node, f"help {name}")).render()
        assert "Usage:" in text and "Examples:" in text, name
