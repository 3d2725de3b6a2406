"""The file-name convention of spec §3: parse and format, the content hash, error and archive names.

A data file says where its rows go in its name:
`dbms.table[.source[.hash[.instructions]]].json` (the short form, written by devices) or
`dbms.table.source.hash.instructions.member.tsd_id.YYMMDDHHMMSS.json` (the 8-segment form, given
to a file once it is registered in a TSD table).  `.gz` may follow the type.  Everything here is
a pure function over names and bytes, so it is property-tested without a filesystem.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass, replace
from typing import Iterable

from anylog_tw.base.ingest_errors import IngestError
from anylog_tw.base.names import is_name

TYPES = ("json", "sql")
# An `instructions` segment that names no mapping policy: the rows keep to the table's columns as
# they are (attributes the table lacks are left out, not added).  Dynamic MQTT topics write it:
# their first schema wins (msg/dynamic.py).
KEEP_SCHEMA = "keep_schema"
_SEGMENT = re.compile(r"^[A-Za-z0-9_\-:+=@~,]+$")  # no dots, slashes, spaces or control characters
_DATE = re.compile(r"^\d{12}$")
_TEMP_SUFFIXES = (".part", ".tmp", ".temp", ".swp", ".crdownload", "~")


@dataclass(frozen=True)
class FileName:
    """The parts of a data file's name; `member` is None in the short form."""

    dbms: str
    table: str
    source: str = "0"
    hash: str = "0"
    instructions: str = "0"
    member: str | None = None  # digits, or "@" (rows already inserted by the streamer)
    tsd_id: int = 0
    tsd_date: str | None = None  # YYMMDDHHMMSS, UTC
    type: str = "json"
    gz: bool = False
    partition: str | None = None  # a .sql file's partition segment (after the table), kept as given

    @property
    def registered(self) -> bool:
        return self.member is not None

    @property
    def stem(self) -> str:
        """The name without its type (and without `.gz`)."""
        parts = [self.dbms, self.table, self.source, self.hash, self.instructions]
        if self.partition is not None:
            parts.insert(2, self.partition)
        if self.member is not None:
            parts += [self.member, str(self.tsd_id), self.tsd_date or ""]
        return ".".join(parts)

    def format(self, gz: bool | None = None) -> str:
        """The name as a string; `gz` overrides whether `.gz` is appended."""
        name = f"{self.stem}.{self.type}"
        return name + ".gz" if (self.gz if gz is None else gz) else name

    def registered_as(self, member: str | int, tsd_id: int, tsd_date: str) -> "FileName":
        """The 8-segment form this file gets once it has its TSD row."""
        return replace(self, member=str(member), tsd_id=int(tsd_id), tsd_date=tsd_date)

    @property
    def table_key(self) -> str:
        return f"{self.dbms}.{self.table}"


def _bad(name: str, why: str) -> IngestError:
    shown = name if len(name) <= 120 else name[:117] + "..."
    return IngestError("name", f"file name {shown!r}: {why} (expected dbms.table[.source[.hash[.instructions]]].json "
                               f"or the 8-segment registered form; .sql may carry a partition after the table)")


def parse_file_name(name: str) -> FileName:
    """A file name as its parts, or an IngestError('name') that says what is wrong with it.

    2 to 5 segments before the type, or exactly 8 (spec §3.1); 6 or 7 are refused.  dbms and
    table must be valid database names (they are lower-cased, as AnyLog does).  In the 8-segment
    form the member is digits or `@`, the TSD id a positive integer and the date 12 digits that
    make a real UTC time.  A `.sql` name may carry AnyLog's partition segment after the table
    (6 or 9 segments: `dbms.table.partition.source.hash.instructions[.member.id.date].sql`).
    """
    if "/" in name or "\\" in name or "\x00" in name:
        raise _bad(name, "a file name cannot hold a path")
    parts = name.split(".")
    gz = False
    if len(parts) > 1 and parts[-1].lower() == "gz":
        gz = True
        parts = parts[:-1]
    if len(parts) < 3:
        raise _bad(name, "it needs at least dbms, table and a type")
    ftype = parts[-1].lower()
    if ftype not in TYPES:
        raise IngestError("type", f"file {name!r} has type {parts[-1]!r}; the operator takes .json "
                                  f"(newline-delimited JSON objects or one JSON array) and .sql (INSERTs of the "
                                  f"file's table), optionally gzipped")
    segs = parts[:-1]
    partition = None
    if ftype == "sql" and len(segs) in (6, 9):
        partition = segs.pop(2)
        if not partition or not _SEGMENT.match(partition):
            raise _bad(name, f"partition segment {partition!r} holds characters other than letters, digits and _-:+=@~,")
    if len(segs) in (6, 7) or len(segs) > 8:
        raise _bad(name, f"it has {len(segs)} segments before the type")
    for i, seg in enumerate(segs):
        if not seg:
            raise _bad(name, f"segment {i + 1} is empty")
        if not _SEGMENT.match(seg):
            raise _bad(name, f"segment {i + 1} ({seg!r}) holds characters other than letters, digits and _-:+=@~,")
    dbms, table = segs[0].lower(), segs[1].lower()
    if not is_name(dbms):
        raise _bad(name, f"dbms {segs[0]!r} is not a valid name (letters, digits and '_', not starting with a digit)")
    if not is_name(table):
        raise _bad(name, f"table {segs[1]!r} is not a valid name (letters, digits and '_', not starting with a digit)")
    rest = segs[2:] + ["0"] * (3 - len(segs[2:5]))
    source, hash_, instructions = rest[0], rest[1], rest[2]
    if "@" in dbms + table + source + hash_ + instructions:
        raise _bad(name, "'@' is only allowed as the member segment")
    if len(segs) < 8:
        return FileName(dbms, table, source, hash_, instructions, type=ftype, gz=gz, partition=partition)
    member, tsd_id, date = segs[5], segs[6], segs[7]
    if member != "@" and not member.isdigit():
        raise _bad(name, f"member {member!r} must be a number or '@'")
    if not tsd_id.isdigit() or int(tsd_id) == 0:
        raise _bad(name, f"TSD id {tsd_id!r} must be a positive number")
    if not _DATE.match(date) or parse_tsd_date(date) is None:
        raise _bad(name, f"TSD date {date!r} must be YYMMDDHHMMSS (12 digits, UTC)")
    return FileName(dbms, table, source, hash_, instructions, member, int(tsd_id), date, ftype, gz, partition)


# --- dates ------------------------------------------------------------------------------------


def tsd_date(seconds: float) -> str:
    """The 12-digit UTC registration date of a TSD row."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%y%m%d%H%M%S")


def parse_tsd_date(text: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.strptime(text, "%y%m%d%H%M%S")
    except ValueError:
        return None


def archive_subdir(date: str) -> str:
    """`YY/MM/DD` from a TSD date (spec §3.5)."""
    return f"{date[0:2]}/{date[2:4]}/{date[4:6]}"


# --- hash -------------------------------------------------------------------------------------


def file_hash(dbms: str, table: str, chunks: Iterable[bytes]) -> str:
    """md5 hex of the UTF-8 text `dbms.table` followed by the file's bytes (spec §3.4).

    For a gzipped file the bytes are the uncompressed data, so the same data sent compressed or
    not is the same file (and a duplicate the second time).
    """
    h = hashlib.md5(f"{dbms}.{table}".encode("utf-8"))
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


# --- error and temporary names ----------------------------------------------------------------


def split_type(name: str) -> tuple[str, str]:
    """(stem, type) of any name: the type is the last extension, with `.gz` kept as part of it."""
    parts = name.split(".")
    if len(parts) >= 3 and parts[-1].lower() == "gz":
        return ".".join(parts[:-2]), ".".join(parts[-2:])
    if len(parts) >= 2:
        return ".".join(parts[:-1]), parts[-1]
    return name, ""


def error_name(name: str, reason: str, epoch: int) -> str:
    """`<name without type>.err_<reason>.<epoch>.<type>` (spec §2.4); epoch keeps names unique."""
    stem, ftype = split_type(name)
    out = f"{stem}.err_{reason}.{int(epoch)}"
    return f"{out}.{ftype}" if ftype else out


def is_temporary(name: str) -> bool:
    """Names the watcher never takes: hidden files and the usual partial-write suffixes."""
    low = name.lower()
    return name.startswith(".") or low.endswith(_TEMP_SUFFIXES)
