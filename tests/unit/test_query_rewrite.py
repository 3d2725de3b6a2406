"""Time expressions, AnyLog's additions to SELECT, increments buckets, period, refusals, output."""

from __future__ import annotations

import datetime
import sqlite3

import pytest
import sqlglot
from hypothesis import given
from hypothesis import strategies as st

from anylog_tw.query import output, timeexpr, timeseries
from anylog_tw.query.errors import QueryError, Unmergeable
from anylog_tw.query.plan import translate
from anylog_tw.query.rewrite import plan_query
from anylog_tw.query.statement import Cast, prepare

NOW = datetime.datetime(2026, 7, 20, 12, 30, 15, 250000)
COLUMNS = {"timestamp": "timestamp", "value": "float", "device_name": "text"}


# --- time expressions -------------------------------------------------------------------------


@pytest.mark.parametrize("written, literal", [
    ("NOW() - 1 day", "2026-07-19 12:30:15.250000"),
    ("now() -3d", "2026-07-17 12:30:15.250000"),
    ("NOW() - 3 days", "2026-07-17 12:30:15.250000"),
    ("now() - 1hour", "2026-07-20 11:30:15.250000"),
    ("-4t", "2026-07-20 12:26:15.250000"),
    ("now() + 2 weeks - 1 month", "2026-07-03 12:30:15.250000"),
    ("now() - 1 y", "2025-07-20 12:30:15.250000"),
    ("timestamp('now', 'start of day')", "2026-07-20 00:00:00"),
    ("timestamp(now, '- 1 day')", "2026-07-19 12:30:15.250000"),
    ("timestamp('now','start of month','+1 month','-1 day')", "2026-07-31 00:00:00"),
    ("date()", "2026-07-20"),
    ("date() + 2 days", "2026-07-22"),
    ("date('now', 'start of year')", "2026-01-01"),
])
def test_time_expressions_become_one_utc_literal(written, literal):
    assert timeexpr.resolve(f"select a from t where ts > {written}", NOW) == f"select a from t where ts > '{literal}'"


def test_sql_that_only_looks_like_time_expressions_is_kept():
    text = "select date(ts), timestamp from t where value - 3 > 1 and date(ts) = '2026-01-01' and x = 'now() - 1 day'"
    assert timeexpr.resolve(text, NOW) == text


def test_between_takes_two_offsets():
    got = timeexpr.resolve("select a from t where ts between -2h and -1h", NOW)
    assert got == "select a from t where ts between '2026-07-20 10:30:15.250000' and '2026-07-20 11:30:15.250000'"


def test_month_arithmetic_clamps_the_day():
    assert timeexpr.shift(datetime.datetime(2026, 3, 31), -1, "month") == datetime.datetime(2026, 2, 28)
    assert timeexpr.shift(datetime.datetime(2024, 2, 29), 1, "year") == datetime.datetime(2025, 2, 28)


def test_bad_modifier_and_bad_date_are_named():
    with pytest.raises(QueryError, match="'next tuesday' is not a date modifier"):
        timeexpr.resolve("select a from t where ts > timestamp('now', 'next tuesday')", NOW)
    with pytest.raises(QueryError, match="'yesterday' is not a date"):
        timeexpr.resolve("select a from t where ts > timestamp('yesterday', '+1 day')", NOW)


def test_get_datetime_evaluates_one_expression():
    assert timeexpr.evaluate("now() + 3 days", NOW) == datetime.datetime(2026, 7, 23, 12, 30, 15, 250000)
    with pytest.raises(QueryError, match="not a time expression"):
        timeexpr.evaluate("value + 1", NOW)


# --- AnyLog's additions -------------------------------------------------------------------------


def test_casts_per_and_period_filter_come_off_the_text():
    p = prepare("SELECT count(*)::str::format(0:*>8s), MIN(a_current)::function('On' if [min_val] > 10 else 'Off') "
                "as min_val FROM bf WHERE period(minute, 1, now(), timestamp, and device = 'x') "
                "order by ts desc limit 1 per table;", NOW)
    assert p.items == ["count(*)", "min(a_current) as min_val"]
    assert p.casts == [(Cast("str"), Cast("format", "0:*>8s")),
                       (Cast("function", "'On' if [min_val] > 10 else 'Off'"),)]
    assert p.per == (1, "table")
    assert "::" not in p.sql and " per " not in p.sql and ", and" not in p.sql
    assert "'2026-07-20 12:30:15.250000'" in p.sql
    sqlglot.parse_one(p.sql, read="sqlite")  # what is left is SQL


def test_titles_are_the_projection_as_written_or_the_alias():
    plan = plan_query("select COUNT(*), Min(value)::float(3), max(value) as top from t", NOW, COLUMNS)
    assert plan.output_titles() == ["count(*)", "min(value)", "top"]
    assert plan.casts[1] == (Cast("float", "3"),)


def test_duplicate_titles_are_refused():
    with pytest.raises(QueryError, match="duplicate column title 'value'"):
        plan_query("select value, value from t", NOW, COLUMNS)


# --- increments -----------------------------------------------------------------------------------

moments = st.datetimes(datetime.datetime(2001, 1, 1), datetime.datetime(2040, 12, 31))


@given(moments, st.sampled_from(["second", "minute", "hour", "day", "week", "month", "year"]), st.integers(1, 13))
def test_increments_sql_keys_match_the_python_bucket(moment, unit, n):
    """The SQLite expressions the operators run give the documented bucket of every time."""
    col = sqlglot.exp.column("ts")
    exprs = [e.sql(dialect="sqlite") for _, e in timeseries.Buckets(unit, n, col).key_expressions()]
    db = sqlite3.connect(":memory:")
    got = db.execute(f"select {', '.join(exprs)} from (select ? as ts)", (moment.isoformat(sep=" "),)).fetchone()
    assert tuple(got) == timeseries.bucket_key(unit, n, moment)


def test_increments_buckets_are_aligned_inside_the_larger_unit():
    at = datetime.datetime(2026, 7, 20, 10, 7, 30)
    assert timeseries.bucket_key("minute", 5, at) == ("2026-07-20 10", 1)  # :05-:09
    assert timeseries.bucket_key("hour", 7, at) == ("2026-07-20", 1)       # 07-13
    assert timeseries.bucket_key("year", 1, at) == (2026,)


@pytest.mark.parametrize("span, points, unit, count", [
    (6 * 3600, 861, "second", 25), (86400, 24, "hour", 1), (86400 * 30, 1000, "minute", 43),
    (86400 * 366 * 10, 10, "year", 1), (86400 * 365 * 10, 10, "month", 12), (10, 1000, "second", 1), (86400 * 7 * 20, 10, "week", 2)])
def test_optimized_increments_choose_the_largest_unit_under_the_interval(span, points, unit, count):
    assert timeseries.choose_interval(span, points) == (unit, count)


def test_optimized_increments_read_the_where_range_in_either_argument_order():
    for call in ("increments(timestamp)", "increments(timestamp, 24)", "increments(24, timestamp)"):
        plan = plan_query(f"select {call}, max(value) from t where timestamp >= '2026-07-19T00:00:00Z' "
                          f"and timestamp <= '2026-07-20T00:00:00Z'", NOW, COLUMNS)
        expected = ("minute", 1) if call == "increments(timestamp)" else ("hour", 1)
        assert (plan.increments.unit, plan.increments.count) == expected


def test_optimized_increments_need_a_time_range():
    with pytest.raises(QueryError, match="Missing or wrong where condition in an increment query"):
        plan_query("select increments(timestamp), max(value) from t where value > 1", NOW, COLUMNS)


def test_iso_literals_are_compared_in_the_stored_form():
    plan = plan_query("select value from t where timestamp >= '2024-07-19T18:57:46.909Z'", NOW, COLUMNS)
    assert "'2024-07-19 18:57:46.909000'" in plan.remote_sql()


# --- period ------------------------------------------------------------------------------------------


def test_period_leading_query_then_window():
    plan = plan_query("select max(timestamp), avg(value) from ping_sensor where period(minute, 1, "
                      "'2019-09-29 19:34:09', timestamp, and device_name = 'APC SMART X 3000')", NOW, COLUMNS)
    assert plan.leading_sql() == ('SELECT MAX("timestamp") AS "period_end" FROM "ping_sensor" WHERE "timestamp" '
                                  "<= '2019-09-29 19:34:09' AND (\"device_name\" = 'APC SMART X 3000')")
    with pytest.raises(QueryError, match="not known yet"):
        plan.remote_sql()
    done = plan.with_period_end(timeseries.latest(["2019-09-29 19:30:00.5", None, "2019-09-29 19:31:00"]))
    assert ("\"timestamp\" > '2019-09-29 19:30:00' AND \"timestamp\" <= '2019-09-29 19:31:00' AND "
            "(\"device_name\" = 'APC SMART X 3000')") in done.remote_sql()
    assert plan.with_period_end(None) is None


def test_period_week_is_seven_days():
    plan = plan_query("select count(*) from t where period(week, 1, '2026-07-20 00:00:00', timestamp)", NOW, COLUMNS)
    assert "> '2026-07-13 00:00:00'" in plan.with_period_end("2026-07-20 00:00:00").remote_sql()


# --- refusals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    ("select group_concat(device_name) from t", "cannot be merged"),
    ("select total(value) from t", "cannot be merged"),
    ("select stddev(value) from t", "cannot be merged"),
    ("select device_name, count(*) from t", "neither in GROUP BY nor inside an aggregate"),
    ("select value, sum(value) over () from t", "window functions"),
    ("select a.value from t a join u on a.x = u.x", "one table"),
    ("select value from (select value from t)", "one table"),
    ("select value from t where value in (select value from u)", "sub-queries"),
    ("select value from t union select value from u", "one SELECT"),
    ("delete from t", "one SELECT"),
    ("select increments(minute, 5, timestamp), max(value) from t where period(hour, 1, now(), timestamp)",
     "cannot be combined"),
    ("select value from t where period(hour, 1, now(), timestamp) or value > 1", "joined by AND"),
    ("select * , value from t order by value", "needs the table's columns"),
])
def test_statements_that_cannot_be_merged_are_refused_with_the_reason(text, message):
    with pytest.raises(QueryError, match=message):
        plan_query(text, NOW, None if "needs the table" in message else COLUMNS)


def test_unmergeable_is_its_own_error_kind():
    with pytest.raises(Unmergeable):
        plan_query("select median(value) from t", NOW, COLUMNS)


def test_syntax_errors_say_sql_failure():
    with pytest.raises(QueryError, match="SQL Failure"):
        plan_query("select count(* from t", NOW, COLUMNS)


# --- translation ---------------------------------------------------------------------------------------


def test_postgres_translation_keeps_sqlite_null_order_and_bucket_keys():
    plan = plan_query("select increments(minute, 5, timestamp), max(value) from t where timestamp > now() - 1 day "
                      "limit 10", NOW, COLUMNS)
    pg = translate(plan.remote_sql(), "psql")
    assert "TO_CHAR" in pg and "STRFTIME" not in pg and "NULLS FIRST" in pg
    rows = plan_query("select value from t order by value desc limit 3", NOW, COLUMNS)
    assert "NULLS LAST" in translate(rows.remote_sql(), "psql")


# --- output ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, casts, shown", [
    (21, (Cast("str"), Cast("format", "0:*>8s")), "******21"),
    (21, (Cast("format", "0:#<8d"),), "21######"),
    (21, (Cast("str"), Cast("format", "0:*^8s")), "***21***"),
    (3.14159, (Cast("float", "3"),), 3.142),
    (1234567.891, (Cast("float", "%2"),), "1,234,567.89"),
    ("2026-07-20 10:00:00", (Cast("ljust", "22"),), "2026-07-20 10:00:00   "),
    ("2026-07-20 12:27:41.75", (Cast("timediff", "now()"),), "00:02:33.5"),
    ("abc", (Cast("replace", "b by x"),), "axc"),
    ("2026-07-20 10:00:00", (Cast("timezone", "et"),), "2026-07-20 06:00:00"),
])
def test_casts_format_the_output(value, casts, shown):
    row = {"c": value}
    for cast in casts:
        value = output.apply_cast(value, cast, row, NOW)
    assert value == shown


def test_function_cast_reads_other_columns_without_eval():
    cast = Cast("function", "'On' if [min_val] > 10 else 'Off'")
    assert output.apply_cast(12, cast, {"min_val": 12}, NOW) == "On"
    assert output.apply_cast(3, cast, {"min_val": 3}, NOW) == "Off"
    with pytest.raises(QueryError, match="not allowed"):
        output.apply_cast(1, Cast("function", "__import__('os').system('true')"), {}, NOW)


def test_unknown_cast_is_named():
    with pytest.raises(QueryError, match="'::shout' is not a cast"):
        output.apply_cast(1, Cast("shout"), {}, NOW)


def test_output_shapes_follow_anylog():
    stats = output.statistics(1, 0.2, 1)
    assert output.render("json", ["count(*)"], [[3]], stats) == (
        '{"Query":[{"count(*)":3}],\n"Statistics":[{"Count": 1,"Time":"00:00:00","Nodes": 1}]}')
    assert output.render("json", ["time_diff"], [["00:02:33.5"]], None) == '{"Query":[{"time_diff":"00:02:33.5"}]}'
    assert output.render("json:list", ["a"], [[1], [2]], None) == '[{"a":1},{"a":2}]'
    assert output.render("json:output", ["a"], [[1], [2]], stats).splitlines()[:2] == ['{"a":1}', '{"a":2}']
    assert output.render("table", ["device", "value", "seq"], [["dev-1", 1.5, 1], ["dev-2", 2.5, 2]],
                         output.statistics(2, 0, 0)) == (
        "device value seq\n------ ----- --- \ndev-1    1.5   1 \ndev-2    2.5   2 \n\n"
        '{"Statistics":[{"Count": 2,\n                "Time":"00:00:00",\n                "Nodes": 0}]}')
    assert output.render("json", ["a"], [], output.statistics(0, 0, 2)) == (
        '{"Statistics":[{"Count": 0,"Time":"00:00:00","Nodes": 2}]}')
    assert output.render("json", ["a"], [], None) == '{"reply" : "Empty data set"}'
    assert '"Target Nodes": 3,"Participating Nodes": 2' in output.stats_json(output.statistics(5, 0, 2, target=3))
