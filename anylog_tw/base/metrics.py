"""The node's Prometheus metrics: one registry per node, shared by every area.

Each node owns its own `CollectorRegistry` (never the global one), so two nodes in one test
process do not mix their counts, and `GET /metrics` on the REST server shows exactly one node.
Get it with `node.component(Metrics)` and increment what your area does:

    metrics = node.component(Metrics)
    metrics.rows_ingested.labels(dbms="lsl", table="ping").inc(120)     # operator, after a commit
    metrics.files_ingested.labels(dbms="lsl", table="ping").inc()
    metrics.ingest_errors.labels(stage="insert").inc()                  # parse, mapping, insert, move ...
    metrics.peer_messages.labels(direction="in", kind="cmd").inc()      # peer protocol, per frame kind
    metrics.watch_queue("operator", lambda: len(pending))               # a gauge read at scrape time
    metrics.queue_depth.labels(queue="publisher").set(7)                # or set it yourself
    metrics.ingest_history.add("lsl", "ping", rows=120, files=1)         # the last hour, per table (web page)

Counters are exported with Prometheus' `_total` suffix (`anylog_rows_ingested_total`).  Label
values come from users and files (dbms, table names): keep them to names that already passed the
area's own checks, and put table names through `table_labels`, which counts the tables past the
first `MAX_TABLES` as "other", so files and PUTs naming ever new tables cannot grow the metrics
without bound.  Incrementing is thread-safe, so thread-pool code may count too.
"""

from __future__ import annotations

import time
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from anylog_tw.base.rates import RateHistory

CONTENT_TYPE = CONTENT_TYPE_LATEST
MAX_TABLES = 500  # distinct (dbms, table) label pairs; the rest are counted as ("other", "other")
_OTHER_TABLE = {"dbms": "other", "table": "other"}

# REST latency buckets (seconds): most commands answer in a millisecond, queries take longer.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """A node's metrics (a node component: `node.component(Metrics)`)."""

    def __init__(self, node=None):
        self.node = node
        self.registry = CollectorRegistry(auto_describe=True)
        self._tables: set[tuple[str, str]] = set()
        r = self.registry
        # -- ingest (operator, streamer, REST PUT) ----------------------------------------------
        self.rows_ingested = Counter("anylog_rows_ingested", "Rows inserted into local tables",
                                     ("dbms", "table"), registry=r)
        self.files_ingested = Counter("anylog_files_ingested", "JSON/SQL files ingested from the watch dir",
                                      ("dbms", "table"), registry=r)
        self.ingest_errors = Counter("anylog_ingest_errors", "Ingest failures, by stage (parse, insert, move ...)",
                                     ("stage",), registry=r)
        self.rows_received = Counter("anylog_rows_received", "Rows received by REST PUT, by mode (file, streaming)",
                                     ("mode",), registry=r)
        self.bytes_received = Counter("anylog_bytes_received", "Body bytes received by REST PUT",
                                      ("mode",), registry=r)
        self.files_written = Counter("anylog_files_written", "Files written into a watch dir (REST PUT, streamer)",
                                     ("source",), registry=r)
        # -- messages (MQTT subscriptions, the node's broker, REST as a broker) ----------------
        # Per-message counts are read from the message clients when /metrics is scraped (msg/metrics.py).
        self.msg_sessions = Counter("anylog_msg_sessions", "MQTT sessions with external brokers, by result "
                                    "(connected, refused, failed, lost)", ("result",), registry=r)
        # -- peers ---------------------------------------------------------------------------
        self.peer_messages = Counter("anylog_peer_messages", "Peer protocol frames, by direction (in/out) and kind",
                                     ("direction", "kind"), registry=r)
        # -- REST ----------------------------------------------------------------------------
        self.rest_calls = Counter("anylog_rest_calls", "REST requests, by route, method and status",
                                  ("route", "method", "status"), registry=r)
        self.rest_seconds = Histogram("anylog_rest_seconds", "REST request latency, by route",
                                      ("route",), buckets=_LATENCY_BUCKETS, registry=r)
        # -- queues --------------------------------------------------------------------------
        self.queue_depth = Gauge("anylog_queue_depth", "Items waiting, by queue (operator, publisher, streaming ...)",
                                 ("queue",), registry=r)
        # -- per table over the last hour (`get ingest rate`, the web page) ---------------------
        self.ingest_history = RateHistory(node.reactor.seconds if node is not None else time.time)
        # -- the node ------------------------------------------------------------------------
        if node is not None:
            up = Gauge("anylog_uptime_seconds", "Seconds since the node started", registry=r)
            up.set_function(node.uptime)
            ran = Gauge("anylog_commands_run", "Commands the node has run", registry=r)
            ran.set_function(lambda: node.commands_run)

    def table_labels(self, dbms: str, table: str) -> dict:
        """The labels of a (dbms, table) pair: itself for the first `MAX_TABLES` pairs seen, then "other"."""
        key = (dbms, table)
        if key in self._tables:
            return {"dbms": dbms, "table": table}
        if len(self._tables) >= MAX_TABLES:
            return _OTHER_TABLE
        self._tables.add(key)
        return {"dbms": dbms, "table": table}

    def watch_queue(self, queue: str, depth: Callable[[], float]) -> None:
        """Report `depth()` as the queue's depth, read when /metrics is scraped (no bookkeeping)."""
        self.queue_depth.labels(queue=queue).set_function(depth)

    def forget_queue(self, queue: str) -> None:
        """Stop reporting a queue (its service stopped)."""
        try:
            self.queue_depth.remove(queue)
        except KeyError:
            pass

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
