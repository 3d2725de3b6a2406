"""paho-mqtt as the MQTT engine, Twisted as its network: a client connection without blocking calls.

paho owns the protocol (CONNECT, SUBSCRIBE, QoS 1 and 2 hand-shakes, in-flight resends, keep-alive)
and Twisted owns the connection (a non-blocking connect and name look-up, TLS, reconnect with
backoff in `ClientService`).  The seam is a socket-shaped object: paho reads what the transport
delivered from `recv` and writes through `send` into the transport.  paho's own external-loop
interface (it opens a real socket and the reactor watches its descriptor) was measured against
this: it connects and does the TLS handshake with blocking calls, and reads a packet per wake-up
with three `recv` system calls each; the buffered seam takes about twice the messages a second
(docs/mqtt.md).  Two paho internals are overridden, `_create_socket` and `_handle_on_message`
(paho-mqtt is pinned below 3); every transport test goes through both.
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
        # paho parses one packet per loop_read; go on while bytes are left and the session lives.
        client.reading = True
        try:
            while sock.pending():
                if client.loop_read() != paho.MQTT_ERR_SUCCESS:
                    break
        finally:
            client.reading = False
        client.flush()

    def connectionLost(self, reason) -> None:
        sock = self.sock
        if sock is not None:
            sock.ended = True
            # paho parses what arrived before the end, then reads the end and calls on_disconnect.
            for _ in range(1_000_000):
                if self.client.loop_read() != paho.MQTT_ERR_SUCCESS:
                    break
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
