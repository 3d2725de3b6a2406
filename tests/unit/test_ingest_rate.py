"""`get ingest rate`: the operator's per-table counts as a table, and as JSON with the hour's series."""

from __future__ import annotations

from anylog_tw.base.metrics import Metrics
from tests.helpers import run, unit_node


def test_the_table_and_the_json_show_totals_rates_and_series(tmp_path):
    node = unit_node(tmp_path)
    history = node.component(Metrics).ingest_history
    node.reactor.advance(1_000_000)
    history.add("lsl", "ping", rows=120, files=2)
    history.add("lsl", "ping", errors=1)
    node.reactor.advance(30)
    history.add("lsl", "cpu", rows=6, files=1)
    reply = run(node, "get ingest rate")
    assert reply.columns[:5] == ["DBMS", "Table", "Rows", "Files", "Errors"]
    assert [r[:7] for r in reply.rows] == [["lsl", "cpu", 6, 1, 0, 0.1, 0.002], ["lsl", "ping", 120, 2, 1, 2.0, 0.033]]
    data = run(node, "get ingest rate where table = ping and format = json").json_data()
    assert data["bucket"] == 10 and data["end"] == 1_000_030.0
    [ping] = data["tables"]
    assert ping["series"][-4:] == [120, 0, 0, 0] and ping["error_series"][-4] == 1 and len(ping["series"]) == 360
    brief = run(node, "get ingest rate where series = false and format = json").json_data()
    assert all("series" not in t for t in brief["tables"]) and len(brief["tables"]) == 2
    assert run(node, "get ingest rate where dbms = other and format = json").json_data()["tables"] == []
