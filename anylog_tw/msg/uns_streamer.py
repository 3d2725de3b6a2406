"""Plain values of dynamic topics, and the UNS streamer that writes them (`run uns streamer`).

A device that publishes one number per topic (`Plant/Line1/temperature` = 42.5,
`Plant/Line1/pressure` = 3.1) gives no row by itself: each message is one column of its table
(msg/dynamic.py).  `UnsValues` keeps the latest value of every (dbms, table, column); the
"UNS Streamer" process writes, every `frequency` seconds, one row per table that received a
value since its last row, holding the time of writing and the latest value of each of the
table's columns, into the streaming buffers (so the operator inserts it and tsd_info traces it,
like any row).  Without the streamer the values are only kept.

The latest values live in memory: a value that arrived after the last row is lost if the node
stops before the next one, which is what a sampling of latest values means (QoS 1 messages of
plain values are acknowledged when they are kept).
"""

from __future__ import annotations

from typing import Any

import orjson

from anylog_tw.base.periodic import Periodic
from anylog_tw.base.process import NodeProcess
from anylog_tw.base.timefmt import format_utc
from anylog_tw.ingest.streamer import Streamer

DEFAULT_FREQUENCY = 5.0  # seconds (AnyLog's default)
MAX_COLUMNS = 1024  # columns kept per table: a device cannot grow a table without bound
MAX_TABLES = 10_000  # tables with kept values: nor the node's memory, by publishing to ever new topics
TIME_COLUMN = "timestamp"


class UnsValues:
    """The latest plain value of each (dbms, table, column) (a node component)."""

    def __init__(self, node):
        self.node = node
        self.tables: dict[tuple[str, str], dict[str, Any]] = {}
        self.changed: set[tuple[str, str]] = set()
        self.values = 0  # values kept since the node started

    def put(self, dbms: str, table: str, column: str, value: Any) -> str | None:
        """Keep a value; the reason when it cannot be kept (None when kept)."""
        if column == TIME_COLUMN:
            return f"column {column!r} is the time the UNS streamer writes: rename the topic's last segment"
        columns = self.tables.get((dbms, table))
        if columns is None:
            if len(self.tables) >= MAX_TABLES:
                return f"values of {MAX_TABLES:,} tables are kept already: {dbms}.{table} is not taken"
            columns = self.tables[(dbms, table)] = {}
        if column not in columns and len(columns) >= MAX_COLUMNS:
            return f"table {dbms}.{table} has {MAX_COLUMNS} value columns already"
        columns[column] = value
        self.changed.add((dbms, table))
        self.values += 1
        return None

    def take_rows(self, now: float) -> list[tuple[str, str, dict]]:
        """One row per table changed since the last call: the time, then the latest values."""
        stamp = format_utc(now)
        rows = [(dbms, table, {TIME_COLUMN: stamp, **self.tables[(dbms, table)]})
                for dbms, table in sorted(self.changed)]
        self.changed.clear()
        return rows


class UnsStreamer(NodeProcess):
    """The "UNS Streamer" row of `get processes`."""

    name = "UNS Streamer"
    exit_command = "exit uns streamer"

    def __init__(self, frequency: float = DEFAULT_FREQUENCY):
        self.frequency = frequency
        self.periodic: Periodic | None = None
        self.rows = 0

    def startService(self) -> None:
        NodeProcess.startService(self)
        self.periodic = Periodic(self.reactor, self.frequency, self.write, name="uns streamer", now=False)
        self.periodic.start()

    def stopService(self):
        NodeProcess.stopService(self)
        stopping = self.periodic.stop()
        stopping.addCallback(lambda _: self.write())  # the values since the last row are not left behind
        return stopping

    def write(self) -> None:
        values = self.node.component(UnsValues)
        streamer = self.node.component(Streamer)
        rows = values.take_rows(self.reactor.seconds())
        for i, (dbms, table, row) in enumerate(rows):
            try:
                streamer.add(dbms, table, [orjson.dumps(row)], objs=[row])
            except Exception:  # buffers that cannot be written now: these tables are due again next time
                values.changed.update((d, t) for d, t, _ in rows[i:])
                raise
            self.rows += 1

    def details(self) -> str:
        return f"Frequency: {self.frequency:g} sec, Rows written: {self.rows}"
