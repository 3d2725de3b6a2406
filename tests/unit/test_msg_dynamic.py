"""Dynamic topics' naming, as pure functions: AnyLog's table precedence and where plain values go."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anylog_tw.base.grammar import tokenize
from anylog_tw.msg.dynamic import segments, table_name, value_place
from anylog_tw.msg.mapping import MappingError
from anylog_tw.msg.options import read_topic


def topic(text: str):
    return read_topic(list(tokenize(f"({text})")), 0, lambda s: s)


@pytest.mark.parametrize("options, table", [
    ("and table_name_as_topic = true", "plant_cx1_motor1"),
    ("and table = some_table", "some_table"),
    ("and table_prefix = prefix1", "prefix1_motor1"),
    ("", "motor1"),
    ("and table = my_new_table and table_prefix = my_prefix", "my_new_table"),
    ("and table_name_as_topic = true and table = t and table_prefix = p", "plant_cx1_motor1"),
])
def test_table_precedence_of_the_docs(options, table):
    spec = topic(f"name = \"Plant/#\" and dbms = mydb and dynamic = true {options}")
    assert table_name(segments("Plant/CX1/Motor1"), spec) == table


def test_case_only_differences_collapse_and_values_take_the_last_segment_as_column():
    spec = topic("name = \"C/#\" and dbms = mydb and dynamic = true and table_name_as_topic = true")
    assert table_name(segments("C/data"), spec) == table_name(segments("c/data"), spec) == "c_data"
    assert value_place(segments("C/Line 1/Temperature"), spec) == ("c_line_1", "temperature")
    assert value_place(segments("temp"), spec) == ("temp", "value")


def test_names_that_cannot_be_tables_are_mapping_errors():
    spec = topic("name = \"#\" and dbms = mydb and dynamic = true")
    with pytest.raises(MappingError, match="cannot be a name"):
        table_name(segments("a/x(y)"), spec)
    with pytest.raises(MappingError):
        value_place(segments("a/b/9lives"), spec)


@given(st.lists(st.text(alphabet="abcXYZ_ -09", min_size=1, max_size=8), min_size=1, max_size=5))
def test_a_table_name_is_always_a_valid_name_or_an_error(parts):
    spec = topic("name = \"#\" and dbms = mydb and dynamic = true and table_name_as_topic = true")
    try:
        name = table_name([p for p in parts if p.strip()] or ["x"], spec)
    except MappingError:
        return
    assert name == name.lower() and " " not in name and "-" not in name and len(name) <= 63


def test_kept_values_are_bounded_per_table_and_in_tables(monkeypatch):
    from anylog_tw.msg import uns_streamer

    monkeypatch.setattr(uns_streamer, "MAX_TABLES", 3)
    monkeypatch.setattr(uns_streamer, "MAX_COLUMNS", 2)
    values = uns_streamer.UnsValues(node=None)
    assert values.put("d", "t1", "a", 1) is None and values.put("d", "t1", "b", 2) is None
    assert "2 value columns" in values.put("d", "t1", "c", 3)
    assert values.put("d", "t1", "a", 5) is None  # a known column is always updated
    assert values.put("d", "t2", "a", 1) is None and values.put("d", "t3", "a", 1) is None
    assert "3 tables" in values.put("d", "t4", "a", 1)
    assert "timestamp" in values.put("d", "t1", "timestamp", 1)
    rows = values.take_rows(1_700_000_000.0)
    assert [(t, r["a"]) for _, t, r in rows] == [("t1", 5), ("t2", 1), ("t3", 1)]
    assert rows[0][2]["timestamp"].startswith("2023-11-14") and values.take_rows(1.0) == []
