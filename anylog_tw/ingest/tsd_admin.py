"""The TSD bookkeeping by hand (`time file ...`): naming a data file, and changing TSD rows.

These are the operator's records of which file became which rows, so each helper is careful in
the one way that matters for exactly-once:

* a row is never overwritten: a hash or file_id already recorded is an error, not an update;
* `tsd_info` is emptied, never dropped: its `file_id` numbering must go on, because the
  numbers are the (`tsd_name`, `tsd_id`) tags on rows already in the user tables, and a reused
  number would tie a new file to an old file's rows (a redo deletes the rows with its tag);
* only names that are TSD tables (`tsd_info`, `tsd_<member>`) with the TSD columns are touched.

The file functions block (they read and rename files) and run in a thread pool; the functions
taking `tx` run inside a storage transaction on the database's writer thread.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace

from anylog_tw.base.atomic import rename_no_replace
from anylog_tw.base.errors import CommandError, NotFound
from anylog_tw.base.filename import FileName, parse_file_name
from anylog_tw.base.ingest_errors import IngestError
from anylog_tw.ingest import fileops, tsd
from anylog_tw.storage import schema

TSD_TABLE = re.compile(r"^tsd_(info|\d{1,9})$")
_PART = re.compile(r"^[A-Za-z0-9_\-:+=~,]+$")  # a name segment: no dots, slashes, spaces or '@'


def check_tsd_table(name: str) -> str:
    """The TSD table name lower-cased, or an error: nothing else may be dropped or edited here."""
    low = name.strip().lower()
    if not TSD_TABLE.match(low):
        raise CommandError(f"{name!r} is not a TSD table: use tsd_info or tsd_<member id> "
                           f"(see 'time file tables'); other tables are never changed by 'time file'")
    return low


def tsd_tables(names) -> list[str]:
    """The TSD tables among a dbms's tables, tsd_info first."""
    return sorted((t for t in names if TSD_TABLE.match(t)), key=lambda t: (t != "tsd_info", len(t), t))


# --- files ---------------------------------------------------------------------------------------


def parse_name(path: str) -> FileName:
    """The parts of a data file's name, or a CommandError that says what is wrong with it."""
    try:
        return parse_file_name(os.path.basename(path))
    except IngestError as e:
        raise CommandError(str(e)) from None


def _segment(key: str, value: str) -> str:
    if not _PART.match(value):
        raise CommandError(f"{key} {value!r} cannot be a file name segment (letters, digits and _-:+=~, only)")
    return value


def plan_rename(name: str, dbms: str | None = None, table: str | None = None, source: str | None = None,
                hash_: str | None = None, instructions: str | None = None) -> FileName:
    """The new name's parts (its hash still "0" when it must be computed from the content).

    dbms and table come from the name when not given; so do source and instructions (both "0"
    when the name has none), because silently dropping a mapping policy's id would change how
    the file is ingested.  A name that does not follow the convention needs dbms and table.  A
    registered (8-segment) name is refused: it is tied to its TSD row and its rows' tags.
    """
    base = os.path.basename(name)
    try:
        old = parse_file_name(base)
    except IngestError as e:
        low = base.lower()
        if not low.endswith((".json", ".json.gz")):
            raise CommandError(f"{base!r} is not a JSON data file (.json or .json.gz): the operator takes only "
                               f"those") from None
        if not dbms or not table:
            raise CommandError(f"{e}; give the parts it lacks: 'to dbms = D and table = T'") from None
        old = FileName(dbms="x", table="x", gz=low.endswith(".gz"))
    if old.registered:
        raise CommandError(f"{base!r} is already registered (member {old.member}, TSD id {old.tsd_id}): renaming it "
                           f"would detach it from its TSD row; rename the original short-named file instead")
    given = {"dbms": dbms, "table": table, "source": source, "instructions": instructions, "hash": hash_}
    parts = {key: _segment(key, value) for key, value in given.items() if value is not None}
    new = replace(old, dbms=parts.get("dbms", old.dbms).lower(), table=parts.get("table", old.table).lower(),
                  source=parts.get("source", old.source), instructions=parts.get("instructions", old.instructions),
                  hash=parts.get("hash", "0"))
    return parse_name(new.format())  # the whole new name checked as the operator reads it


def rename_file(path: str, plan: FileName) -> str:
    """Give the file the planned name in its own directory; the new path.

    The hash is computed when the plan has none.  An existing file of the new name is never
    replaced (its data would be lost).
    """
    if not os.path.isfile(path):
        raise NotFound(f"no file {path!r} to rename")
    if plan.hash == "0":
        plan = replace(plan, hash=fileops.hash_file(path, plan.dbms, plan.table))
    target = os.path.join(os.path.dirname(path), plan.format())
    if os.path.abspath(target) == os.path.abspath(path):
        return target
    try:
        rename_no_replace(path, target)
    except FileExistsError:
        raise CommandError(f"{target!r} exists already: it is not replaced (move one of the files away first)") \
            from None
    return target


# --- rows --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """A TSD row as the `time file` replies describe it."""

    table: str
    file_id: int
    dbms: str
    tbl: str
    file_hash: str
    rows: int
    status1: str | None
    status2: str | None

    @property
    def done(self) -> bool:
        return self.status2 == tsd.DONE


_ROW = '"file_id", "dbms_name", "table_name", "file_hash", "rows", "status1", "status2"'


def _rows(table: str, found) -> list[Row]:
    return [Row(table, int(r[0]), r[1], r[2], r[3], int(r[4] or 0), r[5], r[6]) for r in found]


def find_row(tx, table: str, *, file_id: int | None = None, file_hash: str | None = None) -> Row | None:
    key, value = ("file_id", int(file_id)) if file_id is not None else ("file_hash", file_hash)
    _, found = tx.query(f'SELECT {_ROW} FROM {schema.quote(table)} WHERE "{key}" = ?', (value,))
    rows = _rows(table, found)
    return rows[0] if rows else None


def add_row(tx, table: str, name: FileName, file_hash: str, file_time: str, status1: str | None,
            status2: str | None, file_id: int | None) -> Row:
    """Register a file as the operator would, with the given statuses; an existing hash is an error.

    `file_id` is the peer's id for a `tsd_<member>` table; tsd_info numbers its rows itself.
    """
    row, new = tsd.register(tx, table, name.dbms, name.table, name.source, file_hash, name.instructions,
                            file_time, file_id)
    if not new:
        state = "ingested" if row.done else f"status2 {row.status!r}"
        raise CommandError(f"hash {file_hash} is already in {table} as file_id {row.file_id} ({state}); "
                           f"use 'time file update' to change its statuses")
    if status1 is not None or status2 is not None:
        tx.execute(f'UPDATE {schema.quote(table)} SET "status1" = ?, "status2" = ? WHERE "file_id" = ?',
                   (status1, status2 if status2 is not None else tsd.PENDING, row.file_id))
    return find_row(tx, table, file_id=row.file_id)


def update_statuses(tx, table: str, file_hash: str, status1: str | None, status2: str | None) -> tuple[Row, Row]:
    """(the row before, the row after) with the given statuses set; None keeps a status, "" empties it."""
    before = find_row(tx, table, file_hash=file_hash)
    if before is None:
        raise NotFound(f"no file with hash {file_hash!r} in {table} (see 'get tsd details where table = {table}')")
    sets, params = [], []
    for column, value in (("status1", status1), ("status2", status2)):
        if value is not None:
            sets.append(f'"{column}" = ?')
            params.append(value or None)
    tx.execute(f'UPDATE {schema.quote(table)} SET {", ".join(sets)} WHERE "file_id" = ?', (*params, before.file_id))
    return before, find_row(tx, table, file_id=before.file_id)


def delete_row(tx, table: str, file_id: int, only_done: bool) -> Row:
    """Delete one row; the row as it was.  `only_done`: a file not done may be in the operator's hands."""
    row = find_row(tx, table, file_id=file_id)
    if row is None:
        raise NotFound(f"{table} has no file_id {file_id} (see 'get tsd details where table = {table}')")
    if only_done and not row.done:
        raise CommandError(f"file_id {file_id} of {table} is not done (status2 {row.status2!r}): the running operator "
                           f"may be ingesting it; stop it first ('exit operator') and delete the row then")
    tx.execute(f'DELETE FROM {schema.quote(table)} WHERE "file_id" = ?', (int(file_id),))
    return row


def table_counts(tx, tables: list[str]) -> list[tuple[str, int, int, int]]:
    """(table, files, files done, rows) of each TSD table."""
    out = []
    for t in tables:
        _, found = tx.query(f'SELECT count(*), sum(CASE WHEN "status2" = ? THEN 1 ELSE 0 END), sum("rows") '
                            f'FROM {schema.quote(t)}', (tsd.DONE,))
        files, done, rows = found[0]
        out.append((t, int(files or 0), int(done or 0), int(rows or 0)))
    return out


def drop_tables(tx, tables: list[str]) -> list[tuple[str, int]]:
    """Drop the tables, all or none: (table, rows it held).  tsd_info is emptied and keeps its numbering."""
    out = []
    for t in tables:
        q = schema.quote(check_tsd_table(t))
        _, found = tx.query(f"SELECT count(*) FROM {q}")
        if t == "tsd_info":
            tx.execute(f"DELETE FROM {q}")  # AUTOINCREMENT / SERIAL keep counting: tags are never reused
        else:
            tx.execute(f"DROP TABLE {q}")
        out.append((t, int(found[0][0])))
    return out
