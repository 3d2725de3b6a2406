"""What `get operator` shows (spec §8.2): counters per table, per error kind, and the summary.

Plain bookkeeping on the reactor thread; the operator calls `file_done` / `file_failed` and
the command renders the tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from anylog_tw.base.timefmt import format_utc


@dataclass
class TableStats:
    files: int = 0
    rows: int = 0
    elapsed: float = 0.0  # seconds spent on this table's files, read to archive
    first_insert: float | None = None
    last_insert: float | None = None
    batches: int = 0


@dataclass
class ErrorStats:
    counter: int = 0
    last: float | None = None
    dbms: str = ""
    table: str = ""
    code: str = ""
    text: str = ""


@dataclass
class OperatorStats:
    started: float
    tables: dict[tuple[str, str], TableStats] = field(default_factory=dict)
    sql_tables: dict[tuple[str, str], TableStats] = field(default_factory=dict)  # .sql files (get operator sql)
    errors: dict[str, ErrorStats] = field(default_factory=dict)
    processing: float = 0.0  # seconds with at least one file in hand
    first_file: float | None = None
    last_file: float | None = None
    seen_rows: int = 0  # totals at the last `get operator summary` ("new" counts from there)
    seen_errors: int = 0

    def file_done(self, dbms: str, table: str, rows: int, elapsed: float, now: float, kind: str = "JSON") -> None:
        t = self.tables.setdefault((dbms, table), TableStats())
        t.rows += rows
        t.batches += 1
        t.first_insert = t.first_insert or now
        t.last_insert = now
        by_kind = self.sql_tables.setdefault((dbms, table), TableStats()) if kind == "SQL" else t
        by_kind.files += 1
        by_kind.elapsed += elapsed
        if kind == "SQL":
            by_kind.rows += rows
        self.first_file = self.first_file or now - elapsed
        self.last_file = now

    def file_failed(self, dbms: str, table: str, code: str, text: str, now: float, kind: str = "JSON") -> None:
        e = self.errors.setdefault(kind, ErrorStats())
        e.counter += 1
        e.last, e.dbms, e.table, e.code, e.text = now, dbms, table, code, text

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables.values())

    @property
    def total_files(self) -> int:
        return sum(t.files for t in self.tables.values())

    @property
    def total_errors(self) -> int:
        return sum(e.counter for e in self.errors.values())

    def rate(self) -> float:
        """Rows per second from the first file's start to the last file's end."""
        if not self.first_file or not self.last_file or self.last_file <= self.first_file:
            return 0.0
        return self.total_rows / (self.last_file - self.first_file)

    # -- the tables of `get operator` -------------------------------------------------------------

    def summary_row(self, node_name: str, status: str, now: float, consume: bool) -> list:
        rows, errors = self.total_rows, self.total_errors
        row = [node_name, status, _hms(now - self.started), _hms(self.processing),
               _hms((self.last_file or now) - (self.first_file or now)),
               rows - self.seen_rows, rows, errors - self.seen_errors, errors, round(self.rate(), 2)]
        if consume:
            self.seen_rows, self.seen_errors = rows, errors
        return row

    def json_rows(self) -> list[list]:
        return [[d, t, s.files, 0, _hms(s.elapsed)] for (d, t), s in sorted(self.tables.items()) if s.files]

    def sql_rows(self) -> list[list]:
        return [[d, t, s.files, 0, _hms(s.elapsed)] for (d, t), s in sorted(self.sql_tables.items())]

    def reset(self, now: float) -> None:
        """`reset stats where service = operator`: counters start again from zero (the config stays)."""
        self.tables.clear()
        self.sql_tables.clear()
        self.errors.clear()
        self.processing = 0.0
        self.first_file = self.last_file = None
        self.seen_rows = self.seen_errors = 0

    def insert_rows(self) -> list[list]:
        return [[d, t, format_utc(s.first_insert), format_utc(s.last_insert), s.batches, 0, s.rows]
                for (d, t), s in sorted(self.tables.items())]

    def error_rows(self) -> list[list]:
        return [[kind, e.counter, format_utc(e.last), e.dbms, e.table, e.code, e.text]
                for kind, e in sorted(self.errors.items())]


SUMMARY = ("Node name", "Status", "Operational time", "Processing time", "Elapsed Time", "New rows",
           "Total rows", "New errors", "Total errors", "Avg. rows/sec")
JSON = ("DBMS", "Table", "Files", "Immediate", "Elapsed time")
SQL = ("DBMS", "Table or partition", "Files", "Immediate", "Elapsed_time")
INSERTS = ("DBMS", "Table", "First Insert", "Last Insert", "Batch Inserts", "Immediate Inserts", "Rows")
ERRORS = ("Type", "Counter", "Timestamp", "DBMS Name", "Table Name", "Last Error", "Last Error Text")


def _hms(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
