"""The per-node metrics registry: separate per node, counters visible in the exposition."""

from __future__ import annotations

from anylog_tw.base.metrics import Metrics
from tests.helpers import unit_node


def test_metrics_are_per_node_and_exported(tmp_path):
    """Two nodes count separately, and counters show up with Prometheus' _total suffix."""
    a = unit_node(tmp_path / "a").component(Metrics)
    b = unit_node(tmp_path / "b").component(Metrics)
    a.rows_ingested.labels(dbms="d", table="t").inc(5)
    a.watch_queue("operator", lambda: 3)
    text_a, text_b = a.render().decode(), b.render().decode()
    assert 'anylog_rows_ingested_total{dbms="d",table="t"} 5.0' in text_a
    assert 'anylog_queue_depth{queue="operator"} 3.0' in text_a
    assert "anylog_rows_ingested_total{" not in text_b
    assert "anylog_uptime_seconds" in text_b
    a.forget_queue("operator")
    a.forget_queue("operator")  # twice is harmless
    assert 'queue="operator"' not in a.render().decode()
