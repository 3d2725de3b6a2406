"""Grafana targets to statements and rows to Grafana's shapes (the pure half of the data source)."""

from __future__ import annotations

import datetime
import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anylog_tw.front import grafana_sql as gs

T0 = datetime.datetime(2024, 1, 1, 10, 0, 0)
T1 = datetime.datetime(2024, 1, 1, 11, 0, 0)


def test_the_increment_follows_the_panel_interval_but_never_exceeds_max_data_points():
    assert gs.choose_increment(3600, 30_000, 1000) == ("second", 30)
    assert gs.choose_increment(3600, 1_000, 60) == ("minute", 1)  # 60 points over an hour
    assert gs.choose_increment(86400 * 30, 3_600_000, 100) == ("hour", 7)
    assert gs.choose_increment(86400 * 365.25 * 3, None, 3) == ("year", 1)
    assert gs.choose_increment(10, None, 1000) == ("second", 1)  # never under a second
    assert gs.choose_increment(3600, 1_000, 60, "dashboard") == ("second", 1)
    assert gs.choose_increment(3600, 600_000, 60, "optimize") == ("minute", 1)


@given(st.floats(1, 1e9), st.one_of(st.none(), st.floats(1, 1e9)), st.one_of(st.none(), st.integers(1, 5000)))
def test_the_chosen_buckets_are_never_many_more_than_max_data_points(span, interval_ms, points):
    unit, count = gs.choose_increment(span, interval_ms, points)
    step = dict(gs.UNITS)[unit] * count
    assert count >= 1 and step >= 1
    assert span / step <= 2 * (points or gs.DEFAULT_POINTS) + 1  # rounding the count may halve the step at most


def test_intervals_read_as_unit_and_count():
    assert gs.parse_interval("5 minutes") == ("minute", 5)
    assert gs.parse_interval("1 hour") == ("hour", 1)
    assert gs.parse_interval("30s") == ("second", 30)
    assert gs.parse_interval("dashboard") is None and gs.parse_interval("") is None
    with pytest.raises(gs.GrafanaError, match="unit is one of"):
        gs.parse_interval("5 fortnights")
    with pytest.raises(gs.GrafanaError, match="N unit"):
        gs.parse_interval("soon")


def test_a_target_reads_its_table_from_target_or_payload_and_the_dbms_from_the_header():
    t = gs.read_target({"refId": "A", "target": "lsl.ping", "payload": {"type": "increments"}})
    assert (t.dbms, t.table, t.kind, t.fmt, t.functions) == ("lsl", "ping", "increments", "timeseries",
                                                              ("min", "max", "avg"))
    t = gs.read_target({"target": "ping", "payload": '{"value_column": ["a", "b"], "functions": "avg,count"}'},
                       default_dbms="lsl")
    assert (t.dbms, t.table, t.value_columns, t.functions) == ("lsl", "ping", ("a", "b"), ("avg", "count"))
    t = gs.read_target({"target": "x", "type": "table", "data": {"type": "period", "dbms": "d", "table": "t"}})
    assert (t.dbms, t.table, t.kind, t.fmt) == ("d", "t", "period", "table")
    t = gs.read_target({"target": "", "payload": {"type": "info", "details": "get status"}})
    assert (t.kind, t.fmt, t.details) == ("info", "table", "get status")
    t = gs.read_target({"target": "lsl.ping", "payload": {"sql": "select 1", "grafana": {"format_as": "table"}}})
    assert (t.kind, t.fmt) == ("sql", "table")


@pytest.mark.parametrize("target, message", [
    ({"target": "ping"}, "no dbms"),
    ({"target": "", "payload": {"dbms": "lsl"}}, "no table"),
    ({"target": "lsl.ping", "payload": {"type": "map"}}, "not supported"),
    ({"target": "lsl.ping", "payload": {"type": "whatever"}}, "not one of"),
    ({"target": "lsl.ping", "payload": {"functions": ["median"]}}, "median"),
    ({"target": "lsl.ping", "payload": {"time_column": "a b"}}, "not a valid name"),
    ({"target": "lsl.ping", "payload": {"limit": "ten"}}, "whole number"),
    ({"target": "lsl.ping", "payload": "{not json"}, "not JSON"),
    ({"target": "", "payload": {"type": "info"}}, "needs 'details'"),
])
def test_bad_targets_get_errors_that_name_the_problem(target, message):
    with pytest.raises(gs.GrafanaError, match=message):
        gs.read_target(target)


def _db(rows):
    db = sqlite3.connect(":memory:")
    db.execute('create table ping ("timestamp" TIMESTAMP, "value" REAL, "device" TEXT)')
    db.executemany("insert into ping values (?, ?, ?)", rows)
    return db


def _records(db, sql):
    cur = db.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def test_increments_on_sqlite_bucket_the_range_and_answer_one_series_per_function():
    rows = [((T0 + datetime.timedelta(seconds=20 * i)).isoformat(sep=" "), float(i), "a") for i in range(200)]
    db = _db(rows)
    t = gs.read_target({"refId": "A", "target": "lsl.ping", "payload": {"functions": ["min", "max", "count"]}})
    sql = gs.local_statements(t, "sqlite", T0, T1, interval_ms=None, max_points=6)  # 10-minute buckets
    series = gs.timeseries(t, _records(db, sql))
    assert [s["target"] for s in series] == ["ping min(value)", "ping max(value)", "ping count(value)"]
    counts = [p[0] for p in series[2]["datapoints"]]
    assert counts == [30] * 6  # 20-second rows; the row at 11:00:00 starts a 7th bucket, cut by LIMIT 6
    assert series[0]["datapoints"][0][0] == 0.0 and series[1]["datapoints"][-1][0] == 179.0
    stamps = [p[1] for p in series[1]["datapoints"]]
    assert stamps == sorted(stamps) and all(isinstance(ms, int) for ms in stamps)


def test_the_where_and_the_range_limit_the_rows():
    rows = [(T0.isoformat(sep=" "), 1.0, "a"), ((T0 + datetime.timedelta(minutes=1)).isoformat(sep=" "), 2.0, "b"),
            ((T1 + datetime.timedelta(minutes=1)).isoformat(sep=" "), 9.0, "a")]
    db = _db(rows)
    t = gs.read_target({"target": "lsl.ping", "payload": {"type": "aggregations", "where": "device = 'a'",
                                                          "functions": "avg,count,range"}})
    [record] = _records(db, gs.local_statements(t, "sqlite", T0, T1, None, None))
    assert (record["avg__value"], record["count__value"], record["range__value"]) == (1.0, 1, 0.0)


def test_period_finds_the_last_reading_then_takes_the_window_before_it():
    rows = [((T0 + datetime.timedelta(minutes=i)).isoformat(sep=" "), float(i), "a") for i in range(30)]
    db = _db(rows)
    t = gs.read_target({"target": "lsl.ping", "payload": {"type": "period", "interval": "5 minutes",
                                                          "functions": ["min", "max", "count"]}})
    [last] = _records(db, gs.local_statements(t, "sqlite", T0, T1, None, None))
    assert last["timestamp"] == "2024-01-01 10:29:00"
    main = gs.period_statement(t, gs.parse_time(last["timestamp"], "t"), gs.period_window(t, T0, T1))
    [record] = _records(db, main)
    assert (record["min__value"], record["max__value"], record["count__value"]) == (25.0, 29.0, 5)


def test_user_sql_gets_the_range_in_its_where_and_a_limit_when_it_has_none():
    rows = [((T0 + datetime.timedelta(minutes=i)).isoformat(sep=" "), float(i), "a" if i % 2 else "b")
            for i in range(-5, 70)]
    db = _db(rows)
    t = gs.read_target({"target": "lsl.ping", "payload": {
        "sql": "select timestamp, value from ping where device = 'a' or device = 'b' order by timestamp"}})
    sql = gs.local_statements(t, "sqlite", T0, T1, None, 1000)
    assert "LIMIT 1000" in sql
    got = _records(db, sql)
    assert len(got) == 61 and got[0]["timestamp"] == "2024-01-01 10:00:00"
    series = gs.timeseries(t, got)
    assert [s["target"] for s in series] == ["ping value"] and len(series[0]["datapoints"]) == 61
    t = gs.read_target({"target": "lsl.ping", "payload": {"sql": "select * from ping limit 3", "time_range": False}})
    assert len(_records(db, gs.local_statements(t, "sqlite", T0, T1, None, 1000))) == 3
    with pytest.raises(gs.GrafanaError, match="one SELECT"):
        gs.local_statements(gs.read_target({"target": "d.t", "payload": {"sql": "drop table ping"}}), "sqlite",
                            T0, T1, None, 10)


def test_network_statements_use_anylog_increments_and_period():
    t = gs.read_target({"target": "lsl.ping", "payload": {"where": "device = 'a'"}})
    sql = gs.network_statement(t, T0, T1, 60_000, 100)
    assert sql.startswith("SELECT increments(minute, 1, timestamp), max(\"timestamp\") AS timestamp")
    assert "timestamp >= '2024-01-01 10:00:00' AND timestamp <= '2024-01-01 11:00:00' AND (device = 'a')" in sql
    t = gs.read_target({"target": "lsl.ping", "payload": {"type": "period", "interval": "2 hours"}})
    assert "WHERE period(hour, 2, '2024-01-01 11:00:00', timestamp)" in gs.network_statement(t, T0, T1, None, None)


def test_the_postgresql_bucket_uses_epoch_and_the_calendar():
    assert gs.bucket_expression("psql", "minute", 5, "ts") == 'floor(extract(epoch from "ts") / 300)'
    assert "extract(month" in gs.bucket_expression("psql", "month", 1, "ts")
    assert gs.bucket_expression("sqlite", "month", 2, "ts").startswith("((CAST(strftime('%Y'")


def test_tables_type_their_columns_and_turn_times_into_epoch_milliseconds():
    out = gs.table(["t", "v", "s"], [["2024-01-01 10:00:00", 1, "x"], [None, 2.5, None]], "A")
    assert out == {"type": "table", "refId": "A", "columns": [{"text": "t", "type": "time"},
                   {"text": "v", "type": "number"}, {"text": "s", "type": "string"}],
                   "rows": [[1704103200000, 1, "x"], [None, 2.5, None]]}
