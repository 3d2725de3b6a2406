"""HA push (`run data distributor`): every file this operator ingested goes to every other member.

The source of truth is `almgm.tsd_info`: a row with `status2 = done` is a file whose rows are
committed here, and whose archived copy (`archive_dir/YY/MM/DD/<8-segment name>.json[.gz]`)
is what the members receive, under that same name, in their watch dir.  The receiver's
operator records it in `tsd_<our member>` with our file_id, or, when that row is already done,
only archives it: a copy sent twice is ingested once.

Per member the push keeps a high-water mark (see `ha_state.advance`), persisted in
`almgm.ha_push` after acknowledgements; the peer acknowledges a file once it is complete and
fsync'ed in its watch dir (where its operator ingests it, also after a crash).  So:

* a file is never lost: the mark passes a row only after that member acknowledged it (or the
  row is abandoned, which the member's pull then records as missing);
* a file is never ingested twice: resends after a restart (everything above the mark) are
  recognised by the receiver's TSD row.

The operator's observer hook wakes the push as soon as a file is archived, so a small file
reaches the members within milliseconds; a periodic tick covers restarts and members coming back.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.task import deferLater
from twisted.logger import Logger

from anylog_tw.base.errors import AnyLogError, PeerError, Timeout
from anylog_tw.net.peers import Peers
from anylog_tw.services import ha_state as S
from anylog_tw.services.ha_pull import in_hand

WINDOW = 8  # files on their way to one member at once
FETCH = 5000  # tsd_info rows read per tick
SAVE_EVERY = 0.5  # seconds between writes of the push marks
CACHE = 20000  # tsd_info rows held at most (those not yet acknowledged by every member)


@dataclass
class Member:
    """One other operator of the cluster, as the push sees it."""

    member: str
    address: str
    name: str = ""
    hwm: int = 0
    acked: set[int] = field(default_factory=set)
    inflight: set[int] = field(default_factory=set)
    last_id: int = 0
    last_time: float = 0.0
    sent: int = 0
    failures: int = 0
    missing: int = 0
    last_error: str = ""
    status: str = "new"
    retry_at: float = 0.0
    backoff: float = 0.0


class Push:
    log = Logger()

    def __init__(self, ha):
        self.ha = ha
        self.node = ha.node
        self.reactor = ha.node.reactor
        self.members: dict[str, Member] = {}
        self.rows: dict[int, S.FileRow] = {}  # tsd_info rows above the lowest mark
        self.ids: list[int] = []  # their ids, sorted
        self.waiting: set[int] = set()  # those not done yet
        self.max_seen = 0
        self.saved: dict[str, tuple[str, int]] = {}
        self.stale = 600.0
        self._sends: set[Deferred] = set()
        self._saving = False
        self._dirty = False
        self._loaded = False
        self.stopping = False
        self.need_fetch = True  # the operator's observer sets it: new rows in tsd_info
        self.last_fetch = 0.0
        self.fetch_every = 1.0  # tsd_info is read at least this often anyway

    # -- members and marks ---------------------------------------------------------------------

    async def load(self) -> None:
        almgm = self.ha.almgm()
        await almgm.script(S.push_table_sql())
        _, rows = await almgm.query(f'SELECT "member", "address", "acked_id" FROM "{S.PUSH_TABLE}"')
        self.saved = {str(r[0]): (r[1] or "", int(r[2])) for r in rows}
        self._loaded = True

    async def _first_mark(self) -> int:
        """Where a member never pushed to starts: after the last file older than the window."""
        start = self.ha.window_start()
        _, rows = await self.ha.almgm().query('SELECT max("file_id") FROM "tsd_info" WHERE "file_time" < ?',
                                              (S.stamp(start),))
        return int(rows[0][0] or 0) if rows else 0

    async def refresh_members(self, peers: list[tuple[str, str, str]]) -> None:
        """Follow the cluster's membership (from the metadata): (member, address, name) of the others."""
        seen = set()
        for member, address, name in peers:
            seen.add(member)
            m = self.members.get(member)
            if m is None:
                saved = self.saved.get(member)
                hwm = saved[1] if saved is not None else await self._first_mark()
                m = self.members[member] = Member(member, address, name, hwm=hwm, last_id=hwm)
                self.max_seen = min(self.max_seen, hwm)  # read again what others were past (a joiner)
                if saved is None:
                    self.saved[member] = (address, hwm)
                    self._dirty = True
            m.address, m.name = address, name
        for gone in set(self.members) - seen:
            self.members.pop(gone)

    # -- the tick ------------------------------------------------------------------------------

    async def tick(self) -> None:
        if not self._loaded or self.stopping:
            return
        now = self.reactor.seconds()
        if self.need_fetch or now - self.last_fetch >= self.fetch_every or not self.members:
            # membership and tsd_info are read each interval (or when the operator asks for it); an
            # ack only refills the window from what is read already
            self.need_fetch = False
            self.last_fetch = now
            await self.refresh_members(await self.ha.cluster_peers())
            if not self.members:
                return
            await self._fetch()
            now = self.reactor.seconds()
        for m in self.members.values():
            self._advance(m, now)
            if now < m.retry_at:
                continue
            room = WINDOW - len(m.inflight)
            for row in S.owed(m.hwm, self._above(m.hwm), m.acked, m.inflight, room) if room > 0 else ():
                m.inflight.add(row.file_id)
                d = Deferred.fromCoroutine(self._send(m, row))
                self._sends.add(d)
                d.addBoth(lambda r, d=d: (self._sends.discard(d), None)[1])
        if self._dirty:
            self._save_soon()

    async def _fetch(self) -> None:
        """New tsd_info rows since the last tick, and the current state of those not done yet."""
        base = min(m.hwm for m in self.members.values())
        cut = bisect.bisect_right(self.ids, base)
        for fid in self.ids[:cut]:
            self.rows.pop(fid, None)
            self.waiting.discard(fid)
        del self.ids[:cut]
        almgm = self.ha.almgm()
        after = max(self.max_seen, base)
        rows = []
        if len(self.rows) < CACHE:  # a member down for long: the rest is read as the first ones are acked
            _, rows = await almgm.query(f'SELECT {S.ROW_COLUMNS} FROM "tsd_info" WHERE "file_id" > ? '
                                        f'ORDER BY "file_id" LIMIT {FETCH}', (after,))
        for r in rows:
            self._keep(S.file_row(r))
            self.max_seen = max(self.max_seen, int(r[0]))
        waiting = sorted(self.waiting)[:500]
        if waiting:
            marks = ", ".join("?" * len(waiting))
            _, rows = await almgm.query(f'SELECT {S.ROW_COLUMNS} FROM "tsd_info" WHERE "file_id" IN ({marks})',
                                        tuple(waiting))
            for r in rows:
                self._keep(S.file_row(r))

    def _keep(self, row: S.FileRow) -> None:
        fid = row.file_id
        if fid not in self.rows:
            if not self.ids or fid > self.ids[-1]:
                self.ids.append(fid)
            else:
                bisect.insort(self.ids, fid)
        self.rows[fid] = row
        if row.done:
            self.waiting.discard(fid)
        else:
            self.waiting.add(fid)

    def offer(self, row: S.FileRow) -> None:
        """A file the operator just archived: sent at once, without reading tsd_info (which the next
        periodic read confirms; until then the marks stay below the rows read from the table)."""
        if self.members and row.file_id > min(m.hwm for m in self.members.values()):
            self._keep(row)

    def _above(self, hwm: int):
        """The cached rows above a mark, in id order."""
        rows, ids = self.rows, self.ids
        for i in range(bisect.bisect_right(ids, hwm), len(ids)):
            yield rows[ids[i]]

    def _advance(self, m: Member, now: float) -> None:
        hwm = S.advance(m.hwm, self._above(m.hwm), m.acked, now, self.stale, upto=self.max_seen)
        if hwm != m.hwm:
            m.hwm = hwm
            m.acked = {i for i in m.acked if i > hwm}
            self.saved[m.member] = (m.address, hwm)
            self._dirty = True

    # -- one file to one member ----------------------------------------------------------------

    async def _send(self, m: Member, row: S.FileRow) -> None:
        try:
            path = S.find_archived(self.ha.archive_dir(), row, self.ha.member, search=False)  # a stat or two
            if path is None:
                path = await self.ha.node.in_thread(S.find_archived, self.ha.archive_dir(), row, self.ha.member)
            if path is None:
                if in_hand(self.node, row, self.ha.member):
                    return  # committed but not archived yet: the operator's observer wakes us when it is
                m.missing += 1
                self._error(m, f"file {row.file_id} ({row.dbms}.{row.table}) is not in the archive; "
                               f"the member's pull will record it as missing")
                m.acked.add(row.file_id)
                return
            await self.node.component(_peers()).send_file(m.address, path, dest="watch")
        except CancelledError:
            return
        except (PeerError, Timeout) as e:
            m.failures += 1
            m.status = "down"
            m.backoff = min(10.0, m.backoff * 2 if m.backoff else 0.5)
            m.retry_at = self.reactor.seconds() + m.backoff
            m.last_error = e.message
            return
        except AnyLogError as e:
            self._error(m, f"sending file {row.file_id}: {e.message}")
            m.retry_at = self.reactor.seconds() + 5.0
            return
        except Exception as e:
            self.log.failure("HA push of file {id} to {member}", id=row.file_id, member=m.member)
            self._error(m, f"sending file {row.file_id}: {type(e).__name__}: {e}")
            m.retry_at = self.reactor.seconds() + 5.0
            return
        finally:
            m.inflight.discard(row.file_id)
        m.acked.add(row.file_id)
        m.sent += 1
        m.status = "up"
        m.backoff = 0.0
        m.last_error = ""
        if row.file_id > m.last_id:
            m.last_id = row.file_id
        m.last_time = self.reactor.seconds()
        self._advance(m, m.last_time)
        self.ha.wake_push()

    def _error(self, m: Member, text: str) -> None:
        m.failures += 1
        m.last_error = text
        self.node.errors.add("ha", f"push to member {m.member}", text)

    # -- persisting the marks --------------------------------------------------------------------

    def _save_soon(self) -> None:
        if self._saving:
            return
        self._saving = True
        d = Deferred.fromCoroutine(self._save_loop())
        self._sends.add(d)
        d.addBoth(lambda r, d=d: (self._sends.discard(d), None)[1])

    async def _save_loop(self) -> None:
        try:
            while self._dirty and not self.stopping:
                self._dirty = False
                marks = dict(self.saved)
                await self.ha.almgm().transaction(S.save_marks, marks, S.stamp(self.reactor.seconds()))
                # at most one write per SAVE_EVERY: almgm's writer also serves the operator's TSD rows,
                # and a mark saved late only means a few files resent (and recognised) after a crash
                await deferLater(self.reactor, SAVE_EVERY, lambda: None)
        except CancelledError:
            pass  # stopping: close() saves last
        except Exception as e:
            self.log.error("HA: cannot save the push marks: {error}", error=e)
        finally:
            self._saving = False

    async def close(self) -> None:
        """Stop sending (copies in flight are cancelled: they are resent after a restart) and save."""
        self.stopping = True
        sends = list(self._sends)
        for d in sends:
            d.cancel()
        if sends:
            await DeferredList(sends, consumeErrors=True)
        if self._loaded and self.members:
            try:  # read tsd_info once more so the marks cover every acknowledged file
                await self._fetch()
                for m in self.members.values():
                    self._advance(m, self.reactor.seconds())
            except Exception as e:
                self.log.error("HA: cannot read tsd_info: {error}", error=e)
        if self._loaded and self.saved:
            try:
                await self.ha.almgm().transaction(S.save_marks, dict(self.saved), S.stamp(self.reactor.seconds()))
            except Exception as e:
                self.log.error("HA: cannot save the push marks: {error}", error=e)

    # -- status ----------------------------------------------------------------------------------

    def status_rows(self, now: float) -> list[dict]:
        out = []
        newest = self.max_seen
        for m in sorted(self.members.values(), key=lambda m: int(m.member) if m.member.isdigit() else 0):
            pending = [r for r in self._above(m.hwm) if r.done and r.file_id not in m.acked]
            out.append({"Member": m.member, "Name": m.name, "Address": m.address, "Status": m.status,
                        "Files pending": len(pending), "In flight": len(m.inflight), "Sent": m.sent,
                        "Last acked": m.last_id, "Acked at": S.stamp(m.last_time)[:19] if m.last_time else "",
                        "Lag files": max(0, newest - m.hwm) if pending else 0,
                        "Lag seconds": round(S.lag_seconds(pending, now), 3),
                        "Missing": m.missing, "Failures": m.failures, "Last error": m.last_error})
        return out


def _peers():
    return Peers
