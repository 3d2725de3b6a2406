"""Column-type inference: the fast check of stored-form timestamps against the full parse.

`mapping.infer_column` checks a column of `YYYY-MM-DD HH:MM:SS[.ffffff]` texts in one regex pass
and a `fromisoformat` each instead of `parse_timestamp` per value; the type it gives must be the
one the per-value parse gave, for every column.  `_reference` is `infer_column` with the bulk
check swapped for the per-value parse it replaced.
"""

from __future__ import annotations

import datetime
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from anylog_tw.base.convert import format_timestamp
from anylog_tw.ingest import mapping
from anylog_tw.ingest.mapping import Batch, plan_columns, to_columns
from anylog_tw.storage import schema
from anylog_tw.storage.schema import TEXT, TIMESTAMP


def _reference(values):
    """infer_column as it was: every text parsed by `parse_timestamp` (the bulk check swapped for it)."""
    with mock.patch.object(mapping, "_all_timestamps",
                           lambda texts: all(schema.parse_timestamp(v) is not None for v in texts)):
        return mapping.infer_column(values)


stored = st.datetimes(min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31, 23, 59, 59)
                      ).map(format_timestamp)
# Texts one step from the stored form: impossible dates and times, other digits, a T, a zone,
# a short fraction, a newline inside or around, two joined.
almost = st.one_of(
    st.tuples(st.integers(0, 9999), st.integers(0, 19), st.integers(0, 39), st.integers(0, 29),
              st.integers(0, 69), st.integers(0, 69)).map(lambda t: "%04d-%02d-%02d %02d:%02d:%02d" % t),
    stored.map(lambda s: s.replace(" ", "T")), stored.map(lambda s: s + "Z"), stored.map(lambda s: s + "+01:00"),
    stored.map(lambda s: s + ".5"), stored.map(lambda s: s[:-1]), stored.map(lambda s: s + "\n"),
    stored.map(lambda s: "\n" + s), st.tuples(stored, stored).map("\n".join),
    stored.map(lambda s: s.replace("1", "\u0661")), stored.map(lambda s: s.replace("0", "\uff10")),
    st.sampled_from(["", "\n", "2026-02-29 00:00:00", "2024-02-29 00:00:00", "2026-11-28", "abc"]))
texts = st.one_of(stored, stored, almost, st.text(max_size=30))
cells = st.one_of(st.none(), texts, st.integers(-(2**70), 2**70), st.floats(), st.booleans())


@settings(max_examples=400)
@given(st.lists(st.one_of(st.none(), texts), max_size=30))
def test_text_columns_same_type_as_the_full_parse(values):
    assert mapping.infer_column(values) == _reference(values)


@settings(max_examples=300)
@given(st.lists(cells, max_size=20))
def test_mixed_columns_same_type_as_the_full_parse(values):
    assert mapping.infer_column(values) == _reference(values)


@settings(max_examples=100)
@given(st.lists(st.one_of(st.none(), stored), min_size=1, max_size=50), st.data())
def test_one_bad_text_in_a_stored_column_makes_it_text(values, data):
    """The fast check must look at every value, not a sample: one misfit anywhere decides."""
    bad = data.draw(almost.filter(lambda s: schema.parse_timestamp(s) is None))
    values.insert(data.draw(st.integers(0, len(values))), bad)
    assert mapping.infer_column(values) == TEXT == _reference(values)


@settings(max_examples=100)
@given(st.lists(st.tuples(stored, st.one_of(st.none(), texts)), min_size=1, max_size=20))
def test_planned_and_inserted_values_are_the_reference_ones(rows):
    """What lands (types and adapted values) is what the per-value parse would have planned."""
    batch = Batch(["ts", "other"], [[r[0] for r in rows], [r[1] for r in rows]], list(range(1, len(rows) + 1)))
    columns, added = plan_columns(batch, None)
    assert columns == added == {c: _reference(v) or TEXT for c, v in zip(batch.columns, batch.values)}
    assert to_columns(batch, columns)[0] == batch.values[0]  # stored form: kept as it is


def test_stored_column_is_timestamp_and_an_impossible_day_is_not():
    assert mapping.infer_column(["2026-12-02 10:00:00", None, "2026-12-02 10:00:00.123456"]) == TIMESTAMP
    assert mapping.infer_column(["2026-12-02 10:00:00", "2026-02-30 10:00:00"]) == TEXT
    assert mapping.infer_column(["2026-12-02 10:00:00", "2026-12-02 10:00:00\n2026-12-02 10:00:00"]) == TEXT


def _adapted(values, engine):
    try:
        return ("ok", mapping.to_columns(Batch(["t"], [values], list(range(1, len(values) + 1))),
                                         {"t": TIMESTAMP}, engine)[0])
    except mapping.IngestError as e:
        return ("error", e.message)


def _reference_adapted(values, engine):
    try:
        return ("ok", mapping._adapt_column(values, TIMESTAMP, "t", list(range(1, len(values) + 1)), engine))
    except mapping.IngestError as e:
        return ("error", e.message)


@settings(max_examples=300)
@given(st.lists(st.one_of(st.none(), stored, stored, texts, st.integers(0, 2**40)), max_size=20),
       st.sampled_from([schema.SQLITE, schema.PSQL]))
def test_timestamp_column_adapted_as_before(values, engine):
    """A column in the stored form is passed on as it is: what the conversion would have made of it."""
    got = _adapted(values, engine)
    assert got == _reference_adapted(values, engine)
    if got[0] == "ok":
        assert [type(v) for v in got[1]] == [type(v) for v in _reference_adapted(values, engine)[1]]


def test_stored_form_excludes_what_the_conversion_rewrites():
    """`.000000` is written without the fraction, other digits as ASCII: those are not passed on."""
    assert not mapping._stored_column(["2026-12-02 10:00:00.000000"])
    assert not mapping._stored_column(["2026-12-02 1\u0660:00:00"])
    assert not mapping._stored_column(["2026-02-30 10:00:00"])
    assert mapping._stored_column(["2026-12-02 10:00:00", None, "2026-12-02 10:00:00.000100"])
    assert _adapted(["2026-12-02 10:00:00.000000"], schema.SQLITE) == ("ok", ["2026-12-02 10:00:00"])


def test_the_bulk_check_of_a_big_column_stays_small_in_memory():
    """One regex pass over 50,000 texts must not keep a frame per text (a plain `*` took 32 MB)."""
    import tracemalloc
    texts = [format_timestamp(datetime.datetime(2026, 12, 2) + datetime.timedelta(microseconds=7001 * i))
             for i in range(50_000)]
    tracemalloc.start()
    try:
        assert mapping._in_stored_form(texts)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * sum(map(len, texts))  # the joined text and little more
