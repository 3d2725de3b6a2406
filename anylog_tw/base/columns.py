"""A whole column of values converted at once: the same rules as `convert.py`, fast.

Ingest converts millions of values; doing it one `convert()` call per value costs more than
the database insert.  Here a column whose values already have the right Python type costs one
C-level pass, a column of numbers written as text one regular-expression check and one
`float()` per value, and a timestamp column is parsed once per distinct second (the fraction
is copied as text).  Whatever a fast path cannot vouch for goes value by value through
`convert.convert`, so the result is always exactly what `convert` gives, or a `ColumnError`
naming the first value that does not fit.
"""

from __future__ import annotations

import datetime
import math
import re
from typing import Any, Sequence

from anylog_tw.base.convert import (BOOLEAN, FLOAT, INT64, INTEGER, NS_PER_US, TEXT, TIMESTAMP, ConversionError,
                                    EXACT_FLOAT, NUMBER_TEXT, convert, epoch_unit)


class ColumnError(ConversionError):
    """Value `index` of a column does not fit; `value` is it, the message says why."""

    def __init__(self, index: int, value: Any, message: str):
        super().__init__(message)
        self.index = index
        self.value = value


# Python types a column takes as they are.
_AS_IS: dict[str, set] = {TEXT: {str}, FLOAT: {float}, BOOLEAN: {bool}}
_UTC_TEXT = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d{1,6})?Z?")
_HEAD = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d")
_fromiso = datetime.datetime.fromisoformat
_EPOCH = datetime.datetime(1970, 1, 1)


def convert_column(values: Sequence[Any], kind: str, utc_text_as_is: bool = False) -> Sequence[Any]:
    """The column's values as a column of `kind` stores them (None stays None).

    `utc_text_as_is`: timestamp text already in UTC (`...SS[.ffffff][Z]`) is passed on unchanged
    (PostgreSQL parses it in C, and refuses an impossible date itself).
    """
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if not kinds or kinds <= _AS_IS.get(kind, set()):
        return values
    try:
        if kind == INTEGER and kinds == {int}:
            present = values if None not in values else [v for v in values if v is not None]
            if INT64[0] <= min(present) and max(present) <= INT64[1]:
                return values
        elif kind == FLOAT:
            out = _floats(values, kinds)
            if out is not None:
                return out
        elif kind == TIMESTAMP:
            if kinds == {str}:
                if utc_text_as_is and all(map(_UTC_TEXT.fullmatch, _present(values))):
                    return values
                return _timestamps(values)
            if kinds <= {int, float}:
                return _epochs(values)
    except (ValueError, TypeError, OverflowError):
        pass  # a value the fast path cannot vouch for: value by value below
    return _one_by_one(values, kind)


def _present(values: Sequence[Any]):
    return values if None not in values else [v for v in values if v is not None]


def _one_by_one(values: Sequence[Any], kind: str) -> list:
    out = []
    append = out.append
    for i, v in enumerate(values):
        try:
            append(None if v is None else convert(v, kind))
        except ConversionError as e:
            raise ColumnError(i, v, e.message) from None
    return out


def _floats(values: Sequence[Any], kinds: set) -> list | None:
    """Floats, small ints and number texts as floats; None when a value needs a closer look."""
    if str in kinds:
        texts = [v for v in values if type(v) is str]
        if not all(map(NUMBER_TEXT, texts)):
            return None
    if int in kinds and any(type(v) is int and abs(v) > EXACT_FLOAT for v in values):
        return None
    if bool in kinds or not kinds <= {int, float, str}:
        return None
    out = [None if v is None else float(v) for v in values]
    if not all(map(math.isfinite, _present(out))):
        return None
    if str in kinds and any(type(v) is str and "." not in v and "e" not in v and "E" not in v
                            and abs(int(v)) > EXACT_FLOAT for v in values):
        return None
    return out


def _timestamps(values: Sequence[Any]) -> list:
    """UTC timestamp texts (`...SS[.ffffff][Z]`) in the stored form, parsed once per distinct second.

    Anything else (an offset, a missing seconds field, an epoch text) raises ValueError: the
    caller then converts value by value.
    """
    heads: dict[str, str] = {}
    out = []
    append = out.append
    for v in values:
        if v is None:
            append(None)
            continue
        key = v[:19]
        head = heads.get(key)
        if head is None:
            if not _HEAD.fullmatch(key):
                raise ValueError(v)
            _fromiso(key)  # a real date and time, or ValueError
            head = heads[key] = key[:10] + " " + key[11:]
        tail = v[19:]
        if tail and tail[-1] == "Z":
            tail = tail[:-1]
        if not tail:
            append(head)
            continue
        digits = tail[1:]
        if tail[0] != "." or not 1 <= len(digits) <= 6 or not digits.isascii() or not digits.isdigit():
            raise ValueError(v)
        append(head if digits.count("0") == len(digits) else f"{head}.{digits.ljust(6, '0')}")
    return out


def _epochs(values: Sequence[Any]) -> list:
    """Integer epoch numbers as timestamp text, formatted once per distinct second.

    Floats (and anything odd) raise ValueError so that `convert` rounds them exactly as it does
    one by one.
    """
    heads: dict[int, str] = {}
    out = []
    append = out.append
    for v in values:
        if v is None:
            append(None)
            continue
        if type(v) is not int:
            raise ValueError(v)
        per_unit = epoch_unit(v)
        micros = v * per_unit if per_unit else v // NS_PER_US
        second, fraction = divmod(micros, 1_000_000)
        head = heads.get(second)
        if head is None:
            head = heads[second] = (_EPOCH + datetime.timedelta(seconds=second)).isoformat(sep=" ")
        append(f"{head}.{fraction:06d}" if fraction else head)
    return out

