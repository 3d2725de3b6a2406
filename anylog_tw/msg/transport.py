"""paho-mqtt as the MQTT engine, Twisted as its network: a client connection without blocking calls.

paho owns the protocol (CONNECT, SUBSCRIBE, QoS 1 and 2 hand-shakes, in-flight resends, keep-alive)
and Twisted owns the connection (a non-blocking connect and name look-up, TLS, reconnect with
backoff in `ClientService`).  The seam is a socket-shaped object: paho reads what the transport
delivered from `recv` and writes through `send` into the transport.  paho's own external-loop
interface (it opens a real socket and the reactor watches its descriptor) was measured against
this: it connects and does the TLS handshake with blocking calls, and reads a packet per wake-up
with three `recv` system calls each; the buffered seam takes about twice the messages a second
(docs/mqtt.md).

paho is driven a packet at a time: the protocol cuts complete packets out of what arrived (the
fixed header: a type byte and the remaining length) and hands each to paho's packet handler,
which keeps every rule of the session (CONNACK, SUBACK, QoS 1 and 2, PINGRESP).  paho reading
them itself costs three `recv` calls, a dictionary of read state and two timestamps under a lock
per packet.  A QoS 0 PUBLISH asks nothing of the session (no acknowledgement, no state), so it is
cut into its topic and payload here (MQTT 3.1.1 §3.3: a two-byte length and the topic, the rest
is the payload; what paho's `decode_publish` does, without building two struct formats a
message) and goes to `on_message` as a small message object, without paho's MQTTMessage (which
makes a `threading.Condition` per message).  The paho
internals used (`_create_socket`, `_handle_on_message`, `_packet_handle`, `_in_packet`,
`_loop_rc_handle`, `_last_bytes_received`) are those of paho-mqtt 2.x (pinned below 3); every
transport test goes through them.
"""

from __future__ import annotations

import paho.mqtt.client as paho
from paho.mqtt import _packet
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

MAX_BUFFERED = 64 * 1024 * 1024  # bytes read but not yet parsed: past this the connection is dropped
PUBLISH_QOS0 = 0x30  # a PUBLISH fixed header with QoS 0 (under the mask 0xF6: type and QoS bits)


class Message:
    """A QoS 0 message as `on_message` reads it (paho's MQTTMessage without its per-message lock)."""

    __slots__ = ("_topic", "payload", "retain")
    qos = 0
    mid = 0
    dup = False

    def __init__(self, topic: bytes, payload: bytes, retain: bool):
        self._topic = topic
        self.payload = payload
        self.retain = retain

    @property
    def topic(self) -> str:
        return self._topic.decode("utf-8")


def _fresh_in_packet() -> dict:
    return {"command": 0, "have_remaining": 0, "remaining_count": [], "remaining_mult": 1, "remaining_length": 0,
            "packet": bytearray(b""), "to_process": 0, "pos": 0}


class _Socket:
    """What paho sees as its socket: reads from the bytes Twisted received, writes to the transport."""

    def __init__(self, transport):
        self.transport = transport
        self.data = bytearray()
        self.pos = 0
        self.ended = False

    def feed(self, data: bytes) -> None:
        if self.pos:
            del self.data[:self.pos]
            self.pos = 0
        self.data += data

    def pending(self) -> int:
        """Bytes not handed to paho yet (paho also calls this on TLS sockets; 0 is right here)."""
        return len(self.data) - self.pos

    def recv(self, size: int) -> bytes:
        pos = self.pos
        available = len(self.data) - pos
        if available <= 0:
            if self.ended:
                return b""
            raise BlockingIOError()
        n = size if size < available else available
        self.pos = pos + n
        return self.data[pos:pos + n]

    def send(self, data) -> int:
        if self.ended:
            raise OSError("the connection is closed")
        self.transport.write(bytes(data))
        return len(data)

    def setblocking(self, flag) -> None:
        pass

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        if not self.ended:
            self.ended = True
            self.transport.loseConnection()


class PahoClient(paho.Client):
    """A paho client whose socket is the Twisted connection handed to `attach`.

    paho writes a packet at once only outside its callbacks; a packet queued inside one (the
    SUBSCRIBE of on_connect, each QoS 1 PUBACK of on_message) waits for `loop_write`.  paho asks
    for it through `on_socket_register_write`: while a read is being parsed the protocol writes
    once at its end (all the PUBACKs of a read in one go), otherwise a write is scheduled on the
    reactor for the next turn.
    """

    _twisted_socket: _Socket | None = None

    def __init__(self, *args, clock, **kwargs):
        super().__init__(*args, **kwargs)
        self.clock = clock
        self.reading = False  # inside MqttProtocol.dataReceived: it writes when done
        self._write_call = None
        self.on_socket_register_write = self._want_write

    def _handle_on_message(self, message) -> None:
        """Straight to on_message: no per-topic callbacks are registered here, so paho's matcher
        and its two locks (a quarter of its work on a message, measured) find nothing to do."""
        self.on_message(self, self._userdata, message)

    def _create_socket(self):  # paho's hook in reconnect(): give it our connection, never open one
        sock, self._twisted_socket = self._twisted_socket, None
        if sock is None:
            raise OSError("no connection to hand to paho")
        return sock

    def attach(self, transport) -> _Socket:
        """Start an MQTT session on a new connection: paho sends CONNECT through it."""
        sock = self._twisted_socket = _Socket(transport)
        self.reconnect()
        self.flush()
        return sock

    def _want_write(self, client, userdata, sock) -> None:
        if not self.reading and self._write_call is None:
            self._write_call = self.clock.callLater(0, self.flush)

    def take(self, sock: _Socket) -> int:
        """Hand paho every complete packet `sock` holds; paho's error code (0 when all went well)."""
        data, pos, end = sock.data, sock.pos, len(sock.data)
        handle = self._packet_handle
        on_message = self.on_message
        protocol = self._protocol
        rc = 0
        try:
            while pos < end and self._sock is not None:
                command = data[pos]
                length, mult, i = 0, 1, pos + 1
                while True:  # the remaining length: 7 bits a byte, at most 4 bytes
                    if i >= end:
                        return 0
                    byte = data[i]
                    i += 1
                    length += (byte & 127) * mult
                    mult *= 128
                    if byte < 128:
                        break
                    if i - pos > 4:
                        return self._loop_rc_handle(paho.MQTT_ERR_PROTOCOL)
                if i + length > end:
                    return 0
                body = bytes(data[i:i + length])
                pos = i + length
                if command & 0xF6 == PUBLISH_QOS0 and on_message is not None and protocol != paho.MQTTv5:
                    # The topic's length, the topic, the payload: what paho's decode_publish finds,
                    # in a fifth of its time (it builds two struct formats a message).
                    end_topic = 2 + ((body[0] << 8) | body[1]) if length >= 2 else 0
                    if end_topic <= 2 or end_topic > length:
                        return self._loop_rc_handle(paho.MQTT_ERR_PROTOCOL)
                    on_message(self, self._userdata, Message(body[2:end_topic], body[end_topic:], command & 1 == 1))
                    continue
                self._in_packet = {"command": command, "have_remaining": 1, "remaining_count": [],
                                   "remaining_mult": 1, "remaining_length": length, "packet": body, "to_process": 0,
                                   "pos": 0}
                try:
                    rc = handle()
                except _packet.MalformedPacket:
                    rc = paho.MQTT_ERR_PROTOCOL
                finally:
                    self._in_packet = _fresh_in_packet()
                if rc:
                    return self._loop_rc_handle(rc)
            return 0
        finally:
            sock.pos = pos
            self._last_bytes_received = paho.time_func()

    def flush(self) -> None:
        """Hand every packet paho has queued to the transport."""
        call, self._write_call = self._write_call, None
        if call is not None and call.active():
            call.cancel()
        if self.want_write():
            self.loop_write()

    def cancel_write(self) -> None:
        call, self._write_call = self._write_call, None
        if call is not None and call.active():
            call.cancel()


class MqttProtocol(Protocol):
    """One connection to a broker; paho parses what arrives, callbacks run on the reactor thread."""

    log = Logger()

    def __init__(self, client: PahoClient, on_made=None, on_lost=None):
        self.client = client
        self.sock: _Socket | None = None
        self.on_made = on_made
        self.on_lost = on_lost

    def connectionMade(self) -> None:
        self.sock = self.client.attach(self.transport)
        if self.on_made is not None:
            self.on_made(self)

    def dataReceived(self, data: bytes) -> None:
        sock = self.sock
        sock.feed(data)
        if sock.pending() > MAX_BUFFERED:
            self.log.error("MQTT broker sent more than {n} bytes that do not parse; closing", n=MAX_BUFFERED)
            sock.close()
            return
        client = self.client
        client.reading = True
        try:
            client.take(sock)
        finally:
            client.reading = False
        client.flush()

    def connectionLost(self, reason) -> None:
        sock = self.sock
        if sock is not None:
            sock.ended = True
            # paho takes what arrived before the end, then reads the end and calls on_disconnect.
            if self.client.take(sock) == paho.MQTT_ERR_SUCCESS:
                self.client.loop_read()
            self.client.cancel_write()
        if self.on_lost is not None:
            self.on_lost(reason)


class MqttFactory(Factory):
    def __init__(self, client: PahoClient, on_made=None, on_lost=None):
        self.client = client
        self.on_made = on_made
        self.on_lost = on_lost

    def buildProtocol(self, addr):
        p = MqttProtocol(self.client, self.on_made, self.on_lost)
        p.factory = self
        return p
