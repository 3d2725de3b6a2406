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
from itertools import repeat
from typing import Any, Sequence

from anylog_tw.base.convert import (BOOLEAN, FLOAT, INT64, INTEGER, NS_PER_US, TEXT, TIMESTAMP, ConversionError,
                                    EXACT_FLOAT, convert, epoch_unit)


class ColumnError(ConversionError):
    """Value `index` of a column does not fit; `value` is it, the message says why."""

    def __init__(self, index: int, value: Any, message: str):
        super().__init__(message)
        self.index = index
        self.value = value


_INT_TEXT = re.compile(r"[+-]?\d+").fullmatch
_NUMBER_FULL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,2})?").fullmatch  # exponents below 100: finite
# Booleans written as text (any case) or as 0/1 (keys (v, 0) keep 1 apart from True's hash twin).
_BOOLEAN_TEXT = {"true": True, "false": False, "1": True, "0": False, (1, 0): True, (0, 0): False}
# Python types a column takes as they are.
_AS_IS: dict[str, set] = {TEXT: {str}, FLOAT: {float}, BOOLEAN: {bool}}
_UTC_TEXT = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d{1,6})?Z?")
_HEAD = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d")
_fromiso = datetime.datetime.fromisoformat
_EPOCH = datetime.datetime(1970, 1, 1)


def convert_column(values: Sequence[Any], kind: str, text_as_is: bool = False) -> Sequence[Any]:
    """The column's values as a column of `kind` stores them (None stays None).

    `text_as_is` (PostgreSQL, which parses text in C as it copies it in): text that already is
    what the rules would store is passed on unchanged: UTC timestamp text (`...SS[.ffffff][Z]`;
    the server refuses an impossible date itself), plain ASCII number text short enough to be
    exact, and true/false/1/0.  Anything else is converted here.
    """
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if not kinds or kinds <= _AS_IS.get(kind, set()):
        return values
    if text_as_is and kinds == {str} and _text_is_stored(_present(values), kind):
        return values
    try:
        if kind == INTEGER and kinds == {int}:
            present = _present(values)
            if INT64[0] <= min(present) and max(present) <= INT64[1]:
                return values
        elif kind == INTEGER and kinds == {str}:
            present = _present(values)
            if all(map(_INT_TEXT, present)):
                out = [None if v is None else int(v) for v in values] if None in values else list(map(int, values))
                ints = _present(out)
                if INT64[0] <= min(ints) and max(ints) <= INT64[1]:
                    return out
        elif kind == BOOLEAN and kinds <= {str, int}:
            table = _BOOLEAN_TEXT
            return [None if v is None else table[v.lower() if type(v) is str else (v, 0)] for v in values]
        elif kind == FLOAT:
            out = _floats(values, kinds)
            if out is not None:
                return out
        elif kind == TIMESTAMP:
            if kinds == {str}:
                return _timestamps(values)
            if kinds == {int}:
                return _epochs(values)
    except (ValueError, TypeError, OverflowError, KeyError):
        pass  # a value the fast path cannot vouch for: value by value below
    return _one_by_one(values, kind)


def _text_is_stored(texts: Sequence[str], kind: str) -> bool:
    """Whether every text is already a value `kind` takes as it is, in a form PostgreSQL reads alike."""
    if kind == TIMESTAMP:
        return all(map(_UTC_TEXT.fullmatch, texts))
    if kind not in (FLOAT, INTEGER, BOOLEAN):
        return False
    joined = "".join(texts)
    if not joined.isascii():
        return False  # digits of other scripts: Python reads them, PostgreSQL does not
    if kind == BOOLEAN:
        return all(v.lower() in _BOOLEAN_TEXT for v in texts)
    if max(map(len, texts)) > 15 or "_" in joined:
        return False  # long numbers may not fit exactly: checked value by value
    return all(map(_INT_TEXT if kind == INTEGER else _NUMBER_FULL, texts))


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
    """Floats, small ints and number texts as floats; None when a value needs a closer look.

    `float()` reads what `to_float` reads, except `_` between digits (refused there), `nan` and
    `inf` (not finite: caught after), and long integer texts (which may lose digits): those go
    value by value.
    """
    if bool in kinds or not kinds <= {int, float, str}:
        return None
    if str in kinds:
        texts = [v for v in values if type(v) is str] if kinds != {str} or None in values else values
        if max(map(len, texts)) > 15 or "_" in "".join(texts):
            return None
    if int in kinds and any(type(v) is int and abs(v) > EXACT_FLOAT for v in values):
        return None
    try:
        out = [None if v is None else float(v) for v in values] if None in values else list(map(float, values))
    except ValueError:
        return None
    if not all(map(math.isfinite, _present(out))):
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
    """Integer epoch numbers (and None) as timestamp text, formatted once per distinct second.

    The unit is decided once when the whole column is in one magnitude band (the usual case).
    Floats are left to `convert`, which rounds them exactly as it does one by one.
    """
    present = _present(values)
    low, high = min(present), max(present)
    per_unit = epoch_unit(low) if low >= 0 else -1
    if per_unit < 0 or epoch_unit(high) != per_unit:
        per_unit = -1  # mixed bands or negative: decided value by value
    divisor = {1_000_000: 1, 1_000: 1_000, 1: 1_000_000}.get(per_unit)
    heads: dict[int, str] = {}
    epoch = _EPOCH
    delta = datetime.timedelta

    def head_of(second: int) -> str:
        head = heads[second] = (epoch + delta(seconds=second)).isoformat(sep=" ")
        return head

    get = heads.get
    if None not in values:  # the usual column: one comprehension, divmod in C
        if divisor == 1_000:  # milliseconds, the common device clock
            millis = _MILLIS
            return [(get(s) or head_of(s)) + millis[p] for s, p in map(divmod, values, repeat(1_000))]
        if divisor == 1:
            return [get(v) or head_of(v) for v in values]
    out: list = []
    append = out.append
    for v in values:
        if v is None:
            append(None)
            continue
        if divisor == 1_000:  # milliseconds, the common device clock
            second, part = divmod(v, 1_000)
            append((get(second) or head_of(second)) + _MILLIS[part])
            continue
        if divisor == 1:
            append(get(v) or head_of(v))
            continue
        if divisor is None:  # nanoseconds, or bands that differ
            unit = epoch_unit(v)
            micros = v * unit if unit else v // NS_PER_US
        else:
            micros = v
        second, fraction = divmod(micros, 1_000_000)
        head = get(second) or head_of(second)
        append(f"{head}.{fraction:06d}" if fraction else head)
    return out


_MILLIS = [""] + [f".{i:03d}000" for i in range(1, 1000)]
