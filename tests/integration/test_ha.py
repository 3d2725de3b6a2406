"""HA between two operator nodes in one process: real sockets, real SQLite, real files.

Each node has its own ledger holding the same cluster and operator policies (added locally, no
master), an operator and `run ha`.  Files dropped on A must appear on B, each exactly once.
"""

from __future__ import annotations

import json
import os

import pytest
import pytest_twisted
from twisted.internet import reactor

from anylog_tw.node import Node
from anylog_tw.storage.engines import Databases
from tests.helpers import poll
from tests.pg import PG, drop_pg_database, new_database

FAST = "push_interval = 0.2 seconds and pull_interval = 0.5 seconds and grace = 0 seconds"


async def ok(node: Node, text: str):
    reply = await node.execute(text)
    assert reply.ok, f"{text}: {reply.text}"
    return reply


def addr(node: Node) -> tuple[str, int]:
    return node.process("TCP").external_address


async def start_node(tmp_path, name: str, almgm: str = "") -> Node:
    node = Node(str(tmp_path / name), name=name, reactor=reactor, environ={})
    node.startService()
    await ok(node, "run tcp server where external_ip = 127.0.0.1 and external_port = 0 and bind = true")
    if almgm:  # the TSD tables and the push marks on PostgreSQL
        await node.component(Databases).connect("almgm", "psql", database=almgm, ip="127.0.0.1", port=5432,
                                                user=PG["user"], password="")
    else:
        await ok(node, "connect dbms almgm where type = sqlite")
    await ok(node, "connect dbms lsl where type = sqlite")
    return node


async def add_policies(node: Node, ports: dict[str, int]) -> None:
    await ok(node, 'blockchain add {"cluster": {"id": "c1", "name": "c1", "company": "t", '
                   '"table": [{"dbms": "lsl", "name": "ping"}]}}')
    for i, (name, port) in enumerate(sorted(ports.items()), start=1):
        await ok(node, f'blockchain add {{"operator": {{"id": "{name}", "name": "{name}", "company": "t", '
                       f'"ip": "127.0.0.1", "port": {port}, "cluster": "c1", "member": {i}}}}}')


def drop(node: Node, name: str, i: int, n: int = 3) -> None:
    data = b"".join(json.dumps({"seq": i * 100 + k, "value": k}).encode() + b"\n" for k in range(n))
    watch = node.dictionary["watch_dir"]
    with open(os.path.join(watch, "." + name), "wb") as f:
        f.write(data)
    os.replace(os.path.join(watch, "." + name), os.path.join(watch, name))


async def count(node: Node, sql: str, dbms: str = "lsl") -> int:
    db = node.component(Databases).find(dbms)
    try:
        _, rows = await db.query(sql)
    except Exception:
        return -1
    return int(rows[0][0] or 0)


@pytest_twisted.async_yield_fixture(params=["sqlite", pytest.param("psql", marks=pytest.mark.postgres)])
async def cluster(request, tmp_path):
    names = {n: new_database("ha_" + n) if request.param == "psql" else "" for n in "ab"}
    a = await start_node(tmp_path, "a", names["a"])
    b = await start_node(tmp_path, "b", names["b"])
    ports = {"opa": addr(a)[1], "opb": addr(b)[1]}
    for node in (a, b):
        await add_policies(node, ports)
    for node, name in ((a, "opa"), (b, "opb")):
        await ok(node, f"run operator where policy = {name} and rescan = 1 second")
    yield a, b
    for node in (a, b):
        await node.stopService()
    if request.param == "psql":
        for name in names.values():
            drop_pg_database(name)


async def wait_count(node, sql, expected, what, timeout=20.0, dbms="lsl"):
    holder = {}

    async def check():
        holder["n"] = await count(node, sql, dbms)
        return holder["n"] == expected

    import time

    from twisted.internet import task

    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {holder['n']} != {expected}")
        await task.deferLater(reactor, 0.05, lambda: None)


async def test_files_dropped_on_a_appear_on_b_once(cluster):
    a, b = cluster
    for node in (a, b):
        await ok(node, f"run ha where {FAST}")
    for i in range(10):
        drop(a, f"lsl.ping.s{i}.json", i)
    await wait_count(a, "select count(*) from ping", 30, "rows on A")
    await wait_count(b, "select count(*) from ping", 30, "rows on B")
    assert await count(b, "select count(distinct seq) from ping") == 30
    assert await count(b, "select count(*) from tsd_1", "almgm") == 10
    assert await count(b, "select count(distinct tsd_name) from ping") == 1
    await poll(lambda: a.process("HA").push.status_rows(reactor.seconds())[0]["Files pending"] == 0, 10,
               what="A's push to drain")
    ha = (await ok(a, "get ha where format = json")).data
    assert ha["Push"][0]["Member"] == "2" and ha["Push"][0]["Last acked"] == 10
    processes = (await ok(a, "get processes")).render()
    assert "Cluster: c1, Member: 1, Peers: 1, Running: push, pull" in processes
    # the marks are persisted
    await a.stop_process("HA")
    await wait_count(a, "select acked_id from ha_push where member = '2'", 10, "the saved mark", 3, "almgm")
    summary = (await ok(b, "get tsd summary where table = * and format = json")).json_data()
    assert [r["Files Count"] for r in summary if r["TSD"] == "tsd_1"] == [10]
    details = (await ok(b, "get tsd details where table = tsd_1 and limit = 3 and format = json")).json_data()
    assert [r["File ID"] for r in details] == [1, 2, 3] and {r["Status 2"] for r in details} == {"done"}
    one = (await ok(b, f"get tsd details where table = * and hash = {details[1]['Hash']}")).json_data()
    assert len(one) == 1 and one[0]["TSD"] == "tsd_1"
    assert [r["TSD table"] for r in (await ok(b, "get tsd list")).json_data()] == ["tsd_info", "tsd_1"]
    assert (await ok(b, "get tsd summary where table = tsd_1 and start_date = +1d")).rows == []
    info = (await ok(a, "get cluster info where format = json")).data
    assert info["Cluster ID"] == "c1" and info["Member ID"] == "1" and info["Tables"] == ["lsl.ping"]
    assert {(o["Member"], o["Status"]) for o in info["Operators"]} == {("1", "local"), ("2", "active")}
    nodes = (await ok(a, "get data nodes where dbms = lsl and table = ping")).json_data()
    assert [(r["Member"], r["Operator"]) for r in nodes] == [("1", "opa"), ("2", "opb")]
    assert (await ok(a, "get data nodes where table = nothing")).rows == []
    data = (await ok(a, "test cluster data where format = json")).json_data()
    assert {r["Same"] for r in data} == {"yes"} and {r["Rows"] for r in data} == {30}
    assert os.listdir(b.dictionary["err_dir"]) == []


async def test_b_down_then_catches_up_by_pull_and_push_without_duplicates(cluster):
    a, b = cluster
    await ok(a, f"run ha where {FAST}")
    port = addr(b)[1]
    await b.stop_process("Operator")
    await ok(b, "exit tcp")  # B is unreachable
    for i in range(20):
        drop(a, f"lsl.ping.d{i}.json", i)
    await wait_count(a, "select count(*) from ping", 60, "rows on A")
    # rows are committed (and synced) before their file is marked done: wait for the marks too
    await wait_count(a, "select count(*) from tsd_info where status2 = 'done'", 20, "A's files done", dbms="almgm")
    await poll(lambda: a.process("HA").push.members["2"].status == "down", 10, what="A to see B down")
    await poll(lambda: a.process("HA").push.status_rows(reactor.seconds())[0]["Files pending"] == 20, 10,
               what="A's push to hold the 20 files")  # each joins it once archived
    await ok(b, f"run tcp server where external_ip = 127.0.0.1 and external_port = {port} and bind = true")
    await ok(b, "run operator where policy = opb and rescan = 1 second")
    await ok(b, f"run ha where {FAST}")  # B pulls while A pushes: both copies of a file are taken once
    await wait_count(b, "select count(*) from ping", 60, "rows on B", timeout=30)
    assert await count(b, "select count(distinct seq) from ping") == 60
    await wait_count(b, "select count(*) from tsd_1 where status2 = 'done'", 20, "B's tsd_1", dbms="almgm")
    await poll(lambda: a.process("HA").push.status_rows(reactor.seconds())[0]["Files pending"] == 0, 20,
               what="A's push to drain")
    assert await count(b, "select count(*) from ping") == 60
    assert os.listdir(b.dictionary["err_dir"]) == []


async def test_a_file_a_member_no_longer_has_is_recorded_missing(cluster):
    a, b = cluster
    for i in range(3):
        drop(a, f"lsl.ping.m{i}.json", i)
    await wait_count(a, "select count(*) from ping", 9, "rows on A")
    await wait_count(a, "select count(*) from tsd_info where status2 = 'done'", 3, "A's files done", dbms="almgm")
    # lose the archived copy of file 2 on A
    for root, _, files in os.walk(a.dictionary["archive_dir"]):
        for f in files:
            if ".1.2." in f:
                os.unlink(os.path.join(root, f))
    await ok(b, f"run data consumer where {FAST}")
    await wait_count(b, "select count(*) from ping", 6, "the two archived files on B")
    await wait_count(b, "select count(*) from tsd_1 where status1 = '01'", 1, "the missing file", dbms="almgm")
    errors = (await ok(b, "get tsd errors where table = * and format = json")).json_data()
    assert len(errors) == 1 and errors[0]["File ID"] == 2 and "Missing archived data with member 1" in \
        errors[0]["Status 2"]


@pytest.mark.allow_logged_errors
async def test_a_file_b_failed_to_ingest_is_asked_for_again_up_to_the_retries(cluster):
    """B's operator fails one of A's files once and another every time: the pull asks again, the
    first lands once, the second is given up after tsd.RETRIES attempts and shows in `get tsd errors`."""
    from anylog_tw.base.errors import StorageError
    from anylog_tw.ingest import tsd

    a, b = cluster
    for i in range(4):
        drop(a, f"lsl.ping.r{i}.json", i)
    await wait_count(a, "select count(*) from tsd_info where status2 = 'done'", 4, "A's files done", dbms="almgm")
    op = b.process("Operator")
    finish = op._finish
    attempts: dict[str, int] = {}

    async def flaky(job):
        key = job.name.split(".")[2]  # the source segment: r0 .. r3
        attempts[key] = attempts.get(key, 0) + 1
        if key == "r3" or (key == "r1" and attempts[key] == 1):
            raise StorageError(f"simulated failure of {key}")
        return await finish(job)

    op._finish = flaky
    await ok(b, f"run data consumer where {FAST}")
    await wait_count(b, "select count(*) from ping", 9, "files r0, r1 (second try) and r2 on B", timeout=30)
    pull = b.process("HA").pull.states["1"]
    await poll(lambda: attempts.get("r3", 0) >= tsd.RETRIES, 30, what="r3 to be tried RETRIES times")
    runs = pull.runs
    await poll(lambda: pull.runs >= runs + 3, 30, what="three more pulls")
    assert attempts["r3"] == tsd.RETRIES and attempts["r1"] == 2
    assert await count(b, "select count(distinct seq) from ping") == 9
    errors = (await ok(b, "get tsd errors where table = tsd_1 and format = json")).json_data()
    assert len(errors) == 1 and errors[0]["Status 2"].startswith(f"failed {tsd.RETRIES}: insert")
