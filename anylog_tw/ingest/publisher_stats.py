"""What `get publisher` shows: files and bytes per operator, failures, bad files, the last error.

Plain counters updated by the publisher on the reactor thread; the Prometheus side
(`PublisherMetrics`, a node component) registers its counters once per node registry.
"""

from __future__ import annotations

from dataclasses import dataclass

from anylog_tw.base.metrics import Metrics
from anylog_tw.base.timefmt import format_utc


@dataclass
class OperatorStats:
    files: int = 0
    bytes: int = 0
    failures: int = 0
    last_error: str = ""
    seconds: float = 0.0  # time spent in transfers that succeeded


class PublisherStats:
    def __init__(self) -> None:
        self.operators: dict[str, OperatorStats] = {}
        self.tables: dict[tuple[str, str], int] = {}  # files delivered per table
        self.files_sent = 0
        self.bytes_sent = 0
        self.failures = 0
        self.bad_files = 0
        self.bad_reasons: dict[str, int] = {}
        self.last_error = ""
        self.last_error_time = 0.0

    def _op(self, address: str) -> OperatorStats:
        st = self.operators.get(address)
        if st is None:
            st = self.operators[address] = OperatorStats()
        return st

    def sent(self, address: str, dbms: str, table: str, size: int, seconds: float) -> None:
        st = self._op(address)
        st.files += 1
        st.bytes += size
        st.seconds += seconds
        self.files_sent += 1
        self.bytes_sent += size
        self.tables[(dbms, table)] = self.tables.get((dbms, table), 0) + 1

    def failed(self, address: str, message: str, now: float) -> None:
        st = self._op(address)
        st.failures += 1
        st.last_error = message
        self.failures += 1
        self.error(message, now)

    def bad_file(self, reason: str, message: str, now: float) -> None:
        self.bad_files += 1
        self.bad_reasons[reason] = self.bad_reasons.get(reason, 0) + 1
        self.error(message, now)

    def error(self, message: str, now: float) -> None:
        self.last_error = message
        self.last_error_time = now

    def summary(self) -> dict:
        return {
            "Files sent": self.files_sent,
            "Bytes sent": self.bytes_sent,
            "Failures": self.failures,
            "Bad files": self.bad_files,
            "Last error": self.last_error,
            "Last error time": format_utc(self.last_error_time),
        }

    def table_rows(self) -> list[list]:
        return [[d, t, n] for (d, t), n in sorted(self.tables.items())]


class PublisherMetrics:
    """The publisher's Prometheus counters on the node's registry (a node component)."""

    def __init__(self, node) -> None:
        from prometheus_client import Counter


        r = node.component(Metrics).registry
        self.files = Counter("anylog_publisher_files", "Files the publisher delivered, by operator",
                             ("operator",), registry=r)
        self.bytes = Counter("anylog_publisher_bytes", "Bytes the publisher delivered, by operator",
                             ("operator",), registry=r)
        self.failures = Counter("anylog_publisher_failures", "Deliveries that failed, by operator",
                                ("operator",), registry=r)


