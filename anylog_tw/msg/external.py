"""One subscription to an external MQTT broker, kept alive: connect, subscribe, reconnect with backoff.

Twisted's `ClientService` keeps the connection (retries wait 1, 2, 4 ... up to 60 seconds with
some jitter; the count only resets when the broker accepts the session, so a broker refusing our
password is asked again slowly, not in a loop).  Every accepted session subscribes every topic in
one SUBSCRIBE, so a broker that lost its state gets them back.  With `clean_session = false` and
a stable client id (`<node name>.<client number>` unless given), a QoS 1 subscription is a
persistent session: what the broker queued while the node was away arrives when it is back.
QoS 1 and 2 messages are acknowledged when their rows are durable, and a resend of one we hold
is dropped, across restarts too (`acks.py`).
"""

from __future__ import annotations

import random
import paho.mqtt.client as paho
from twisted.application.internet import ClientService
from twisted.application.service import Service
from twisted.internet import endpoints, ssl, threads
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.filepath import FilePath

from anylog_tw.base.errors import OptionError
from anylog_tw.msg.acks import Acks
from anylog_tw.msg.options import ClientSpec
from anylog_tw.msg.stats import Connection
from anylog_tw.msg.transport import MqttFactory, PahoClient

FIRST_DELAY = 1.0
MAX_DELAY = 60.0
CONNECT_TIMEOUT = 10  # seconds for TCP (and TLS) to a broker


def backoff(attempt: int, rand=random.random) -> float:
    """Seconds before attempt `attempt` (1, 2, ...): doubling from 1 s to 60 s, with up to 20% jitter."""
    delay = min(MAX_DELAY, FIRST_DELAY * 2 ** max(0, attempt - 1))
    return delay * (0.8 + 0.2 * rand())


def tls_options(spec: ClientSpec):
    """Twisted TLS options for the broker: its CA (or the system's), and our certificate when given."""
    try:
        trust = ssl.Certificate.loadPEM(FilePath(spec.ca).getContent()) if spec.ca else ssl.platformTrust()
        client_cert = None
        if spec.cert:
            pem = FilePath(spec.cert).getContent() + b"\n" + FilePath(spec.key).getContent()
            client_cert = ssl.PrivateCertificate.loadPEM(pem)
    except OSError as e:
        raise OptionError(f"cannot read a TLS file: {e.strerror}: {e.filename}") from None
    except Exception as e:  # pyOpenSSL's errors say little; name the files
        raise OptionError(f"the TLS files (ca = {spec.ca!r}, cert = {spec.cert!r}, key = {spec.key!r}) do not load: "
                          f"{e}") from None
    return ssl.optionsForClientTLS(spec.broker, trustRoot=trust, clientCertificate=client_cert)


class _Recording:
    """The endpoint, with the reason of each failed connect kept for `get msg clients`."""

    def __init__(self, endpoint, connection: Connection, metrics):
        self.endpoint = endpoint
        self.connection = connection
        self.metrics = metrics

    def connect(self, factory):
        d = self.endpoint.connect(factory)

        def failed(failure):
            self.connection.last_error = failure.getErrorMessage() or failure.type.__name__
            self.metrics.msg_sessions.labels(result="failed").inc()
            return failure

        return d.addErrback(failed)

    def __repr__(self):
        return repr(self.endpoint)


class BrokerLink(Service):
    """The connection of one message client to its broker."""

    log = Logger()

    SETTLE = 10.0  # seconds a stopping link waits for its messages' rows to be durable and acknowledged

    def __init__(self, reactor, spec: ClientSpec, client_id: str, deliver, connection: Connection, metrics,
                 journal=None, flush=lambda: []):
        self.reactor = reactor
        self.spec = spec
        self.client_id = client_id
        self.deliver = deliver  # (topic, payload, waiter) -> None or the reason it failed
        self.connection = connection
        self.metrics = metrics
        self.first: Deferred = Deferred()  # fires with ("connected"|"refused"|"failed", reason) once
        self._service: ClientService | None = None
        self._proto = None
        self._made_at = 0.0
        self._tls_failed = False
        self.acks = self.redeliveries = Acks(reactor, journal, flush, client_id)
        self._first_fired = False
        self._accepted = False  # the broker accepted the session on the current connection
        self._misc = LoopingCall(self._tick)
        self._misc.clock = reactor
        self.paho = self._make_client()
        self.acks.client = self.paho
        endpoint = endpoints.HostnameEndpoint(reactor, spec.broker, spec.port, timeout=CONNECT_TIMEOUT)
        if spec.ssl:
            endpoint = endpoints.wrapClientTLS(tls_options(spec), endpoint)
        self.endpoint = _Recording(endpoint, connection, metrics)

    def _make_client(self) -> PahoClient:
        spec = self.spec
        client = PahoClient(paho.CallbackAPIVersion.VERSION2, clock=self.reactor, client_id=self.client_id,
                            clean_session=spec.clean_session, protocol=paho.MQTTv311, reconnect_on_failure=False,
                            manual_ack=True)
        if spec.password or spec.user not in ("", "unused"):
            client.username_pw_set(spec.user, spec.password or None)
        client.connect_async(spec.broker, spec.port, keepalive=spec.keep_alive)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        if spec.log:
            client.on_log = self._on_log
        return client

    # -- paho callbacks (on the reactor thread) ------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        c = self.connection
        if reason.is_failure:
            c.connected = False
            c.last_error = f"the broker refused the session: {reason}"
            self.metrics.msg_sessions.labels(result="refused").inc()
            self._fire_first(("refused", c.last_error))
            return
        c.connected = True
        self._accepted = True
        c.attempts = 0
        c.connects += 1
        c.next_try = None
        c.last_error = ""
        c.session_present = bool(flags.session_present)
        self.metrics.msg_sessions.labels(result="connected").inc()
        client.subscribe([(t.name, t.qos) for t in self.spec.topics])
        self._fire_first(("connected", None))

    def _on_subscribe(self, client, userdata, mid, reasons, properties) -> None:
        refused = [(t.name, r) for t, r in zip(self.spec.topics, reasons) if r.is_failure]
        for name, reason in refused:
            self.connection.last_error = f"the broker refused topic {name!r}: {reason}"
            self.log.warn("MQTT broker {broker} refused the subscription to {topic}: {reason}",
                          broker=self.spec.address, topic=name, reason=str(reason))

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        c = self.connection
        if c.connected:
            self.metrics.msg_sessions.labels(result="lost").inc()
            c.last_error = "disconnected from the broker" if not reason.is_failure else f"disconnected: {reason}"
        c.connected = False

    def _on_message(self, client, userdata, message) -> None:
        waiter = None
        if message.qos:
            if message.dup and self.acks.resend(message):
                return  # taken already: acknowledged now, or when its rows are durable
            waiter = self.acks.waiter(message)
        try:
            topic = message.topic
        except UnicodeDecodeError:  # brokers check topics; one that did not must not end the session
            topic = message._topic.decode("utf-8", "replace")
        try:
            self.deliver(topic, message.payload, waiter)
        except Exception:  # deliver counts every failure it knows; anything else is a bug, logged
            self.log.failure("taking a message on {topic} failed", topic=topic)
        if waiter is not None:
            self.acks.delivered(waiter)

    def _on_log(self, client, userdata, level, text) -> None:
        self.log.info("MQTT {broker}: {text}", broker=self.spec.address, text=text)

    def _tick(self) -> None:
        """paho's timers (keep-alive PINGREQ, its ping timeout, QoS resends), and ours: CONNACK in time."""
        proto = self._proto
        if proto is None:
            return
        if not self.connection.connected and self.reactor.seconds() - self._made_at > CONNECT_TIMEOUT:
            self.connection.last_error = f"no answer to CONNECT within {CONNECT_TIMEOUT} seconds"
            proto.transport.abortConnection()
            return
        self.paho.loop_misc()

    def _made(self, proto) -> None:
        self._proto = proto
        self._accepted = False
        self._made_at = self.reactor.seconds()
        if not self._misc.running:
            self._misc.start(1.0, now=False)

    def _lost(self, reason) -> None:
        self._proto = None
        if not self._accepted and not self.connection.last_error.startswith("the broker refused"):
            from OpenSSL.SSL import Error as TLSError

            self._tls_failed = reason.check(TLSError) is not None
            text = reason.getErrorMessage()
            self.connection.last_error = (f"TLS failed: {text}" if self._tls_failed else
                                          f"the connection closed before the broker answered ({text})")
        if self._misc.running:
            self._misc.stop()

    def _fire_first(self, result) -> None:
        """Settle `first` on the next reactor turn: it is reached from inside ClientService's state
        machine, and whoever waits on it may stop the service, which must not re-enter it."""
        if not self._first_fired:
            self._first_fired = True
            self.reactor.callLater(0, self.first.callback, result)

    # -- the connection ------------------------------------------------------------------------

    def _retry_delay(self, _attempt: int) -> float:
        c = self.connection
        c.attempts += 1
        delay = backoff(c.attempts)
        c.next_try = self.reactor.seconds() + delay
        if c.attempts == 1:
            self._fire_first(("refused" if self._tls_failed else "failed", c.last_error or "could not connect"))
        return delay

    def startService(self) -> None:
        """Read the acknowledgement journal back (off the reactor thread), then connect."""
        Service.startService(self)
        pool = getattr(self.reactor, "getThreadPool", None)
        if self.acks.journal is None or pool is None:
            self._connect()
            return
        d = threads.deferToThreadPool(self.reactor, pool(), self.acks.recover)
        d.addErrback(lambda f: self.log.failure("reading the acknowledgement journal {path} failed", f,
                                                path=self.acks.journal.path))
        d.addCallback(lambda _: self._connect() if self.running else None)

    def _connect(self) -> None:
        factory = MqttFactory(self.paho, self._made, self._lost)
        self._service = ClientService(self.endpoint, factory, retryPolicy=self._retry_delay, clock=self.reactor)
        self._service.startService()

    def stopService(self) -> Deferred:
        """Let the waiting rows become durable and be acknowledged, say DISCONNECT (the broker keeps a
        persistent session for us), then close the connection."""
        Service.stopService(self)
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self.connection.connected and self.acks.pending:
            await self.acks.settle(self.SETTLE)
        if self._misc.running:
            self._misc.stop()
        if self.connection.connected:
            self.paho.disconnect()
            self.paho.flush()  # written now: the connection is closed right after
        self.connection.connected = False
        self.connection.next_try = None
        self._fire_first(("failed", "stopped"))
        service, self._service = self._service, None
        if service is not None:
            await service.stopService()
