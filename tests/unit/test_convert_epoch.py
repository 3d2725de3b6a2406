"""Epoch numbers to timestamp text: the per-second cache and the integer path against the old code.

`to_timestamp` of an integer goes a shorter way (no text check) and reuses the text of a whole
second; `_reference` is the text as it was made before (a datetime per value and its isoformat,
over the one `epoch_microseconds`): every value must give the same text, or the same refusal.
"""

from __future__ import annotations

import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from anylog_tw.base import convert
from anylog_tw.base.convert import MAX_EPOCH_US, MIN_EPOCH_US, ConversionError, format_timestamp, to_timestamp

_EPOCH = datetime.datetime(1970, 1, 1)


def _reference(value):
    """to_timestamp of a number or digit text as it was: a datetime per value and its isoformat."""
    if isinstance(value, str):
        parsed = convert.parse_timestamp(value)
        if parsed is not None:
            return format_timestamp(parsed)
        value = value.strip()
    return format_timestamp(_EPOCH + datetime.timedelta(microseconds=convert.epoch_microseconds(value)))


def _outcome(f, value):
    try:
        return f(value)
    except ConversionError:
        return ConversionError


bounds = [10**11, 10**14, 10**17, MAX_EPOCH_US, -MIN_EPOCH_US]
edges = st.sampled_from(bounds).flatmap(lambda b: st.integers(-3, 3).flatmap(
    lambda d: st.sampled_from([b + d, -(b + d)])))
numbers = st.one_of(st.integers(-(2**64), 2**64), st.integers(-(10**19), 10**19), edges,
                    st.integers(1_600_000_000_000, 1_800_000_000_000), st.booleans(),
                    st.floats(-1e19, 1e19), st.floats(), st.integers(-(10**19), 10**19).map(str),
                    st.decimals(-10**15, 10**15, places=4, allow_nan=False).map(str))


@settings(max_examples=1500)
@given(numbers)
def test_same_text_or_refusal_as_before(value):
    expected = _outcome(_reference, value)
    assert _outcome(to_timestamp, value) == expected
    assert _outcome(to_timestamp, value) == expected  # the second time from the cache


@given(st.lists(st.integers(-62_135_596_800, 10**11 - 1), min_size=1, max_size=50))
def test_a_full_cache_starts_over_and_still_answers_right(seconds):
    convert._SECONDS.update({s: "poisoned" for s in range(10**12, 10**12 + 4096 - len(convert._SECONDS))})
    try:
        for s in seconds:
            assert to_timestamp(s) == _reference(s)
        assert len(convert._SECONDS) <= 4096
    finally:
        convert._SECONDS.clear()


def test_fraction_written_with_six_digits_and_none_on_whole_seconds():
    assert to_timestamp(1607959427550) == "2020-12-14 15:23:47.550000"
    assert to_timestamp(1607959427000) == "2020-12-14 15:23:47"
    assert to_timestamp(-1) == "1969-12-31 23:59:59"
    assert to_timestamp(-100_000_000_001) == "1966-10-31 14:13:19.999000"  # ms before 1970
