"""Message clients against real Mosquitto brokers: connect, subscribe, receive, reconnect, sessions.

These tests check the transport and the bookkeeping with a plain mapper (value → one row); the
mapping language itself is tested through the full commands in test_msg_commands.py.
"""

from __future__ import annotations

import json
import uuid

import pytest
import pytest_twisted
from twisted.internet import reactor

from anylog_tw.ingest.streamer import Streamer
from anylog_tw.msg.clients import MsgClients
from anylog_tw.msg.mapping import MappingError, Target
from anylog_tw.msg.options import ClientSpec, TopicSpec
from anylog_tw.msg.service import end_client, start_client
from anylog_tw.node import Node
from tests.helpers import poll
from tests.mqtt_support import SYSTEM_PORT, Mosquitto, publish, system_broker

pytestmark = pytest.mark.skipif(not system_broker(), reason="needs mosquitto at 127.0.0.1:1883")


def value_mapper(obj, now):
    if "value" not in obj:
        raise MappingError("Failed to pull info from message: no [value]")
    return [(Target("d", "t"), {"value": obj["value"]})]


def spec_for(topic: str, port: int = SYSTEM_PORT, qos: int = 0, **kw) -> ClientSpec:
    return ClientSpec(broker="127.0.0.1", port=port, topics=(TopicSpec(name=topic, qos=qos),), **kw)


@pytest_twisted.async_yield_fixture
async def node(tmp_path):
    node = Node(str(tmp_path / "home"), name=f"mq{uuid.uuid4().hex[:8]}", reactor=reactor)  # client ids differ
    node.startService()
    node.component(Streamer).set_thresholds(time=3600, volume=10**9)  # rows stay buffered: counted, not flushed
    yield node
    await node.stopService()


def buffered(node) -> int:
    return node.component(Streamer).buffered_rows


async def test_messages_from_mosquitto_become_buffered_rows(node):
    """Every QoS 1 message published to the machine's Mosquitto is counted and its row buffered."""
    topic = f"t/{uuid.uuid4().hex}"
    client, text = await start_client(node, spec_for(topic, qos=1), {topic: value_mapper})
    assert "connected" in text, text
    await publish(SYSTEM_PORT, topic, [json.dumps({"value": i}) for i in range(500)], qos=1)
    await poll(lambda: client.counts.messages == 500, what="500 messages")
    assert client.counts.success == 500 and client.counts.errors == 0
    # QoS 1 rows are written at once, whatever the thresholds: the PUBACK waits for their file
    streamer = node.component(Streamer)
    await poll(lambda: streamer.flushed_rows == 500, what="500 rows in files")
    assert buffered(node) == 0 and client.link.acks.acked == 500 and not client.link.acks.pending
    await end_client(node, client.id)
    assert node.process("Message Client") is None
    from anylog_tw.base.metrics import Metrics

    exposed = node.component(Metrics).render().decode()
    assert 'anylog_msg_messages_total{result="success"} 500.0' in exposed  # kept after the client exited
    assert "anylog_msg_rows_total 500.0" in exposed
    assert 'anylog_msg_sessions_total{result="connected"} 1.0' in exposed


async def test_malformed_payloads_are_counted_and_the_client_goes_on(node, tmp_path):
    """Not JSON, a JSON scalar, a missing value, a list with a bad element: errors; good ones still arrive."""
    topic = f"t/{uuid.uuid4().hex}"
    spec = spec_for(topic, log_error=True, dirs={"err_dir": str(tmp_path / "err")})
    client, _ = await start_client(node, spec, {topic: value_mapper})
    bad = ["not json {", "42", json.dumps({"other": 1}), json.dumps([{"value": 1}, "x"]), "\xff\xfe"]
    good = [json.dumps({"value": 7}), json.dumps([{"value": 8}, {"value": 9}])]
    await publish(SYSTEM_PORT, topic, bad + good)
    await poll(lambda: client.counts.messages == len(bad) + len(good), what="all messages")
    assert client.counts.errors == len(bad)
    assert client.counts.success == 2
    assert buffered(node) == 3  # the list with a bad element buffered nothing
    clients = node.component(MsgClients)
    await clients.files.flush()
    files = list((tmp_path / "err").iterdir())
    assert [f.name for f in files] == [f"err_127_0_0_1_{SYSTEM_PORT}.{topic.replace('/', '_')}.json"]
    records = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert len(records) == len(bad)
    assert {r["topic"] for r in records} == {topic}
    assert {r["broker"] for r in records} == {f"127.0.0.1:{SYSTEM_PORT}"}
    assert "not in JSON format" in records[0]["reason"]
    assert "element 2" in records[3]["reason"]
    await end_client(node, client.id)


async def test_huge_message_is_an_error_not_a_stop(node):
    """A payload over the limit is counted as an error; the next message still arrives."""
    from anylog_tw.msg import clients as clients_module

    topic = f"t/{uuid.uuid4().hex}"
    client, _ = await start_client(node, spec_for(topic), {topic: value_mapper})
    huge = json.dumps({"value": "x" * (clients_module.MAX_MESSAGE + 10)})
    await publish(SYSTEM_PORT, topic, [huge, json.dumps({"value": 1})])
    await poll(lambda: client.counts.messages == 2, what="both messages")
    assert client.counts.errors == 1 and "limit" in client.counts.last_error
    assert client.counts.success == 1
    await end_client(node, client.id)


async def test_wildcards_follow_mqtt(node):
    """'+' matches one level and '#' the rest; the exact subscription wins over a catch-all."""
    base = uuid.uuid4().hex
    spec = ClientSpec(broker="127.0.0.1", port=SYSTEM_PORT, topics=(
        TopicSpec(name=f"{base}/+/temp", qos=0), TopicSpec(name=f"{base}/#", qos=0)))
    seen = []

    def plus(obj, now):
        seen.append("plus")
        return [(Target("d", "plus"), obj)]

    def hash_(obj, now):
        seen.append("hash")
        return [(Target("d", "hash"), obj)]

    client, _ = await start_client(node, spec, {f"{base}/+/temp": plus, f"{base}/#": hash_})
    await publish(SYSTEM_PORT, f"{base}/a/temp", ['{"v": 1}'])
    await publish(SYSTEM_PORT, f"{base}/a/b/temp", ['{"v": 2}'])
    await publish(SYSTEM_PORT, f"{base}/x", ['{"v": 3}'])
    await poll(lambda: len(seen) == 3, what="three messages")
    assert sorted(seen) == ["hash", "hash", "plus"]
    await end_client(node, client.id)


async def test_a_topic_is_subscribed_once_per_broker(node):
    topic = f"t/{uuid.uuid4().hex}"
    client, _ = await start_client(node, spec_for(topic), {topic: value_mapper})
    with pytest.raises(Exception, match="subscribed by client #"):
        await start_client(node, spec_for(topic), {topic: value_mapper})
    await end_client(node, client.id)


async def test_wrong_password_is_refused_at_once(node, tmp_path):
    broker = Mosquitto(tmp_path / "mq", passwords={"dev": "secret"}).start()
    try:
        topic = "t/pw"
        with pytest.raises(Exception, match="refused"):
            await start_client(node, spec_for(topic, port=broker.port, user="dev", password="wrong"),
                               {topic: value_mapper})
        assert not node.component(MsgClients).clients
        client, text = await start_client(node, spec_for(topic, port=broker.port, user="dev", password="secret",
                                                         qos=1), {topic: value_mapper})
        assert "connected" in text
        await publish(broker.port, topic, ['{"value": 1}'], qos=1, user="dev", password="secret")
        await poll(lambda: client.counts.success == 1, what="the message")
        await end_client(node, client.id)
    finally:
        broker.stop()


async def test_broker_down_at_start_then_up(node, tmp_path):
    """A broker that is not there yet leaves the client retrying; it connects once the broker is up."""
    broker = Mosquitto(tmp_path / "mq")
    topic = "t/late"
    client, text = await start_client(node, spec_for(topic, port=broker.port), {topic: value_mapper})
    assert "not connected" in text and "retrying" in text, text
    from anylog_tw.msg import status

    shown = status.render_client(client, reactor.seconds())
    assert "Connection:      Not connected: " in shown and "retrying in" in shown, shown
    broker.start()
    try:
        await poll(lambda: client.connection.connected, timeout=15, what="the connection")
        assert "Connection:      Connected" in status.render_client(client, reactor.seconds())
        await publish(broker.port, topic, ['{"value": 1}'])
        await poll(lambda: client.counts.success == 1, what="the message")
        await end_client(node, client.id)
    finally:
        broker.stop()


def start_publisher(port: int, topic: str, count: int, per_second: float):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "tests.mqtt_publisher", str(port), topic, str(count),
                             str(per_second)], cwd=str(__import__("pathlib").Path(__file__).parents[2]))


async def test_broker_restarted_during_a_qos1_stream_loses_nothing(node, tmp_path):
    """Mosquitto restarts mid-stream: the client reconnects, resubscribes, and every message arrives once."""
    from twisted.internet import threads

    broker = Mosquitto(tmp_path / "mq").start()
    topic = "t/restart"
    ids = []

    def record(obj, now):
        ids.append(obj["id"])
        return [(Target("d", "t"), obj)]

    try:
        client, _ = await start_client(node, spec_for(topic, port=broker.port, qos=1), {topic: record})
        count = 4000
        pub = start_publisher(broker.port, topic, count, 2000)
        await poll(lambda: len(ids) > 600, what="the stream to start")
        await threads.deferToThread(broker.restart)
        await poll(lambda: pub.poll() is not None, timeout=60, what="the publisher")
        assert pub.returncode == 0
        await poll(lambda: len(set(ids)) == count, timeout=60, what=f"{count} ids (have {len(set(ids))})")
        assert client.connection.connects >= 2
        assert sorted(set(ids)) == list(range(count))
        from collections import Counter

        doubled = sorted(i for i, n in Counter(ids).items() if n > 1)
        assert not doubled, (f"{len(doubled)} messages arrived twice: {doubled[:30]}; DUP resends dropped: "
                             f"{client.link.redeliveries.dropped}")
        await end_client(node, client.id)
    finally:
        broker.stop()


def make_certs(directory) -> dict:
    """A CA and a server certificate for 127.0.0.1 (and a second CA that signed nothing)."""
    import subprocess

    d = str(directory)
    run = lambda *args: subprocess.run(args, cwd=d, check=True, capture_output=True)  # noqa: E731
    for ca in ("ca", "other"):
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
            "-days", "2", "-subj", f"/CN=test {ca}")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj",
        "/CN=127.0.0.1")
    with open(f"{d}/san.ext", "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "san.ext")
    return {"ca": f"{d}/ca.crt", "cert": f"{d}/server.crt", "key": f"{d}/server.key", "other": f"{d}/other.crt"}


async def test_tls_to_the_broker(node, tmp_path):
    """ssl = true with the broker's CA connects and receives; a CA that did not sign it is refused at once."""
    (tmp_path / "certs").mkdir()
    certs = make_certs(tmp_path / "certs")
    broker = Mosquitto(tmp_path / "mq", tls=certs).start()
    try:
        topic = "t/tls"
        with pytest.raises(Exception, match="TLS"):
            await start_client(node, spec_for(topic, port=broker.port, ssl=True, ca=certs["other"]),
                               {topic: value_mapper})
        assert not node.component(MsgClients).clients
        client, text = await start_client(node, spec_for(topic, port=broker.port, ssl=True, ca=certs["ca"]),
                                          {topic: value_mapper})
        assert "connected" in text, text

        await threads_run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "--cafile", certs["ca"],
                           "-t", topic, "-m", '{"value": 5}'])
        await poll(lambda: client.counts.success == 1, what="the message over TLS")
        await end_client(node, client.id)
    finally:
        broker.stop()


def threads_run(argv):
    import subprocess

    from twisted.internet import threads

    return threads.deferToThread(subprocess.run, argv, check=True, capture_output=True, timeout=30)


async def test_the_node_as_a_broker_takes_ten_publishers(node):
    """run message broker: 10 mosquitto_pub clients at QoS 1; every message reaches the local client once."""
    from concurrent.futures import ThreadPoolExecutor

    from twisted.internet import threads

    from tests.helpers import ok
    from tests.mqtt_support import publish_blocking

    pool = ThreadPoolExecutor(10)

    await ok(node, "run message broker where internal_ip = 127.0.0.1 and internal_port = 0")
    port = node.process("Broker").address[1]
    ids = []

    def record(obj, now):
        ids.append(obj["id"])
        return [(Target("d", "t"), obj)]

    spec = ClientSpec(broker="local", topics=(TopicSpec(name="dev/+", qos=1),))
    client, text = await start_client(node, spec, {"dev/+": record})
    assert "message broker" in text
    # One thread for the ten publishers: ten blocking threads would fill the reactor's pool, and
    # the streaming files whose PUBACKs they wait for are written in that pool.
    await threads.deferToThread(lambda: [d.result() for d in [
        pool.submit(publish_blocking, port, f"dev/{p}", [json.dumps({"id": p * 1000 + i}) for i in range(300)], 1)
        for p in range(10)]])
    pool.shutdown()
    await publish(port, "nobody/here", ['{"id": -1}'])
    await poll(lambda: len(ids) == 3000, what="3000 messages")
    assert sorted(ids) == sorted(p * 1000 + i for p in range(10) for i in range(300))
    stats = json.loads((await ok(node, "get local broker where format = json")).render())
    events = {}
    for row in stats:
        events.setdefault(row["Event"], [0, 0])
        events[row["Event"]][0] += row["Success"]
        events[row["Event"]][1] += row["Error"]
    assert events["CONNECT"] == [11, 0]
    assert events["PUBLISH"] == [3000, 1]
    assert any("nobody/here" in row["Details"] for row in stats)
    processes = (await ok(node, "get processes")).render()
    assert "Broker" in processes and "Message Client" in processes
    await ok(node, "exit broker")
    await end_client(node, client.id)


async def test_exit_says_disconnect_and_the_session_stays(node, tmp_path):
    """exit msg client sends DISCONNECT (a clean end, not a dropped socket); QoS 1 messages sent
    meanwhile wait in the persistent session for the same client id."""
    broker = Mosquitto(tmp_path / "mq").start()
    try:
        topic = "t/session"
        spec = spec_for(topic, port=broker.port, qos=1, client_id="keep-me")
        client, _ = await start_client(node, spec, {topic: value_mapper})
        await end_client(node, client.id)
        await poll(lambda: "Client keep-me disconnected." in broker.log(), what="a clean DISCONNECT in the log")
        await publish(broker.port, topic, [json.dumps({"value": i}) for i in range(5)], qos=1)
        client, text = await start_client(node, spec, {topic: value_mapper})
        await poll(lambda: client.counts.success == 5, what="the queued messages")
        assert client.connection.session_present
        await end_client(node, client.id)
    finally:
        broker.stop()
