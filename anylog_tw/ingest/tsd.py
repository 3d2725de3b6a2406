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

A hash is unique across the cluster, not only in one table (issue 16): the members of a cluster
copy each other's files (HA), so the same data can reach a member twice under two identities,
e.g. a file the publisher sent to a member that was killed before it acknowledged, then sent
again to the other member.  `register(..., cluster_wide=True)` therefore looks for the hash in
`tsd_info` and every `tsd_<member>` table, in the same transaction as the insert: a file of our
own whose data is held under another row is refused, and a peer's copy of data we hold already
is recorded in `tsd_<member>` as a duplicate (`status1 = '03'`, done, 0 rows) so the HA pull
never asks for it again, and its rows are not inserted.

The functions taking `tx` run inside a storage transaction on the database's writer thread.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from anylog_tw.base.errors import StorageError
from anylog_tw.base.ingest_errors import IngestError
from anylog_tw.storage import schema

PENDING = "pending"
DONE = "done"
FAILED_STATUS = "02"  # status1 of a file registered here that could not be ingested (01: missing, see HA)
DUPLICATE_STATUS = "03"  # status1 of a peer's file whose data this node holds under another TSD row
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


_TSD_NAME = re.compile(r"tsd_(info|\d{1,9})")


def tsd_tables(tx) -> list[str]:
    """The TSD tables of this almgm: tsd_info and every tsd_<member>."""
    if tx.engine == schema.SQLITE:
        _, rows = tx.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'tsd%'")
    else:
        _, rows = tx.query("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                           "AND tablename LIKE 'tsd%'")
    return sorted(r[0] for r in rows if _TSD_NAME.fullmatch(r[0]))


def find_hash_elsewhere(tx, table: str, file_hash: str) -> TsdRow | None:
    """A row of another TSD table whose file holds this data: ingested or being ingested (not failed,
    missing, or itself a recorded duplicate)."""
    for other in tsd_tables(tx):
        if other == table:
            continue
        _, rows = tx.query(f'SELECT {_COLS} FROM {schema.quote(other)} WHERE "file_hash" = ? AND "status1" IS NULL',
                           (file_hash,))
        if rows:
            return _row(other, rows)
    return None


def register(tx, table: str, dbms: str, tbl: str, source: str, file_hash: str, instructions: str,
             file_time: str, file_id: int | None = None, cluster_wide: bool = False) -> tuple[TsdRow, bool]:
    """(the file's row, whether it is new).  `file_id` is given for a peer's `tsd_<member>` table.

    An existing row with the hash comes back as it is (the caller decides: duplicate or take
    over).  A peer's file_id already used by another hash is an error: the peer's numbering and
    ours disagree, and guessing would tie rows to the wrong file.

    `cluster_wide`: a row of another TSD table with the hash comes back too (its `table` says
    so), except that a peer's file (`file_id` given) whose data another row holds *done* is
    recorded here as a duplicate, done with 0 rows, and that row comes back: the caller only
    archives the file.
    """
    found = find_hash(tx, table, file_hash)
    if found is not None:
        return found, False
    if cluster_wide:
        other = find_hash_elsewhere(tx, table, file_hash)
        if other is not None and not (other.done and file_id is not None):
            return other, False
        if other is not None:
            if find_id(tx, table, file_id) is not None:
                raise StorageError(f"{table} already has file_id {file_id} for another file")
            tx.execute(f'INSERT INTO {schema.quote(table)} ("file_id", "dbms_name", "table_name", "source", '
                       f'"file_hash", "instructions", "file_time", "rows", "status1", "status2") '
                       f'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                       (int(file_id), dbms, tbl, source, file_hash, instructions, file_time, 0, DUPLICATE_STATUS,
                        DONE))
            return TsdRow(table, int(file_id), file_hash, DONE, 0), False
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


def judge(row: TsdRow, new: bool, tsd_table: str, file_hash: str, own: bool, same_file: bool,
          named_id: int | None) -> tuple[bool, bool]:
    """What the TSD row `register` returned says about a file: (already done, redo its rows).

    A file whose data the cluster holds under another identity, or this node under another file,
    is a duplicate (IngestError); a peer's (member, file_id) names one file for good, so rows with
    its tag can only be an earlier copy whose TSD row was deleted (`time file delete`, then an HA
    pull): they are replaced.
    """
    if row.table != tsd_table:  # the cluster holds this data under another identity
        state = "already ingested" if row.done else "being ingested"
        raise IngestError("duplicate", f"the same data as file {row.file_id} of {row.table} (hash {file_hash}), "
                                       f"{state}: the cluster keeps one copy")
    if new:
        return False, not own
    if row.done and not same_file:
        raise IngestError("duplicate", f"the same data as file {row.file_id} of {tsd_table} "
                                       f"(hash {file_hash}), already ingested")
    if not own and not same_file:
        raise IngestError("duplicate", f"hash {file_hash} is file {row.file_id} in {tsd_table}, not {named_id}")
    return row.done, not row.done
