"""JSON rows -> table rows: the default mapping and `mapping` policies (spec §5.5).

Pure functions over data.  A file's objects become `{column: value}` dicts (`flatten` for the
default mapping; mapping policies go through `mapper.py`); `plan_columns`
decides the table's columns (new ones are added, never dropped: AnyLog silently drops unknown
attributes, we keep them); `to_rows` turns the dicts into tuples in column order, adapting every
value to its column's type or failing with the line, column and value named.  Either every row
of a file lands with its values intact, or the file fails with a reason.
"""

from __future__ import annotations

import datetime
import itertools
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from anylog_tw.base.columns import ColumnError, convert_column
from anylog_tw.base.convert import INT64, shown
from anylog_tw.base.errors import StorageError
from anylog_tw.base.ingest_errors import IngestError
from anylog_tw.storage import schema
from anylog_tw.storage.schema import FLOAT, INTEGER, TEXT, TIMESTAMP

# --- default mapping --------------------------------------------------------------------------


def flatten(obj: Mapping[str, Any], line: int) -> dict[str, Any]:
    """One JSON object as {column: value}: nested objects flattened with `_`, names made columns.

    `{"a": {"b": 1}}` gives `{"a_b": 1}`; lists stay values (stored as JSON text).  Two
    attributes that end up as the same column (`Temp` and `temp`, or `a_b` and `a.b`) would lose
    one value, so they fail the file instead.
    """
    out: dict[str, Any] = {}
    origin: dict[str, str] = {}

    def put(path: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                put(f"{path}_{k}", v)
            return
        try:
            col = schema.column_name(path)
        except StorageError as e:
            raise IngestError("mapping", f"line {line}: attribute {path!r} cannot be a column: {e.message}") from None
        if col in schema.SYSTEM_COLUMN_NAMES:
            raise IngestError("mapping", f"line {line}: attribute {path!r} is the system column {col!r}; rename it")
        if col in out:
            raise IngestError("mapping", f"line {line}: attributes {origin[col]!r} and {path!r} both map to "
                                         f"column {col!r}; rename one of them")
        out[col] = None if isinstance(value, dict) else value  # {} holds nothing
        origin[col] = path

    for key, value in obj.items():
        if not isinstance(key, str):
            raise IngestError("mapping", f"line {line}: attribute names must be text")
        put(key, value)
    return out


# --- batches: a file's rows, column-aligned -----------------------------------------------------


@dataclass
class Batch:
    """Mapped rows, column by column: `values[j][i]` is row i's value of `columns[j]` (None: null)."""

    columns: list[str]
    values: list[list]
    lines: list[int]
    types: dict[str, str] | None = None  # columns already converted to these types (a mapping's)

    def __len__(self) -> int:
        return len(self.lines)

    @classmethod
    def of_rows(cls, columns: list[str], rows: list[list], lines: list[int],
                types: dict[str, str] | None = None) -> "Batch":
        """From row lists aligned to `columns` (a row may be shorter: the rest is null)."""
        n = len(columns)
        values = [list(c) for c in itertools.zip_longest(*rows, fillvalue=None)] if rows else []
        values += [[None] * len(rows) for _ in range(n - len(values))]
        return cls(columns, values, lines, types)


def default_batch(objs: Sequence[Mapping[str, Any]], lines: Sequence[int]) -> Batch:
    """The default mapping of a file's objects: each attribute to the column of its name.

    The hot path: when every object has the first one's attributes and none is nested (nearly
    every file), the columns are picked straight out of the objects; otherwise each row is
    flattened on its own.
    """
    if objs:
        first = objs[0]
        keys = list(first)
        n = len(keys)
        if set(map(len, objs)) == {n}:
            try:
                values = [[o[k] for o in objs] for k in keys]
            except KeyError:
                values = None
            if values is not None and not any(dict in set(map(type, v)) for v in values):
                names = list(flatten({k: None for k in keys}, lines[0]))
                return Batch(names, values, list(lines))
    index: dict[str, int] = {}
    shapes: dict[tuple, list[int] | None] = {}
    rows: list[list] = []
    append = rows.append
    for obj, line in zip(objs, lines):
        keys = tuple(obj)
        vals = list(obj.values())
        if dict not in map(type, vals):
            pos = shapes.get(keys, False)
            if pos is False:
                pos = shapes[keys] = _positions(keys, index, line)
            if pos is None:
                append(vals)
                continue
        else:
            flat = flatten(obj, line)
            pos = [_place(c, index) for c in flat]
            vals = list(flat.values())
        row = [None] * (max(pos) + 1 if pos else 0)
        for p, v in zip(pos, vals):
            row[p] = v
        append(row)
    return Batch.of_rows(list(index), rows, list(lines))


def _positions(keys: tuple, index: dict[str, int], line: int) -> list[int] | None:
    """Where each attribute of a row shape goes; None when it is columns 0..n-1 in order."""
    flat = flatten({k: None for k in keys}, line)  # names checked, collisions refused
    pos = [_place(c, index) for c in flat]
    return None if pos == list(range(len(pos))) else pos


def _place(col: str, index: dict[str, int]) -> int:
    p = index.get(col)
    if p is None:
        p = index[col] = len(index)
    return p


# --- columns and rows -------------------------------------------------------------------------


def plan_columns(batch: Batch, existing: Mapping[str, str] | None,
                 fixed: Mapping[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """(the columns the file writes, in order, with their types; the columns to add).

    `existing` is the table's columns -> logical type (None or {} when the table does not exist
    yet); `fixed` are the types a mapping policy declares.  A new column gets the type inferred
    over all the file's values (widened where rows disagree); one seen only with nulls is text.
    Existing columns keep their type: `to_rows` checks that each value fits.
    """
    existing = dict(existing or {})
    fixed = dict(fixed or {})
    columns: dict[str, str] = {}
    added: dict[str, str] = {}
    values = None
    for j, col in enumerate(batch.columns):
        if col in existing:
            columns[col] = existing[col]
            continue
        kind = fixed.get(col)
        if kind is None:
            if values is None:
                values = batch.values
            kind = infer_column(values[j]) or TEXT
        columns[col] = added[col] = kind
    return columns, added


def infer_column(values: Sequence[Any]) -> str | None:
    """The widened type of a column's values (None: only nulls)."""
    kinds = set(map(type, values))
    kinds.discard(type(None))
    if not kinds:
        return None
    if kinds == {str}:
        return TIMESTAMP if _all_timestamps([v for v in values if v is not None]) else TEXT
    kind = None
    for t in kinds:
        if t is str:
            kind = schema.widen(kind, TIMESTAMP if _all_timestamps(
                [v for v in values if type(v) is str]) else TEXT)
            continue
        sample = next(v for v in values if type(v) is t)
        k = schema.infer_type(sample)
        if k == INTEGER and t is int:  # a big int anywhere makes the column text
            if any(type(v) is int and not INT64[0] <= v <= INT64[1] for v in values):
                k = TEXT
        if k == FLOAT and any(type(v) is float and not math.isfinite(v) for v in values):
            k = TEXT
        kind = schema.widen(kind, k)
    return kind


# Timestamp texts exactly as `format_timestamp` writes them (what the mappers give), one per line:
# ASCII digits, no T or zone, a fraction of six digits that are not all 0.  For such a text
# `parse_timestamp` changes nothing before `fromisoformat`, and adapting it to a timestamp column
# gives it back unchanged.  Possessive (`*+`): a plain `*` keeps a backtracking frame per line,
# 32 MB for 50,000 texts; nothing here needs to backtrack.
_STORED_LINES = re.compile(r"(?:[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.(?!000000)[0-9]{6})?\n)*+")
_FROM_ISO = datetime.datetime.fromisoformat


def _in_stored_form(texts: list[str]) -> bool:
    """Whether every text is a real timestamp in the stored form: one regex pass over the joined
    texts and a C-level `fromisoformat` each (which refuses a 31st of February)."""
    joined = "\n".join(texts) + "\n"
    if joined.count("\n") != len(texts) or not _STORED_LINES.fullmatch(joined):
        return False
    try:
        for _ in map(_FROM_ISO, texts):
            pass
    except ValueError:
        return False
    return True


def _all_timestamps(texts: list[str]) -> bool:
    """Whether every text is a timestamp, as `parse_timestamp` says, without calling it per text.

    The type of a new text column is inferred from all its values, and parsing each was most of
    the operator's CPU on the reactor thread for a file of timestamps (1.2 µs a row).  A column
    in the stored form is checked in bulk; anything else (ISO with T or a zone, plain text) takes
    the full parse, which stops at the first non-timestamp (the first text, for most text columns).
    """
    if not texts or schema.parse_timestamp(texts[0]) is None:
        return not texts
    return _in_stored_form(texts) or all(schema.parse_timestamp(v) is not None for v in texts)


def to_columns(batch: Batch, columns: Mapping[str, str], engine: str = schema.SQLITE) -> list[Sequence[Any]]:
    """The batch's values as one sequence per column of `columns` (in its order), adapted.

    Each value is adapted to its column's type; one that would lose information (1.5 in an
    integer column, "abc" in a timestamp) fails the file, naming the line, column and value.
    Works column by column: a column whose values are all of the right Python type (nearly
    always) costs one C-level pass.  On PostgreSQL, UTC timestamp texts (`...Z` or no zone) go
    as they are: the server parses them in C (and refuses an impossible date, failing the file).
    """
    n = len(batch)
    values = batch.values
    where = {c: j for j, c in enumerate(batch.columns)}
    done = batch.types or {}
    out: list[Sequence[Any]] = []
    for col, kind in columns.items():
        j = where.get(col)
        if j is None:
            out.append([None] * n)
        elif done.get(col) == kind or (kind == TIMESTAMP and _stored_column(values[j])):
            out.append(values[j])  # the mapping converted it already, or it is stored text already
        else:
            out.append(_adapt_column(values[j], kind, col, batch.lines, engine))
    return out


def _stored_column(values: list) -> bool:
    """Whether a timestamp column's values (nulls aside) are all stored-form text: adapting them
    (0.43 µs a value, a Python loop) would give them back unchanged, on SQLite and PostgreSQL alike."""
    texts = [v for v in values if v is not None] if None in values else values
    return bool(texts) and set(map(type, texts)) == {str} and _in_stored_form(texts)


def to_rows(batch: Batch, columns: Mapping[str, str], prefix: Sequence[Any] = ()) -> list[tuple]:
    """The batch's rows as tuples in `columns` order, after the constant `prefix` values."""
    n = len(batch)
    cols = [itertools.repeat(p, n) for p in prefix] + to_columns(batch, columns)
    return list(zip(*cols)) if cols and n else []


def _adapt_column(values: Sequence[Any], kind: str, col: str, lines: Sequence[int],
                  engine: str = schema.SQLITE) -> Sequence[Any]:
    """One column converted by base/columns.py, a misfit named with its line, column and value."""
    try:
        return convert_column(values, kind, text_as_is=engine == schema.PSQL)
    except ColumnError as e:
        raise IngestError("mapping", f"line {lines[e.index]}: column {col!r} ({kind}) cannot hold "
                                     f"{shown(e.value)}: {e.message}") from None
