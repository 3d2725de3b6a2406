"""HA bookkeeping: pure functions over TSD ids and rows, and the small persisted push table.

Everything the HA protocol decides is decided here, from plain data, so it is property-tested
without a network or a database:

* `advance` moves a member's high-water mark (the id up to which every file this node ingested
  has been acknowledged by that member) over acknowledged and abandoned rows, never past a file
  still to send.  The mark is what is persisted: a restart resends only what lies above it, and
  a resend is harmless (the receiver recognises a file it already has by its TSD row).
* `format_ranges` / `parse_ranges` write id sets compactly (`1-500,502`) for the pull requests.
* `missing_ids` is the pull's question: which of a peer's files are not in our `tsd_<member>`.
* `archive_candidates` rebuilds where the operator archived a file from its TSD row.

The `tx`-functions run inside a storage transaction on almgm's writer thread.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from anylog_tw.base.filename import archive_subdir
from anylog_tw.storage import schema

PUSH_TABLE = "ha_push"
DONE = "done"
MISSING_STATUS = "01"
MAX_RANGE_IDS = 1_000_000  # a request naming more ids than this is refused (one bad range must not eat memory)


@dataclass(frozen=True)
class FileRow:
    """One row of tsd_info, as HA needs it."""

    file_id: int
    dbms: str
    table: str
    source: str
    hash: str
    instructions: str
    file_time: float  # UTC epoch seconds
    status: str
    rows: int = 0

    @property
    def done(self) -> bool:
        return self.status == DONE

    def tsd_date(self) -> str:
        return datetime.datetime.fromtimestamp(int(self.file_time), datetime.timezone.utc).strftime("%y%m%d%H%M%S")

    def stem(self, member: str) -> str:
        """The 8-segment name without the type: what the operator named the file once registered."""
        return ".".join([self.dbms, self.table, self.source, self.hash, self.instructions, str(member),
                         str(self.file_id), self.tsd_date()])


ROW_COLUMNS = '"file_id", "dbms_name", "table_name", "source", "file_hash", "instructions", "file_time", ' \
              '"status2", "rows"'


def epoch(value) -> float:
    """A TSD `file_time` (text from SQLite, a datetime from PostgreSQL) as UTC epoch seconds."""
    if isinstance(value, datetime.datetime):
        dt = value
    else:
        text = str(value).strip().replace("T", " ")
        try:
            dt = datetime.datetime.fromisoformat(text)
        except ValueError:
            return 0.0
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.timestamp()


def stamp(seconds: float) -> str:
    """Epoch seconds as the TSD tables' timestamp text (UTC)."""
    return schema.format_timestamp(datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc))


def file_row(r: Sequence) -> FileRow:
    return FileRow(int(r[0]), r[1], r[2], r[3], r[4], r[5], epoch(r[6]), r[7] or "", int(r[8] or 0))


# --- the push high-water mark ---------------------------------------------------------------


def advance(hwm: int, rows: Iterable[FileRow], acked: set[int], now: float, stale: float,
            upto: int | None = None) -> int:
    """The new mark: moved over each row (in id order) that is acknowledged, or not done and older
    than `stale` seconds (a file the operator failed and will not finish: the pull covers it if it
    ever is), stopping at the first row still owed to the member.  Ids with no row are gaps the
    database left (PostgreSQL sequences) and are passed over.

    `rows` must be in id order (the push keeps them so); the walk stops at the first row owed, so
    a tick costs what moved, not what is cached.  `upto` is the highest id up to which `rows` is
    known complete (read from the table): rows learnt otherwise may be above it, with unknown
    rows between, so the mark never passes it."""
    for row in rows:
        if row.file_id <= hwm:
            continue
        if upto is not None and row.file_id > upto:
            break
        if row.file_id in acked:
            hwm = row.file_id
        elif not row.done and now - row.file_time > stale:
            hwm = row.file_id
        else:
            break
    return hwm


def owed(hwm: int, rows: Iterable[FileRow], acked: set[int], inflight: set[int], limit: int | None = None
         ) -> list[FileRow]:
    """Done rows above the mark the member has not acknowledged and that are not on their way, in
    id order (`rows` must be), at most `limit` of them."""
    out: list[FileRow] = []
    for r in rows:
        if limit is not None and len(out) >= limit:
            break
        if r.file_id > hwm and r.done and r.file_id not in acked and r.file_id not in inflight:
            out.append(r)
    return out


def lag_seconds(pending: Iterable[FileRow], now: float) -> float:
    """How long the oldest file still owed has waited (0 when nothing is owed)."""
    oldest = min((r.file_time for r in pending), default=None)
    return max(0.0, now - oldest) if oldest is not None else 0.0


# --- id ranges (pull requests) --------------------------------------------------------------


def format_ranges(ids: Iterable[int]) -> str:
    """Sorted, distinct ids as `1-3,7,9-10` (empty text for none)."""
    out: list[str] = []
    start = prev = None
    for i in sorted(set(ids)):
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            out.append(f"{start}-{prev}" if prev != start else str(start))
            start = prev = i
    if start is not None:
        out.append(f"{start}-{prev}" if prev != start else str(start))
    return ",".join(out)


_RANGE = re.compile(r"^(\d{1,12})(?:-(\d{1,12}))?$")


def parse_ranges(text: str) -> list[int]:
    """`1-3,7` -> [1, 2, 3, 7]; ValueError naming the bad part."""
    ids: set[int] = set()
    text = text.strip()
    if not text:
        return []
    for part in text.split(","):
        m = _RANGE.match(part.strip())
        if not m:
            raise ValueError(f"{part.strip()!r} is not an id or a range of ids (e.g. 4 or 7-12)")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if hi < lo:
            raise ValueError(f"range {part.strip()!r} ends before it starts")
        if hi - lo + len(ids) > MAX_RANGE_IDS:
            raise ValueError(f"more than {MAX_RANGE_IDS} ids requested at once")
        ids.update(range(lo, hi + 1))
    return sorted(ids)


def missing_ids(peer_ids: Iterable[int], local_ids: Iterable[int]) -> list[int]:
    """The peer's files this node has no TSD row for, in id order."""
    have = set(local_ids)
    return sorted(i for i in set(peer_ids) if i not in have)


def batches(ids: Sequence[int], size: int) -> list[list[int]]:
    return [list(ids[i:i + size]) for i in range(0, len(ids), size)]


# --- where the operator archived a file -----------------------------------------------------


def row_of_job(job, rows: int) -> FileRow:
    """The tsd_info row of a file the operator just ingested, from what its job knows."""
    f = job.fname
    when = datetime.datetime.strptime(job.date, "%y%m%d%H%M%S").replace(tzinfo=datetime.timezone.utc).timestamp()
    return FileRow(int(job.tsd_id), job.dbms, job.table, f.source, job.hash or f.hash, f.instructions, when, DONE,
                   int(rows))


def archive_candidates(archive_dir: str, row: FileRow, member: str) -> list[str]:
    """Paths the operator may have archived the file under (gzipped or not), most likely first."""
    stem = row.stem(member)
    base = os.path.join(archive_dir, archive_subdir(row.tsd_date()), stem + ".json")
    return [base + ".gz", base]


def find_archived(archive_dir: str, row: FileRow, member: str, search: bool = True) -> str | None:
    """The archived file of a TSD row, or None (blocking: run it in a thread).

    The registration date is in the name; when a file was re-registered after a crash its
    archive date may differ from its file_time, so a miss looks for the 7 first segments in
    every day directory (rare, and only for files not where they should be).
    """
    for path in archive_candidates(archive_dir, row, member):
        if os.path.isfile(path):
            return path
    if not search:
        return None
    prefix = ".".join(row.stem(member).split(".")[:7]) + "."
    try:
        years = os.listdir(archive_dir)
    except OSError:
        return None
    for yy in sorted(years, reverse=True):
        for mm in _subdirs(os.path.join(archive_dir, yy)):
            for dd in _subdirs(os.path.join(archive_dir, yy, mm)):
                d = os.path.join(archive_dir, yy, mm, dd)
                for name in os.listdir(d):
                    if name.startswith(prefix) and (name.endswith(".json") or name.endswith(".json.gz")):
                        return os.path.join(d, name)
    return None


def _subdirs(path: str) -> list[str]:
    try:
        return sorted((n for n in os.listdir(path) if os.path.isdir(os.path.join(path, n))), reverse=True)
    except OSError:
        return []


# --- the persisted push marks (almgm.ha_push) -------------------------------------------------


def push_table_sql() -> list[str]:
    return [f'CREATE TABLE IF NOT EXISTS "{PUSH_TABLE}" ("member" VARCHAR PRIMARY KEY, "address" VARCHAR, '
            f'"acked_id" INTEGER NOT NULL, "updated" VARCHAR)']


def save_marks(tx, marks: dict[str, tuple[str, int]], when: str) -> None:
    """Upsert each member's (address, acked id) in one transaction."""
    for member, (address, acked) in marks.items():
        tx.execute(f'INSERT INTO "{PUSH_TABLE}" ("member", "address", "acked_id", "updated") VALUES (?, ?, ?, ?) '
                   f'ON CONFLICT ("member") DO UPDATE SET "address" = excluded."address", '
                   f'"acked_id" = excluded."acked_id", "updated" = excluded."updated"',
                   (member, address, int(acked), when))


def record_missing(tx, table: str, row: dict, member: str, reason: str) -> bool:
    """A peer no longer has a file: a `status1 = '01'` row in `tsd_<member>` (once)."""
    q = schema.quote(table)
    _, found = tx.query(f'SELECT 1 FROM {q} WHERE "file_id" = ? OR "file_hash" = ?',
                        (int(row["file_id"]), str(row["hash"])))
    if found:
        return False
    tx.execute(f'INSERT INTO {q} ("file_id", "dbms_name", "table_name", "source", "file_hash", "instructions", '
               f'"file_time", "rows", "status1", "status2") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
               (int(row["file_id"]), str(row["dbms"]), str(row["table"]), str(row["source"]), str(row["hash"]),
                str(row["instructions"]), str(row["file_time"]), 0, MISSING_STATUS,
                f"Missing archived data with member {member}: {reason}"[:500]))
    return True
