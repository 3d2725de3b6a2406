"""The rewrite and merge against one property: random rows split at random over N operators
(each an in-memory SQLite database) give, once merged, the answer of the same query over all the
rows in one table.  Each test draws the statement and writes the one-table reference query by
hand (AnyLog's `range`, `increments`, `per` and `period` spelled in plain SQLite)."""

from __future__ import annotations

import datetime
import sqlite3
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from anylog_tw.query import merge
from anylog_tw.query.plan import translate
from anylog_tw.query.rewrite import plan_query

NOW = datetime.datetime(2026, 7, 20, 12, 0, 0)
COLUMNS = {"ts": "timestamp", "dev": "text", "v": "integer", "f": "float"}
START = datetime.datetime(2026, 7, 19, 22, 0, 0)

timestamps = st.integers(0, 4 * 3600).map(lambda s: (START + datetime.timedelta(seconds=s * 7)).isoformat(sep=" "))
rows_st = st.lists(st.tuples(timestamps, st.sampled_from(["a", "b", "c", "dd", None]),
                             st.one_of(st.none(), st.integers(-6, 6)),
                             st.one_of(st.none(), st.integers(-8, 8).map(lambda x: x / 2))),
                   max_size=40)
WHERES = ["", " where v > 0", " where dev = 'a' or f < 0", " where ts >= '2026-07-20 00:00:00'",
          " where v is null", " where ts < NOW() - 1 day"]


def table(rows) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (ts TIMESTAMP, dev TEXT, v INTEGER, f REAL)")
    db.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", rows)
    return db


def split(rows, owners):
    parts = [[] for _ in range(max(owners) + 1 if owners else 1)]
    for row, owner in zip(rows, owners):
        parts[owner].append(row)
    return [table(p) for p in parts]


def run_network(text, rows, owners, extend_values=None):
    """The query as a query node runs it: each part answers the operators' query, then merge."""
    plan = plan_query(text, NOW, COLUMNS)
    parts = split(rows, owners)
    if plan.period is not None:
        ends = [db.execute(translate(plan.leading_sql("t"), "sqlite")).fetchone()[0] for db in parts]
        from anylog_tw.query.timeseries import latest

        plan = plan.with_period_end(latest(ends))
        if plan is None:
            return []
    replies = [((), db.execute(translate(plan.remote_sql("t"), "sqlite")).fetchall()) for db in parts]
    if plan.pass_through:
        return list(merge.pass_through(plan, replies))
    return merge.merge(plan, replies)[1]


def reference(sql, rows):
    return table(rows).execute(sql).fetchall()


def norm(rows):
    return [tuple(float(f"{v:.9g}") if isinstance(v, float) else v for v in r) for r in rows]


def same(got, want, ordered):
    got, want = norm(got), norm(want)
    if ordered:
        assert got == want
    else:
        assert Counter(got) == Counter(want)


owners_for = st.integers(1, 4).flatmap(lambda n: st.lists(st.integers(0, n - 1), min_size=40, max_size=40))

AGGREGATES = [("count(*)", "count(*)"), ("count(v)", "count(v)"), ("count(distinct dev)", "count(distinct dev)"),
              ("sum(v)", "sum(v)"), ("avg(v)", "avg(v)"), ("min(f)", "min(f)"), ("max(ts)", "max(ts)"),
              ("range(v)", "(max(v) - min(v))"), ("avg(f)", "avg(f)"), ("sum(distinct v)", "sum(distinct v)"),
              ("avg(distinct f)", "avg(distinct f)"), ("min(dev)", "min(dev)"), ("sum(f) + count(*)", "sum(f) + count(*)"),
              ("max(v) - min(f)", "max(v) - min(f)"), ("count(distinct f)", "count(distinct f)")]


@given(rows_st, owners_for, st.lists(st.sampled_from(AGGREGATES), min_size=1, max_size=4, unique=True),
       st.sampled_from(WHERES))
def test_global_aggregates_merge_to_the_one_table_answer(rows, owners, aggs, where):
    text = f"select {', '.join(a for a, _ in aggs)} from t{where}"
    ref = f"select {', '.join(r for _, r in aggs)} from t{where.replace('NOW() - 1 day', repr('2026-07-19 12:00:00'))}"
    same(run_network(text, rows, owners), reference(ref, rows), ordered=True)


KEYS = [["dev"], ["dev", "v"], ["v"], ["f"], ["upper(dev)"]]


@given(rows_st, owners_for, st.sampled_from(KEYS), st.lists(st.sampled_from(AGGREGATES), min_size=1, max_size=3,
                                                             unique=True),
       st.sampled_from(WHERES[:4]), st.booleans(), st.sampled_from([None, "keys", "agg"]),
       st.sampled_from([None, 1, 2, 5]), st.booleans())
def test_group_by_merges_to_the_one_table_answer(rows, owners, keys, aggs, where, having, order, limit, desc):
    proj = ", ".join(keys + [a for a, _ in aggs])
    ref_proj = ", ".join(keys + [r for _, r in aggs])
    tail = f" group by {', '.join(keys)}"
    if having:
        tail += " having count(*) > 1"
    direction = " desc" if desc else ""
    if order == "keys":
        tail += " order by " + ", ".join(k + direction for k in keys)
    elif order == "agg":  # the first aggregate, then the keys: a total order, so LIMIT is exact
        tail += f" order by {len(keys) + 1}{direction}, " + ", ".join(keys)
    if limit is not None and order is not None:
        tail += f" limit {limit}"
    got = run_network(f"select {proj} from t{where}{tail}", rows, owners)
    same(got, reference(f"select {ref_proj} from t{where}{tail}", rows), ordered=order is not None)


ROW_COLUMNS = ["dev", "v", "ts", "f", "v * 2 as double_v", "coalesce(dev, 'none') as d2"]


@given(rows_st, owners_for, st.lists(st.sampled_from(ROW_COLUMNS), min_size=1, max_size=4, unique=True),
       st.sampled_from(WHERES[:5]), st.booleans(), st.sampled_from([None, 0, 1, 3, 10]), st.integers(0, 2),
       st.booleans())
def test_row_queries_merge_to_the_one_table_answer(rows, owners, cols, where, distinct, limit, offset, desc):
    names = [c.split(" as ")[-1] for c in cols]
    order = " order by " + ", ".join(n + (" desc" if desc else "") for n in names)
    tail = order + (f" limit {limit}" if limit is not None else "") + (
        f" offset {offset}" if limit is not None and offset else "")
    text = f"select {'distinct ' if distinct else ''}{', '.join(cols)} from t{where}{tail}"
    same(run_network(text, rows, owners), reference(text, rows), ordered=True)


@given(rows_st, owners_for, st.sampled_from(WHERES[:4]), st.integers(0, 50))
def test_pass_through_returns_rows_of_the_table_up_to_the_limit(rows, owners, where, limit):
    text = f"select dev, v, ts from t{where} limit {limit}"
    plan = plan_query(text, NOW, COLUMNS)
    assert plan.pass_through
    got = norm(run_network(text, rows, owners))
    everything = norm(reference(f"select dev, v, ts from t{where}", rows))
    assert len(got) == min(limit, len(everything))
    assert not Counter(got) - Counter(everything)


UNITS = {"minute": ("%Y-%m-%d %H", "%M"), "hour": ("%Y-%m-%d", "%H"), "second": ("%Y-%m-%d %H:%M", "%S"),
         "day": ("%Y-%m", "%d")}


@given(rows_st, owners_for, st.sampled_from(sorted(UNITS)), st.sampled_from([1, 2, 5, 7]),
       st.sampled_from(WHERES[:4]), st.sampled_from([None, 3]))
def test_increments_merge_to_the_one_table_buckets(rows, owners, unit, n, where, limit):
    trunc, part = UNITS[unit]
    text = (f"select increments({unit}, {n}, ts), min(ts), max(v), avg(f), count(*) from t{where}"
            + (f" limit {limit}" if limit else ""))
    ref = (f"select min(ts), max(v), avg(f), count(*) from t{where} group by strftime('{trunc}', ts), "
           f"cast(strftime('{part}', ts) as integer) / {n} order by strftime('{trunc}', ts), "
           f"cast(strftime('{part}', ts) as integer) / {n}" + (f" limit {limit}" if limit else ""))
    same(run_network(text, rows, owners), reference(ref, rows), ordered=True)


@given(rows_st, owners_for, st.sampled_from([1, 2]), st.booleans())
def test_limit_per_column_keeps_the_first_rows_of_each_value(rows, owners, n, desc):
    d = " desc" if desc else ""
    text = f"select dev, ts, v from t order by ts{d}, v{d}, dev limit {n} per dev"
    ref = (f"select dev, ts, v from (select dev, ts, v, row_number() over (partition by dev order by ts{d}, v{d}, dev) "
           f"as rn from t) where rn <= {n} order by ts{d}, v{d}, dev")
    same(run_network(text, rows, owners), reference(ref, rows), ordered=True)


@given(rows_st, owners_for, st.sampled_from(["minute", "hour", "day"]), st.integers(1, 3),
       st.sampled_from(["2026-07-20 00:30:00", "2026-07-19 21:00:00", "2026-07-21 00:00:00"]), st.booleans())
def test_period_is_the_last_window_of_existing_data(rows, owners, unit, n, at, filtered):
    flt = ", and dev = 'a'" if filtered else ""
    text = f"select count(*), min(ts), max(ts), sum(v) from t where period({unit}, {n}, '{at}', ts{flt})"
    cond = " and dev = 'a'" if filtered else ""
    end = reference(f"select max(ts) from t where ts <= '{at}'{cond}", rows)[0][0]
    got = run_network(text, rows, owners)
    if end is None:
        assert got == []
        return
    seconds = {"minute": 60, "hour": 3600, "day": 86400}[unit] * n
    start = (datetime.datetime.fromisoformat(end) - datetime.timedelta(seconds=seconds)).isoformat(sep=" ")
    ref = f"select count(*), min(ts), max(ts), sum(v) from t where ts > '{start}' and ts <= '{end}'{cond}"
    same(got, reference(ref, rows), ordered=True)


@settings(max_examples=30)
@given(rows_st, owners_for, st.lists(st.sampled_from([a for a in AGGREGATES if "distinct" not in a[0]]), min_size=1, max_size=3,
                                           unique=True))
def test_extend_groups_by_each_operator(rows, owners, aggs):
    """With extend, an aggregate gives one row per operator: each part's own answer."""
    from anylog_tw.query.plan import Extend

    ext = (Extend("@", "ip", "ip"),)
    text = f"select {', '.join(a for a, _ in aggs)} from t"
    plan = plan_query(text, NOW, COLUMNS, extend=ext)
    parts = split(rows, owners)
    replies = [((f"10.0.0.{i}",), db.execute(plan.remote_sql("t")).fetchall()) for i, db in enumerate(parts)]
    got = merge.merge(plan, replies)[1]
    ref_sql = f"select {', '.join(r for _, r in aggs)} from t"
    want = [(f"10.0.0.{i}",) + tuple(db.execute(ref_sql).fetchone()) for i, db in enumerate(parts)]
    same(got, want, ordered=False)


def test_replies_bigger_than_one_insert_block_merge_whole():
    """The merge table takes rows in blocks of up to 1,024: 2,500 rows from one reply and 1,023
    from another give the one-table answer (no row lost or doubled at a block's edge)."""
    rows = [(START.isoformat(sep=" "), "abcd"[i % 4], i, i / 2) for i in range(3523)]
    sql = "select dev, count(*), sum(v), max(f) from t group by dev"
    got = run_network(sql, rows, [0] * 2500 + [1] * 1023)
    same(got, reference(sql, rows), ordered=False)
