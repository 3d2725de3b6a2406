"""Streaming buffers: rows that arrive one call at a time, gathered per table and written as files.

REST PUT with `mode: streaming` (and later MQTT, `stream` ...) adds rows to a buffer per
(dbms, table, source, instructions).  A buffer becomes one watch-dir file (one JSON object per
line, named `dbms.table.source.hash.instructions.json`) when it holds `volume` bytes, checked as
rows are added, or when its oldest row is `time` seconds old (spec §2.3).  Defaults are 60
seconds and 10,000 bytes; `set buffer threshold` changes them for all tables or one.

Unlike AnyLog, which wakes a streamer thread every 10 s, one timer is armed for the earliest
deadline, so a buffer is written when it is due and an idle node does no work.  The time
threshold always applies (AnyLog needs `run streamer` for it; users forgetting it is the first
"data is not appearing" complaint).  Files are written off the reactor thread; rows that cannot
be delivered go to the error dir, never lost silently.  The node stopping writes what is left.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from anylog_tw.base.errors import AnyLogError
from anylog_tw.base.metrics import Metrics
from anylog_tw.ingest.dropfile import (
    DuplicateFile,
    data_file_name,
    ingest_dirs,
    write_error_file,
    write_file,
)
from anylog_tw.ingest.jsonrows import join_rows

ALL = "*"


@dataclass(frozen=True)
class Thresholds:
    time: float = 60.0  # seconds from a buffer's first row to its flush
    volume: int = 10_000  # bytes in a buffer that trigger a flush
    immediate: bool = False  # accepted for AnyLog scripts; rows still go through files


DEFAULTS = Thresholds()


@dataclass
class TableStats:
    """Per dbms.table counters shown by `get streaming`."""

    put_files: int = 0
    put_rows: int = 0
    streaming_calls: int = 0
    streaming_rows: int = 0
    flushed_files: int = 0
    flushed_rows: int = 0
    errors: int = 0
    last_process: float | None = None


@dataclass
class Buffer:
    rows: list[bytes] = field(default_factory=list)
    size: int = 0
    first_at: float | None = None


class Streamer:
    """The node's streaming buffers (a node component: `node.component(Streamer)`)."""

    log = Logger()

    def __init__(self, node):
        self.node = node
        self.reactor = node.reactor
        self.defaults = DEFAULTS
        self.scoped: dict[tuple[str, str], Thresholds] = {}
        self.buffers: dict[tuple[str, str, str, str], Buffer] = {}
        self.stats: dict[tuple[str, str], TableStats] = {}
        self.flushed_rows = 0
        self.flushed_files = 0
        self.dirs: dict[str, str] = {}  # prep_dir / watch_dir / err_dir given to `run streamer`
        self._timer = None
        self._writing: set[Deferred] = set()
        self._closed = False
        self.metrics = node.component(Metrics)
        self.metrics.watch_queue("streaming_rows", lambda: self.buffered_rows)

    # -- thresholds ----------------------------------------------------------------------------

    def thresholds(self, dbms: str, table: str) -> Thresholds:
        """The thresholds of a table: its own, else its database's, else the defaults."""
        return self.scoped.get((dbms, table)) or self.scoped.get((dbms, ALL)) or self.defaults

    def set_thresholds(self, dbms: str = ALL, table: str = ALL, time: float | None = None,
                       volume: int | None = None, immediate: bool | None = None) -> Thresholds:
        """Change the thresholds of one table, one database (`table = *`) or all (`dbms = *`).

        Time 0 and volume 0 together restore the defaults of that scope.  Returns the result.
        """
        scope = (dbms, table)
        if table != ALL and dbms == ALL:
            raise AnyLogError("a table threshold needs its dbms too (dbms_name = D and table_name = T)")
        if time == 0 and volume == 0:
            if scope == (ALL, ALL):
                self.defaults = DEFAULTS
            else:
                self.scoped.pop(scope, None)
            self._arm()
            return self.thresholds(dbms, table)
        base = self.defaults if scope == (ALL, ALL) else self.scoped.get(scope, self.thresholds(dbms, table))
        changes = {k: v for k, v in (("time", time), ("volume", volume), ("immediate", immediate)) if v is not None}
        new = replace(base, **changes)
        if scope == (ALL, ALL):
            self.defaults = new
        else:
            self.scoped[scope] = new
        self._arm()
        for key in [k for k, b in self.buffers.items() if b.size >= self.thresholds(k[0], k[1]).volume]:
            self._start_flush(key)
        return new

    # -- adding rows ---------------------------------------------------------------------------

    @property
    def buffered_rows(self) -> int:
        return sum(len(b.rows) for b in self.buffers.values())

    def table_stats(self, dbms: str, table: str) -> TableStats:
        stats = self.stats.get((dbms, table))
        if stats is None:
            stats = self.stats[(dbms, table)] = TableStats()
        return stats

    def add(self, dbms: str, table: str, rows: list[bytes], source: str = "0", instructions: str = "0") -> None:
        """Buffer rows (one-line JSON objects, names already checked); flush if over the volume."""
        if not rows:
            return
        key = (dbms, table, source, instructions)
        buf = self.buffers.get(key)
        if buf is None:
            buf = self.buffers[key] = Buffer()
        buf.rows.extend(rows)
        buf.size += sum(map(len, rows)) + len(rows)
        stats = self.table_stats(dbms, table)
        stats.streaming_calls += 1
        stats.streaming_rows += len(rows)
        if buf.first_at is None:
            buf.first_at = self.reactor.seconds()
            self._arm()
        if buf.size >= self.thresholds(dbms, table).volume:
            self._start_flush(key)

    def count_put(self, dbms: str, table: str, rows: int) -> None:
        """Count a file-mode PUT (it bypasses the buffers) for `get streaming`."""
        stats = self.table_stats(dbms, table)
        stats.put_files += 1
        stats.put_rows += rows
        stats.last_process = self.reactor.seconds()

    # -- flushing ------------------------------------------------------------------------------

    def _start_flush(self, key) -> Deferred | None:
        buf = self.buffers.pop(key, None)
        if buf is None or not buf.rows:
            return None
        d = Deferred.fromCoroutine(self._write(key, buf))
        self._writing.add(d)
        d.addBoth(lambda result: (self._writing.discard(d), result)[1])
        self._arm()
        return d

    async def _write(self, key, buf: Buffer) -> int:
        """Write one buffer as a file; on failure keep its rows in the error dir. Never raises."""
        dbms, table, source, instructions = key
        stats = self.table_stats(dbms, table)
        data = join_rows(buf.rows)
        prep, watch, err = ingest_dirs(self.node)
        prep, watch, err = self.dirs.get("prep_dir", prep), self.dirs.get("watch_dir", watch), \
            self.dirs.get("err_dir", err)
        name = "?"
        try:
            name = data_file_name(dbms, table, source, instructions, data).format()
            await self.node.in_thread(write_file, prep, watch, name, data)
        except AnyLogError as e:
            stats.errors += 1
            reason = "duplicate" if isinstance(e, DuplicateFile) else "io"
            self.metrics.ingest_errors.labels(stage="streaming").inc()
            self.node.errors.add("streamer", f"flush {dbms}.{table}", e.message)
            try:
                kept = await self.node.in_thread(write_error_file, err, name if name != "?" else
                                          f"{dbms}.{table}.json", data, reason, self.reactor.seconds())
                self.log.warn("streaming rows of {table} kept in {path}: {error}", table=f"{dbms}.{table}",
                              path=kept, error=e.message)
            except OSError as e2:
                self.log.error("streaming rows of {table} lost: {error}; error dir: {error2}",
                               table=f"{dbms}.{table}", error=e.message, error2=e2)
            return 0
        except Exception:
            stats.errors += 1
            self.log.failure("flushing {table} failed", table=f"{dbms}.{table}")
            return 0
        stats.flushed_files += 1
        stats.flushed_rows += len(buf.rows)
        stats.last_process = self.reactor.seconds()
        self.flushed_rows += len(buf.rows)
        self.flushed_files += 1
        self.metrics.files_written.labels(source="streaming").inc()
        return 1

    async def flush_all(self) -> int:
        """Write every buffer now, whatever its thresholds (`flush buffers`); files written."""
        started = [d for d in (self._start_flush(k) for k in list(self.buffers)) if d is not None]
        others = [d for d in self._writing if d not in started]
        results = await DeferredList(started + others, consumeErrors=True)
        return sum(r for ok, r in results[:len(started)] if ok)

    def flush_due(self) -> None:
        """Write the buffers whose oldest row reached the time threshold."""
        self._timer = None
        now = self.reactor.seconds()
        for key, buf in list(self.buffers.items()):
            if buf.first_at is not None and now >= buf.first_at + self.thresholds(key[0], key[1]).time:
                self._start_flush(key)
        self._arm()

    def _deadline(self) -> float | None:
        times = [b.first_at + self.thresholds(k[0], k[1]).time for k, b in self.buffers.items()
                 if b.first_at is not None]
        return min(times) if times else None

    def _arm(self) -> None:
        """Keep one timer, set for the earliest buffer deadline."""
        if self._closed:
            return
        deadline = self._deadline()
        if self._timer is not None and self._timer.active():
            if deadline is not None and abs(self._timer.getTime() - deadline) < 1e-9:
                return
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = self.reactor.callLater(max(0.0, deadline - self.reactor.seconds()), self.flush_due)

    def time_left(self, dbms: str, table: str) -> float:
        th = self.thresholds(dbms, table)
        firsts = [b.first_at for k, b in self.buffers.items() if k[:2] == (dbms, table) and b.first_at is not None]
        if not firsts:
            return th.time
        return max(0.0, min(firsts) + th.time - self.reactor.seconds())

    def cached(self, dbms: str, table: str) -> tuple[int, int]:
        """(rows, bytes) buffered for a table."""
        bufs = [b for k, b in self.buffers.items() if k[:2] == (dbms, table)]
        return sum(len(b.rows) for b in bufs), sum(b.size for b in bufs)

    def close(self) -> Deferred:
        """The node stops: write what is buffered, then stop the timer."""
        async def finish():
            await self.flush_all()
            self._closed = True
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            self.metrics.forget_queue("streaming_rows")

        return Deferred.fromCoroutine(finish())
