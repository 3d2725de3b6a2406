"""Values into typed columns: the one set of rules every way data comes in uses.

Files (default mapping and mapping policies), `.sql` files, REST streaming and the MQTT client
all turn JSON values into what a column of one of five logical types stores.  The rules are
here, once, as pure functions:

* **Types.**  `integer`, `float`, `boolean`, `timestamp`, `text` (storage/schema.py maps them to
  each engine's types).  `logical_type` reads the type words users and devices write
  (`varchar`, `char(20)`, `Int32`, `Float64`, `decimal`, `datetime` ...).
* **Lossless or refused.**  A value is converted only when nothing is lost: numbers written as
  text (`"81.5"`, `"-12830"`, `"0.000000e+00"`) go into numeric columns, `true`/`false`,
  `"true"`, 0 and 1 into booleans; 1.5 into an integer column, `"abc"` into a timestamp or
  2**60 into a float column raise `ConversionError` naming the value and why.
* **Timestamps** are stored as UTC text `YYYY-MM-DD HH:MM:SS[.ffffff]` (it sorts as time sorts,
  which SQLite relies on).  ISO text with `T`, `Z` or an offset is converted to UTC; epoch
  numbers (or digit strings) are told apart by magnitude, see `EPOCH_RULE`.
* **Names** derived from data (dbms, table and column names) follow AnyLog's rule: lower case,
  space `-` `.` `/` `\\` `:` become `_`; what is still not a plain identifier is refused.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Callable

from anylog_tw.base.names import NAME_PATTERN, is_name  # noqa: F401 (NAME_PATTERN re-exported)

INTEGER, FLOAT, BOOLEAN, TIMESTAMP, TEXT = "integer", "float", "boolean", "timestamp", "text"
TYPES = (INTEGER, FLOAT, BOOLEAN, TIMESTAMP, TEXT)

INT64 = (-(2**63), 2**63 - 1)
EXACT_FLOAT = 2**53  # integers beyond this lose digits as floats


class ConversionError(ValueError):
    """A value that does not fit its column (or a name that is not one); the message says why."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# --- type words -------------------------------------------------------------------------------

_TYPE_WORDS = {
    TEXT: ("string", "str", "varchar", "char varying", "character varying", "text", "char", "character",
           "bytestring", "byte", "uuid", "nodeid", "expandednodeid", "qualifiedname", "qualifiedmame",
           "localizedtext", "variant", "datavalue", "diagnosticinfo", "json", "jsonb", "time"),
    INTEGER: ("int", "integer", "bigint", "smallint", "tinyint", "int8", "int16", "int32", "int64", "uint8",
              "uint16", "uint32", "uint64", "sbyte", "long", "short", "statuscode", "serial", "bigserial"),
    FLOAT: ("float", "float32", "float64", "double", "double precision", "decimal", "numeric", "real", "number"),
    BOOLEAN: ("bool", "boolean"),
    TIMESTAMP: ("timestamp", "datetime", "date", "timestamptz", "timestamp without time zone",
                "timestamp with time zone"),
}
TYPE_WORDS: dict[str, str] = {word: kind for kind, words in _TYPE_WORDS.items() for word in words}


def logical_type(word: Any) -> str:
    """The logical type a type word names (`char(20)` -> text, `Int32` -> integer), or ConversionError."""
    if not isinstance(word, str):
        raise ConversionError(f"column type {word!r} must be text")
    base = " ".join(word.strip().lower().split("(", 1)[0].split())
    kind = TYPE_WORDS.get(base)
    if kind is None:
        raise ConversionError(f"column type {word!r} is unknown (use str, int, float, timestamp or bool, or "
                              f"another of: {', '.join(sorted(TYPE_WORDS))})")
    return kind


# --- names ------------------------------------------------------------------------------------

_NAME_MAP = str.maketrans({c: "_" for c in " -./\\:"})


def data_name(text: Any, what: str = "name") -> str:
    """A dbms, table or column name made from data by AnyLog's rule, or ConversionError saying why not.

    Lower case; space, `-`, `.`, `/`, `\\` and `:` become `_`.  The result must be 1 to 63
    letters, digits and `_`, not starting with a digit; anything else (`(`, `%`, a letter with
    an accent, a leading digit) is refused rather than silently changed.
    """
    if not isinstance(text, str):
        if isinstance(text, bool) or not isinstance(text, int):
            raise ConversionError(f"{what} {text!r} must be text")
        text = str(text)
    name = text.strip().lower().translate(_NAME_MAP)
    if is_name(name):
        return name
    shown = text if len(text) <= 80 else text[:77] + "..."
    if not name:
        why = "it is empty"
    elif len(name) > 63:
        why = f"it is {len(name)} characters long (at most 63)"
    elif name[0].isdigit():
        why = "it starts with a digit"
    else:
        bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c == "_"))})
        why = "it holds " + " ".join(repr(c) for c in bad[:8])
    raise ConversionError(f"{what} {shown!r} cannot be a name: {why} (names are letters, digits and '_'; space, "
                          f"'-', '.', '/', '\\', ':' become '_')")


# --- timestamps -------------------------------------------------------------------------------

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?(?:Z|[+-]\d{2}:?\d{2})?$")
_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})$")
_EPOCH_TEXT = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
_UTC = datetime.timezone.utc
_EPOCH = datetime.datetime(1970, 1, 1)

# Epoch numbers: seconds below 10**11, milliseconds below 10**14, microseconds below 10**17,
# nanoseconds above (absolute values).  Every instant from 1973-03-03 09:46:40 UTC (10**8 s) to
# 5138-11-16 (10**11 s) reads right in any of the four units; seconds also reach back to year 1.
EPOCH_RULE = ((10**11, 1_000_000), (10**14, 1_000), (10**17, 1))  # (below, microseconds per unit)
NS_PER_US = 1_000
MIN_EPOCH_US = -62_135_596_800 * 1_000_000  # 0001-01-01
MAX_EPOCH_US = 253_402_300_799_999_999  # 9999-12-31 23:59:59.999999


def parse_timestamp(text: str) -> datetime.datetime | None:
    """An ISO-looking timestamp text as a naive UTC datetime, or None when it is not one.

    `YYYY-MM-DD`, then optionally `[T ]HH:MM[:SS[.fraction]]`, then optionally `Z` or a
    `+HH[:]MM` offset (converted to UTC: the columns hold no zone, and PostgreSQL would drop an
    offset silently).  Fractions beyond microseconds are cut.
    """
    if len(text) < 10 or len(text) > 40 or not _ISO.match(text):
        return None
    s = text.replace("T", " ")
    zone = None
    if s.endswith("Z"):
        s, zone = s[:-1], _UTC
    elif len(s) > 10:
        m = _OFFSET.search(s)
        if m:
            hours, minutes = int(m.group(2)), int(m.group(3))
            if hours > 23 or minutes > 59:
                return None
            sign = 1 if m.group(1) == "+" else -1
            zone = datetime.timezone(sign * datetime.timedelta(hours=hours, minutes=minutes))
            s = s[:m.start()]
    if "." in s:
        head, frac = s.split(".", 1)
        s = head + "." + frac[:6].ljust(6, "0")
    try:
        value = datetime.datetime.fromisoformat(s)
    except ValueError:
        return None
    if zone is not None:
        try:
            value = value.replace(tzinfo=zone).astimezone(_UTC).replace(tzinfo=None)
        except OverflowError:
            return None
    return value


def format_timestamp(value: datetime.datetime) -> str:
    """The one text form of timestamps: UTC `YYYY-MM-DD HH:MM:SS[.ffffff]`."""
    if value.tzinfo is not None:
        value = value.astimezone(_UTC).replace(tzinfo=None)
    return value.isoformat(sep=" ", timespec="microseconds" if value.microsecond else "seconds")


def epoch_microseconds(value: int | float | str) -> int:
    """An epoch number (or digit string) in s, ms, µs or ns as whole microseconds (`EPOCH_RULE`).

    Integers and digit strings are exact (a fraction below a microsecond is cut); floats are
    rounded to the nearest microsecond, as near as a float can say.
    """
    number: Any = value
    if type(value) is int:  # the usual epoch: nothing to check before the unit
        pass
    elif isinstance(value, bool):
        raise ConversionError(f"{value!r} is a boolean, not a time")
    elif isinstance(value, str):
        if not _EPOCH_TEXT.match(value):
            raise ConversionError(f"{shown(value)} is not a time (ISO text like 2026-01-31T10:00:00Z, "
                                  f"YYYY-MM-DD HH:MM:SS[.ffffff] or an epoch number)")
        number = Decimal(value) if "." in value else int(value)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConversionError(f"{value!r} is not a time")
    elif not isinstance(value, (int, float)):
        raise ConversionError(f"{shown(value)} is not a time")
    per_unit = epoch_unit(number)
    if isinstance(number, int):
        micros = number * per_unit if per_unit else number // NS_PER_US
    elif isinstance(number, float):
        micros = round(number * per_unit) if per_unit else round(number / NS_PER_US)
    else:
        exact = number * per_unit if per_unit else number / NS_PER_US
        micros = int(exact.to_integral_value(rounding=ROUND_FLOOR))
    if not MIN_EPOCH_US <= micros <= MAX_EPOCH_US:
        raise ConversionError(f"epoch {shown(value)} is outside the years 1 to 9999")
    return micros


def epoch_unit(number: Any) -> int:
    """Microseconds per unit of an epoch number by its magnitude; 0 for nanoseconds."""
    size = abs(number)
    for below, per_unit in EPOCH_RULE:
        if size < below:
            return per_unit
    return 0


# The text of a whole second, by epoch second.  A stream's timestamps are mostly in the same few
# seconds, and building a datetime and its isoformat per value was half of a message's epoch
# conversion (0.9 µs); the fraction's six digits are what isoformat writes.  Bounded; shared by
# the reactor and the operator's threads (a lost entry is only made again).
_SECONDS: dict[int, str] = {}


def epoch_to_timestamp(value: int | float | str) -> str:
    micros = epoch_microseconds(value)
    seconds, fraction = divmod(micros, 1_000_000)
    head = _SECONDS.get(seconds)
    if head is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        head = _SECONDS[seconds] = format_timestamp(_EPOCH + datetime.timedelta(seconds=seconds))
    return f"{head}.{fraction:06d}" if fraction else head


def to_timestamp(value: Any) -> str:
    """ISO text (with T, Z or an offset), `YYYY-MM-DD HH:MM:SS[.ffffff]`, an epoch number or digit
    string, or a datetime, as stored timestamp text (UTC)."""
    if type(value) is int:
        return epoch_to_timestamp(value)
    if isinstance(value, str):
        parsed = parse_timestamp(value)
        if parsed is not None:
            return format_timestamp(parsed)
        return epoch_to_timestamp(value.strip())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return epoch_to_timestamp(value)
    if isinstance(value, datetime.datetime):
        return format_timestamp(value)
    if isinstance(value, datetime.date):
        return format_timestamp(datetime.datetime(value.year, value.month, value.day))
    raise ConversionError(f"{shown(value)} is not a time")


# --- numbers, booleans, text ------------------------------------------------------------------

_INT_TEXT = re.compile(r"^[+-]?\d+$")
_NUMBER_TEXT = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
NUMBER_TEXT = _NUMBER_TEXT.match


def to_integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ConversionError(f"{value!r} is a boolean, not an integer")
    if isinstance(value, int):
        if INT64[0] <= value <= INT64[1]:
            return value
        raise ConversionError(f"{value!r} is beyond a 64-bit integer")
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < EXACT_FLOAT:
            return int(value)
        raise ConversionError(f"{value!r} cannot be stored in an integer column without loss")
    if isinstance(value, str):
        text = value.strip()
        if _INT_TEXT.match(text):
            return to_integer(int(text))
        if _NUMBER_TEXT.match(text):
            number = Decimal(text)
            if number == number.to_integral_value():
                return to_integer(int(number))
        raise ConversionError(f"{shown(value)} is not a whole number")
    raise ConversionError(f"{shown(value)} is not an integer")


def to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ConversionError(f"{value!r} is a boolean, not a number")
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        raise ConversionError(f"{value!r} is not a finite number")
    if isinstance(value, int):
        if abs(value) <= EXACT_FLOAT:
            return float(value)
        raise ConversionError(f"{value!r} cannot be stored in a float column without loss")
    if isinstance(value, str):
        text = value.strip()
        if _INT_TEXT.match(text):
            return to_float(int(text))
        if _NUMBER_TEXT.match(text):
            number = float(text)
            if math.isfinite(number):
                return number
            raise ConversionError(f"{shown(value)} is beyond a float")
        raise ConversionError(f"{shown(value)} is not a number")
    raise ConversionError(f"{shown(value)} is not a number")


_TRUE, _FALSE = ("true", "1"), ("false", "0")


def to_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return value == 1
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise ConversionError(f"{shown(value)} is not a boolean (true, false, 1 or 0)")


def to_text(value: Any) -> str:
    """Text as it is; numbers and booleans as their JSON text; lists and objects as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        raise ConversionError("binary data goes to a blob column, not a text column")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    INTEGER: to_integer, FLOAT: to_float, BOOLEAN: to_boolean, TIMESTAMP: to_timestamp, TEXT: to_text}


def convert(value: Any, kind: str) -> Any:
    """A value as a column of logical type `kind` stores it (None stays None), or ConversionError."""
    if value is None:
        return None
    try:
        fn = CONVERTERS[kind]
    except KeyError:
        raise ConversionError(f"unknown column type {kind!r} (one of {', '.join(TYPES)})") from None
    return fn(value)


def shown(value: Any) -> str:
    """A value for a message: its repr, cut at 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."



# --- inference --------------------------------------------------------------------------------


def infer_type(value: Any) -> str | None:
    """The logical type of one JSON value; None for null (it says nothing about the column)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INTEGER if INT64[0] <= value <= INT64[1] else TEXT
    if isinstance(value, float):
        return FLOAT if math.isfinite(value) else TEXT
    if isinstance(value, str):
        return TIMESTAMP if parse_timestamp(value) is not None else TEXT
    if isinstance(value, (datetime.datetime, datetime.date)):
        return TIMESTAMP
    return TEXT  # lists and objects are kept as their JSON text


def widen(a: str | None, b: str | None) -> str | None:
    """The narrowest type that holds values of both types (None is "no value seen yet")."""
    if a is None:
        return b
    if b is None or a == b:
        return a
    if {a, b} == {INTEGER, FLOAT}:
        return FLOAT
    return TEXT

