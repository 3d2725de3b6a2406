"""`mqtt publish`: one message to a broker, or straight to the node's own message clients.

`broker = local` hands the message to the `broker = local` client of its topic without the network
(AnyLog's docs: not counted by `get local broker`).  Any other broker gets a short MQTT session:
connect, wait for CONNACK (6 seconds, as AnyLog), publish, wait for PUBACK at QoS 1 (or PUBCOMP
at QoS 2), say DISCONNECT.
"""

from __future__ import annotations

import itertools

import paho.mqtt.client as paho
from twisted.internet import endpoints
from twisted.internet.defer import Deferred

from anylog_tw.base.deadline import with_deadline
from anylog_tw.base.errors import CommandError, Timeout
from anylog_tw.msg.external import CONNECT_TIMEOUT, tls_options
from anylog_tw.msg.options import ClientSpec
from anylog_tw.msg.transport import MqttFactory, PahoClient

ANSWER = 6.0
_ids = itertools.count(1)


async def publish_remote(reactor, spec: ClientSpec, topic: str, payload: bytes, qos: int, client_id: str) -> str:
    client = PahoClient(paho.CallbackAPIVersion.VERSION2, clock=reactor, client_id=f"{client_id}.pub{next(_ids)}",
                        clean_session=True, protocol=paho.MQTTv311)
    if spec.password or spec.user not in ("", "unused"):
        client.username_pw_set(spec.user, spec.password or None)
    client.connect_async(spec.broker, spec.port, keepalive=30)
    connected: Deferred = Deferred()
    published: Deferred = Deferred()
    lost: list = []

    def on_connect(c, userdata, flags, reason, properties):
        if not connected.called:
            connected.callback(None if not reason.is_failure else str(reason))

    def on_lost(reason):
        lost.append(reason.getErrorMessage())
        for d in (connected, published):
            if not d.called:
                d.callback(f"the connection closed ({lost[0]})")

    client.on_connect = on_connect
    client.on_publish = lambda c, userdata, mid, reason, properties: (
        published.callback(None) if not published.called else None)
    endpoint = endpoints.HostnameEndpoint(reactor, spec.broker, spec.port, timeout=CONNECT_TIMEOUT)
    if spec.ssl:
        endpoint = endpoints.wrapClientTLS(tls_options(spec), endpoint)
    try:
        proto = await with_deadline(endpoint.connect(MqttFactory(client, on_lost=on_lost)), ANSWER, reactor,
                                    lambda: Timeout(f"{spec.address} did not accept a connection in {ANSWER:g} s"),
                                    cancel=True)
    except Timeout:
        raise
    except Exception as e:
        raise CommandError(f"cannot connect to MQTT broker {spec.address}: {e}") from None
    try:
        refused = await with_deadline(connected, ANSWER, reactor,
                                      lambda: Timeout(f"{spec.address} did not answer CONNECT in {ANSWER:g} s"))
        if refused:
            raise CommandError(f"{spec.address} refused the session: {refused}")
        client.publish(topic, payload, qos=qos)
        client.flush()
        failed = await with_deadline(published, ANSWER, reactor,
                                     lambda: Timeout(f"{spec.address} did not acknowledge the message in {ANSWER:g} s"))
        if failed:
            raise CommandError(f"{spec.address}: {failed}")
        client.disconnect()
        client.flush()
    finally:
        proto.transport.loseConnection()
    return f"Published to {spec.address}, topic {topic!r}, QoS {qos}"
