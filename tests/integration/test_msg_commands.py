"""The acceptance cases of the MQTT spec (§12) that need no outside broker, through the commands.

A node with SQLite databases and `run operator` subscribes to the machine's Mosquitto (instead of
the docs' cloud broker), to its own broker, or to REST; messages are published for real, and the
rows are read back from the tables after `flush buffers`.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from anylog_tw.ingest.handoff import Handoff
from anylog_tw.node import Node
from anylog_tw.storage.engines import Databases
from tests.helpers import ok, poll, refused
from tests.mqtt_support import SYSTEM_PORT, publish, system_broker

pytestmark = pytest.mark.skipif(not system_broker(), reason="needs mosquitto at 127.0.0.1:1883")

CASE1_MESSAGE = {"value": 210, "ts": 1607959427550, "protocol": "modbus", "measurement": "temp02",
                 "metadata": {"company": "Anylog", "machine_name": "cutter 23", "serial_number": "1234567890"}}
CASE1_TOPIC = ('dbms = "bring [metadata][company]" and table = "bring [metadata][machine_name] _ '
               '[metadata][serial_number]" and column.timestamp.timestamp = "bring [ts]" and '
               'column.value = (type=int and value="bring [value]")')


@pytest_twisted.async_yield_fixture
async def node(tmp_path):
    node = Node(str(tmp_path / "home"), name=f"mq{uuid.uuid4().hex[:8]}", reactor=reactor)  # client ids differ
    node.startService()
    dbs = node.component(Databases)
    for name in ("almgm", "anylog", "my_dbms", "test", "dmci", "x"):
        await dbs.connect(name, "sqlite")
    await ok(node, "run operator")
    yield node
    await node.stopService()


async def rows(node, dbms: str, sql: str, timeout: float = 15.0) -> list:
    """Flush the buffers, then the rows of `sql` once the operator has put some there."""
    await ok(node, "flush buffers")
    db = node.component(Databases).get(dbms)
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = (await db.query(sql))[1]
        except Exception:  # the table does not exist yet
            found = None
        if found:
            return found
        assert time.monotonic() < deadline, f"no rows in {dbms} for {sql}"
        await task.deferLater(reactor, 0.05, lambda: None)


def unique() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


async def msg_client(node, text: str):
    reply = await ok(node, text)
    return reply


async def counts(node, client_id: int = 1) -> dict:
    reply = await ok(node, f"get msg clients where id = {client_id} and format = json")
    return reply.data[0]


async def test_case1_external_broker_bring_rules(node):
    """Case 1 on the machine's Mosquitto: one row in anylog.cutter_23_1234567890; Messages 1, Success 1."""
    topic = unique()
    await msg_client(node, f"run msg client where broker = 127.0.0.1 and port = {SYSTEM_PORT} and log = false and "
                           f"topic = (name = {topic} and {CASE1_TOPIC})")
    await publish(SYSTEM_PORT, topic, [json.dumps(CASE1_MESSAGE)])
    await poll(lambda: node_counts_ready(node), what="the message")
    got = await rows(node, "anylog", "select timestamp, value from cutter_23_1234567890")
    assert [(str(t)[:19], v) for t, v in got] == [("2020-12-14 15:23:47", 210)]
    assert node.component(Handoff).taken == 1  # the operator took the mapped rows, not a second parse
    c = await counts(node)
    assert (c["Messages"], c["Success"], c["Errors"]) == (1, 1, 0)
    text = (await ok(node, "get msg clients")).render()
    assert "Subscription ID: 0001" in text and "['[metadata][company]']" in text and "Connected" in text


def node_counts_ready(node, n: int = 1) -> bool:
    from anylog_tw.msg.clients import MsgClients

    return sum(c.counts.messages for c in node.component(MsgClients).clients.values()) >= n


async def test_case2_and_3_local_broker(node):
    """The node's broker takes a publish; the local client maps it; get local broker shows CONNECT and PUBLISH."""
    await ok(node, "run message broker 127.0.0.1 0")
    port = node.process("Broker").address[1]
    await msg_client(node, "run mqtt client where broker=local and log=false and topic=(name=mqtt-test and "
                           "dbms=my_dbms and table=rand_data and column.timestamp.timestamp=now and "
                           "column.value.float='bring [readings][][value]')")
    message = {"id": "x", "readings": [{"name": "Random", "value": "-998060882", "valueType": "Float32"}]}
    await publish(port, "mqtt-test", [json.dumps(message)], qos=1)
    await poll(lambda: node_counts_ready(node), what="the message")
    got = await rows(node, "my_dbms", "select value from rand_data")
    assert [float(v) for (v,) in got] == [-998060882.0]
    broker = json.loads((await ok(node, "get local broker where format = json")).render())
    events = {r["Event"]: r for r in broker}
    assert events["CONNECT"]["Success"] >= 1 and events["PUBLISH"]["Success"] == 1
    # case 3: the broker's own address is the same as broker = local
    await ok(node, f"run msg client where broker = 127.0.0.1 and port = {port} and topic = (name = other and "
                   f"dbms = my_dbms and table = other and column.v.int = \"bring [v]\")")
    c = await counts(node, 2)
    assert c["Broker"] == "local"


async def test_case4_table_per_reading(node):
    topic = unique()
    await msg_client(node, f"run msg client where broker = 127.0.0.1 and port = {SYSTEM_PORT} and topic=(name={topic} "
                           "and dbms=test and table=\"bring [sourceName]\" and column.timestamp.timestamp=now and "
                           "column.value.float=\"bring [readings][][value]\")")
    msgs = [json.dumps({"sourceName": f"LIGHTOUT{i}", "readings": [{"value": i * 1.5}]}) for i in range(1, 5)]
    await publish(SYSTEM_PORT, topic, msgs)
    await poll(lambda: node_counts_ready(node, 4), what="four messages")
    for i in range(1, 5):
        got = await rows(node, "test", f"select value from lightout{i}")
        assert [float(v) for (v,) in got] == [i * 1.5]
    text = (await ok(node, "get msg client")).render()
    assert "['[sourceName]']" in text and "now()" in text and "['[readings][][value]']" in text


async def test_case5_and_6_rest_broker(node):
    await ok(node, "run rest server where internal_ip = 127.0.0.1 and internal_port = 0")
    await msg_client(node, "run msg client where broker = rest and user-agent = anylog and user = mqwdtklv and "
                           f"password = uRimssLO4dIo and topic = (name = test and {CASE1_TOPIC})")
    await msg_client(node, "run msg client where broker=rest and user-agent = opc and topic = (name = opcua and "
                           "dbms = \"bring [dbms]\" and table = \"bring [table]\" and column.timestamp.timestamp = "
                           "\"bring [ts]\" and column.value.float = \"bring [value]\")")
    from tests.integration.rest_support import Client

    http = Client(node)
    try:
        headers = {"command": "data", "User-Agent": "AnyLog/1.23", "topic": "test"}
        body = json.dumps([CASE1_MESSAGE, dict(CASE1_MESSAGE, value=211)]).encode()
        code, _, text = await http.call("POST", "/", headers, body)
        assert code == 200, text
        elements = [{"dbms": "dmci", "table": t, "value": 50, "ts": "2019-10-14T17:22:13.051101Z"}
                    for t in ("fic11", "fic16", "ai_mv")]
        code, _, text = await http.call("POST", "/", {"command": "data", "User-Agent": "opc/2"},
                                        json.dumps(elements).encode())
        assert code == 200, text
        got = await rows(node, "anylog", "select value from cutter_23_1234567890 order by value")
        assert [v for (v,) in got] == [210, 211]
        for t in ("fic11", "fic16", "ai_mv"):
            assert [float(v) for (v,) in await rows(node, "dmci", f"select value from {t}")] == [50.0]
        code, _, text = await http.call("POST", "/", {"command": "data", "User-Agent": "AnyLog/1.23"},
                                        b'[{"value": 1}]')
        assert code == 400 and b"metadata" in text, text
        code, _, text = await http.call("POST", "/", {"command": "data", "User-Agent": "curl/8"}, b"{}")
        assert code == 400 and b"no message client" in text, text
    finally:
        await http.close()


async def test_case7_optional_column(node):
    topic = unique()
    await msg_client(node, f"run msg client where broker = 127.0.0.1 and port = {SYSTEM_PORT} and topic = (name = "
                           f"{topic} and dbms = x and table = opt and column.v.int = \"bring [v]\" and "
                           "column.info=(type=str and value=\"bring [info]\" and optional=true)) and topic = (name = "
                           f"{topic}/strict and dbms = x and table = strict and column.v.int = \"bring [v]\" and "
                           "column.info=(type=str and value=\"bring [info]\"))")
    await publish(SYSTEM_PORT, topic, ['{"v": 1}', '{"v": 2, "info": "hi"}'])
    await publish(SYSTEM_PORT, f"{topic}/strict", ['{"v": 3}'])
    await poll(lambda: node_counts_ready(node, 3), what="three messages")
    got = await rows(node, "x", "select v, info from opt order by v")
    assert [tuple(r) for r in got] == [(1, None), (2, "hi")]
    c = await counts(node)
    assert c["Errors"] == 1 and "info" in c["Last Error"]


async def test_case8_log_error(node):
    topic = unique()
    await msg_client(node, f"run msg client where broker = 127.0.0.1 and port = {SYSTEM_PORT} and log_error = true "
                           f"and topic = (name = {topic} and {CASE1_TOPIC})")
    await publish(SYSTEM_PORT, topic, [json.dumps({"value": 1, "ts": 1607959427550})])
    await poll(lambda: node_counts_ready(node), what="the message")
    c = await counts(node)
    assert c["Errors"] == 1
    from anylog_tw.msg.clients import MsgClients

    await node.component(MsgClients).files.flush()
    err = node.dictionary["err_dir"]
    names = [n for n in os.listdir(err) if n.startswith(f"err_127_0_0_1_{SYSTEM_PORT}")]
    assert names == [f"err_127_0_0_1_{SYSTEM_PORT}.{topic}.json"]
    record = json.loads(open(os.path.join(err, names[0])).read())
    assert record["topic"] == topic and "metadata" in record["reason"]


async def test_case9_persist_and_case10_all_topics(node):
    base = unique()
    await msg_client(node, f"run msg client where broker = 127.0.0.1 and port = {SYSTEM_PORT} and topic = (name = "
                           f"{base}/raw and persist = true and dbms = abc and table = 123) and topic = (name = "
                           f"{base}/mapped and dbms = x and table = m and column.v.int = \"bring [v]\" and "
                           f"column.site.str = plant1) and topic = \"{base}/#\"")
    await publish(SYSTEM_PORT, f"{base}/raw", ['{"v": 1}', "not json"])
    await publish(SYSTEM_PORT, f"{base}/mapped", ['{"v": 2}'])
    await publish(SYSTEM_PORT, f"{base}/other", ['{"v": 3}'])
    await poll(lambda: node_counts_ready(node, 4), what="four messages")
    from anylog_tw.msg.clients import MsgClients

    await node.component(MsgClients).files.flush()
    prep = node.dictionary["prep_dir"]
    kept = {n: open(os.path.join(prep, n)).read() for n in os.listdir(prep) if n.endswith(".json")}
    persist = [v for n, v in kept.items() if n.startswith("persist_")]
    assert persist == ['{"v": 1}\nnot json\n']
    logged = [json.loads(line) for n, v in kept.items() if n.startswith("log_") for line in v.splitlines()]
    assert logged == [{"topic": f"{base}/other", "msg": {"v": 3}}]
    assert [tuple(r) for r in await rows(node, "x", "select v, site from m")] == [(2, "plant1")]  # a literal


async def test_case11_mapping_policy(node):
    policy = {"mapping": {"id": "telegraf-mapping", "dbms": "bring [dbms]", "table": "bring [sensor]",
                          "schema": {"timestamp": {"type": "timestamp", "default": "now()", "bring": "[timestamp]"},
                                     "value": {"type": "float", "bring": "[value]"}}}}
    await ok(node, f"blockchain insert where policy = {json.dumps(policy)} and local = true")
    await ok(node, "run message broker 127.0.0.1 0")
    port = node.process("Broker").address[1]
    await msg_client(node, "run msg client where broker=local and log=false and topic=(name=my-topic and "
                           "policy=telegraf-mapping)")
    await publish(port, "my-topic", [json.dumps({"dbms": "x", "sensor": "s1", "value": 1.5})])
    await poll(lambda: node_counts_ready(node), what="the message")
    assert [float(v) for (v,) in await rows(node, "x", "select value from s1")] == [1.5]
    assert node.component(Handoff).taken == 1  # the message itself, handed to the policy's mapping
    text = await refused(node, "run msg client where broker=local and topic=(name=t2 and policy=nope)")
    assert "nope" in text


async def test_case14_and_16_case_sensitivity_and_exit(node):
    base = unique()
    await msg_client(node, f"run msg client where broker = 127.0.0.1 and port = {SYSTEM_PORT} and topic = (name = "
                           f"\"{base}/C/#\" and dbms = x and table = c and column.v.int = \"bring [v]\")")
    await publish(SYSTEM_PORT, f"{base}/c/data", ['{"v": 1}'])
    await publish(SYSTEM_PORT, f"{base}/C/data", ['{"v": 2}'])
    await poll(lambda: node_counts_ready(node, 1), what="the message")
    c = await counts(node)
    assert c["Messages"] == 1
    await msg_client(node, f"run msg client where broker = 127.0.0.1 and port = {SYSTEM_PORT} and topic = (name = "
                           f"{base}/b and dbms = x and table = b and column.v.int = \"bring [v]\")")
    await msg_client(node, f"run msg client where broker = 127.0.0.1 and port = {SYSTEM_PORT} and topic = (name = "
                           f"{base}/d and dbms = x and table = d and column.v.int = \"bring [v]\")")
    await ok(node, "exit msg client 3")
    listing = (await ok(node, "get msg clients where format = json")).data
    assert [c["Subscription ID"] for c in listing] == ["0001", "0002"]
    assert "No message client subscription #99" in await refused(node, "exit msg client 99")
    await ok(node, "exit msg client all")
    assert (await ok(node, "get msg clients")).render() == "No message client subscriptions"
    assert node.process("Message Client") is None


async def test_mqtt_publish_to_a_broker_and_to_local(node):
    """mqtt publish: over the network to the node's own broker (QoS 1), and to the local clients directly."""
    await ok(node, "run message broker 127.0.0.1 0")
    port = node.process("Broker").address[1]
    await msg_client(node, "run msg client where broker = local and topic = (name = p and dbms = x and table = pub and "
                           "column.v.int = \"bring [v]\")")
    text = (await ok(node, f"mqtt publish where broker = 127.0.0.1 and port = {port} and topic = p and qos = 1 and "
                           "message = '{\"v\": 1}'")).render()
    assert "Published" in text
    await ok(node, "mqtt publish where broker = local and topic = p and message = '{\"v\": 2}'")
    assert "no local message client" in await refused(node, "mqtt publish where broker = local and topic = q and "
                                                            "message = '{\"v\": 3}'")
    assert "metadata" not in await refused(node, "mqtt publish where broker = local and topic = p and message = 'x'")
    assert [v for (v,) in await rows(node, "x", "select v from pub order by v")] == [1, 2]
    publishes = [r for r in json.loads((await ok(node, "get local broker where format = json")).render())
                 if r["Event"] == "PUBLISH"]
    assert sum(r["Success"] for r in publishes) == 1  # the local publish did not go through the socket
    closed = await refused(node, f"mqtt publish where broker = 127.0.0.1 and port = {port + 1 if port < 65535 else 1}"
                                 " and topic = p and message = '{}'")
    assert "cannot connect" in closed or "did not" in closed
