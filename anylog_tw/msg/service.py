"""Starting and ending message clients, and the "Message Client" process that holds their connections.

`start_client` checks everything a subscription needs before it is added (options, topics free
on that broker, mapping policies in the metadata, rules that compile), then, for an external
broker, waits a few seconds for the first answer: an accepted session or a refusal (bad password,
TLS) settles the command; a broker that does not answer yet leaves the client retrying with
backoff, and says so.
"""

from __future__ import annotations

import os

from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.logger import Logger

from anylog_tw.base.errors import CommandError, OptionError
from anylog_tw.base.process import NodeProcess
from anylog_tw.msg.clients import MsgClient, MsgClients
from anylog_tw.msg.mapping import Mapper
from anylog_tw.msg.options import LOCAL, REST, ClientSpec

FIRST_ANSWER = 6.0  # seconds `run msg client` waits for the broker's first answer (AnyLog waits 6 s)


class MsgClientProcess(NodeProcess):
    """The "Message Client" row of `get processes`: the connections of all external subscriptions."""

    name = "Message Client"
    exit_command = "exit msg client all"
    log = Logger()

    def __init__(self, clients: MsgClients):
        self.clients = clients
        self.links: dict[int, object] = {}

    def add(self, client_id: int, link) -> None:
        self.links[client_id] = link
        if self.running:
            link.startService()

    def drop(self, client_id: int) -> Deferred | None:
        link = self.links.pop(client_id, None)
        return link.stopService() if link is not None and link.running else None

    def startService(self):
        NodeProcess.startService(self)
        for link in self.links.values():
            if not link.running:
                link.startService()

    def stopService(self):
        """Each connection says DISCONNECT first, so the brokers keep the persistent sessions."""
        NodeProcess.stopService(self)
        stopping = [link.stopService() for link in self.links.values() if link.running]
        return DeferredList([d for d in stopping if d is not None], consumeErrors=True)

    def details(self) -> str:
        n = len(self.clients.clients)
        up = sum(1 for c in self.clients.clients.values() if c.connection is not None and c.connection.connected)
        return f"{n} client{'s' if n != 1 else ''}, {up} connected to external brokers"


def local_form(node, spec: ClientSpec) -> ClientSpec:
    """`broker = <this node's broker or REST address>` means `local` or `rest` (spec §2.1)."""
    from dataclasses import replace

    if spec.broker in (LOCAL, REST):
        return spec
    for name, form in (("Broker", LOCAL), ("REST", REST)):
        svc = node.process(name)
        if svc is None:
            continue
        addresses = {getattr(svc, a, None) for a in ("external_address", "internal_address", "address")}
        if (spec.broker, spec.port) in addresses:
            if form == REST and not spec.user_agent:
                raise OptionError(f"{spec.broker}:{spec.port} is this node's REST server: add user-agent = ...")
            return replace(spec, broker=form)
    return spec


def process(node) -> MsgClientProcess:
    proc = node.process(MsgClientProcess.name)
    if proc is None:
        proc = MsgClientProcess(node.component(MsgClients))
        node.add_process(proc)
    return proc


async def start_client(node, spec: ClientSpec, mappers: dict[str, Mapper | None]) -> tuple[MsgClient, str]:
    """Register a client and, for an external broker, connect it; returns the client and what to say."""
    from anylog_tw.msg.external import BrokerLink
    from anylog_tw.msg.stats import Connection

    clients = node.component(MsgClients)
    spec = local_form(node, spec)
    client = clients.register(spec, mappers)
    if spec.broker == LOCAL:
        where = "the node's message broker" + ("" if node.process("Broker") else " (not running yet: 'run message "
                                                                                  "broker' starts it)")
        process(node)
        return client, f"Message client #{client.id} takes {_topics(spec)} from {where}"
    if spec.broker == REST:
        process(node)
        return client, (f"Message client #{client.id} takes {_topics(spec)} from REST POSTs with User-Agent "
                        f"{spec.user_agent} and 'command: data'")
    client.connection = Connection()
    client_id = spec.client_id or f"{node.name}.{client.id}"
    try:
        link = BrokerLink(node.reactor, spec, client_id,
                          lambda topic, payload, waiter=None: clients.deliver(client, topic, payload, waiter),
                          client.connection, clients.metrics, journal=journal_for(node, spec),
                          flush=clients.streamer.flush_waiting)
    except Exception:
        clients.remove(client.id)
        raise
    client.link = link
    proc = process(node)
    proc.add(client.id, link)
    first = link.first
    first.addTimeout(FIRST_ANSWER, node.reactor)
    try:
        outcome = await first
    except CancelledError:
        outcome = ("failed", f"no answer within {FIRST_ANSWER:g} seconds")
    kind, reason = outcome
    if kind == "connected":
        return client, f"Message client #{client.id} connected to {spec.address} for {_topics(spec)}"
    if kind == "refused":
        await end_client(node, client.id)
        raise CommandError(f"{spec.address}: {reason}")
    return client, (f"Message client #{client.id} registered for {_topics(spec)}, but not connected to "
                    f"{spec.address} yet ({reason}); retrying with backoff (see 'get msg clients')")


async def end_client(node, client_id: int) -> MsgClient:
    clients = node.component(MsgClients)
    client = clients.remove(client_id)
    proc = node.process(MsgClientProcess.name)
    if proc is not None:
        d = proc.drop(client_id)
        if d is not None:
            await d
        if not clients.clients:
            await node.stop_process(MsgClientProcess.name)
    return client


def journal_for(node, spec: ClientSpec):
    """The journal of the messages a persistent QoS 1/2 subscription holds (msg/acks.py): one per prep
    dir.  None when the session does not outlive the connection (`clean_session = true`) or nothing
    is subscribed above QoS 0."""
    if spec.clean_session or not any(t.qos for t in spec.topics):
        return None
    prep = spec.dirs.get("prep_dir") or node.dictionary["prep_dir"]
    return node.component(MsgClients).journal(os.path.join(prep, "msg_acks.json"))


def _topics(spec: ClientSpec) -> str:
    names = [t.name for t in spec.topics]
    return ("topic " if len(names) == 1 else "topics ") + ", ".join(repr(n) for n in names)
