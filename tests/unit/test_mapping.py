"""JSON rows -> table rows: default mapping, inference, adapting, mapping policies, and the reader.

The property: any JSON object row either lands with its values intact, or the file fails with a
reason (an IngestError) - never a value silently changed or dropped.
"""

from __future__ import annotations

import decimal
import json
import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anylog_tw.base.ingest_errors import IngestError
from anylog_tw.base import convert
from anylog_tw.ingest import mapping, reader
from anylog_tw.ingest.mapping import default_batch, plan_columns, to_rows
from anylog_tw.ingest.mapping_policy import MappingPolicy
from anylog_tw.storage import schema

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
                    st.sampled_from(["2026-11-28T04:19:04Z", "2026-11-28 04:19:04.5", "2026-02-30T00:00:00Z", "3",
                                     "-1.5e3", "true", "0", "1700000000123"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                      max_leaves=6)
keys = st.text(alphabet="abcdeXY_-. 1", min_size=0, max_size=6)
objects = st.dictionaries(keys, values, max_size=5)


def _flat_expected(obj, prefix=None):
    """What a row should hold: nested objects flattened with `_` (independent of the code under test)."""
    out = {}
    for k, v in obj.items():
        path = f"{prefix}_{k}" if prefix is not None else k
        if isinstance(v, dict) and v:
            out.update(_flat_expected(v, path))
        else:
            out[path] = None if isinstance(v, dict) else v
    return out


def _same(stored, original, kind) -> bool:
    """A stored value is the original, losslessly, in its column's type."""
    if original is None:
        return stored is None
    if kind == schema.TEXT:
        if isinstance(original, str):
            return stored == original
        if isinstance(original, (dict, list)):
            return json.loads(stored) == original
        if isinstance(original, bool):
            return stored == ("true" if original else "false")
        if isinstance(original, float):
            return float(stored) == original
        return int(stored) == original
    if kind == schema.INTEGER:
        if isinstance(original, str):  # a number written as text, whole
            return type(stored) is int and decimal.Decimal(original.strip()) == stored
        return stored == original and type(stored) is int
    if kind == schema.FLOAT:
        if isinstance(original, str):
            return isinstance(stored, float) and float(original) == stored
        return isinstance(stored, float) and stored == original
    if kind == schema.BOOLEAN:
        if isinstance(original, bool):
            return stored is original
        return stored is (str(original).strip().lower() in ("1", "true"))
    if kind == schema.TIMESTAMP:
        if not isinstance(original, str) or schema.parse_timestamp(original) is None:  # an epoch number
            return stored == convert.epoch_to_timestamp(original)
        return stored == schema.format_timestamp(schema.parse_timestamp(original))
    return False


@settings(max_examples=300, deadline=None)
@given(st.lists(objects, min_size=1, max_size=6), st.one_of(st.none(), st.dictionaries(
    st.sampled_from(["a", "b", "c", "x"]), st.sampled_from(schema.TYPES), max_size=3)))
def test_rows_land_intact_or_the_file_fails(objs, existing):
    """Any JSON object rows, into a new table or one with existing typed columns."""
    lines = list(range(1, len(objs) + 1))
    try:
        batch = default_batch(objs, lines)
        columns, added = plan_columns(batch, existing)
        rows = to_rows(batch, columns)
    except IngestError as e:
        assert e.message and e.reason == "mapping"
        return
    for key in added:
        assert key not in (existing or {})
    for obj, row in zip(objs, rows):
        flat = {schema.column_name(k): v for k, v in _flat_expected(obj).items()}
        stored = dict(zip(columns, row))
        assert set(flat) <= set(stored)
        for col, value in stored.items():
            assert _same(value, flat.get(col), columns[col]), (col, value, flat.get(col), columns[col])


def test_nested_objects_are_flattened_with_underscore():
    batch = default_batch([{"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2]}], [1])
    columns, _ = plan_columns(batch, None)
    assert columns == {"a_b": "integer", "a_c_d": "text", "e": "text"}
    assert to_rows(batch, columns) == [(1, "x", "[1,2]")]


def test_two_attributes_for_one_column_fail_the_file():
    with pytest.raises(IngestError, match="both map to column 'temp'"):
        default_batch([{"Temp": 1, "temp": 2}], [7])
    with pytest.raises(IngestError, match="line 3"):
        default_batch([{"a": 1}, {"a": 2}, {"a_b": 1, "a": {"b": 2}}], [1, 2, 3])


def test_system_column_names_are_refused():
    with pytest.raises(IngestError, match="system column"):
        default_batch([{"row_id": 1}], [1])


def test_types_widen_over_the_file_and_existing_columns_hold():
    batch = default_batch([{"v": 1, "s": "2026-01-01T00:00:00Z"}, {"v": 2.5, "s": "later"}], [1, 2])
    columns, added = plan_columns(batch, None)
    assert columns == {"v": "float", "s": "text"}
    assert to_rows(batch, columns) == [(1.0, "2026-01-01T00:00:00Z"), (2.5, "later")]
    batch = default_batch([{"v": 1}, {"v": 1.5}], [10, 11])
    columns, added = plan_columns(batch, {"v": "integer"})
    assert added == {}
    with pytest.raises(IngestError) as e:
        to_rows(batch, columns)
    assert "line 11" in e.value.message and "'v'" in e.value.message and "1.5" in e.value.message


def test_timestamps_are_stored_in_utc():
    batch = default_batch([{"t": "2026-11-28T06:00:00+02:00"}, {"t": "2026-11-28T04:00:00.25Z"}], [1, 2])
    columns, _ = plan_columns(batch, None)
    assert to_rows(batch, columns) == [("2026-11-28 04:00:00",), ("2026-11-28 04:00:00.250000",)]
    assert to_rows(batch, columns, ) == mapping.to_rows(batch, columns)
    # PostgreSQL parses plain UTC text itself; offsets are still converted here.
    cols = mapping.to_columns(batch, columns, schema.PSQL)
    assert cols == [["2026-11-28 04:00:00", "2026-11-28 04:00:00.250000"]]
    utc_only = default_batch([{"t": "2026-11-28T04:00:00.25Z"}], [1])
    assert mapping.to_columns(utc_only, columns, schema.PSQL) == [["2026-11-28T04:00:00.25Z"]]


def test_impossible_timestamp_in_a_timestamp_column_fails_with_the_line():
    batch = default_batch([{"t": "2026-01-01T00:00:00Z"}, {"t": "2026-02-30T00:00:00Z"}], [1, 2])
    with pytest.raises(IngestError, match="line 2"):
        to_rows(batch, {"t": "timestamp"})


# --- mapping policies ---------------------------------------------------------------------------

POLICY = {"mapping": {
    "id": "rnd_val", "condition": "if [device] == 'Random-Integer-Generator01'", "dbms": "edgex", "table": "rnd_val",
    "readings": "readings",
    "schema": {"timestamp": {"bring": "[created]", "type": "timestamp", "default": "now()"},
               "value": {"bring": "[value]", "type": "decimal", "condition": "if [name] == X"},
               "label": {"bring": "[device]-[name]", "type": "string"},
               "unit": {"default": "C", "type": "char(2)"}}}}


def test_mapping_policy_readings_condition_and_defaults():
    policy = MappingPolicy(POLICY, now=lambda: "2026-01-01 00:00:00")
    assert (policy.dbms, policy.table) == ("edgex", "rnd_val")
    assert policy.types == {"timestamp": "timestamp", "value": "float", "label": "text", "unit": "text"}
    obj = {"device": "Random-Integer-Generator01", "created": "2026-11-28T04:00:00Z",
           "readings": [{"name": "X", "value": "21.5"}, {"name": "Y", "value": "3", "created": "2026-11-28T05:00:00Z"}]}
    batches = policy.batch([obj, {"device": "other", "readings": [{"name": "X"}]}], [1, 2], "f", "t")
    assert list(batches) == [("edgex", "rnd_val")]
    rows = to_rows(batches[("edgex", "rnd_val")], policy.types)
    assert rows == [("2026-11-28 04:00:00", 21.5, "Random-Integer-Generator01-X", "C"),
                    ("2026-11-28 05:00:00", None, "Random-Integer-Generator01-Y", "C")]


@pytest.mark.parametrize("bad, match", [
    ({"mapping": {"id": "m"}}, "non-empty 'schema'"),
    ({"mapping": {"id": "m", "schema": {"a": {"type": "int"}}}}, "needs 'bring' or 'default'"),
    ({"mapping": {"id": "m", "schema": {"a": {"bring": "[a]", "type": "blob9"}}}}, "unknown"),
    ({"mapping": {"id": "m", "table": "bring [t", "schema": {"a": {"bring": "[a]"}}}}, "no matching"),
    ({"mapping": {"id": "m", "schema": {"*": {"type": "*", "bring": ["a"]}}}}, "cannot be a name"),
    ({"mapping": {"id": "m", "schema": {"a": {"bring": "[a]", "script": "x"}}}}, "script"),
    ({"mapping": {"id": "m", "schema": {"a": {"bring": "[a]", "condition": "if a = b"}}}}, "condition"),
])
def test_bad_mapping_policies_are_refused(bad, match):
    with pytest.raises(IngestError, match=match):
        MappingPolicy(bad)


def test_policy_number_text_that_is_not_a_number_fails_with_line():
    policy = MappingPolicy({"mapping": {"id": "m", "schema": {"v": {"bring": "[v]", "type": "int"}}}})
    with pytest.raises(IngestError, match="line 4: column 'v' \\(integer\\) cannot hold 'abc'"):
        to_rows(policy.batch([{"v": "abc"}], [4], "d", "t")[("d", "t")], policy.types)


# --- the reader ---------------------------------------------------------------------------------


@given(st.lists(st.dictionaries(st.text(max_size=5), scalars, max_size=4), max_size=20), st.booleans(),
       st.booleans())
def test_reader_gives_every_object_with_its_line(objs, crlf, blank):
    sep = b"\r\n" if crlf else b"\n"
    lines = []
    for o in objs:
        lines.append(json.dumps(o).encode())
        if blank:
            lines.append(b"   ")
    data = sep.join(lines) + sep
    got, numbers = reader.parse_objects(data, 1)
    assert got == objs
    step = 2 if blank else 1
    assert numbers == [1 + i * step for i in range(len(objs))]


def test_reader_names_the_bad_line():
    with pytest.raises(IngestError, match="line 3: not JSON"):
        reader.parse_objects(b'{"a":1}\n{"a":2}\n{"a":\n{"a":4}\n')
    with pytest.raises(IngestError, match="line 2: a list"):
        reader.parse_objects(b'{"a":1}\n[1,2]\n')
    objs, lines = reader.parse_objects(b' [{"a":1},{"b":2}]')
    assert objs == [{"a": 1}, {"b": 2}] and lines == [1, 2]
    with pytest.raises(IngestError, match="array item 2"):
        reader.parse_objects(b'[{"a":1}, 3]')


def test_chunks_split_on_whole_lines(tmp_path):
    path = tmp_path / "f.json"
    rows = [{"i": i, "pad": "x" * (i % 7)} for i in range(500)]
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows))  # no newline at the end
    seen, firsts = [], []
    for first, data in reader.iter_chunks(str(path), False, size=100):
        objs, lines = reader.parse_objects(data, first)
        assert lines[0] == first
        seen += objs
        firsts.append(first)
    assert seen == rows and len(firsts) > 10


def test_nan_values_never_reach_a_float_column():
    assert mapping.infer_column([1.0, math.inf]) == "text"
