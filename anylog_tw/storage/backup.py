"""`backup table`: a table's rows as one data file of the node's own convention (spec §3).

The file is what a device would send: `dbms.table.0.<hash>.0.json`, one JSON object per line
with the table's data columns (the system columns are the operator's to fill again), so
dropping it into an operator's watch dir restores the rows.  The hash in the name is the
content hash of spec §3.4 (`file hash` gives the same), which also makes the operator take a
second copy of the same backup as a duplicate rather than ingest its rows twice.

`write_backup` runs in a thread fed by `Database.scan`: rows arrive in batches and leave as
lines, so memory holds one batch whatever the table's size.  The lines go to an `atomic.TempFile`
(a hidden name the watcher never takes), are synced, and only then renamed to the data-file name:
a crash or an error leaves no half file where an operator could pick it up.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import orjson

from anylog_tw.base import atomic
from anylog_tw.base.errors import StorageError
from anylog_tw.base.filename import FileName
from anylog_tw.storage import schema, sqlfmt

ROW_ID = "row_id"


@dataclass(frozen=True)
class BackupResult:
    path: str | None  # None: the table had no rows, so no file was written
    rows: int
    hash: str


def data_columns(declared: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """(column, logical type) of the columns a backup writes: every column but the system ones."""
    return [(n.lower(), schema.logical_type(t)) for n, t in declared if n.lower() not in schema.SYSTEM_COLUMN_NAMES]


def select_sql(table: str, columns: Sequence[str], has_row_id: bool) -> str:
    """The scan of a backup: row_id first (to name a bad row), the data columns, in insert order."""
    names = ([ROW_ID] if has_row_id else []) + list(columns)
    order = f' ORDER BY "{ROW_ID}"' if has_row_id else ""
    return f"SELECT {', '.join(schema.quote(c, 'column name') for c in names)} FROM {schema.quote(table)}{order}"


# --- values --------------------------------------------------------------------------------------


def _boolean(v: Any) -> Any:
    # SQLite keeps booleans as 0 and 1: written as true/false, the column's type survives a restore.
    if isinstance(v, int) and not isinstance(v, bool) and v in (0, 1):
        return bool(v)
    return sqlfmt.json_value(v)


def _timestamp(v: Any) -> Any:
    if isinstance(v, datetime.datetime):
        return schema.format_timestamp(v)
    return sqlfmt.json_value(v)


def _number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"{v!r} (JSON has no NaN or Infinity)")
    if isinstance(v, decimal.Decimal) and not v.is_finite():
        raise ValueError(f"{v} (JSON has no NaN or Infinity)")
    return sqlfmt.json_value(v)


_CONVERT: dict[str, Callable[[Any], Any]] = {schema.BOOLEAN: _boolean, schema.TIMESTAMP: _timestamp,
                                             schema.FLOAT: _number, schema.INTEGER: _number}


def converters(types: Sequence[str]) -> list[Callable[[Any], Any]]:
    return [_CONVERT.get(t, sqlfmt.json_value) for t in types]


def lines(batch: Sequence[Sequence[Any]], names: Sequence[str], convert: Sequence[Callable[[Any], Any]],
          has_row_id: bool, where: str) -> bytes:
    """A batch of rows as newline-terminated JSON objects; a value JSON cannot hold is a StorageError."""
    out = []
    skip = 1 if has_row_id else 0
    for row in batch:
        values = row[skip:]
        try:
            obj = {n: (None if v is None else c(v)) for n, c, v in zip(names, convert, values)}
        except ValueError as e:
            bad = next(n for n, c, v in zip(names, convert, values) if v is not None and _fails(c, v))
            which = f"row_id {row[0]}" if has_row_id else "a row"
            raise StorageError(f"{where}: {which}, column '{bad}' holds {e}; change the value (sql ... update) and "
                               f"back up again") from None
        out.append(orjson.dumps(obj))
    return b"\n".join(out) + b"\n" if out else b""


def _fails(convert: Callable[[Any], Any], value: Any) -> bool:
    try:
        convert(value)
    except ValueError:
        return True
    return False


# --- the file ------------------------------------------------------------------------------------


def check_dest(dest: str) -> str:
    """The destination as an absolute directory, or a StorageError saying what is wrong with it."""
    path = os.path.abspath(os.path.expanduser(dest))
    if not os.path.isdir(path):
        raise StorageError(f"dest '{dest}' is not a directory (create it first; 'create work directories' "
                           f"makes !bkup_dir)")
    if not os.access(path, os.W_OK | os.X_OK):
        raise StorageError(f"dest '{dest}' is not writable by the node")
    return path


def write_backup(columns: list[str], batches: Iterable[Sequence[Sequence[Any]]], dest: str, dbms: str, table: str,
                 types: Sequence[str], has_row_id: bool) -> BackupResult:
    """(In a thread, from `Database.scan`.) Write the rows, then rename the file into place.

    `columns` are the scan's column names (row_id first when `has_row_id`); `types` the logical
    types of the data columns.  Nothing is left under a data-file name unless it is complete.
    """
    where = f"backup of {dbms}.{table}"
    names = columns[1:] if has_row_id else list(columns)
    convert = converters(types)
    digest = hashlib.md5(f"{dbms}.{table}".encode("utf-8"))  # spec §3.4, as the operator computes it
    count = 0
    try:
        with atomic.TempFile(dest, f"{dbms}.{table}") as tmp:
            for batch in batches:
                data = lines(batch, names, convert, has_row_id, where)
                digest.update(data)
                tmp.file.write(data)
                count += len(batch)
            if count == 0:
                return BackupResult(None, 0, "")
            final = os.path.join(dest, FileName(dbms, table, "0", digest.hexdigest(), "0").format())
            try:
                tmp.publish(final)
            except FileExistsError:
                pass  # a file already there has this very content (the name is its hash)
        return BackupResult(final, count, digest.hexdigest())
    except OSError as e:
        raise StorageError(f"{where}: cannot write to {dest}: {e.strerror or e}; no backup file was left") from None
