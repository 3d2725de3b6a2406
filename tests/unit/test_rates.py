"""The per-table ingest history: buckets over the last hour, rolled lazily, bounded in tables."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from anylog_tw.base.rates import RateHistory


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_counts_land_in_the_current_bucket_and_totals_keep_everything():
    clock = Clock()
    h = RateHistory(clock, bucket=10, slots=6)
    h.add("lsl", "ping", rows=5, files=1)
    clock.now += 10
    h.add("lsl", "ping", rows=7, files=1)
    h.add("lsl", "ping", errors=1)
    assert h.series("lsl", "ping") == [0, 0, 0, 0, 5, 7]
    assert h.series("lsl", "ping", "errors") == [0, 0, 0, 0, 0, 1]
    t = h.totals("lsl", "ping")
    assert (t.rows, t.files, t.errors) == (12, 2, 1)


def test_old_buckets_fall_off_and_a_long_silence_empties_the_ring():
    clock = Clock()
    h = RateHistory(clock, bucket=10, slots=3)
    h.add("d", "t", rows=1)
    clock.now += 20
    assert h.series("d", "t") == [1, 0, 0]
    clock.now += 10
    assert h.series("d", "t") == [0, 0, 0]
    clock.now += 10_000
    h.add("d", "t", rows=4)
    assert h.series("d", "t") == [0, 0, 4]
    assert h.totals("d", "t").rows == 5


def test_the_number_of_tables_is_bounded_dropping_the_least_recently_written():
    h = RateHistory(Clock(), max_tables=2)
    h.add("d", "a", rows=1)
    h.add("d", "b", rows=1)
    h.add("d", "a", rows=1)
    h.add("d", "c", rows=1)
    assert h.tables() == [("d", "a"), ("d", "c")]


def test_an_unknown_table_has_an_empty_series():
    h = RateHistory(Clock(), slots=4)
    assert h.series("x", "y") == [0, 0, 0, 0] and h.totals("x", "y") is None


@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 1000)), max_size=60))
def test_the_series_holds_exactly_the_rows_added_within_its_window(events):
    """Whatever the timing, the series sums to the rows added in the last `slots` buckets."""
    clock = Clock(0.0)
    h = RateHistory(clock, bucket=10, slots=12)
    added = []
    for gap, rows in events:
        clock.now += gap
        h.add("d", "t", rows=rows)
        added.append((clock.now, rows))
    current = clock.now // 10
    expected = sum(r for when, r in added if when // 10 > current - 12)
    assert sum(h.series("d", "t")) == expected
    assert h.totals("d", "t") is None or h.totals("d", "t").rows == sum(r for _, r in added)
