"""The node's message clients: numbered subscriptions, and the one path a message takes into rows.

Whatever brings a message (a subscription to an external broker, the node's own broker, a REST
POST), `MsgClients.deliver` does the rest on the reactor thread: find the subscription of the
topic, decode the JSON, map it to rows, and hand the rows to the streaming buffers.  A message is
taken whole or not at all: a list whose third element cannot be mapped buffers nothing, counts
one error, and (with `log_error = true`) is written to the error dir with the broker, topic and
reason.  Nothing a message holds can stop its client.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import orjson
from twisted.logger import Logger

from anylog_tw.base.errors import AnyLogError, NotFound, OptionError
from anylog_tw.base.metrics import Metrics
from anylog_tw.ingest.streamer import Streamer
from anylog_tw.msg.acks import Journal
from anylog_tw.msg.dynamic import DynamicTopic
from anylog_tw.msg.files import Appender, error_record, file_label
from anylog_tw.msg.mapping import Mapper, MappingError, Target
from anylog_tw.msg.metrics import MsgCollector
from anylog_tw.msg.options import LOCAL, REST, ClientSpec, TopicSpec
from anylog_tw.msg.stats import Connection, Counts
from anylog_tw.msg.topics import TopicTable
from anylog_tw.msg.uns_streamer import UnsValues

MAX_MESSAGE = 8 * 1024 * 1024  # bytes: a bigger payload is counted as an error and dropped
NOT_JSON = "MQTT message is not in JSON format"
UNRECOGNIZED = "Unrecognized topic"


@dataclass
class Subscription:
    client: "MsgClient"
    topic: TopicSpec
    mapper: Mapper | None  # None: kept in a file (persist, only_log, a bare topic), or dynamic
    counts: Counts = field(default_factory=Counts)
    dynamic: DynamicTopic | None = None  # dynamic = true: the mapper depends on the topic (msg/dynamic.py)


@dataclass
class MsgClient:
    id: int
    spec: ClientSpec
    subscriptions: TopicTable[Subscription] = field(default_factory=TopicTable)
    counts: Counts = field(default_factory=Counts)
    unmatched: Counts = field(default_factory=Counts)  # messages on topics with no subscription
    rows: int = 0  # rows handed to the streaming buffers
    connection: Connection | None = None  # external brokers only
    link: Any = None  # the service holding the connection (external brokers)

    @property
    def label(self) -> str:
        return f"{self.id:04d}"

    def topics(self) -> list[Subscription]:
        return list(self.subscriptions.exact.values()) + [s for _, s in self.subscriptions.wild]


class MsgClients:
    """The registry of message clients (a node component: `node.component(MsgClients)`)."""

    log = Logger()

    def __init__(self, node):
        self.node = node
        self.reactor = node.reactor
        self.clients: dict[int, MsgClient] = {}
        self._next_id = 1
        self.files = Appender(node)
        self.metrics = node.component(Metrics)
        self.collector = MsgCollector(self)
        self.metrics.registry.register(self.collector)
        self.streamer: Streamer = node.component(Streamer)
        self.journals: dict[str, Journal] = {}

    # -- registration --------------------------------------------------------------------------

    def register(self, spec: ClientSpec, mappers: dict[str, Mapper | DynamicTopic | None]) -> MsgClient:
        """Add a client with its topics (`mappers` by topic name); a topic taken on the same broker is refused."""
        for other in self.clients.values():
            if other.spec.address != spec.address:
                continue
            for topic in spec.topics:
                if topic.name in other.subscriptions:
                    raise OptionError(f"the topic {topic.name!r} was subscribed by client #{other.id} on this broker")
        if spec.broker == REST:
            for other in self.clients.values():
                if other.spec.broker == REST and other.spec.user_agent.lower() == spec.user_agent.lower():
                    raise OptionError(f"user-agent {spec.user_agent!r} is taken by client #{other.id}: add the topics "
                                      f"there, or use another user-agent")
        client = MsgClient(self._next_id, spec)
        for topic in spec.topics:
            mapper = mappers.get(topic.name)
            if isinstance(mapper, DynamicTopic):
                client.subscriptions.add(topic.name, Subscription(client, topic, None, dynamic=mapper))
            else:
                client.subscriptions.add(topic.name, Subscription(client, topic, mapper))
        self.clients[client.id] = client
        self._next_id += 1
        return client

    def journal(self, path: str) -> Journal:
        """The acknowledgement journal kept in `path`, shared by the clients that name it."""
        journal = self.journals.get(path)
        if journal is None:
            from anylog_tw.ingest.dropfile import ingest_dirs

            watch = self.streamer.dirs.get("watch_dir") or ingest_dirs(self.node)[0]
            journal = self.journals[path] = Journal(path, (watch,))
        return journal

    def get(self, client_id: int) -> MsgClient:
        client = self.clients.get(client_id)
        if client is None:
            raise NotFound(f"No message client subscription #{client_id} (see 'get msg clients')")
        return client

    def remove(self, client_id: int) -> MsgClient:
        client = self.get(client_id)
        del self.clients[client_id]
        self.collector.retire(client)
        return client

    def local_clients(self) -> list[MsgClient]:
        return [c for c in self.clients.values() if c.spec.broker == LOCAL]

    def rest_client(self, user_agent: str) -> MsgClient | None:
        """The `broker = rest` client for a User-Agent (its product name, before any '/version')."""
        product = user_agent.split("/", 1)[0].strip().lower()
        for client in self.clients.values():
            if client.spec.broker == REST and client.spec.user_agent.lower() == product:
                return client
        return None

    # -- one message ---------------------------------------------------------------------------

    def deliver(self, client: MsgClient, topic: str, payload: bytes, waiter=None) -> str | None:
        """Take one message; None when its rows are buffered (or it is kept as asked), else the reason.

        `waiter` (a QoS 1 message's acknowledgement) goes with every buffer its rows are added to;
        its `remaining` counts them."""
        now = self.reactor.seconds()
        sub = client.subscriptions.find(topic)
        if sub is None:
            client.unmatched.failed(now, f"{UNRECOGNIZED}: {topic!r}")
            return self._failed(client, None, topic, payload, now, f"{UNRECOGNIZED}: {topic!r}")
        dynamic = sub.dynamic
        mapper = sub.mapper
        if mapper is None and dynamic is None:
            self._keep(client, sub, topic, payload)
            sub.counts.ok(now)
            client.counts.ok(now)
            return None
        if len(payload) > MAX_MESSAGE:
            return self._failed(client, sub, topic, payload, now,
                                f"message of {len(payload):,} bytes is over the {MAX_MESSAGE:,}-byte limit")
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError as e:
            if dynamic is None:
                return self._failed(client, sub, topic, payload, now, f"{NOT_JSON} ({e})")
            return self._value(client, sub, topic, payload, payload.decode("utf-8", "replace").strip(), now)
        if dynamic is not None:
            if type(message) is not dict and type(message) is not list:
                return self._value(client, sub, topic, payload, message, now)
            try:
                mapper = dynamic.mapper_for(topic)
            except AnyLogError as e:
                return self._failed(client, sub, topic, payload, now, e.message)
        objects = message if type(message) is list else (message,)
        first: Target | None = None  # nearly every message fills one buffer: no grouping for it
        lines: list[bytes] = []
        dicts: list[dict] = []  # the rows as mapped: the operator takes them instead of parsing the file
        others: dict[Target, tuple[list[bytes], list[dict]]] = {}
        try:
            for i, obj in enumerate(objects):
                if type(obj) is not dict:
                    where = f"element {i + 1} of the list" if type(message) is list else "the message"
                    raise MappingError(f"{where} is {type(obj).__name__}, not a JSON object")
                for target, row in mapper(obj, now):
                    # orjson's result keeps a 4 KiB allocation whatever its length; buffered rows are
                    # copied to their size (100k buffered rows: 20 MB instead of 400 MB).
                    line = memoryview(orjson.dumps(row)).tobytes()
                    if first is None or target == first:
                        first = target
                        lines.append(line)
                        dicts.append(row)
                    else:
                        more = others.setdefault(target, ([], []))
                        more[0].append(line)
                        more[1].append(row)
        except AnyLogError as e:
            return self._failed(client, sub, topic, payload, now, e.message)
        except Exception as e:  # a bug in a rule must not stop the client: count it and say what it was
            self.log.failure("mapping a message on {topic} failed", topic=topic)
            return self._failed(client, sub, topic, payload, now, f"MQTT data error: {type(e).__name__}: {e}")
        add = self.streamer.add
        added = 0
        try:
            if waiter is not None:  # counted before: a write may start (and journal) inside add
                waiter.remaining = (first is not None) + len(others)
            if first is not None:
                add(first.dbms, first.table, lines, first.source, first.instructions, waiter, dicts)
                added += 1
            for target, (more, more_dicts) in others.items():
                add(target.dbms, target.table, more, target.source, target.instructions, waiter, more_dicts)
                added += 1
        except AnyLogError as e:  # the buffers refuse rows while their files cannot be written
            if waiter is not None:  # the buffers that took rows hold the waiter; the others never will
                waiter.remaining = added
            return self._failed(client, sub, topic, payload, now, e.message)
        rows = len(lines) + sum(len(more) for more, _ in others.values())
        sub.counts.ok(now)
        client.counts.ok(now)
        client.rows += rows
        return None

    def _value(self, client: MsgClient, sub: Subscription, topic: str, payload: bytes, value, now: float) -> str | None:
        """A dynamic topic's plain value (not a JSON object): kept for the UNS streamer."""
        try:
            dbms, table, column = sub.dynamic.value_for(topic)
        except AnyLogError as e:
            return self._failed(client, sub, topic, payload, now, e.message)
        reason = self.node.component(UnsValues).put(dbms, table, column, value)
        if reason is not None:
            return self._failed(client, sub, topic, payload, now, reason)
        sub.counts.ok(now)
        client.counts.ok(now)
        return None

    def deliver_local(self, topic: str, payload: bytes, waiter=None) -> str | None:
        """A publish to the node's broker: to the `broker = local` client subscribed to its topic."""
        for client in self.clients.values():
            if client.spec.broker == LOCAL and client.subscriptions.find(topic) is not None:
                return self.deliver(client, topic, payload, waiter)
        return "no local message client subscribes to this topic"

    def _failed(self, client: MsgClient, sub: Subscription | None, topic: str, payload: bytes, now: float,
                reason: str) -> str:
        client.counts.failed(now, reason)
        if sub is not None:
            sub.counts.failed(now, reason)
        if client.spec.log_error:
            name = f"err_{client.spec.broker_id}.{file_label(topic)}.json"
            self.files.append(self._dir(client, "err_dir"), name, error_record(client.spec.address, topic, reason,
                                                                               payload, now))
        return reason

    def _keep(self, client: MsgClient, sub: Subscription, topic: str, payload: bytes) -> None:
        """persist = true: the raw message; only_log or a bare topic: {"topic", "msg"} lines (spec §6)."""
        prep = self._dir(client, "prep_dir")
        if sub.topic.persist:
            self.files.append(prep, f"persist_{client.spec.broker_id}.{file_label(sub.topic.name)}.json",
                              payload.rstrip(b"\r\n") + b"\n")
            return
        try:
            msg = orjson.Fragment(orjson.dumps(orjson.loads(payload)))
        except orjson.JSONDecodeError:
            msg = payload.decode("utf-8", "replace")
        self.files.append(prep, f"log_{client.spec.broker_id}.json", orjson.dumps({"topic": topic, "msg": msg}) + b"\n")

    def _dir(self, client: MsgClient, which: str) -> str:
        return client.spec.dirs.get(which) or self.node.dirs[which]

    def close(self):
        """The node stops: the kept messages and error records still in memory go to their files."""
        for journal in self.journals.values():
            journal.close()
        return self.files.close()


def callback_for(clients: MsgClients, client: MsgClient) -> Callable[[str, bytes], str | None]:
    return lambda topic, payload: clients.deliver(client, topic, payload)
