"""Streaming buffers: rows that arrive one call at a time, gathered per table and written as files.

REST PUT with `mode: streaming` (and later MQTT, `stream` ...) adds rows to a buffer per
(dbms, table, source, instructions).  A buffer becomes one watch-dir file (one JSON object per
line, named `dbms.table.source.hash.instructions.json`) when it holds `volume` bytes, checked as
rows are added, or when its oldest row is `time` seconds old (spec §2.3).  Defaults are 60
seconds and 10,000 bytes; `set buffer threshold` changes them for all tables or one.

Unlike AnyLog, which wakes a streamer thread every 10 s, one timer is armed for the earliest
deadline, so a buffer is written when it is due and an idle node does no work.  The time
threshold always applies (AnyLog needs `run streamer` for it; users forgetting it is the first
"data is not appearing" complaint).  Files are written off the reactor thread.

Rows are never dropped.  A buffer whose file cannot be written (no space left, a permission, a
bug) is put back, ahead of rows that came since, and written again after 1 s, 2 s ... 30 s; while
writes fail, buffers past `MAX_KEPT` bytes make `add` refuse new rows (REST answers 503), so a
full disk cannot fill the memory.  Rows the operator could never take (a second copy of a file
already waiting in the watch dir) go to the error dir.  The node stopping writes what is left;
what even the error dir cannot take then is logged with its row count.

A caller that must know when its rows are durable (an MQTT QoS 1 message is acknowledged only
then) passes a `waiter` to `add`: an object with a `sink` that is told, in the worker thread,
where the buffer's file is staged before it is published (`sink.staged`, e.g. to journal the
messages it holds), and, on the reactor thread, that the rows are on disk (`sink.durable`).  A
buffer with waiters is written as a hidden `.<name>.stage` file (fsynced, the directory too),
then renamed to its name; one without is written as before.

A caller that has the rows as dicts too (the message clients: the mapper made them) passes them
as `objs`, each one `handoff.plain` (its line reads back as the very same dict); a buffer whose
every row came with its dict leaves them in the node's `Handoff` under the file's name, so the
operator in this process takes them instead of parsing the file again (the file is written
exactly as without them; see handoff.py for why the rows are the same).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.python.failure import Failure

from anylog_tw.base.errors import AnyLogError, CommandError
from anylog_tw.base.metrics import Metrics
from anylog_tw.ingest.dropfile import (
    DuplicateFile,
    WriteError,
    data_file_name,
    ingest_dirs,
    write_error_file,
    write_file,
)
from anylog_tw.ingest.handoff import Handoff
from anylog_tw.ingest.jsonrows import join_rows
from anylog_tw.ingest.staged import write_staged

ALL = "*"
MAX_KEPT = 64 << 20  # bytes buffered, while writes fail, past which new rows are refused
FIRST_RETRY, LAST_RETRY = 1.0, 30.0  # seconds before writing a kept buffer again (doubling)


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
    waiters: list = field(default_factory=list)  # told when the rows are durable (see the module doc)
    objs: list | None = field(default_factory=list)  # the rows as dicts, None once a row came without


def _by_sink(waiters: list) -> dict:
    groups: dict = {}
    for w in waiters:
        groups.setdefault(w.sink, []).append(w)
    return groups


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
        self.dirs: dict[str, str] = {}  # watch_dir / err_dir given to `run streamer`
        self._timer = None
        self._writing: set[Deferred] = set()
        self._closed = False
        self.retry_at: float | None = None  # set while writes fail: buffers wait for it
        self.last_error = ""
        self._retry_wait = FIRST_RETRY
        self.metrics = node.component(Metrics)
        self.handoff = node.component(Handoff)
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

    @property
    def buffered_bytes(self) -> int:
        return sum(b.size for b in self.buffers.values())

    def table_stats(self, dbms: str, table: str) -> TableStats:
        stats = self.stats.get((dbms, table))
        if stats is None:
            stats = self.stats[(dbms, table)] = TableStats()
        return stats

    def add(self, dbms: str, table: str, rows: list[bytes], source: str = "0", instructions: str = "0",
            waiter=None, objs: list | None = None) -> None:
        """Buffer rows (one-line JSON objects, names already checked); flush if over the volume.

        `waiter` (optional) is told when these rows are durable; `objs` (optional) are the rows
        as the dicts they were dumped from, each `handoff.plain`, for the operator (see the module doc)."""
        if not rows:
            return
        if self.retry_at is not None and self.buffered_bytes > MAX_KEPT:
            raise WriteError(f"the streaming buffers hold {self.buffered_bytes} bytes that cannot be written yet "
                             f"({self.last_error}); try again later", full=True)
        key = (dbms, table, source, instructions)
        buf = self.buffers.get(key)
        if buf is None:
            buf = self.buffers[key] = Buffer()
        buf.rows.extend(rows)
        buf.size += sum(map(len, rows)) + len(rows)
        if buf.objs is not None:
            if objs is None or len(objs) != len(rows) or len(buf.objs) + len(objs) > self.handoff.max_rows:
                buf.objs = None  # the file is parsed; the dicts of a buffer too big to hand over go now
            else:
                buf.objs.extend(objs)
        if waiter is not None:
            buf.waiters.append(waiter)
        stats = self.table_stats(dbms, table)
        stats.streaming_calls += 1
        stats.streaming_rows += len(rows)
        if buf.first_at is None:
            buf.first_at = self.reactor.seconds()
            self._arm()
        if buf.size >= (self.thresholds(dbms, table) if self.scoped else self.defaults).volume:
            self._start_flush(key)

    def count_put(self, dbms: str, table: str, rows: int) -> None:
        """Count a file-mode PUT (it bypasses the buffers) for `get streaming`."""
        stats = self.table_stats(dbms, table)
        stats.put_files += 1
        stats.put_rows += rows
        stats.last_process = self.reactor.seconds()

    # -- flushing ------------------------------------------------------------------------------

    def _start_flush(self, key, force: bool = False) -> Deferred | None:
        if not force and self.retry_at is not None and self.reactor.seconds() < self.retry_at:
            return None  # writes are failing: the retry timer flushes it
        buf = self.buffers.pop(key, None)
        if buf is None or not buf.rows:
            return None
        d = Deferred.fromCoroutine(self._write(key, buf))
        self._writing.add(d)
        d.addBoth(lambda result: (self._writing.discard(d), result)[1])
        self._arm()
        return d

    async def _write(self, key, buf: Buffer) -> int:
        """Write one buffer as a file (1), or keep it to try again (0). Never raises, never drops."""
        dbms, table, source, instructions = key
        stats = self.table_stats(dbms, table)
        data = join_rows(buf.rows)
        watch, err = ingest_dirs(self.node)
        watch, err = self.dirs.get("watch_dir", watch), self.dirs.get("err_dir", err)
        name = None
        try:
            name = data_file_name(dbms, table, source, instructions, data).format()
            if buf.objs and self._operator_reads():  # before the file appears: the operator may read it at once
                self.handoff.put(name, data, buf.objs, checked=True)
            if buf.waiters:
                groups = _by_sink(buf.waiters)

                def staged(stage, final):
                    for sink, waiters in groups.items():
                        sink.staged(stage, final, waiters)

                await self.node.in_thread(write_staged, watch, name, data, staged)
            else:
                await self.node.in_thread(write_file, watch, name, data)
        except DuplicateFile as e:  # the operator would refuse these rows: keep them aside
            self.handoff.discard(name)
            return await self._set_aside(key, buf, data, name, err, e)
        except CommandError as e:  # names the operator cannot take (checked before buffering: a bug)
            return await self._set_aside(key, buf, data, f"{dbms}.{table}.json", err, e)
        except Exception as e:
            if name is not None:
                self.handoff.discard(name)
            self._keep(key, buf, e)
            return 0
        self._written()
        stats.flushed_files += 1
        stats.flushed_rows += len(buf.rows)
        stats.last_process = self.reactor.seconds()
        self.flushed_rows += len(buf.rows)
        self.flushed_files += 1
        self.metrics.files_written.labels(source="streaming").inc()
        self._durable(buf)
        return 1

    def _operator_reads(self) -> bool:
        """Rows are left for the operator only while one runs here: nobody else would take them."""
        return self.node.process("Operator") is not None

    def _durable(self, buf: Buffer) -> None:
        """The rows of `buf` are in a file that survives a crash: tell whoever waits for them."""
        if buf.waiters:
            for sink, waiters in _by_sink(buf.waiters).items():
                try:
                    sink.durable(waiters)
                except Exception:
                    self.log.failure("telling {sink!r} that its rows are durable failed", sink=sink)
            buf.waiters = []

    def flush_waiting(self) -> list[Deferred]:
        """Write now every buffer holding rows someone waits for (an MQTT QoS 1 acknowledgement)."""
        started = (self._start_flush(k) for k, b in list(self.buffers.items()) if b.waiters)
        return [d for d in started if d is not None]

    async def _set_aside(self, key, buf: Buffer, data: bytes, name: str, err: str, error: AnyLogError) -> int:
        """Rows the watch dir cannot take go to the error dir; kept for a retry if that fails too."""
        dbms, table = key[:2]
        self.table_stats(dbms, table).errors += 1
        self.metrics.ingest_errors.labels(stage="streaming").inc()
        self.node.errors.add("streamer", f"flush {dbms}.{table}", error.message)
        reason = "duplicate" if isinstance(error, DuplicateFile) else "name"
        try:
            kept = await self.node.in_thread(write_error_file, err, name, data, reason, self.reactor.seconds())
        except Exception as e:
            self._keep(key, buf, e)
            return 0
        self.log.warn("streaming rows of {table} kept in {path}: {error}", table=f"{dbms}.{table}", path=kept,
                      error=error.message)
        self._durable(buf)  # kept aside for good: no use asking for them again
        return 0

    def _keep(self, key, buf: Buffer, error: BaseException) -> None:
        """Put a buffer that could not be written back, ahead of newer rows, and plan the retry."""
        dbms, table = key[:2]
        text = getattr(error, "message", None) or f"{type(error).__name__}: {error}"
        if not isinstance(error, AnyLogError) or (isinstance(error, WriteError) and not error.full):
            self.log.failure("writing the streaming rows of {table} failed; they are kept and tried again",
                             Failure(error), table=f"{dbms}.{table}")
        self.table_stats(dbms, table).errors += 1
        self.metrics.ingest_errors.labels(stage="streaming").inc()
        now = self.reactor.seconds()
        if self.retry_at is None or self.last_error != text:
            self.node.errors.add("streamer", f"flush {dbms}.{table}", f"{text} (the rows are kept and tried again)")
        self.last_error = text
        newer = self.buffers.get(key)
        if newer is not None:
            buf.rows.extend(newer.rows)
            buf.size += newer.size
            buf.waiters.extend(newer.waiters)
            buf.objs = buf.objs + newer.objs if buf.objs is not None and newer.objs is not None else None
            buf.first_at = min(t for t in (buf.first_at, newer.first_at) if t is not None) \
                if buf.first_at is not None or newer.first_at is not None else None
        if buf.first_at is None:
            buf.first_at = now
        self.buffers[key] = buf
        if self.retry_at is None or self.retry_at <= now:
            self.retry_at = now + self._retry_wait
            self._retry_wait = min(self._retry_wait * 2, LAST_RETRY)
        self._arm()

    def _written(self) -> None:
        if self.retry_at is not None:
            self.log.info("streaming files are written again")
        self.retry_at = None
        self.last_error = ""
        self._retry_wait = FIRST_RETRY

    async def flush_all(self) -> int:
        """Write every buffer now, whatever its thresholds (`flush buffers`); files written."""
        started = [d for d in (self._start_flush(k, force=True) for k in list(self.buffers)) if d is not None]
        others = [d for d in self._writing if d not in started]
        results = await DeferredList(started + others, consumeErrors=True)
        return sum(r for ok, r in results[:len(started)] if ok)

    def flush_due(self) -> None:
        """Write the buffers whose oldest row reached the time threshold (or all, on a retry)."""
        self._timer = None
        now = self.reactor.seconds()
        retrying = self.retry_at is None or now >= self.retry_at  # over-volume buffers only wait for it
        for key, buf in list(self.buffers.items()):
            th = self.thresholds(key[0], key[1])
            due = buf.first_at is not None and now >= buf.first_at + th.time
            if due or retrying and buf.size >= th.volume:
                self._start_flush(key)
        self._arm()

    def _deadline(self) -> float | None:
        """The earliest time a buffer is due: its time threshold, or now when over its volume (which
        only happens while writes fail); never before the retry time while they do."""
        now = self.reactor.seconds()
        times = []
        for (dbms, table, _, _), b in self.buffers.items():
            th = self.thresholds(dbms, table)
            if b.size >= th.volume:
                times.append(now)
            elif b.first_at is not None:
                times.append(b.first_at + th.time)
        if not times:
            return None
        return max(min(times), self.retry_at) if self.retry_at is not None else min(times)

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
        """The node stops: write what is buffered (to the error dir if the watch dir cannot take
        it), then stop the timer."""
        async def finish():
            await self.flush_all()
            self._closed = True
            _, err = ingest_dirs(self.node)
            err = self.dirs.get("err_dir", err)
            for (dbms, table, _, _), buf in list(self.buffers.items()):
                data = join_rows(buf.rows)
                try:
                    await self.node.in_thread(write_error_file, err, f"{dbms}.{table}.json", data, "io",
                                              self.reactor.seconds())
                    self._durable(buf)
                except Exception as e:
                    self.log.error("the node stops and {rows} streaming rows of {table} cannot be written "
                                   "anywhere: {error}", rows=len(buf.rows), table=f"{dbms}.{table}", error=e)
            self.buffers.clear()
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            self.metrics.forget_queue("streaming_rows")

        return Deferred.fromCoroutine(finish())
