"""The Python merge of global aggregates (query/fastmerge.py) against the SQLite merge it stands in
for: whenever the fast path answers, its answer is SQLite's, value and type; and it does answer
the plain cases (counts, integer sums, min/max of one kind) it exists for."""

from __future__ import annotations

import datetime
import math

from hypothesis import given
from hypothesis import strategies as st

from anylog_tw.query import fastmerge, merge
from anylog_tw.query.rewrite import plan_query

NOW = datetime.datetime(2026, 7, 20, 12, 0, 0)
COLUMNS = {"ts": "timestamp", "dev": "text", "v": "integer", "f": "float"}

AGGREGATES = ["count(*)", "count(v)", "sum(v)", "min(v)", "max(v)", "min(f)", "max(f)", "min(dev)", "max(ts)",
              "range(v)", "range(f)", "sum(f)", "avg(v)", "count(distinct dev)", "max(v) - min(f)", "sum(v) + 1"]

# what operators may send back for a partial column: every kind, the awkward ones included
values = st.one_of(st.none(), st.integers(-10, 10), st.integers(-(2**63), 2**63 - 1),
                   st.sampled_from([2**63, -(2**63) - 1, 2**62]), st.floats(allow_nan=True, width=64),
                   st.sampled_from([1.0, -0.0, 0.0, 2.5]), st.text(max_size=3), st.booleans())


def types(value) -> tuple:
    return tuple((type(v), v if not (isinstance(v, float) and math.isnan(v)) else "nan") for v in value)


@given(st.lists(st.sampled_from(AGGREGATES), min_size=1, max_size=4, unique=True), st.data())
def test_fast_merge_answers_as_sqlite_or_declines(aggs, data):
    plan = plan_query(f"select {', '.join(aggs)} from t", NOW, COLUMNS)
    width = len(plan.remote_columns)
    replies = data.draw(st.lists(st.tuples(st.just(()), st.lists(st.lists(values, min_size=width, max_size=width),
                                                                  max_size=3)), max_size=4))
    fast = fastmerge.merge(plan, replies)
    if fast is None:
        return
    want = merge.merge(plan, replies)
    assert fast[0] == want[0]
    assert [types(r) for r in fast[1]] == [types(r) for r in want[1]]


ints = st.one_of(st.none(), st.integers(-1000, 1000))


@given(st.lists(st.tuples(ints, ints, st.one_of(st.none(), st.floats(-5, 5)), st.one_of(st.none(), st.text(max_size=2))),
                max_size=6), st.integers(1, 4))
def test_fast_merge_takes_the_plain_cases(rows, operators):
    plan = plan_query("select count(*), sum(v), min(f), max(dev), range(v) from t", NOW, COLUMNS)
    # the operators' query's columns: count_all, sum(v), min(f), max(dev), range min(v), range max(v)
    replies = [((), [(len(rows), *r[:1], r[2], r[3], r[1], r[1])]) for r in rows[:operators]]
    fast = fastmerge.merge(plan, replies)
    assert fast is not None
    want = merge.merge(plan, replies)
    assert fast[0] == want[0] and [types(r) for r in fast[1]] == [types(r) for r in want[1]]


def test_fast_merge_declines_what_sqlite_must_do():
    for text in ("select dev, count(*) from t group by dev", "select count(distinct dev) from t",
                 "select count(*) from t having count(*) > 2", "select v from t order by v"):
        assert fastmerge.compile_plan(plan_query(text, NOW, COLUMNS)) is None
    plan = plan_query("select sum(f) from t", NOW, COLUMNS)
    assert fastmerge.merge(plan, [((), [(0.1,)]), ((), [(0.2,)])]) is None   # float sums: SQLite's order
    plan = plan_query("select count(*) from t", NOW, COLUMNS)
    assert fastmerge.merge(plan, [((), [("3",)])]) is None   # INTEGER affinity would convert it
    assert fastmerge.merge(plan, [((), [(2**62,)]), ((), [(2**62,)])]) is None   # SQLite: integer overflow
    assert fastmerge.merge(plan, []) == (["count(*)"], [(0,)])
    assert fastmerge.merge(plan, [((), [(3,)]), ((), [(4,)])]) == (["count(*)"], [(7,)])
