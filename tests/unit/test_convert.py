"""base/convert.py and base/columns.py: values into typed columns, losslessly or refused."""

from __future__ import annotations

import datetime
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anylog_tw.base import convert as C
from anylog_tw.base.columns import ColumnError, convert_column

EPOCH = datetime.datetime(1970, 1, 1)
# The range the magnitude rule reads right in every unit (docs/operator.md): 10**8 s to 10**11 s.
LOW_US, HIGH_US = 10**8 * 10**6, 10**11 * 10**6 - 1


def _text(us: int) -> str:
    return C.format_timestamp(EPOCH + datetime.timedelta(microseconds=us))


@settings(max_examples=500)
@given(st.integers(LOW_US, HIGH_US), st.sampled_from(["s", "ms", "us", "ns"]), st.booleans())
def test_any_epoch_in_range_round_trips_in_every_unit(us, unit, as_text):
    """An instant written as epoch s/ms/µs/ns (number or digit string) reads back as that instant."""
    scale = {"s": 10**6, "ms": 10**3, "us": 1}.get(unit)
    number = us // scale if scale else us * 1000 + 999  # ns: sub-µs digits are cut, not rounded
    expected = _text(number * scale if scale else us)
    value = str(number) if as_text else number
    assert C.to_timestamp(value) == expected
    assert C.parse_timestamp(expected) == EPOCH + datetime.timedelta(microseconds=(number * scale if scale else us))


@given(st.integers(-62_135_596_800, 10**11 - 1))
def test_epoch_seconds_reach_back_to_year_one(seconds):
    assert C.to_timestamp(seconds) == _text(seconds * 10**6)


@pytest.mark.parametrize("value,expected", [
    (1700000000, "2023-11-14 22:13:20"),
    (1700000000123, "2023-11-14 22:13:20.123000"),
    (1700000000123456, "2023-11-14 22:13:20.123456"),
    (1686087247849269800, "2023-06-06 21:34:07.849269"),  # EdgeX 'origin' (ns), from the mapping-policy docs
    ("1607959427550", "2020-12-14 15:23:47.550000"),  # anylog-mqtt-spec §12 case 1 (ms; AnyLog drops the .550)
    (1700000000.25, "2023-11-14 22:13:20.250000"),
    ("1700000000.5", "2023-11-14 22:13:20.500000"),
    ("2026-11-28T12:00:00+02:00", "2026-11-28 10:00:00"),
    ("2026-11-28T10:00:00Z", "2026-11-28 10:00:00"),
    ("2019-10-14T17:22:13.051101Z", "2019-10-14 17:22:13.051101"),
    ("2026-11-28 10:00:00.5", "2026-11-28 10:00:00.500000"),
    ("2026-11-28T10:00:00.123456789-0130", "2026-11-28 11:30:00.123456"),
])
def test_timestamp_forms(value, expected):
    assert C.to_timestamp(value) == expected


@pytest.mark.parametrize("value", ["yesterday", "2026-02-30T00:00:00Z", True, math.inf, 10**30, "12:00", [1]])
def test_what_is_not_a_time_is_refused(value):
    with pytest.raises(C.ConversionError):
        C.to_timestamp(value)


@pytest.mark.parametrize("value,kind,expected", [
    ("81.5", C.FLOAT, 81.5), ("-12830", C.INTEGER, -12830), ("-12830", C.FLOAT, -12830.0),
    ("0.000000e+00", C.FLOAT, 0.0), ("0.000000e+00", C.INTEGER, 0), ("7.934139e+01", C.FLOAT, 79.34139),
    ("12.0", C.INTEGER, 12), (12, C.FLOAT, 12.0), (3.0, C.INTEGER, 3),
    (True, C.BOOLEAN, True), ("true", C.BOOLEAN, True), ("FALSE", C.BOOLEAN, False), (0, C.BOOLEAN, False),
    (1, C.BOOLEAN, True), ("1", C.BOOLEAN, True),
    (12, C.TEXT, "12"), (1.5, C.TEXT, "1.5"), (False, C.TEXT, "false"), ({"a": [1]}, C.TEXT, '{"a":[1]}'),
])
def test_lossless_conversions(value, kind, expected):
    got = C.convert(value, kind)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("value,kind", [
    ("1.5", C.INTEGER), (1.5, C.INTEGER), ("abc", C.FLOAT), ("nan", C.FLOAT), ("1e999", C.FLOAT),
    (2**53 + 1, C.FLOAT), (str(2**53 + 1), C.FLOAT), (2**64, C.INTEGER), (2, C.BOOLEAN), ("yes", C.BOOLEAN),
    (True, C.INTEGER), (False, C.FLOAT), ("1_000", C.INTEGER), (b"\x00", C.TEXT),
])
def test_lossy_conversions_are_refused(value, kind):
    with pytest.raises(C.ConversionError):
        C.convert(value, kind)


@pytest.mark.parametrize("word,kind", [
    ("str", C.TEXT), ("varchar", C.TEXT), ("char(20)", C.TEXT), ("Int32", C.INTEGER), ("UInt64", C.INTEGER),
    ("Float64", C.FLOAT), ("decimal", C.FLOAT), ("double precision", C.FLOAT), ("bool", C.BOOLEAN),
    ("timestamp", C.TIMESTAMP), ("datetime", C.TIMESTAMP), ("  Integer ", C.INTEGER),
])
def test_type_words(word, kind):
    assert C.logical_type(word) == kind


def test_unknown_type_word_is_refused_with_the_choices():
    with pytest.raises(C.ConversionError, match="unknown .*str, int, float"):
        C.logical_type("blobby")


@pytest.mark.parametrize("text,name", [
    ("Cutter 23_1234567890", "cutter_23_1234567890"), ("LIGHTOUT1", "lightout1"), ("a-b.c/d\\e:f", "a_b_c_d_e_f"),
    ("C/A/data", "c_a_data"), (" Temp ", "temp"),
])
def test_names_from_data_follow_anylogs_rule(text, name):
    assert C.data_name(text, "table") == name


@pytest.mark.parametrize("text,why", [
    ("PM 2.5 (ug/m3)", "holds '\\(' '\\)'"), ("1st", "starts with a digit"), ("", "empty"), ("x" * 64, "64 characters"),
    ("tëst", "holds 'ë'"), ('a"; drop table t', "holds"),
])
def test_names_that_stay_invalid_are_refused_with_the_reason(text, why):
    with pytest.raises(C.ConversionError, match=why):
        C.data_name(text, "table")


@given(st.text(max_size=70))
def test_a_data_name_is_always_a_plain_identifier_or_refused(text):
    try:
        name = C.data_name(text, "column")
    except C.ConversionError as e:
        assert "cannot be a name" in e.message
        return
    assert C.NAME_PATTERN.fullmatch(name) and C.data_name(name) == name


# --- whole columns: the fast paths agree with value-by-value conversion --------------------------------

column_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**65), 2**65), st.floats(), st.text(max_size=12),
    st.integers(10**8, 10**19), st.sampled_from(["81.5", "-12", "1e3", "0.000000e+00", " 7", "1e999", "nan",
                                                 str(2**60), "2026-02-30T00:00:00Z", "2026-01-01T00:00:00.5Z",
                                                 "2026-09-21T12:53:20+02:00", "2026-01-01T00:00:00.1234567Z",
                                                 "1700000000123", "true", "0"]),
    st.datetimes(min_value=datetime.datetime(1900, 1, 1)).map(lambda d: d.isoformat(sep="T")),
    st.datetimes().map(lambda d: d.isoformat() + "Z"))


def _one_by_one(values, kind):
    out = []
    for i, v in enumerate(values):
        try:
            out.append(None if v is None else C.convert(v, kind))
        except C.ConversionError:
            return ("error", i)
    return out


@settings(max_examples=400)
@given(st.lists(column_values, max_size=8), st.sampled_from(C.TYPES))
def test_a_column_converts_exactly_as_its_values_do(values, kind):
    expected = _one_by_one(values, kind)
    try:
        got = list(convert_column(values, kind))
    except ColumnError as e:
        assert expected == ("error", e.index) and values[e.index] is e.value
        return
    assert got == expected and [type(v) for v in got] == [type(v) for v in expected]


@settings(max_examples=400)
@given(st.lists(st.one_of(st.none(), st.text(max_size=8), st.sampled_from(
    ["81.5", "-12830", "0.000000e+00", "1e99", "1e999", "٣", "TRUE", "0", "7.", ".5", "1_0", "2026-01-01 00:00:00",
     "2026-02-30 00:00:00", "123456789012345678"])), max_size=6), st.sampled_from(C.TYPES))
def test_text_passed_on_for_postgresql_is_text_the_rules_take(values, kind):
    """With text_as_is, a text column handed on unchanged holds only values `convert` takes (or, for
    timestamps, UTC text the server checks itself), so the server reads what the rules would store."""
    try:
        got = convert_column(values, kind, text_as_is=True)
    except ColumnError:
        return
    if got is values and kind != C.TEXT and any(v is not None for v in values):
        for v in values:
            if v is None:
                continue
            assert v.isascii()
            if kind == C.TIMESTAMP:
                assert C.parse_timestamp(v) is not None or "-02-30" in v
            else:
                C.convert(v, kind)  # raises if the rules would refuse it
