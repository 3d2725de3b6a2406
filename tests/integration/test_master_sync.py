"""The master (ledger table on SQLite and PostgreSQL) and the synchronizer, over real sockets."""

from __future__ import annotations

import json
import os
import uuid

import psycopg2
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred

from anylog_tw.base.errors import PeerError
from anylog_tw.metadata import ledger as ledger_module
from anylog_tw.metadata.layer import Metadata
from anylog_tw.metadata.master import MasterLedger
from anylog_tw.node import Node
from anylog_tw.storage.engines import Databases
from tests.helpers import poll
from tests.pg import PG, drop_pg_database

PG_DATABASE = f"anylog_metadata_{uuid.uuid4().hex[:12]}"  # owned by the tests' role, dropped at the end


@pytest.fixture(scope="module", autouse=True)
def _drop_pg_database():
    yield
    try:
        drop_pg_database(PG_DATABASE)
    except psycopg2.Error:
        pass  # PostgreSQL is not there: the psql cases were not run either


def inner(policy):
    return next(iter(policy.values()))


async def start_node(tmp_path, name: str, tcp: bool = True) -> Node:
    node = Node(str(tmp_path / name), name=name, reactor=reactor, environ={})
    node.startService()
    if tcp:
        reply = await node.execute("run tcp server where external_ip = 127.0.0.1 and external_port = 0 and bind = true")
        assert reply.ok, reply.text
    return node


def addr(node: Node) -> str:
    return "%s:%d" % node.process("TCP").external_address


async def ok(node: Node, text: str):
    reply = await node.execute(text)
    assert reply.ok, f"{text}: {reply.text}"
    return reply


async def connect_blockchain(node: Node, engine: str):
    dbs = node.component(Databases)
    if engine == "sqlite":
        db = await dbs.connect("blockchain", "sqlite")
    else:
        db = await dbs.connect("blockchain", "psql", database=PG_DATABASE, **PG)
        await db.execute('DROP TABLE IF EXISTS "ledger"')
    return db


@pytest_twisted.async_yield_fixture
async def cluster(tmp_path):
    """A master and two nodes, each with a TCP server."""
    master = await start_node(tmp_path, "master")
    a = await start_node(tmp_path, "node-a")
    b = await start_node(tmp_path, "node-b")
    yield master, a, b
    for n in (a, b, master):
        await n.stopService()


# --- the master's table --------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["sqlite", "psql"])
async def test_master_ledger_table_push_dump_drop(tmp_path, engine):
    node = await start_node(tmp_path, "m", tcp=False)
    try:
        db = await connect_blockchain(node, engine)
        master = MasterLedger(db)
        assert await master.ensure_table() is True
        p1 = {"operator": {"name": "o1", "company": "acme", "id": "id1", "date": "2026-01-01T00:00:00.0Z"}}
        p2 = {"cluster": {"name": "c1", "id": "id2", "date": "2026-01-01T00:00:01.0Z", "ledger": "local"}}
        assert await master.push(p1, host="10.0.0.1:32048") is True
        assert await master.push(p2) is True
        assert await master.push(p1) is False
        lines = (await master.dump()).splitlines()
        assert [inner(json.loads(x))["id"] for x in lines] == ["id1", "id2"]
        assert all(inner(json.loads(x))["ledger"] == "global" for x in lines)
        _, rows = await db.query('SELECT "policy_type", "company_name", "host" FROM "ledger" ORDER BY "sequence_id"')
        assert [tuple(r) for r in rows] == [("operator", "acme", "10.0.0.1:32048"), ("cluster", "", "")]
        assert await master.drop(["id1"]) == 1
        assert await master.ids() == {"id2"}
        if engine == "psql":
            await db.execute('DROP TABLE "ledger"')
    finally:
        await node.stopService()


@pytest.mark.parametrize("engine", ["sqlite", "psql"])
async def test_blockchain_push_lands_in_the_table_and_source_dbms_rebuilds_the_file(tmp_path, engine):
    node = await start_node(tmp_path, "m", tcp=False)
    try:
        db = await connect_blockchain(node, engine)
        await ok(node, 'blockchain push {"config": {"id": "c1", "name": "x"}}')
        assert "already" in (await ok(node, 'blockchain push {"config": {"id": "c1", "name": "x"}}')).text
        assert await MasterLedger(db).ids() == {"c1"}
        # A row that reached the table some other way reaches the file through `source = dbms`.
        await MasterLedger(db).push({"config": {"id": "c2", "date": "2026-01-01T00:00:00.0Z"}})
        await ok(node, "run blockchain sync where source = dbms and time = 60 seconds and dest = file")
        await poll(lambda: node.process("Blockchain Sync").loads >= 1, what="a load from the dbms")
        reply = await ok(node, "blockchain get config bring [config][id] separator = ,")
        assert reply.text == "c1,c2"
        await ok(node, "blockchain drop policy where id = c1")
        assert await MasterLedger(db).ids() == {"c2"}
        await ok(node, "exit synchronizer")
        if engine == "psql":
            await db.execute('DROP TABLE "ledger"')
    finally:
        await node.stopService()


# --- synchronization over TCP --------------------------------------------------------------


async def start_sync(node: Node, master: Node, seconds: int = 60):
    await ok(node, f"run blockchain sync where source = master and time = {seconds} seconds and dest = file and "
                   f"connection = {addr(master)}")
    sync = node.process("Blockchain Sync")
    await poll(lambda: sync.calls >= 1 and not sync.periodic.busy, what="the first sync")
    return sync


async def forced_sync(node: Node) -> None:
    sync = node.process("Blockchain Sync")
    calls = sync.calls
    reply = await node.execute("run blockchain sync")  # answers once the sync is done: ok, or its failure
    assert reply.ok == (sync.state == "Synchronized"), reply.render()
    assert sync.calls > calls
    await poll(lambda: not sync.periodic.busy, what="the loop's sync, if one ran")


async def test_a_policy_inserted_on_one_node_reaches_the_others(cluster):
    master, a, b = cluster
    sa, sb = await start_sync(a, master), await start_sync(b, master)
    reply = await ok(a, 'blockchain insert where policy = {"operator": {"name": "op1", "ip": "127.0.0.1", '
                        f'"port": 1, "cluster": "c1"}}}} and master = {addr(master)}')
    assert "added (local and master)" in reply.text
    await forced_sync(b)
    assert (await ok(b, "blockchain get operator bring [operator][name]")).text == "op1"
    # The first sync loaded the (empty) ledger whole; the insert came as a delta.
    assert (sb.loads, sb.deltas) == (1, 1) and sb.version == (await ok(master, "get metadata version")).text
    # An unchanged master is not fetched again.
    await forced_sync(b)
    assert (sb.loads, sb.deltas) == (1, 1) and sb.calls == 3
    info = (await ok(b, "get synchronizer where format = json")).json_data()
    assert info["Policies"] == 1 and info["Connection"] == addr(master) and info["Last failure"] == ""
    assert sa.state == "Synchronized"


@pytest.mark.allow_logged_errors
async def test_master_down_nodes_go_on_and_local_policies_reach_it_later(cluster):
    master, a, _ = cluster
    sync = await start_sync(a, master)
    meta = a.component(Metadata)

    async def down(address, text):
        raise PeerError(f"cannot connect to {address}: connection refused")

    meta.set_ask(down)
    reply = await ok(a, f'blockchain insert where policy = {{"config": {{"id": "late"}}}} and master = {addr(master)}')
    assert "will be pushed again" in reply.text
    await forced_sync(a)
    assert sync.state.startswith("Failed to connect to master using")
    assert "connection refused" in sync.last_failure
    assert (await ok(a, "blockchain get config bring [config][ledger]")).text == "local"
    assert "connection refused" in (await ok(a, "get synchronizer")).render()
    meta.set_ask(None)  # the master is back
    await forced_sync(a)  # pushes the local policy
    assert (await ok(master, "blockchain get config bring [config][id]")).text == "late"
    await forced_sync(a)  # loads it back as global, as a delta replacing the local copy in place
    assert (await ok(a, "blockchain get config bring [config][ledger]")).text == "global"
    assert sync.pushed == 1 and sync.deltas == 1
    assert (await ok(a, "blockchain get config bring.count")).text == "1"


async def test_deltas_follow_appends_and_a_rewrite_on_the_master_sends_the_whole_ledger(cluster):
    master, a, _ = cluster
    sync = await start_sync(a, master)
    for i in range(3):
        await ok(master, f'blockchain push {{"config": {{"id": "p{i}", "n": {i}}}}}')
        await forced_sync(a)
    assert (sync.loads, sync.deltas) == (1, 3)
    assert (await ok(a, "blockchain get config where n >= 1 bring [config][id] separator = ,")).text == "p1,p2"
    await ok(master, "blockchain drop policy where id = p1")  # a rewrite: the old versions are gone
    await forced_sync(a)
    assert (sync.loads, sync.deltas) == (2, 3)
    assert os.path.exists(a.dictionary["blockchain_file"] + ".old")  # the whole ledger was swapped in
    assert (await ok(a, "blockchain get config bring [config][id] separator = ,")).text == "p0,p2"
    assert sync.version == (await ok(master, "get metadata version")).text
    # The node's own file reloads to the same policies.
    assert (await ok(a, "blockchain load metadata")).text.startswith("2 policies")


async def test_seed_from_a_peer_and_local_policies_are_kept(cluster):
    master, a, _ = cluster
    for i in range(3):
        await ok(master, f'blockchain push {{"config": {{"id": "g{i}"}}}}')
    await ok(a, 'blockchain add {"config": {"id": "mine"}}')
    reply = await ok(a, f"blockchain seed from {addr(master)}")
    assert reply.text == f"4 policies from {addr(master)} (1 local kept)"
    assert (await ok(a, "blockchain get config bring [config][id] separator = ,")).text == "g0,g1,g2,mine"


async def test_a_failed_swap_leaves_the_old_ledger_in_place(cluster, monkeypatch):
    master, a, _ = cluster
    await ok(a, 'blockchain add {"config": {"id": "before"}}')
    path = a.dictionary["blockchain_file"]
    before = open(path, "rb").read()
    await ok(master, 'blockchain push {"config": {"id": "new"}}')

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ledger_module.os, "replace", crash)
    reply = await a.execute(f"blockchain seed from {addr(master)}")
    monkeypatch.undo()
    assert not reply.ok
    assert open(path, "rb").read() == before
    assert (await ok(a, "blockchain get config bring [config][id]")).text == "before"
    assert (await ok(a, "blockchain load metadata")).text.startswith("1 policies")


async def test_run_blockchain_sync_errors(cluster):
    _, a, _ = cluster
    assert "not running" in (await a.execute("run blockchain sync")).text
    assert "needs option 'time'" in (await a.execute("run blockchain sync where source = master and dest = file")).text
    assert "no master policy" in (await a.execute(
        "run blockchain sync where source = master and time = 5 seconds and dest = file")).text
    assert "at least 1 second" in (await a.execute(
        "run blockchain sync where source = master and time = 0 seconds and dest = file and connection = 1.2.3.4:5")).text
    assert "not running" in (await a.execute("get synchronizer")).text


# --- run client with destinations from the metadata ----------------------------------------


async def test_run_client_to_destinations_from_the_metadata(cluster):
    _, a, b = cluster
    host, port = b.process("TCP").external_address
    await ok(a, f'blockchain add {{"operator": {{"name": "op-b", "ip": "{host}", "port": {port}, '
                f'"cluster": "c1", "country": "US"}}}}')
    await ok(a, '''blockchain add {"cluster": {"name": "c1", "id": "c1", "table": [{"dbms": "lsl", "name": "ping"}]}}''')
    assert (await ok(a, "run client (operator where [country] contains US) get node name")).text == "node-b"
    assert (await ok(a, "run client (blockchain get operator where name = op-b bring.ip_port) get node name")).text \
        == "node-b"
    assert (await ok(a, "run client (dbms = lsl and table = ping) get node name")).text == "node-b"
    reply = await a.execute("run client (dbms = lsl and table = nothing) get node name")
    assert not reply.ok and "no node in the metadata" in reply.text
    assert (await ok(a, f"run client ({host}:{port}) get node name")).text == "node-b"


async def test_a_local_policy_the_master_refuses_is_reported_once(cluster):
    master, a, _ = cluster
    sync = await start_sync(a, master)
    await ok(master, 'blockchain push {"operator": {"name": "x", "cluster": "c", "member": 3}}')
    await ok(a, 'blockchain add {"operator": {"name": "y", "cluster": "c", "member": 3}}')
    await forced_sync(a)
    await forced_sync(a)
    assert "refused local policy" in sync.last_failure and sync.state == "Synchronized"
    assert sum("refused local policy" in e[-1] for e in a.errors.entries(None)) == 1
    assert (await ok(a, "blockchain get operator where name = y bring [operator][ledger]")).text == "local"


@pytest.mark.parametrize("engine", ["sqlite", "psql"])
async def test_dest_dbms_keeps_the_nodes_ledger_table_in_step(cluster, engine):
    master, a, _ = cluster
    db = await connect_blockchain(a, engine)
    try:
        for i in range(3):
            await ok(master, f'blockchain push {{"config": {{"id": "t{i}"}}}}')
        await ok(a, f"run blockchain sync where source = master and time = 60 seconds and dest = file and dest = dbms "
                    f"and connection = {addr(master)}")
        sync = a.process("Blockchain Sync")
        await poll(lambda: sync.calls >= 1 and not sync.periodic.busy, what="the first sync")
        assert await MasterLedger(db).ids() == {"t0", "t1", "t2"}
        await ok(master, 'blockchain push {"config": {"id": "t3"}}')
        await forced_sync(a)
        assert sync.deltas == 1 and await MasterLedger(db).ids() == {"t0", "t1", "t2", "t3"}
        assert sync.last_failure == ""
    finally:
        if engine == "psql":
            await db.execute('DROP TABLE IF EXISTS "ledger"')


async def test_concurrent_adds_get_distinct_members_and_a_consistent_file(cluster):
    from twisted.internet.defer import gatherResults

    _, a, _ = cluster
    replies = await gatherResults([
        ensureDeferred(a.execute(f'blockchain add {{"operator": {{"name": "op{i}", "cluster": "c"}}}}')) for i in range(60)])
    assert all(r.ok for r in replies), [r.text for r in replies if not r.ok]
    members = json.loads((await ok(a, "blockchain get operator bring.json [operator][member]")).render())
    assert len({m["member"] for m in members}) == 60
    version = (await ok(a, "get metadata version")).text
    assert (await ok(a, "blockchain load metadata")).text.startswith("60 policies")
    assert (await ok(a, "get metadata version")).text == version
