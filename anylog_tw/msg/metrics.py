"""Prometheus counters of message ingestion, read from the clients' own counts when /metrics is scraped.

A Prometheus counter takes a lock on every increment; at tens of thousands of messages a second
that is a tenth of the work of a message.  The clients and the broker count anyway (for
`get msg clients` and `get local broker`), so this collector sums those counts at scrape time.
Counts of clients that exited are kept in `retired`, so the totals never go down.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily


class MsgCollector:
    def __init__(self, clients):
        self.clients = clients
        self.retired = {"success": 0, "error": 0, "rows": 0}
        self.broker = None  # the running broker's stats (set by `run message broker`)
        self.broker_retired: dict[tuple[str, str], int] = {}

    def retire(self, client) -> None:
        self.retired["success"] += client.counts.success
        self.retired["error"] += client.counts.errors
        self.retired["rows"] += client.rows

    def retire_broker(self, stats) -> None:
        for (event, result), n in self._broker_counts(stats).items():
            self.broker_retired[(event, result)] = self.broker_retired.get((event, result), 0) + n

    @staticmethod
    def _broker_counts(stats) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        for (_, _, event), row in stats.rows.items():
            out[(event, "success")] = out.get((event, "success"), 0) + row.success
            out[(event, "error")] = out.get((event, "error"), 0) + row.errors
        return out

    def collect(self):
        clients = list(self.clients.clients.values())
        messages = CounterMetricFamily("anylog_msg_messages", "Messages taken by message clients, by result",
                                       labels=("result",))
        messages.add_metric(("success",), self.retired["success"] + sum(c.counts.success for c in clients))
        messages.add_metric(("error",), self.retired["error"] + sum(c.counts.errors for c in clients))
        yield messages
        rows = CounterMetricFamily("anylog_msg_rows", "Rows message clients handed to the streaming buffers")
        rows.add_metric((), self.retired["rows"] + sum(c.rows for c in clients))
        yield rows
        events = CounterMetricFamily("anylog_broker_events", "Packets the node's MQTT broker handled, by event and "
                                     "result", labels=("event", "result"))
        counts = dict(self.broker_retired)
        if self.broker is not None:
            for key, n in self._broker_counts(self.broker).items():
                counts[key] = counts.get(key, 0) + n
        for (event, result), n in sorted(counts.items()):
            events.add_metric((event, result), n)
        yield events
