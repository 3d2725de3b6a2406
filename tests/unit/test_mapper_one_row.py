"""ingest/mapper.py's one-row path (an object that can only give one row, every value present and
convertible) against the full path: the same rows, types included, and the same errors."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anylog_tw.base.errors import AnyLogError
from anylog_tw.ingest.handoff import plain
from anylog_tw.ingest.mapper import compile_mapper
from anylog_tw.ingest.mapping_rules import rules_from_policy, rules_from_topic

NOW = "2026-12-01 08:00:00"
RULES = {
    "case1": [("dbms", "bring [metadata][company]"), ("table", "bring [metadata][machine_name] _ [metadata][serial]"),
              ("column.timestamp.timestamp", "bring [ts]"), ("column.value", '(type=int and value="bring [value]")')],
    "literals": [("dbms", "lit_db"), ("table", "Lit Table"), ("column.t.timestamp", "now"),
                 ("column.f.float", "bring [f]"), ("column.b.bool", "bring [b]"), ("column.s.str", "bring [s]"),
                 ("column.k.int", "7")],
    "optional": [("dbms", "d"), ("table", "bring [name]"),
                 ("column.o", '(type=float and value="bring [f]" and optional=true)'),
                 ("column.v", '(type=str and value="bring [value]" and default=none)')],
    "lists": [("dbms", "d"), ("table", "t"), ("column.v.float", "bring [readings][][value]")],
}
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(), st.text(max_size=8),
                    st.sampled_from(["1607959427550", "2026-01-31T10:00:00Z", "12.5", "true", "no", "", "a b", "1e3"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) |
                      st.dictionaries(st.sampled_from(["value", "company", "machine_name", "serial", "name"]),
                                      inner, max_size=3), max_leaves=5)
objects = st.one_of(
    st.dictionaries(st.sampled_from(["ts", "value", "f", "b", "s", "name", "metadata", "readings"]), values,
                    max_size=6),
    st.lists(values, max_size=2), scalars)


def strict(v):
    if type(v) is dict:
        return ("dict", [(k, strict(x)) for k, x in v.items()])
    if type(v) in (list, tuple):
        return (type(v).__name__, [strict(x) for x in v])
    if type(v) is float:
        return ("float", "nan" if math.isnan(v) else repr(v))
    return (type(v).__name__, v)


def outcome(fn):
    try:
        return strict(fn())
    except AnyLogError as e:
        return ("error", type(e).__name__, e.message)


@settings(max_examples=1000, deadline=None)
@given(which=st.sampled_from(sorted(RULES)), obj=objects)
def test_one_row_path_gives_what_the_full_path_gives(which, obj):
    mapper = compile_mapper(rules_from_topic(RULES[which]), now=lambda: NOW)
    assert outcome(lambda: mapper(obj)) == outcome(lambda: mapper._rows(obj, None, NOW, None, None))
    try:
        rows = [row for _, _, row in mapper(obj)]
    except AnyLogError:
        return
    # The streamer hands these dicts to the operator unchecked (handoff.py): they must read back the same.
    assert plain(rows)
    assert [orjson.loads(orjson.dumps(r)) for r in rows] == rows


def test_the_one_row_path_is_taken_for_plain_rules_only():
    assert compile_mapper(rules_from_topic(RULES["case1"]))._plan is not None
    assert compile_mapper(rules_from_topic(RULES["optional"]))._plan is not None
    policy = {"mapping": {"id": "p", "dbms": "d", "table": "t",
                          "schema": {"j": {"type": "string", "bring": "[v]", "apply": "json_dump"}}}}
    assert compile_mapper(rules_from_policy(policy))._plan is None
    assert compile_mapper(rules_from_policy({"mapping": {**policy["mapping"], "readings": "r",
                                                         "schema": {"v": {"type": "int", "bring": "[v]"}}}}))._plan is None


def test_case1_message_takes_the_one_row_path(monkeypatch):
    mapper = compile_mapper(rules_from_topic(RULES["case1"]), now=lambda: NOW)
    monkeypatch.setattr(mapper, "_rows", lambda *a: pytest.fail("the full path was taken"))
    msg = {"value": 210, "ts": 1607959427550, "metadata": {"company": "Anylog", "machine_name": "cutter 23",
                                                           "serial": "1234567890"}}
    assert mapper(msg) == [("anylog", "cutter_23_1234567890", {"timestamp": "2020-12-14 15:23:47.550000",
                                                               "value": 210})]


names = st.one_of(st.sampled_from(["cutter 23", "cutter-23", "Cutter 23", "", " ", "a.b", "1234567890", "ä"]),
                  st.text(max_size=6), st.integers(0, 3), st.none(), st.booleans(), st.lists(st.text(max_size=2), max_size=2))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(names, names, st.sampled_from(["machine_name", "Machine_Name"])), min_size=1, max_size=12),
       st.sampled_from(["bring [metadata][machine_name] _ [metadata][serial]",
                        "bring [metadata][machine_name] [metadata][serial]", "bring x [metadata][serial] y"]))
def test_remembered_table_names_are_the_full_paths_for_every_message(pairs, table):
    """One mapper over many messages (the cache of joined names is per mapper): each message's
    row or error is what the full path gives for it, whatever came before."""
    mapper = compile_mapper(rules_from_topic([("dbms", "d"), ("table", table), ("column.v.int", "bring [v]")]),
                            now=lambda: NOW)
    assert mapper._table_joined is not None
    for machine, serial, key in pairs * 2:
        obj = {"v": 1, "metadata": {key: machine, "serial": serial}}
        assert outcome(lambda: mapper(obj)) == outcome(lambda: mapper._rows(obj, None, NOW, None, None))


def test_case1_table_name_is_remembered_per_pair_of_texts(monkeypatch):
    mapper = compile_mapper(rules_from_topic(RULES["case1"]), now=lambda: NOW)
    msg = {"value": 1, "ts": 1607959427550, "metadata": {"company": "a", "machine_name": "m 1", "serial": "s"}}
    assert mapper(msg)[0][1] == "m_1_s"
    monkeypatch.setattr(mapper, "_table", lambda obj: pytest.fail("joined again"))
    assert mapper(msg)[0][1] == "m_1_s"
