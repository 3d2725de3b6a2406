"""The node as an MQTT broker (`run message broker`): devices publish straight into the node.

An MQTT 3.1.1 server subset, as AnyLog's is: CONNECT, PUBLISH at QoS 0, 1 and 2, SUBSCRIBE and
UNSUBSCRIBE (acknowledged, never forwarded: there is no fan-out), PINGREQ and DISCONNECT.  A
publish goes to the `broker = local` message client whose topic it matches; one that nobody
subscribed is counted as a PUBLISH error, and the session goes on.  A QoS 1 message is
acknowledged (PUBACK), and a QoS 2 one received (PUBREC, after which the device forgets it), only
once its rows are in an fsynced watch-dir file, as for the subscriptions (msg/acks.py; without a
persistent session, a device's resend after the node restarted is taken again).  With a user and password configured every CONNECT must
carry them; without, only loopback clients may connect.

The packets are read and written by twisted-mqtt's codec (`mqtt.pdu`), inside a Twisted protocol
on the node's reactor: measured against amqtt (an asyncio broker run in its own thread, messages
handed over to the reactor) it takes ten times the messages a second in two thirds of the memory
(docs/mqtt.md).  Framing is ours: a packet is cut from the bytes received without copying the
rest, and one longer than MAX_PACKET ends the session before its body is read.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from typing import Callable

from mqtt import pdu
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from anylog_tw.base.process import ListeningProcess
from anylog_tw.msg.acks import Acks, Pending

MAX_PACKET = 8 * 1024 * 1024 + 64 * 1024  # a message of the clients' 8 MiB limit, with its topic
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14
EVENTS = {CONNECT: "CONNECT", PUBLISH: "PUBLISH", PUBREL: "PUBREL", SUBSCRIBE: "SUBSCRIBE",
          UNSUBSCRIBE: "UNSUBSCRIBE", PINGREQ: "PINGREQ", DISCONNECT: "DISCONNECT"}
# CONNACK return codes (3.1.1 §3.2.2.3)
ACCEPTED, BAD_PROTOCOL, BAD_CREDENTIALS, NOT_AUTHORIZED = 0, 1, 4, 5


@dataclass
class EventStats:
    """One row of `get local broker`: a client address and an event."""

    success: int = 0
    errors: int = 0
    last_message: float | None = None
    last_error_at: float | None = None
    error_code: int = 0
    details: str = ""


class BrokerStats:
    """Counts per (protocol, client IP, event), as AnyLog's "Message Broker Stat" table."""

    def __init__(self, clock):
        self.clock = clock
        self.rows: dict[tuple[str, str, str], EventStats] = {}

    def _row(self, ip: str, event: str) -> EventStats:
        key = ("MQTT", ip, event)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = EventStats()
        return row

    def ok(self, ip: str, event: str) -> None:
        row = self._row(ip, event)
        row.success += 1
        row.last_message = self.clock.seconds()

    def error(self, ip: str, event: str, code: int, details: str) -> None:
        row = self._row(ip, event)
        row.errors += 1
        row.last_error_at = self.clock.seconds()
        row.error_code = code
        row.details = details[:200]


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class BrokerProtocol(Protocol):
    """One device's session with the node's broker."""

    log = Logger()

    def connectionMade(self) -> None:
        self.acks = Acks(self.factory.clock, None, self.factory.flush, "broker") if self.factory.flush else None
        if self.acks is not None:
            self.acks.client = self
        self.buffer = bytearray()
        self.gone = False
        self.connected = False  # CONNECT accepted
        self.qos2: set[int] = set()  # QoS 2 packet ids taken, waiting for PUBREL
        self.ip = self.transport.getPeer().host
        if not self.factory.credentials and not is_loopback(self.ip):
            self.factory.stats.error(self.ip, "CONNECT", NOT_AUTHORIZED,
                                     "refused: the broker takes only loopback clients without a user and password")
            self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        n = len(buf)
        pos = 0
        while n - pos >= 2:
            length, mult, i = 0, 1, pos + 1
            while i < n:
                byte = buf[i]
                length += (byte & 0x7F) * mult
                mult *= 128
                i += 1
                if not byte & 0x80:
                    break
                if i - pos > 4:
                    return self._bad("PACKET", "the remaining length takes more than 4 bytes")
            else:
                break  # the length is not complete yet
            if length > MAX_PACKET:
                return self._bad("PUBLISH" if buf[pos] >> 4 == PUBLISH else "PACKET",
                                 f"a packet of {length:,} bytes is over the {MAX_PACKET:,}-byte limit")
            end = i + length
            if end > n:
                break
            packet = bytes(buf[pos:end])
            pos = end
            if not self._packet(packet):
                self.buffer = bytearray()
                return
        if pos:
            del buf[:pos]

    def _bad(self, event: str, details: str, code: int = 0) -> None:
        self.factory.stats.error(self.ip, event, code, details)
        self.buffer = bytearray()
        self.transport.abortConnection()

    def _packet(self, packet: bytes) -> bool:
        kind = packet[0] >> 4
        event = EVENTS.get(kind, f"TYPE {kind}")
        if not self.connected and kind != CONNECT:
            self._bad(event, "the first packet of a session must be CONNECT")
            return False
        try:
            if kind == PUBLISH:
                return self._publish(packet)
            if kind == CONNECT:
                return self._connect(packet)
            if kind == PINGREQ:
                self.transport.write(pdu.PINGRES().encode())
            elif kind == SUBSCRIBE:
                sub = pdu.SUBSCRIBE()
                sub.decode(packet)
                ack = pdu.SUBACK()
                ack.msgId = sub.msgId
                ack.granted = [(min(qos, 2), False) for _, qos in sub.topics]
                self.transport.write(ack.encode())
            elif kind == UNSUBSCRIBE:
                unsub = pdu.UNSUBSCRIBE()
                unsub.decode(packet)
                ack = pdu.UNSUBACK()
                ack.msgId = unsub.msgId
                self.transport.write(ack.encode())
            elif kind == PUBREL:
                rel = pdu.PUBREL()
                rel.decode(packet)
                self.qos2.discard(rel.msgId)
                # twisted-mqtt 0.3.11 encodes PUBCOMP as 0x72; MQTT 3.1.1 §3.7.1 says 0x70 (flags reserved, 0).
                self.transport.write(bytes((PUBCOMP << 4, 2, rel.msgId >> 8, rel.msgId & 0xFF)))
            elif kind == DISCONNECT:
                self.factory.stats.ok(self.ip, event)
                self.transport.loseConnection()
                return False
            else:
                self._bad(event, f"packet type {kind} is not taken by this broker")
                return False
        except Exception as e:  # the codec's errors on a malformed packet: end this session only
            self._bad(event, f"malformed {event} packet: {type(e).__name__}: {e}")
            return False
        self.factory.stats.ok(self.ip, event)
        return True

    def _connect(self, packet: bytes) -> bool:
        stats = self.factory.stats
        if self.connected:
            self._bad("CONNECT", "a second CONNECT in one session")
            return False
        request = pdu.CONNECT()
        request.decode(packet)
        ack = pdu.CONNACK()
        ack.session = False
        if request.version is None or request.version.get("level") not in (3, 4):
            ack.resultCode = BAD_PROTOCOL
        else:
            ack.resultCode = self._check(request.username, request.password)
        self.transport.write(ack.encode())
        if ack.resultCode != ACCEPTED:
            reason = {BAD_PROTOCOL: "only MQTT 3.1 and 3.1.1 are taken", BAD_CREDENTIALS: "bad user name or password",
                      NOT_AUTHORIZED: "not authorized"}[ack.resultCode]
            stats.error(self.ip, "CONNECT", ack.resultCode, reason)
            self.transport.loseConnection()
            return False
        self.connected = True
        stats.ok(self.ip, "CONNECT")
        return True

    def _check(self, user, password) -> int:
        credentials = self.factory.credentials
        if not credentials:
            return ACCEPTED
        if user is None or password is None:
            return NOT_AUTHORIZED
        want = credentials.get(user)
        given = bytes(password)
        if want is None or not hmac.compare_digest(want.encode("utf-8"), given):
            return BAD_CREDENTIALS
        return ACCEPTED

    def _publish(self, packet: bytes) -> bool:
        message = pdu.PUBLISH()
        message.decode(packet)
        waiter = None
        if message.qos == 2 and message.msgId in self.qos2:
            reason = None  # a resend of a message taken already: acknowledge again (once durable), do not take it twice
            if self.acks is not None and str(message.msgId) in self.acks.pending:
                return True  # its PUBREC goes when its rows are durable
        else:
            if message.qos and self.acks is not None:
                waiter = Pending(self.acks, message.msgId, message.qos, str(message.msgId))
            reason = self.factory.deliver(message.topic, bytes(message.payload), waiter)
            if message.qos == 2:
                self.qos2.add(message.msgId)
        if reason is None:
            self.factory.stats.ok(self.ip, "PUBLISH")
        else:
            self.factory.stats.error(self.ip, "PUBLISH", 0, f"{message.topic}: {reason}")
        if waiter is not None:
            self.acks.delivered(waiter)  # acknowledged now (nothing buffered) or when the rows are durable
        elif message.qos:
            self.ack(message.msgId, message.qos)
        return True

    def ack(self, mid: int, qos: int) -> None:
        """PUBACK (QoS 1) or PUBREC (QoS 2) for a message whose rows are durable, if the device is still here."""
        if self.gone:
            return
        ack = pdu.PUBACK() if qos == 1 else pdu.PUBREC()
        ack.msgId = mid
        self.transport.write(ack.encode())

    def connectionLost(self, reason) -> None:
        self.gone = True
        self.factory.sessions.discard(self)


class BrokerFactory(Factory):
    protocol = BrokerProtocol

    def __init__(self, deliver: Callable[..., str | None], stats: BrokerStats,
                 credentials: dict[str, str] | None = None, flush=None):
        self.deliver = deliver  # (topic, payload, waiter) -> None or the reason it failed
        self.flush = flush  # Streamer.flush_waiting: QoS 1/2 acknowledged when durable (None: at once)
        self.clock = stats.clock
        self.stats = stats
        self.credentials = credentials or {}
        self.sessions: set[BrokerProtocol] = set()

    def buildProtocol(self, addr):
        proto = Factory.buildProtocol(self, addr)
        self.sessions.add(proto)
        return proto


class MessageBroker(ListeningProcess):
    """The "Broker" process: `get connections` shows it as Messaging, `exit broker` stops it."""

    name = "Broker"
    exit_command = "exit broker"

    def __init__(self, port, factory: BrokerFactory, external: tuple[str, int], internal: tuple[str, int]):
        ListeningProcess.__init__(self, port, factory)
        self.external_address = external
        self.internal_address = internal

    @property
    def bind_address(self):
        return self.address

    def details(self) -> str:
        host, port = self.address
        auth = "user and password" if self.factory.credentials else "loopback clients only"
        return f"Listening on: {host or '0.0.0.0'}:{port} (MQTT 3.1.1, {auth}), {len(self.factory.sessions)} sessions"

    def close_connections(self) -> None:
        for session in list(self.factory.sessions):
            session.transport.loseConnection()
