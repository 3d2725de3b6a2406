"""Dynamic (UNS) topics, the spec's acceptance cases 12, 13 and 15, against the real Mosquitto.

A node with SQLite and `run operator` subscribes with `dynamic = true`; messages are published
with mosquitto_pub; the tables, their columns and the UNS policies are read back.  Topics start
with a random prefix: the machine's Mosquitto is shared by every test worker.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from anylog_tw.metadata.layer import metadata
from anylog_tw.msg.clients import MsgClients
from anylog_tw.node import Node
from anylog_tw.storage.engines import Databases
from tests.helpers import ok, poll, refused
from tests.mqtt_support import SYSTEM_PORT, Mosquitto, publish, system_broker

pytestmark = pytest.mark.skipif(not system_broker(), reason="needs mosquitto at 127.0.0.1:1883")


async def start_node(path, name: str | None = None) -> Node:
    node = Node(str(path), name=name or f"dy{uuid.uuid4().hex[:8]}", reactor=reactor, environ={})
    node.startService()
    for dbms in ("almgm", "mydb"):
        await node.component(Databases).connect(dbms, "sqlite")
    await ok(node, "run operator")
    return node


@pytest_twisted.async_yield_fixture
async def node(tmp_path):
    node = await start_node(tmp_path / "home")
    yield node
    await node.stopService()


def prefix() -> str:
    return f"P{uuid.uuid4().hex[:8]}"


def received(node, n: int) -> bool:
    return sum(c.counts.messages for c in node.component(MsgClients).clients.values()) >= n


async def table_rows(node, sql: str, n: int, timeout: float = 15.0) -> list:
    """Flush the buffers until the operator has put `n` rows where `sql` reads them."""
    db = node.component(Databases).get("mydb")
    deadline = time.monotonic() + timeout
    while True:
        await ok(node, "flush buffers")
        try:
            found = (await db.query(sql))[1]
        except Exception:  # the table does not exist yet
            found = []
        if len(found) >= n:
            return found
        assert time.monotonic() < deadline, f"{len(found)} of {n} rows for {sql}"
        await task.deferLater(reactor, 0.05, lambda: None)


async def columns(node, table: str) -> list[str]:
    names = [n for n, _ in await node.component(Databases).get("mydb").columns(table)]
    return [n for n in names if n not in ("row_id", "insert_timestamp", "tsd_name", "tsd_id")]


async def uns(node, namespace: str) -> dict:
    meta = await metadata(node)
    found = [p["uns"] for p in meta.ledger.of_type("uns") if p["uns"]["namespace"] == namespace]
    assert len(found) == 1, f"{len(found)} UNS policies for {namespace}"
    return found[0]


async def test_case12_table_name_as_topic_and_uns_policies(node):
    """Case 12: `data/#` with table_name_as_topic: `data/my_data` goes to mydb.data_my_data with the
    message's attributes as columns; the topic path is a tree of UNS policies."""
    p = prefix()
    await ok(node, f"run msg client where broker = 127.0.0.1 and port = {SYSTEM_PORT} and topic = "
                   f"(name = \"{p}/data/#\" and dbms = mydb and dynamic = true and table_name_as_topic = true)")
    await publish(SYSTEM_PORT, f"{p}/data/my_data", [json.dumps({"Broker": "A", "value": 50.7, "temp": 12.2})])
    table = f"{p.lower()}_data_my_data"
    got = await table_rows(node, f"select broker, value, temp from {table}", 1)
    assert got == [("A", 50.7, 12.2)]
    assert await columns(node, table) == ["broker", "value", "temp"]
    root = await uns(node, p)
    middle = await uns(node, f"{p}/data")
    leaf = await poll(lambda: _uns_now(node, f"{p}/data/my_data"), what="the leaf UNS policy")
    assert root["uns_layer"] == "root" and "parent" not in root
    assert middle["parent"] == root["id"] and middle["uns_layer"] == "namespace"
    assert (leaf["parent"], leaf["uns_layer"], leaf["dbms"], leaf["table"]) == (middle["id"], "table", "mydb", table)
    text = (await ok(node, "get msg clients")).render()
    assert "Dynamic" in text and "<topic path>" in text
    shown = (await ok(node, "get msg clients where format = json")).data[0]["Topics"][0]
    assert shown["Dynamic"] is True and shown["Table"] == "<topic path>"
    found = json.loads((await ok(node, f'blockchain get uns where namespace = "{p}/data/my_data"')).render())
    assert [f["uns"]["id"] for f in found] == [leaf["id"]]
    # a second message on the same path makes no second policy
    await publish(SYSTEM_PORT, f"{p}/data/my_data", [json.dumps({"Broker": "B", "value": 1.5, "temp": 2.5})])
    await table_rows(node, f"select broker from {table}", 2)
    assert (await uns(node, f"{p}/data/my_data"))["id"] == leaf["id"]


def _uns_now(node, namespace: str):
    from anylog_tw.metadata.layer import Metadata

    meta = node.component(Metadata)
    found = [p["uns"] for p in meta.ledger.of_type("uns") if p["uns"]["namespace"] == namespace]
    return found[0] if found else None


async def test_case13_two_brokers_default_naming_one_table(node, tmp_path):
    """Case 13: the same dynamic topic on two brokers; `A/data` from each lands in mydb.data."""
    p = prefix()
    other = Mosquitto(tmp_path / "mosquitto").start()
    try:
        for port in (SYSTEM_PORT, other.port):
            await ok(node, f"run msg client where broker = 127.0.0.1 and port = {port} and topic = "
                           f"(name = \"{p}/#\" and dbms = mydb and dynamic = true)")
        await publish(SYSTEM_PORT, f"{p}/data", [json.dumps({"Broker": "A", "value": 42.7})])
        await publish(other.port, f"{p}/data", [json.dumps({"Broker": "B", "value": 45.7})])
        got = await table_rows(node, "select broker, value from data order by broker", 2)
        assert got == [("A", 42.7), ("B", 45.7)]
    finally:
        await ok(node, "exit msg client all")  # before its broker goes: no reconnect loop left behind
        other.stop()


async def test_case15_first_schema_wins(node):
    """Case 15: with table_prefix PRE1, B/data and B/A/data both go to pre1_data; a message that adds
    `temp` inserts broker and value only, whether it came with the first message or after it."""
    p = prefix()
    await ok(node, f"run msg client where broker = 127.0.0.1 and port = {SYSTEM_PORT} and topic = "
                   f"(name = \"{p}/#\" and dbms = mydb and dynamic = true and table_prefix = PRE1)")
    await publish(SYSTEM_PORT, f"{p}/data", [json.dumps({"Broker": "A", "value": 42.7}),
                                            json.dumps({"Broker": "A2", "value": 43.7, "temp": 11.1})])
    await table_rows(node, "select broker from pre1_data", 2)
    await publish(SYSTEM_PORT, f"{p}/A/data", [json.dumps({"Broker": "A3", "value": 44.7, "temp": 12.2})])
    got = await table_rows(node, "select broker, value from pre1_data order by broker", 3)
    assert got == [("A", 42.7), ("A2", 43.7), ("A3", 44.7)]
    assert await columns(node, "pre1_data") == ["broker", "value"]
    # the topic path B/A/data has its own UNS policies, naming the same table
    assert (await uns(node, f"{p}/A/data"))["table"] == "pre1_data"


async def test_plain_values_are_written_by_the_uns_streamer(node):
    """Not JSON objects: the last segment is the column, the rest names the table; the streamer
    writes one row with the latest value of each column."""
    p = prefix()
    await ok(node, f"run msg client where broker = 127.0.0.1 and port = {SYSTEM_PORT} and topic = "
                   f"(name = \"{p}/#\" and dbms = mydb and dynamic = true)")
    await publish(SYSTEM_PORT, f"{p}/line1/temperature", ["41.0", "42.5"])
    await publish(SYSTEM_PORT, f"{p}/line1/status", ["running"])
    await poll(lambda: received(node, 3), what="three values")
    db = node.component(Databases).get("mydb")
    assert not await db.has_table("line1")  # kept only, until the streamer runs
    await ok(node, "run uns streamer where frequency = 0.2")
    got = await table_rows(node, "select temperature, status, timestamp from line1", 1)
    assert got[0][:2] == (42.5, "running") and got[0][2]
    text = (await ok(node, "get processes")).render()
    assert "UNS Streamer" in text
    await ok(node, "exit uns streamer")
    await refused(node, "exit uns streamer")


async def test_dynamic_messages_that_cannot_name_a_table_are_errors(node):
    p = prefix()
    await ok(node, f"run msg client where broker = 127.0.0.1 and port = {SYSTEM_PORT} and log_error = true and "
                   f"topic = (name = \"{p}/#\" and dbms = mydb and dynamic = true)")
    await publish(SYSTEM_PORT, f"{p}/x(y)", [json.dumps({"v": 1})])
    await publish(SYSTEM_PORT, f"{p}/good", [json.dumps({"row_id": 1}), json.dumps({"v": 2})])
    await poll(lambda: received(node, 3), what="three messages")
    data = (await ok(node, "get msg clients where id = 1 and format = json")).data[0]
    assert (data["Messages"], data["Success"], data["Errors"]) == (3, 1, 2)
    assert "system column" in data["Last Error"]
    assert await table_rows(node, "select v from good", 1) == [(2,)]


async def test_uns_policies_go_to_the_master_node(tmp_path):
    """master_node = ip:port: the policies are pushed to the master, and held locally as global."""
    master = Node(str(tmp_path / "master"), name="master", reactor=reactor, environ={})
    master.startService()
    node = None
    try:
        await ok(master, "run tcp server where external_ip = 127.0.0.1 and external_port = 0 and bind = true")
        address = "%s:%d" % master.process("TCP").external_address
        node = await start_node(tmp_path / "op")
        p = prefix()
        await ok(node, f"run msg client where broker = 127.0.0.1 and port = {SYSTEM_PORT} and master_node = "
                       f"{address} and topic = (name = \"{p}/#\" and dbms = mydb and dynamic = true)")
        await publish(SYSTEM_PORT, f"{p}/m1", [json.dumps({"v": 1})])
        leaf = await poll(lambda: _uns_now(node, f"{p}/m1"), timeout=15, what="the leaf policy")
        on_master = await poll(lambda: _uns_now(master, f"{p}/m1"), timeout=15, what="the policy on the master")
        assert on_master["id"] == leaf["id"] and leaf["ledger"] == "global"
    finally:
        if node is not None:
            await node.stopService()
        await master.stopService()


async def test_dynamic_options_are_checked_before_anything_connects(node):
    for text, words in [
        ("topic = (name = a/# and dynamic = true)", "needs a dbms"),
        ("topic = (name = a/# and dbms = d and table_prefix = p)", "add dynamic = true"),
        ("topic = (name = a/# and dbms = d and dynamic = true and policy = x)", "cannot be combined"),
        ("topic = (name = a/# and dbms = d and dynamic = true and table_prefix = \"a b(\")", "table_prefix"),
        ("master_node = nowhere and topic = (name = a/# and dbms = d and dynamic = true)", "master_node"),
        ("topic = (name = a/# and dbms = \"bring [d]\" and dynamic = true)", "literal dbms"),
        ("topic = (name = a/# and dbms = d and table = \"bring [t]\" and dynamic = true)", "not a bring"),
        ("blockchain = ethereum and topic = (name = a/# and dbms = d and dynamic = true)", "not supported"),
    ]:
        message = await refused(node, f"run msg client where broker = 127.0.0.1 and port = {SYSTEM_PORT} and {text}")
        assert words in message, (text, message)
    assert not node.component(MsgClients).clients


async def test_uns_policies_stop_at_the_bound_and_the_messages_still_land(node, monkeypatch):
    """A device publishing to ever new topics cannot grow the metadata without end."""
    from anylog_tw.msg import uns

    monkeypatch.setattr(uns, "MAX_PATHS", 2)
    p = prefix()
    await ok(node, f"run msg client where broker = 127.0.0.1 and port = {SYSTEM_PORT} and topic = "
                   f"(name = \"{p}/#\" and dbms = mydb and dynamic = true)")
    for name in ("t1", "t2", "t3"):
        await publish(SYSTEM_PORT, f"{p}/{name}", [json.dumps({"v": 1})])
    for name in ("t1", "t2", "t3"):
        assert await table_rows(node, f"select v from {name}", 1) == [(1,)]
    await poll(lambda: _uns_now(node, f"{p}/t2"), what="the second path's policy")
    assert _uns_now(node, f"{p}/t3") is None
    log = (await ok(node, "get error log")).render()
    assert "no more UNS policies are made" in log
