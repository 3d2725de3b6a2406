"""REST as a broker (`broker = rest`): a POST with `command: data` is a publish to a message client.

The client is chosen by the request's User-Agent product (`AnyLog/1.23` → `anylog`), the topic
by the `topic` header (the client's first topic without one).  The body is one JSON object or a
list of them; it is taken whole or not at all, like any message, so a 400 means nothing of it
was buffered.
"""

from __future__ import annotations

from anylog_tw.base.errors import AnyLogError, CommandError
from anylog_tw.msg.clients import MsgClients


class DataError(CommandError):
    code = "mqtt_data"


def post_data(clients: MsgClients, agent: str, topic: str, body: bytes) -> dict:
    """Take one REST publish; AnyLog's success reply, or DataError saying why nothing was taken."""
    client = clients.rest_client(agent)
    if client is None:
        known = sorted({c.spec.user_agent for c in clients.clients.values() if c.spec.broker == "rest"})
        hint = f" (clients take: {', '.join(known)})" if known else (
            " (start one: run msg client where broker = rest and user-agent = <product> and topic = (...))")
        raise DataError(f"a POST with 'command: data' from User-Agent {agent!r}: no message client takes REST data "
                        f"from it{hint}")
    if not topic:
        topics = client.topics()
        if not topics:
            raise DataError("Data provided is missing a topic")
        topic = topics[0].topic.name
    reason = clients.deliver(client, topic, body)
    if reason is not None:
        raise DataError(f"client #{client.id}, topic {topic!r}: {reason}")
    return {"AnyLog.status": "Success", "AnyLog.topic": topic, "AnyLog.client": client.id}


__all__ = ["post_data", "DataError", "AnyLogError"]
