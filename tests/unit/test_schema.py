"""schema.py and sqlfmt.py: names, inference, widening, lossless adaptation, DDL, placeholders, COPY text."""

from __future__ import annotations

import datetime
import math
import re
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anylog_tw.base.errors import StorageError
from anylog_tw.base.names import is_name
from anylog_tw.storage import schema, sqlfmt
from anylog_tw.storage.schema import BOOLEAN, FLOAT, INTEGER, TEXT, TIMESTAMP

names = st.from_regex(r"[a-z_][a-z0-9_]{0,30}", fullmatch=True)
json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=20)
                | st.datetimes(min_value=datetime.datetime(1900, 1, 1)).map(lambda d: d.isoformat(sep="T")))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)


# --- names ------------------------------------------------------------------------------------


@given(names)
def test_valid_names_are_accepted_and_lower_cased(name):
    assert schema.check_name(name.upper()) == name
    assert schema.quote(name) == f'"{name}"'


@given(st.text(max_size=80))
def test_any_name_is_either_safe_or_refused(text):
    """Whatever the text, a quoted name is a plain identifier: no quote, space or semicolon gets through."""
    try:
        quoted = schema.quote(text)
    except StorageError as e:
        assert "is not allowed" in e.message
        return
    assert re.fullmatch(r'"[a-z_][a-z0-9_]{0,62}"', quoted)


@pytest.mark.parametrize("bad", ['x"; drop table t; --', "1abc", "", "a b", "tëst", "a" * 64, "t-1"])
def test_hostile_or_malformed_names_are_refused(bad):
    with pytest.raises(StorageError, match="not allowed"):
        schema.check_name(bad, "table name")


@given(st.text(min_size=1, max_size=40))
def test_column_name_maps_keys_to_valid_names_or_refuses(key):
    try:
        name = schema.column_name(key)
    except StorageError:
        return
    assert is_name(name)
    assert schema.column_name(name) == name  # idempotent


# --- types ------------------------------------------------------------------------------------

kinds = st.sampled_from([None, *schema.TYPES])


@given(kinds, kinds)
def test_widen_is_commutative_and_idempotent(a, b):
    assert schema.widen(a, b) == schema.widen(b, a)
    assert schema.widen(a, a) == a
    assert schema.widen(None, a) == a


@given(kinds, kinds, kinds)
def test_widen_is_associative(a, b, c):
    assert schema.widen(schema.widen(a, b), c) == schema.widen(a, schema.widen(b, c))


@given(st.lists(st.dictionaries(st.sampled_from(["a", "B", "c_1", "Temp-C"]), json_values, max_size=4), max_size=8))
def test_every_value_fits_its_inferred_column_losslessly(rows):
    """The core promise to the operator: inference never picks a type that loses a value."""
    types = schema.infer_columns(rows)
    for row in rows:
        for key, value in row.items():
            kind = types[schema.column_name(key)] or TEXT
            stored = schema.adapt(value, kind)
            if value is None:
                assert stored is None
            elif kind == INTEGER:
                assert stored == value and not isinstance(value, bool)
            elif kind == FLOAT:
                assert stored == value
            elif kind == BOOLEAN:
                assert stored is value
            elif kind == TIMESTAMP:
                assert schema.parse_timestamp(stored) == schema.parse_timestamp(value)
            else:
                assert isinstance(stored, str)


@pytest.mark.parametrize("values,kind", [
    ([1, 2], INTEGER), ([1, 2.5], FLOAT), ([True, False], BOOLEAN), ([True, 1], TEXT),
    (["2026-11-28 10:00:00", "2026-11-28T10:00:01.5Z"], TIMESTAMP), (["2026-11-28", "x"], TEXT),
    ([None, 3], INTEGER), ([None], None), ([2**70], TEXT), ([1.0, "a"], TEXT), ([{"a": 1}], TEXT),
])
def test_inference_examples(values, kind):
    assert schema.infer_columns([{"v": v} for v in values]) == {"v": kind}


@pytest.mark.parametrize("value,kind", [
    (1.5, INTEGER), (True, INTEGER), ("3.5", INTEGER), ("x", FLOAT), (2, BOOLEAN), ("yes", BOOLEAN),
    ("2026-13-01", TIMESTAMP), (2**64, INTEGER), (float("nan"), FLOAT), (2**60 + 1, FLOAT), ("1e999", FLOAT),
    ("12 apples", INTEGER), (True, TIMESTAMP), ([1], INTEGER),
])
def test_adapt_refuses_what_would_lose_information(value, kind):
    with pytest.raises(StorageError):
        schema.adapt(value, kind)


@pytest.mark.parametrize("text,expected", [
    ("2026-11-28", "2026-11-28 00:00:00"),
    ("2026-11-28T10:00:00Z", "2026-11-28 10:00:00"),
    ("2026-11-28 12:00:00+02:00", "2026-11-28 10:00:00"),
    ("2026-11-28T10:00:00.123456789", "2026-11-28 10:00:00.123456"),
    ("2026-11-28 10:00", "2026-11-28 10:00:00"),
])
def test_timestamps_are_normalised_to_utc_text(text, expected):
    assert schema.adapt(text, TIMESTAMP) == expected


@given(st.datetimes(min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31)))
def test_timestamp_text_round_trips_and_sorts_like_time(value):
    text = schema.format_timestamp(value)
    assert schema.parse_timestamp(text) == value


_FOUR_DIGIT_YEARS = st.datetimes(min_value=datetime.datetime(1000, 1, 1))


@given(_FOUR_DIGIT_YEARS, _FOUR_DIGIT_YEARS)
def test_timestamp_text_order_is_time_order(a, b):
    ta, tb = schema.format_timestamp(a), schema.format_timestamp(b)
    assert (ta < tb) == (a < b)


# --- DDL --------------------------------------------------------------------------------------


@settings(max_examples=40)
@given(st.dictionaries(names.filter(lambda n: n not in schema.SYSTEM_COLUMN_NAMES), kinds, min_size=1, max_size=6))
def test_sqlite_ddl_creates_the_layout(columns):
    conn = sqlite3.connect(":memory:")
    for sql in schema.create_table_sql(schema.SQLITE, "t", columns):
        conn.execute(sql)
    got = [r[1] for r in conn.execute('PRAGMA table_info("t")')]
    assert got == [*schema.SYSTEM_COLUMN_NAMES, *columns]
    indexed = {r[1] for r in conn.execute("PRAGMA index_list(\"t\")")}
    times = [c for c, k in columns.items() if k == TIMESTAMP]
    assert indexed == {f"t_{c}_idx" for c in [*times, "tsd_id"]}
    conn.execute('INSERT INTO "t" DEFAULT VALUES')
    row_id, stamp = conn.execute('SELECT row_id, insert_timestamp FROM "t"').fetchone()
    assert row_id == 1 and schema.parse_timestamp(stamp) is not None


def test_postgres_layout_uses_brin_and_no_key_btree():
    sql = schema.create_table_sql(schema.PSQL, "ping", {"ts": TIMESTAMP, "v": FLOAT})
    assert "PRIMARY KEY" not in sql[0] and "GENERATED ALWAYS AS IDENTITY" in sql[0]
    assert sorted(s.split(" USING ")[1] for s in sql[1:]) == ['brin ("insert_timestamp")', 'brin ("ts")',
                                                               'brin ("tsd_id")']


def test_system_columns_cannot_be_data_columns():
    with pytest.raises(StorageError, match="system column"):
        schema.create_table_sql(schema.SQLITE, "t", {"row_id": INTEGER})


def test_tsd_and_ledger_tables_have_the_spec_columns():
    conn = sqlite3.connect(":memory:")
    for sql in schema.tsd_table_sql(schema.SQLITE) + schema.tsd_table_sql(schema.SQLITE, "tsd_12") \
            + schema.ledger_table_sql(schema.SQLITE):
        conn.execute(sql)
    cols = [r[1] for r in conn.execute('PRAGMA table_info("tsd_info")')]
    assert cols == ["file_id", "dbms_name", "table_name", "source", "file_hash", "instructions", "file_time", "rows",
                    "status1", "status2"]
    cols = [r[1] for r in conn.execute('PRAGMA table_info("ledger")')]
    assert cols == ["sequence_id", "policy_type", "policy_id", "company_name", "date", "host", "status", "policy"]
    with pytest.raises(StorageError, match="not a TSD table"):
        schema.tsd_table_sql(schema.SQLITE, "users")


# --- placeholders -----------------------------------------------------------------------------

fragments = st.lists(st.sampled_from(["select ", "?", "%", "'a?b%'", '"c?"', "x", " -- q?%\n", "/* ?% */", "''",
                                      ",", "'it''s ?'"]), max_size=12)


@given(fragments)
def test_pyformat_binds_exactly_the_placeholders_outside_quotes(parts):
    sql = "".join(parts)
    converted = sqlfmt.to_pyformat(sql)
    n = parts.count("?")
    assert sqlfmt.to_pyformat(sql.replace("%", "")).count("%s") == n
    # Python's %-formatting is what psycopg2 applies: the result is the statement with each
    # bare ? bound and every other character unchanged.
    expected = "".join("<v>" if p == "?" else p for p in parts)
    assert converted % tuple(["<v>"] * n) == expected


# --- COPY text ----------------------------------------------------------------------------------

_UNESCAPE = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def _copy_decode(field: str):
    if field == "\\N":
        return None
    return re.sub(r"\\(.)", lambda m: _UNESCAPE.get(m.group(1), m.group(1)), field)


@given(st.lists(st.tuples(st.none() | st.text(), st.none() | st.text()), max_size=20))
def test_copy_text_round_trips_strings_and_nulls(rows):
    text = sqlfmt.CopyReader(rows, 2, batch=3).read()
    lines = text.split("\n")[:-1] if text else []
    assert [tuple(_copy_decode(f) for f in line.split("\t")) for line in lines] == rows


@given(st.lists(st.tuples(st.integers(), st.floats(allow_nan=False), st.booleans()), max_size=20))
def test_copy_text_of_numbers_and_booleans(rows):
    reader = sqlfmt.CopyReader(rows, 3, batch=4)
    chunks = []
    while chunk := reader.read(10):
        chunks.append(chunk)
    lines = "".join(chunks).split("\n")[:-1]
    assert reader.count == len(rows)
    for line, (i, f, b) in zip(lines, rows):
        a, x, y = line.split("\t")
        assert int(a) == i and float(x.replace("Infinity", "inf")) == f
        assert y.lower() in (("t", "true") if b else ("f", "false"))  # both are PostgreSQL booleans


@given(st.lists(st.lists(st.none() | st.text(max_size=8) | st.integers() | st.dictionaries(st.text(max_size=3),
                                                                                        st.integers(), max_size=2),
                         min_size=3, max_size=3), max_size=30))
def test_copy_text_of_mixed_rows_given_as_lists(rows):
    """Whatever mix of values a batch holds, each decodes back to its own text (dicts as JSON)."""
    import json
    text = sqlfmt.CopyReader(rows, 3, batch=7).read()
    lines = text.split("\n")[:-1] if text else []
    assert len(lines) == len(rows)
    for line, row in zip(lines, rows):
        fields = [_copy_decode(f) for f in line.split("\t")]
        expected = [None if v is None else json.dumps(v, separators=(",", ":"), ensure_ascii=False)
                    if isinstance(v, dict) else str(v) for v in row]
        assert fields == expected


def test_copy_reader_refuses_rows_of_the_wrong_width():
    with pytest.raises(ValueError, match="row 2 has 1 values, expected 2"):
        sqlfmt.CopyReader([(1, 2), (3,)], 2).read()


# --- reply values ----------------------------------------------------------------------------


def test_json_values_of_database_types():
    import decimal
    assert sqlfmt.json_value(decimal.Decimal("3")) == 3
    assert sqlfmt.json_value(decimal.Decimal("1.5")) == 1.5
    assert sqlfmt.json_value(datetime.datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02 03:04:05"
    assert sqlfmt.json_value(b"\x01\xff") == "01ff"
    assert sqlfmt.json_value(float("inf")) == "inf"
    assert not math.isnan(sqlfmt.json_value(1.0))


@pytest.mark.parametrize("seconds,text", [(0, "00:00:00"), (59.9, "00:00:59"), (3661, "01:01:01"),
                                          (360000, "100:00:00")])
def test_hms(seconds, text):
    assert sqlfmt.hms(seconds) == text


@pytest.mark.parametrize("sql,kind", [("select 1", "select"), ("  -- c\n/* x */ BEGIN", "begin"),
                                      ("(select 1)", "select"), ("", "")])
def test_statement_kind(sql, kind):
    assert sqlfmt.statement_kind(sql) == kind


@pytest.mark.parametrize("declared, logical", [
    ("INTEGER", "integer"), ("int", "integer"), ("BIGINT", "integer"), ("int8", "integer"), ("int(11)", "integer"),
    ("unsigned big int", "integer"), ("SERIAL", "integer"), ("bigserial", "integer"), ("interval", "text"),
    ("point", "text"), ("DOUBLE PRECISION", "float"), ("numeric(10,2)", "float"), ("timestamp with time zone",
    "timestamp"), ("varchar(20)", "text"), ("boolean", "boolean"), ("", "text"),
])
def test_logical_type_reads_declared_types_by_word(declared, logical):
    assert schema.logical_type(declared) == logical
