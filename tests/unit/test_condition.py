"""ingest/condition.py: the conditions of mapping policies."""

from __future__ import annotations

import pytest

from anylog_tw.ingest.condition import ConditionError, compile_condition


@pytest.mark.parametrize("text,row,expected", [
    ("if [device] == 'Random-Integer-Generator01'", {"device": "Random-Integer-Generator01"}, True),
    ("if [device] == 'Random-Integer-Generator01'", {"device": "other"}, False),
    ("if [name] == X", {"name": "X"}, True),
    ("if [v] > 3", {"v": "4"}, True),  # numbers compare as numbers, text or not
    ("if [v] > 3", {"v": "10"}, True),
    ("if [v] >= 10", {"v": 9}, False),
    ("if [v] != 1", {}, True),  # a missing key equals nothing
    ("if [v] == 1", {}, False),
    ("if [a] == x or [b] == y and [c] == z", {"a": "x"}, True),  # and binds tighter than or
    ("if ([a] == x or [b] == y) and [c] == z", {"a": "x"}, False),
    ("if [meta][station id] == 's 7'", {"meta": {"station id": "s 7"}}, True),
    ("if ['PM 2.5'] < [limit]", {"PM 2.5": 3, "limit": 4}, True),
    ("[a] = 1", {"a": 1}, True),
])
def test_conditions(text, row, expected):
    assert compile_condition(text)(row) is expected


@pytest.mark.parametrize("text,fragment", [
    ("if", "empty"), ("if a == b", "should be a key"), ("if [a] ==", "ends too early"), ("if [a] b", "expected =="),
    ("if ([a] == 1", "not closed"), ("if [a == 1", "no matching"), ("if [a] == 1 junk", "unexpected"),
])
def test_bad_conditions_are_clear_errors(text, fragment):
    with pytest.raises(ConditionError, match=fragment):
        compile_condition(text)
