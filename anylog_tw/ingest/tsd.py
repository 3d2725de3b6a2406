"""TSD bookkeeping (spec §4.1, §4.2): one row per ingested file in `almgm.tsd_info` or `tsd_<member>`.

The row is the file's identity and the operator's record of progress, which is what makes
ingest exactly-once across a crash:

* `register` inserts the row (`rows` 0, `status2` = `pending`) or finds the one already there
  for the hash.  A hash already *done* is a duplicate; one still *pending* is a file this
  operator registered before it was stopped, and is taken over (not registered twice).
* The file's rows go into the user table tagged with (`tsd_name`, `tsd_id`) = (member, file_id)
  in one transaction that first deletes any rows with that tag (left by an earlier attempt).
* `mark_done` records the row count and `status2` = `done`; after that the file is only ever
  archived, never inserted again.

The functions taking `tx` run inside a storage transaction on the database's writer thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from anylog_tw.base.errors import StorageError
from anylog_tw.storage import schema

PENDING = "pending"
DONE = "done"
FAILED_STATUS = "02"  # status1 of a file registered here that could not be ingested (01: missing, see HA)
RETRIES = 3  # failed attempts after which the HA pull stops asking a member for the file again
TSD_DBMS = "almgm"


@dataclass(frozen=True)
class TsdRow:
    table: str
    file_id: int
    file_hash: str
    status: str
    rows: int

    @property
    def done(self) -> bool:
        return self.status == DONE


def tsd_table(member: str | None, own_member: str) -> str:
    """`tsd_info` for this operator's own files, `tsd_<member>` for files a cluster peer registered."""
    if member is None or member == own_member:
        return "tsd_info"
    if not re.fullmatch(r"\d{1,9}", member):
        raise StorageError(f"member {member!r} is not a number")
    if own_member.isdigit() and int(member) == int(own_member):
        return "tsd_info"  # "007" is member 7
    return f"tsd_{int(member)}"


_COLS = '"file_id", "file_hash", "status2", "rows"'


def find_hash(tx, table: str, file_hash: str) -> TsdRow | None:
    _, rows = tx.query(f'SELECT {_COLS} FROM {schema.quote(table)} WHERE "file_hash" = ?', (file_hash,))
    return _row(table, rows)


def find_id(tx, table: str, file_id: int) -> TsdRow | None:
    _, rows = tx.query(f'SELECT {_COLS} FROM {schema.quote(table)} WHERE "file_id" = ?', (int(file_id),))
    return _row(table, rows)


def _row(table: str, rows) -> TsdRow | None:
    if not rows:
        return None
    r = rows[0]
    return TsdRow(table, int(r[0]), r[1], r[2] or "", int(r[3] or 0))


def register(tx, table: str, dbms: str, tbl: str, source: str, file_hash: str, instructions: str,
             file_time: str, file_id: int | None = None) -> tuple[TsdRow, bool]:
    """(the file's row, whether it is new).  `file_id` is given for a peer's `tsd_<member>` table.

    An existing row with the hash comes back as it is (the caller decides: duplicate or take
    over).  A peer's file_id already used by another hash is an error: the peer's numbering and
    ours disagree, and guessing would tie rows to the wrong file.
    """
    found = find_hash(tx, table, file_hash)
    if found is not None:
        return found, False
    q = schema.quote(table)
    cols = '"dbms_name", "table_name", "source", "file_hash", "instructions", "file_time", "rows", "status2"'
    values = [dbms, tbl, source, file_hash, instructions, file_time, 0, PENDING]
    if file_id is None:
        _, rows = tx.query(f"INSERT INTO {q} ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING \"file_id\"", values)
        new_id = int(rows[0][0])
    else:
        other = find_id(tx, table, file_id)
        if other is not None:
            raise StorageError(f"{table} already has file_id {file_id} for another file (hash {other.file_hash})")
        tx.execute(f'INSERT INTO {q} ("file_id", {cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)', [file_id, *values])
        new_id = int(file_id)
    return TsdRow(table, new_id, file_hash, PENDING, 0), True


def mark_done(tx, table: str, file_id: int, rows: int) -> None:
    n = tx.execute(f'UPDATE {schema.quote(table)} SET "rows" = ?, "status1" = NULL, "status2" = ? WHERE "file_id" = ?',
                   (int(rows), DONE, int(file_id)))
    if n == 0:
        raise StorageError(f"{table} has no file_id {file_id} to mark done")


def mark_failed(tx, table: str, file_id: int, reason: str) -> int:
    """Record that a registered file could not be ingested; returns the attempts so far (0: the row is done).

    A pending row would read as "in progress" forever: the HA pull would never ask for the file
    again, and `get tsd errors` would not show it.  The row keeps the file's hash, so the same file
    dropped again (or sent again by a member) is taken over and redone like a pending one.
    """
    q = schema.quote(table)
    _, rows = tx.query(f'SELECT "status1", "status2" FROM {q} WHERE "file_id" = ?', (int(file_id),))
    if not rows or rows[0][1] == DONE:
        return 0
    n = failed_attempts(rows[0][0], rows[0][1]) + 1
    tx.execute(f'UPDATE {q} SET "status1" = ?, "status2" = ? WHERE "file_id" = ? AND "status2" <> ?',
               (FAILED_STATUS, f"failed {n}: {reason}"[:500], int(file_id), DONE))
    return n


def failed_attempts(status1: str | None, status2: str | None) -> int:
    """How many times a file failed here, from its row's statuses (0 when it did not)."""
    if status1 != FAILED_STATUS:
        return 0
    m = re.match(r"failed (\d+):", status2 or "")
    return int(m.group(1)) if m else 1
