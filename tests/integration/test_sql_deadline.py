"""Queries that cannot hold the node (issue 16 item 3): a deadline on both engines, and ingest that
goes on while a runaway query runs over REST."""

from __future__ import annotations

import json
import os
import time

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, ensureDeferred

from anylog_tw.storage.engines import Databases
from tests.helpers import ok, poll, refused
from tests.integration.rest_support import Client, start_node
from tests.integration.test_operator import drop
from tests.pg import PG, drop_pg_database, pg_admin
from tests.pg import new_database

ENGINES = ["sqlite", pytest.param("psql", marks=pytest.mark.postgres)]
RUNAWAY = "with recursive c(x) as (select 1 union all select x + 1 from c) select count(*) from c"


@pytest_twisted.async_yield_fixture(params=ENGINES)
async def node(request, tmp_path):
    """A node with REST on port 0, almgm on SQLite and dbms `lsl` on the engine."""
    node = await start_node(tmp_path)
    node.engine = request.param
    node.pgname = None
    if node.engine == "sqlite":
        await ok(node, "connect dbms lsl where type = sqlite")
    else:
        node.pgname = new_database("dl")
        await node.component(Databases).connect("lsl", "psql", database=node.pgname, **PG)
    await ok(node, "connect dbms almgm where type = sqlite")
    yield node
    await node.stopService()
    if node.pgname:
        drop_pg_database(node.pgname)


async def test_a_runaway_query_ends_at_its_deadline_with_how_to_raise_it(node):
    started = time.monotonic()
    msg = await refused(node, f'sql lsl timeout = 1 "{RUNAWAY}"')
    assert "ran past its deadline of 1 s" in msg and "timeout = " in msg and "set query timeout" in msg
    assert time.monotonic() - started < 8
    await ok(node, "set query timeout = 1")
    assert "deadline of 1 s" in await refused(node, f'sql lsl "{RUNAWAY}"')
    assert node.component(Databases).query_timeout == 1
    reply = await ok(node, 'sql lsl "select 41 + 1 as answer"')  # the dbms still answers
    assert json.loads(reply.render())["Query"] == [{"answer": 42}]
    assert "more than 0" in await refused(node, "set query timeout = 0")


async def test_a_runaway_write_is_undone_at_its_deadline(node):
    await ok(node, 'sql lsl "create table big (x integer)"')
    write = ("insert into big with recursive c(x) as (select 1 union all select x + 1 from c) select x from c")
    assert "deadline of 1 s" in await refused(node, f'sql lsl timeout = 1 "{write}"')
    reply = await ok(node, 'sql lsl "select count(*) as n from big"')
    assert json.loads(reply.render())["Query"] == [{"n": 0}]


async def test_ingest_goes_on_while_a_runaway_query_runs_over_rest(node):
    """A runaway WITH RECURSIVE over GET holds neither the writer nor the operator: a file dropped
    meanwhile is ingested while the query still runs, and the query then ends at its deadline."""
    await ok(node, "run operator")
    client = Client(node)
    try:
        query = Deferred.fromCoroutine(client.call("GET", "/", headers={
            "command": f'sql lsl timeout = 6 "{RUNAWAY}"', "timeout": "30"}))
        db = node.component(Databases).get("lsl")
        await poll(lambda: len(db.running) == 1, 5, what="the query to be running")
        rows = [{"timestamp": f"2026-12-01T00:00:{i:02d}Z", "value": i} for i in range(20)]
        drop(node, "lsl.ping.dev1.0.0.json", rows)
        watch = node.dictionary["watch_dir"]
        # 20 rows take milliseconds; the query's 6 s deadline leaves ingest ample time even on a busy machine.
        await poll(lambda: not os.listdir(watch) and not node.process("Operator").in_hand, 5,
                   what="the file to be ingested")
        _, got = await db.query("select count(*) from ping")
        assert got[0][0] == 20
        assert not query.called and len(db.running) == 1  # ingest finished while the query still ran
        status, _, body = await query
        assert status == 408 and b"deadline of 6 s" in body
    finally:
        await client.pool.closeCachedConnections()


async def test_disconnect_stops_the_queries_in_flight(node):
    db = node.component(Databases).get("lsl")
    pending = ensureDeferred(node.execute(f'sql lsl timeout = 60 "{RUNAWAY}"'))
    await poll(lambda: len(db.running) == 1, 5, what="the query to be running")
    started = time.monotonic()
    await ok(node, "disconnect dbms lsl")
    reply = await pending
    assert not reply.ok and "stopped because the dbms is being disconnected" in reply.text
    assert time.monotonic() - started < 5


@pytest.mark.postgres
async def test_postgres_query_stopped_by_the_deadline_leaves_no_backend_running(node):
    if node.engine != "psql":
        pytest.skip("PostgreSQL")
    assert "deadline" in await refused(node, f'sql lsl timeout = 1 "{RUNAWAY}"')
    active = pg_admin(f"select count(*) from pg_stat_activity where datname = '{node.pgname}' "
                      f"and state = 'active' and pid <> pg_backend_pid()")
    assert active[0][0] == 0
