"""File names of spec §3: parse and format round-trip, the refusals, the hash rule, error names."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anylog_tw.base.filename import (
    FileName,
    archive_subdir,
    error_name,
    file_hash,
    is_temporary,
    parse_file_name,
    split_type,
    tsd_date,
)
from anylog_tw.base.ingest_errors import IngestError

names = st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True)
segments = st.from_regex(r"[A-Za-z0-9_\-]{1,12}", fullmatch=True)
dates = st.integers(min_value=946684800, max_value=4102444799).map(tsd_date)


@given(names, names, segments, segments, segments, st.booleans())
def test_short_form_round_trips(dbms, table, source, hash_, instr, gz):
    """dbms.table.source.hash.instructions.json[.gz] parses to its parts and formats back to itself."""
    text = f"{dbms}.{table}.{source}.{hash_}.{instr}.json" + (".gz" if gz else "")
    name = parse_file_name(text)
    assert (name.dbms, name.table, name.source, name.hash, name.instructions, name.gz) == \
        (dbms, table, source, hash_, instr, gz)
    assert not name.registered
    assert name.format() == text


@given(names, names, segments, segments, segments, st.integers(1, 999), st.integers(1, 10**9), dates)
def test_registered_form_round_trips(dbms, table, source, hash_, instr, member, tsd_id, date):
    short = FileName(dbms, table, source, hash_, instr)
    full = short.registered_as(member, tsd_id, date)
    text = full.format()
    assert len(text.split(".")) == 9
    assert parse_file_name(text) == full


def test_missing_segments_default_to_zero():
    name = parse_file_name("London.Readings.json")
    assert (name.dbms, name.table, name.source, name.hash, name.instructions) == ("london", "readings", "0", "0", "0")
    assert parse_file_name("london.readings.0.0.london_mapping.json").instructions == "london_mapping"


def test_spec_examples_parse():
    archived = parse_file_name("litsanleandro.ping_sensor.0.bd617b6ddb873750d9db561814297f23.0.120.119.210404201021.json")
    assert (archived.member, archived.tsd_id, archived.tsd_date) == ("120", 119, "210404201021")
    assert archive_subdir(archived.tsd_date) == "21/04/04"
    streamed = parse_file_name("d.t.0.abc.0.@.7.260101000000.json")
    assert streamed.member == "@"


@pytest.mark.parametrize("text, reason", [
    ("readings.json", "name"),                      # one segment
    ("a.b.c.d.e.f.json", "name"),                   # 6 segments
    ("a.b.c.d.e.f.g.json", "name"),                 # 7 segments
    ("a.b.0.0.0.x1.5.260101000000.json", "name"),   # member not a number
    ("a.b.0.0.0.1.0.260101000000.json", "name"),    # tsd id 0
    ("a.b.0.0.0.1.5.2601010000.json", "name"),      # short date
    ("a.b.0.0.0.1.5.261301000000.json", "name"),    # month 13
    ("1abc.t.json", "name"),                        # dbms starts with a digit
    ("a.b c.json", "name"),                         # a space
    ("a..json", "name"),                            # empty segment
    ("a.b.0.0.0.csv", "type"),
    ("a.b.0.0.0.csv", "type"),
    ("a.b@.json", "name"),
])
def test_bad_names_are_refused_with_a_reason(text, reason):
    with pytest.raises(IngestError) as e:
        parse_file_name(text)
    assert e.value.reason == reason
    assert text[:10] in e.value.message or reason == "type"


@given(st.text(max_size=40))
def test_any_text_parses_or_fails_cleanly(text):
    """No name makes the parser raise anything but an IngestError."""
    try:
        parse_file_name(text)
    except IngestError:
        pass


@given(names, names, st.binary(max_size=2000), st.integers(1, 50))
def test_hash_is_md5_of_dbms_table_then_bytes(dbms, table, data, cut):
    expected = hashlib.md5(f"{dbms}.{table}".encode() + data).hexdigest()
    assert file_hash(dbms, table, [data]) == expected
    assert file_hash(dbms, table, [data[:cut], data[cut:]]) == expected


def test_error_names_keep_the_type_and_say_why():
    assert error_name("lsl.ping.0.abc.0.json", "duplicate", 1712345678) == "lsl.ping.0.abc.0.err_duplicate.1712345678.json"
    assert error_name("lsl.ping.json.gz", "json", 5) == "lsl.ping.err_json.5.json.gz"
    assert error_name("noext", "name", 5) == "noext.err_name.5"
    assert split_type("a.b.json.gz") == ("a.b", "json.gz")


@pytest.mark.parametrize("name, temp", [
    (".hidden.json", True), ("a.b.json.part", True), ("a.b.json.tmp", True), ("a.b.json~", True),
    ("a.b.json.swp", True), ("a.b.json", False), ("a.b.json.gz", False),
])
def test_temporary_names(name, temp):
    assert is_temporary(name) is temp
