"""`sql` by grant, on the real SQLite and the real PostgreSQL (issue 14 item 4, audit C2/H2):
each refusal names what is not allowed and why, and nothing changed on disk or in the database."""

from __future__ import annotations

import json
import os
import threading

import pytest
import pytest_twisted
from twisted.internet import reactor

from anylog_tw.base.reply import Reply
from anylog_tw.base.origin import Origin
from anylog_tw.node import Node
from anylog_tw.storage.engines import Databases
from anylog_tw.storage.confine import SQLRefused
from tests.helpers import ok
from tests.pg import PSQL, drop_pg_database, pg_admin
from tests.pg import new_database

ENGINES = ["sqlite", pytest.param("psql", marks=pytest.mark.postgres)]


@pytest_twisted.async_yield_fixture(params=ENGINES)
async def node(request, tmp_path):
    """A node with dbms `node.dbms` on the engine, holding readings(device, v) with 3 rows."""
    node = Node(str(tmp_path / "home"), name="conf", reactor=reactor)
    node.startService()
    node.engine = request.param
    node.dbms = new_database("cf")
    await ok(node, f"connect dbms {node.dbms} where " + ("type = sqlite" if node.engine == "sqlite" else PSQL))
    await ok(node, f'sql {node.dbms} "create table readings (device text, v integer)"')
    await ok(node, f"sql {node.dbms} \"insert into readings values ('a', 1), ('b', 2), ('c', 3)\"")
    node.outside = tmp_path / "outside"  # a place outside the node's home
    node.outside.mkdir()
    yield node
    await node.stopService()
    if node.engine == "psql":
        drop_pg_database(node.dbms)


async def as_caller(node: Node, grant: str, text: str) -> Reply:
    """Run a command as a REST caller holding `grant`, through the node's one dispatch."""
    return await node.execute(text, Origin(f"test {grant}", grant, "rest"))


async def refused_as(node: Node, grant: str, statement: str) -> str:
    reply = await as_caller(node, grant, f'sql {node.dbms} "{statement}"')
    assert not reply.ok, f"{statement!r} as {grant} should be refused: {reply.render()}"
    assert "Traceback" not in reply.text and "internal error" not in reply.text, reply.text
    return reply.text


async def readings(node: Node) -> list:
    _, rows = await node.component(Databases).get(node.dbms).query("select device, v from readings order by v")
    return [tuple(r) for r in rows]


UNCHANGED = [("a", 1), ("b", 2), ("c", 3)]

WRITES = ["delete from readings",
          "drop table readings -- 'select'",             # audit H2: a quoted select in a comment
          "with a as (select 1) delete from readings",   # audit H2: a writing WITH
          "update readings set v = 0",
          "insert into readings values ('d', 4)",
          "create table other (x integer)"]


@pytest.mark.parametrize("statement", WRITES)
async def test_read_grant_cannot_write_and_the_engine_says_why(node, statement):
    msg = await refused_as(node, "read", statement)
    assert "not allowed" in msg and "'write' grant" in msg and "holds 'read'" in msg
    assert await readings(node) == UNCHANGED
    assert await node.component(Databases).get(node.dbms).tables() == ["readings"]


async def test_read_grant_reads_and_write_grant_writes(node):
    reply = await as_caller(node, "read", f'sql {node.dbms} "with t as (select v from readings) select sum(v) as s from t"')
    assert reply.ok and json.loads(reply.render())["Query"] == [{"s": 6}]
    reply = await as_caller(node, "write", f'sql {node.dbms} "with a as (select 1) delete from readings where v = 2"')
    assert reply.ok and json.loads(reply.render())["Statistics"][0]["Count"] == 1
    assert await readings(node) == [("a", 1), ("c", 3)]


@pytest.mark.parametrize("grant", ["read", "write", "admin", "owner"])
async def test_one_statement_at_a_time(node, grant):
    reply = await as_caller(node, grant, f'sql {node.dbms} "select 1; delete from readings"')
    assert not reply.ok and ("one statement at a time" in reply.text or "not allowed" in reply.text), reply.text
    assert await readings(node) == UNCHANGED


@pytest.mark.parametrize("statement", ["begin", "commit", "rollback", "savepoint s"])
async def test_transaction_statements_are_refused_for_everyone(node, statement):
    for grant in ("read", "owner"):
        reply = await as_caller(node, grant, f'sql {node.dbms} "{statement}"')
        if statement == "savepoint s" and node.engine == "psql":
            assert reply.ok  # inside the call's own transaction, and gone with it
            continue
        assert not reply.ok and ("transaction statements are not allowed" in reply.text
                                 or "not allowed" in reply.text), reply.text
    await ok(node, f'sql {node.dbms} "insert into readings values (\'d\', 4)"')  # no transaction was left open
    assert len(await readings(node)) == 4


# --- SQLite: what only the owner may do -----------------------------------------------------------

def sqlite_only(node):
    if node.engine != "sqlite":
        pytest.skip("SQLite statements")


@pytest.mark.parametrize("grant", ["read", "write", "admin"])
async def test_sqlite_attach_and_vacuum_into_are_for_the_owner(node, grant):
    sqlite_only(node)
    attached, vacuumed = node.outside / "attached.db", node.outside / "vacuumed.db"
    msg = await refused_as(node, grant, f"ATTACH DATABASE '{attached}' AS p")
    assert f"ATTACH of '{attached}'" in msg and "only the node's owner" in msg and f"holds '{grant}'" in msg
    msg = await refused_as(node, grant, f"VACUUM INTO '{vacuumed}'")
    assert "ATTACH" in msg and "only the node's owner" in msg
    assert "only the node's owner" in await refused_as(node, grant, "VACUUM")
    assert not attached.exists() and not vacuumed.exists()
    assert os.listdir(node.outside) == []


@pytest.mark.parametrize("statement", ["PRAGMA query_only = 0", "PRAGMA journal_mode = delete",
                                       "PRAGMA writable_schema = 1", "PRAGMA synchronous = off",
                                       "SELECT load_extension('/tmp/nothing')"])
async def test_sqlite_pragma_writes_and_extensions_are_for_the_owner(node, statement):
    sqlite_only(node)
    for grant in ("read", "write"):
        msg = await refused_as(node, grant, statement)
        assert "only the node's owner" in msg
    db = node.component(Databases).get(node.dbms)
    assert (await db.query("PRAGMA journal_mode"))[1][0][0] == "wal"
    # The users' readers stay read-only: a later read grant still cannot write.
    assert "'write' grant" in await refused_as(node, "read", "delete from readings")


async def test_sqlite_read_pragmas_and_schema_reads_are_allowed(node):
    sqlite_only(node)
    reply = await as_caller(node, "read", f'sql {node.dbms} "PRAGMA table_info(readings)"')
    assert reply.ok and [r["name"] for r in json.loads(reply.render())["Query"]] == ["device", "v"]
    reply = await as_caller(node, "read", f'sql {node.dbms} "select name from sqlite_master where type = \'table\'"')
    assert reply.ok and json.loads(reply.render())["Query"] == [{"name": "readings"}]


async def test_sqlite_reindex_with_an_index_needs_write(node):
    """REINDEX asks no authorizer; the reader's query_only refuses it, so it needs the write grant."""
    sqlite_only(node)
    await ok(node, f'sql {node.dbms} "create index readings_v on readings (v)"')
    await ok(node, f'sql {node.dbms} "select count(*) from readings"')  # the readers see the new schema
    assert "'write' grant" in await refused_as(node, "read", "REINDEX readings_v")
    assert (await as_caller(node, "write", f'sql {node.dbms} "REINDEX readings_v"')).ok


async def test_sqlite_owner_may_attach(node):
    sqlite_only(node)
    attached = node.outside / "owner.db"
    reply = await as_caller(node, "owner", f"sql {node.dbms} \"ATTACH DATABASE '{attached}' AS o\"")
    assert reply.ok, reply.render()
    await ok(node, f'sql {node.dbms} "create table o.t (x integer)"')
    assert attached.exists()
    await ok(node, f'sql {node.dbms} "DETACH DATABASE o"')


# --- PostgreSQL: server files and programs ----------------------------------------------------------

def psql_only(node):
    if node.engine != "psql":
        pytest.skip("PostgreSQL statements")


@pytest.mark.parametrize("grant", ["read", "write", "admin"])
async def test_postgres_copy_program_and_server_files_are_refused(node, grant):
    psql_only(node)
    marker = node.outside / "copy_program_ran"
    msg = await refused_as(node, grant, f"COPY (SELECT 1) TO PROGRAM 'touch {marker}'")
    assert "not allowed" in msg and "pg_execute_server_program" in msg
    for statement, what in (("select pg_read_file('/etc/hostname')", "pg_read_file"),
                            ("select pg_ls_dir('/')", "pg_ls_dir"),
                            ("select pg_read_binary_file('/etc/hostname')", "pg_read_binary_file"),
                            ("select lo_import('/etc/hostname')", "lo_import")):
        msg = await refused_as(node, grant, statement)
        assert "not allowed" in msg and what in msg
    assert not marker.exists()
    assert pg_admin("select count(*) from pg_largeobject_metadata", node.dbms)[0][0] == 0


async def test_postgres_role_of_the_tests_has_no_server_powers(node):
    psql_only(node)
    db = node.component(Databases).get(node.dbms)
    assert db.powers == []
    assert "role has" not in db.describe()["Configuration"]


async def test_postgres_on_a_powerful_role_non_owners_only_read_and_the_parser_names_file_access(node):
    """A dbms whose role can reach server files (here: the node told so) runs non-owners read-only."""
    psql_only(node)
    db = node.component(Databases).get(node.dbms)
    db.powers = ["superuser"]
    msg = await refused_as(node, "write", "insert into readings values ('d', 4)")
    assert "read-only" in msg and "non-superuser role" in msg
    for statement, what in (("COPY readings TO PROGRAM 'true'", "COPY"), ("select pg_read_file('x')", "pg_read_file"),
                            ("select pg_catalog.lo_import('/etc/hostname')", "lo_import"), ("SET ROLE postgres", "SET ROLE")):
        msg = await refused_as(node, "write", statement)
        assert what in msg and "only the node's owner" in msg and "superuser" in msg
    assert (await as_caller(node, "read", f'sql {node.dbms} "select count(*) from readings"')).ok
    assert (await as_caller(node, "owner", f'sql {node.dbms} "insert into readings values (\'d\', 4)"')).ok
    assert len(await readings(node)) == 4


# --- the reply ------------------------------------------------------------------------------------

async def test_rows_past_the_limit_are_cut_and_the_reply_says_so(node):
    many = "with recursive c(x) as (select 1 union all select x + 1 from c where x < 10005) select x from c"
    data = json.loads((await ok(node, f'sql {node.dbms} "{many}"')).render())
    assert len(data["Query"]) == 10000 and data["Query"][-1] == {"x": 10000}
    stats = data["Statistics"][0]
    assert stats["Count"] == 10000 and stats["Limit"] == 10000 and "limit = <rows>" in stats["Note"]
    data = json.loads((await ok(node, f'sql {node.dbms} limit = 20000 "{many}"')).render())
    assert len(data["Query"]) == 10005 and "Note" not in data["Statistics"][0]
    text = (await ok(node, f'sql {node.dbms} format = table and limit = 2 "select device from readings order by v"')).render()
    lines = text.splitlines()
    assert lines[2].startswith("a") and lines[3].startswith("b") and lines[4] == "" and "only the first 2 rows" in text
    assert "at least 1 row" in (await node.execute(f'sql {node.dbms} limit = 0 "select 1"')).text


async def test_rows_are_shaped_in_the_statements_thread_not_the_reactors(node):
    db = node.component(Databases).get(node.dbms)
    seen = []

    def shape(columns, rows, count, cut):
        seen.append(threading.current_thread())
        return len(rows)

    assert await db.statement("select * from readings", grant="read", timeout=5, limit=10, shape=shape) == 3
    assert seen and seen[0] is not threading.main_thread()
    reply = await ok(node, f'sql {node.dbms} "select device from readings order by v"')
    assert reply.json_text is not None and json.loads(reply.render()) == reply.data


async def test_refusals_are_forbidden_over_rest_codes(node):
    reply = await as_caller(node, "read", f'sql {node.dbms} "delete from readings"')
    assert (reply.status, reply.error_code) == (403, "forbidden")
    with pytest.raises(SQLRefused):
        await node.component(Databases).get(node.dbms).statement("delete from readings", grant="read")
