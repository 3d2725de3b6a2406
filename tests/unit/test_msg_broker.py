"""The node's MQTT broker protocol over StringTransport: packets in, answers out, stats kept."""

from __future__ import annotations

import os

import paho.mqtt.client as paho
from hypothesis import given
from hypothesis import strategies as st
from mqtt import pdu
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from anylog_tw.msg.broker import BrokerFactory, BrokerStats, MAX_PACKET
from anylog_tw.msg.acks import Acks, Journal
from anylog_tw.msg.external import backoff


def session(credentials=None, host="127.0.0.1", accept=lambda topic, payload: None):
    got = []

    def deliver(topic, payload, waiter=None):
        got.append((topic, payload))
        return accept(topic, payload)

    factory = BrokerFactory(deliver, BrokerStats(Clock()), credentials)
    proto = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", host, 5000))
    proto.makeConnection(transport)
    return proto, transport, factory, got


def connect_packet(user=None, password=None, client_id="dev1") -> bytes:
    c = pdu.CONNECT()
    c.clientId, c.keepalive, c.cleanStart, c.version = client_id, 60, True, {"tag": "MQTT", "level": 4}
    c.username, c.password = user, password
    return c.encode()


def publish_packet(topic: str, payload: bytes, qos=0, mid=None) -> bytes:
    p = pdu.PUBLISH()
    p.topic, p.payload, p.qos, p.dup, p.retain, p.msgId = topic, bytearray(payload), qos, False, False, mid
    return p.encode()


def test_connect_publish_qos0_and_qos1():
    proto, t, factory, got = session()
    proto.dataReceived(connect_packet())
    assert t.value() == b"\x20\x02\x00\x00"  # CONNACK accepted
    t.clear()
    proto.dataReceived(publish_packet("a/b", b'{"v": 1}') + publish_packet("a/c", b'{"v": 2}', qos=1, mid=7))
    assert got == [("a/b", b'{"v": 1}'), ("a/c", b'{"v": 2}')]
    assert t.value() == b"\x40\x02\x00\x07"  # PUBACK 7
    rows = factory.stats.rows
    assert rows[("MQTT", "127.0.0.1", "PUBLISH")].success == 2
    assert rows[("MQTT", "127.0.0.1", "CONNECT")].success == 1


def test_qos1_and_qos2_are_acknowledged_when_their_rows_are_durable():
    clock, flushes, waiting = Clock(), [], []

    def deliver(topic, payload, waiter=None):
        if waiter is not None:
            waiter.remaining = 1  # its rows went to one buffer
            waiting.append(waiter)

    factory = BrokerFactory(deliver, BrokerStats(clock), None, flush=lambda: flushes.append(1) or [])
    proto = factory.buildProtocol(None)
    t = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5000))
    proto.makeConnection(t)
    proto.dataReceived(connect_packet())
    t.clear()
    proto.dataReceived(publish_packet("a", b"{}", qos=1, mid=3) + publish_packet("a", b"{}", qos=2, mid=4))
    assert t.value() == b""  # in the buffers only: no PUBACK, no PUBREC yet
    clock.advance(0)
    assert flushes == [1]  # their buffers are written at once
    dup = pdu.PUBLISH()
    dup.topic, dup.payload, dup.qos, dup.dup, dup.retain, dup.msgId = "a", bytearray(b"{}"), 2, True, False, 4
    proto.dataReceived(dup.encode())
    assert len(waiting) == 2 and t.value() == b""  # the QoS 2 resend is not taken again, nor answered early
    proto.acks.durable(waiting)
    assert t.value() == b"\x40\x02\x00\x03" + b"\x50\x02\x00\x04"  # PUBACK 3, PUBREC 4


def test_packets_split_anywhere_are_read_the_same():
    data = connect_packet() + b"".join(publish_packet("t", b"x" * i, qos=1, mid=i + 1) for i in range(50))

    @given(st.lists(st.integers(1, 200), min_size=1, max_size=40))
    def check(cuts):
        proto, t, _, got = session()
        pos = 0
        for cut in cuts:
            proto.dataReceived(data[pos:pos + cut])
            pos += cut
        proto.dataReceived(data[pos:])
        assert [p for _, p in got] == [b"x" * i for i in range(50)]

    check()


def test_publish_nobody_takes_is_an_error_and_the_session_goes_on():
    proto, t, factory, got = session(accept=lambda topic, payload: "no local message client subscribes")
    proto.dataReceived(connect_packet() + publish_packet("nobody", b"{}", qos=1, mid=1))
    row = factory.stats.rows[("MQTT", "127.0.0.1", "PUBLISH")]
    assert row.errors == 1 and "nobody" in row.details
    assert not t.disconnecting
    assert t.value().endswith(b"\x40\x02\x00\x01")  # still acknowledged: the device must not resend it forever


def test_qos2_taken_once_even_when_resent():
    proto, t, _, got = session()
    proto.dataReceived(connect_packet())
    t.clear()
    proto.dataReceived(publish_packet("t", b"1", qos=2, mid=5) + publish_packet("t", b"1", qos=2, mid=5))
    assert got == [("t", b"1")]
    assert t.value() == b"\x50\x02\x00\x05" * 2  # PUBREC twice
    t.clear()
    rel = pdu.PUBREL()
    rel.msgId = 5
    proto.dataReceived(rel.encode())
    assert t.value() == b"\x70\x02\x00\x05"  # PUBCOMP


def test_subscribe_ping_unsubscribe_disconnect():
    proto, t, factory, _ = session()
    proto.dataReceived(connect_packet())
    t.clear()
    sub = pdu.SUBSCRIBE()
    sub.msgId, sub.topics = 3, [("a/#", 1)]
    proto.dataReceived(sub.encode())
    assert t.value() == b"\x90\x03\x00\x03\x01"
    t.clear()
    proto.dataReceived(pdu.PINGREQ().encode())
    assert t.value() == b"\xd0\x00"
    t.clear()
    proto.dataReceived(pdu.DISCONNECT().encode())
    assert t.disconnecting


def test_credentials_are_checked():
    proto, t, factory, _ = session({"dev": "secret"}, host="10.1.2.3")
    proto.dataReceived(connect_packet("dev", "wrong"))
    assert t.value() == b"\x20\x02\x00\x04" and t.disconnecting
    proto, t, factory, _ = session({"dev": "secret"}, host="10.1.2.3")
    proto.dataReceived(connect_packet())
    assert t.value() == b"\x20\x02\x00\x05"
    proto, t, factory, _ = session({"dev": "secret"}, host="10.1.2.3")
    proto.dataReceived(connect_packet("dev", "secret"))
    assert t.value() == b"\x20\x02\x00\x00" and not t.disconnecting


def test_without_credentials_only_loopback_clients():
    proto, t, factory, _ = session(host="10.1.2.3")
    assert t.disconnecting or getattr(t, "aborted", False) or t.disconnected
    row = factory.stats.rows[("MQTT", "10.1.2.3", "CONNECT")]
    assert row.errors == 1 and "loopback" in row.details


def test_publish_before_connect_and_garbage_end_the_session():
    proto, t, factory, got = session()
    proto.dataReceived(publish_packet("t", b"{}"))
    assert t.disconnecting or t.disconnected
    assert not got
    proto, t, factory, got = session()
    proto.dataReceived(connect_packet() + b"\x30\xff\xff\xff\xff\x7f")  # a length of more than 4 bytes
    assert t.disconnecting or t.disconnected


def test_oversized_packet_ends_the_session_before_its_body():
    proto, t, factory, got = session()
    proto.dataReceived(connect_packet())
    length = MAX_PACKET + 1
    encoded = bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            break
    proto.dataReceived(b"\x30" + bytes(encoded))
    assert t.disconnecting or t.disconnected
    assert "limit" in factory.stats.rows[("MQTT", "127.0.0.1", "PUBLISH")].details


class FakePaho:
    def __init__(self):
        self.acked = []

    def ack(self, mid, qos):
        self.acked.append((mid, qos))


def qos1(mid, payload=b"x", dup=False):
    m = paho.MQTTMessage(mid=mid, topic=b"t")
    m.qos, m.payload, m.dup = 1, payload, dup
    return m


def test_acks_wait_for_durable_rows_and_drop_resends_of_what_is_held(tmp_path):
    from twisted.internet.task import Clock

    clock, flushes = Clock(), []
    acks = Acks(clock, Journal(str(tmp_path / "j.json")), lambda: flushes.append(1) or [], "c1")
    acks.client = FakePaho()
    w = acks.waiter(qos1(1))
    w.remaining = 1  # its rows are in one buffer
    acks.delivered(w)
    assert acks.client.acked == [] and list(acks.pending) == [w.key]
    clock.advance(0)
    assert flushes == [1]  # the buffer holding it is written at once, not at its thresholds
    assert acks.resend(qos1(1, dup=True)) and acks.client.acked == []  # held, not durable: no ack yet
    acks.staged(str(tmp_path / ".f.stage"), str(tmp_path / "f"), [w])
    acks.durable([w])
    assert acks.client.acked == [(1, 1)] and not acks.pending
    assert acks.resend(qos1(1, dup=True)) and acks.client.acked == [(1, 1), (1, 1)]  # durable: acked again
    assert not acks.resend(qos1(1, payload=b"other", dup=True))  # another message with that packet id
    nothing = acks.waiter(qos1(2))
    acks.delivered(nothing)  # an error, or a kept file: no rows to wait for
    assert acks.client.acked[-1] == (2, 1)
    acks.journal.close()

    again = Acks(clock, Journal(str(tmp_path / "j.json")), lambda: [], "c1")  # the node restarted
    again.client = FakePaho()
    assert again.recover() == 1
    assert again.resend(qos1(1, dup=True)) and again.client.acked == [(1, 1)]
    assert not again.resend(qos1(2, dup=True))  # nothing of it was journaled


def test_acks_recovery_publishes_a_stage_left_by_a_crash(tmp_path):
    from twisted.internet.task import Clock

    watch = tmp_path / "watch"
    watch.mkdir()
    stage, final = watch / ".a.json.stage", watch / "a.json"
    stage.write_bytes(b'{"x": 1}\n')
    orphan = watch / ".b.json.stage"  # staged, then killed before its journal line
    orphan.write_bytes(b'{"x": 2}\n')
    os.utime(orphan, (1, 1))  # by an earlier process (this one's stages are never removed)
    acks = Acks(Clock(), Journal(str(tmp_path / "j.json")), lambda: [], "c1")
    w = acks.waiter(qos1(7))
    w.remaining = 1
    acks.staged(str(stage), str(final), [w])
    acks.journal.close()
    # killed here: journaled and staged, never renamed, never acknowledged
    again = Acks(Clock(), Journal(str(tmp_path / "j.json")), lambda: [], "c1")
    assert again.recover() == 1
    assert final.read_bytes() == b'{"x": 1}\n' and not stage.exists()
    assert not orphan.exists() and not (watch / "b.json").exists()  # never acknowledged: it comes again
    assert again.resend(qos1(7, dup=True))
    (tmp_path / "j.json").open("ab").write(b'{"stage": "cut')  # a line the crash cut: ignored
    assert Acks(Clock(), Journal(str(tmp_path / "j.json")), lambda: [], "c1").recover() == 1


def test_backoff_doubles_to_a_minute():
    assert [round(backoff(a, rand=lambda: 1.0)) for a in (1, 2, 3, 7, 20)] == [1, 2, 4, 60, 60]
    assert backoff(1, rand=lambda: 0.0) == 0.8
