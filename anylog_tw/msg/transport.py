"""paho-mqtt as the MQTT engine, Twisted as its network: a client connection without blocking calls.

paho owns the protocol (CONNECT, SUBSCRIBE, QoS 1 and 2 hand-shakes, in-flight resends, keep-alive)
and Twisted owns the connection (a non-blocking connect and name look-up, TLS, reconnect with
backoff in `ClientService`).  The seam is a socket-shaped object: paho reads what the transport
delivered from `recv` and writes through `send` into the transport.  paho's own external-loop
interface (it opens a real socket and the reactor watches its descriptor) was measured against
this: it connects and does the TLS handshake with blocking calls, and reads a packet per wake-up
with three `recv` system calls each; the buffered seam takes about twice the messages a second
(docs/mqtt.md).  The one paho internal used, `_create_socket`, is covered by the tests.
"""

from __future__ import annotations

import paho.mqtt.client as paho
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

MAX_BUFFERED = 64 * 1024 * 1024  # bytes read but not yet parsed: past this the connection is dropped


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
    """A paho client whose socket is the Twisted connection handed to `attach`."""

    _twisted_socket: _Socket | None = None

    def _create_socket(self):  # paho's hook in reconnect(): give it our connection, never open one
        sock, self._twisted_socket = self._twisted_socket, None
        if sock is None:
            raise OSError("no connection to hand to paho")
        return sock

    def attach(self, transport) -> _Socket:
        """Start an MQTT session on a new connection: paho sends CONNECT through it."""
        sock = self._twisted_socket = _Socket(transport)
        self.reconnect()
        return sock


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
        # paho parses one packet per loop_read; go on while bytes are left and the session lives.
        while sock.pending():
            if client.loop_read() != paho.MQTT_ERR_SUCCESS:
                break

    def connectionLost(self, reason) -> None:
        sock = self.sock
        if sock is not None:
            sock.ended = True
            # paho parses what arrived before the end, then reads the end and calls on_disconnect.
            for _ in range(1_000_000):
                if self.client.loop_read() != paho.MQTT_ERR_SUCCESS:
                    break
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
