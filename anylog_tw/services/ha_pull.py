"""HA pull (`run data consumer`): a member that was down, or joined later, asks for what it misses.

For each other member M of the cluster, every `pull_interval`:

1. ask M `get ha files where start_date = ...`: the ids of M's done `tsd_info` rows in the window,
   as ranges (`1-500,502`);
2. compare with our `tsd_<M>` (a row counts when done, in progress or recorded missing; a file
   our operator failed to ingest is asked for again, up to `tsd.RETRIES` attempts);
3. ask M `ha deliver where ids = ... and to = <our address>` in batches: M sends each archived
   file to our watch dir under its 8-segment name (our operator ingests it into `tsd_<M>`), and
   answers with the files it no longer has, which we record with `status1 = '01'` and the reason.

The serving half (`list_files`, `deliver`) answers those two commands on M.  Only the member
that registered a file serves it: it holds the archive of its own files.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.defer import DeferredSemaphore, gatherResults
from twisted.logger import Logger

from anylog_tw.base.errors import AnyLogError, CommandError, PeerError, Timeout
from anylog_tw.ingest import tsd
from anylog_tw.net.peers import Peers
from anylog_tw.services import ha_state as S

BATCH = 200  # ids per deliver request
SERVE_WINDOW = 8  # files sent at once by one deliver request


@dataclass
class PullState:
    member: str
    address: str
    runs: int = 0
    requested: int = 0
    received: int = 0
    missing: int = 0
    last_run: float = 0.0
    last_error: str = ""


class Pull:
    log = Logger()

    def __init__(self, ha):
        self.ha = ha
        self.node = ha.node
        self.reactor = ha.node.reactor
        self.states: dict[str, PullState] = {}
        self.active = True  # `set consumer mode = suspend` pauses the requests
        self.grace = 10.0  # seconds the push has to deliver a file before the pull asks for it

    async def tick(self) -> None:
        if not self.active:
            return
        for member, address, _name in await self.ha.cluster_peers():
            st = self.states.get(member)
            if st is None:
                st = self.states[member] = PullState(member, address)
            st.address = address
            try:
                await self.pull_from(st)
                st.last_error = ""
            except (PeerError, Timeout) as e:
                st.last_error = e.message
            except AnyLogError as e:
                st.last_error = e.message
                self.node.errors.add("ha", f"pull from member {member}", e.message)
            finally:
                st.runs += 1
                st.last_run = self.reactor.seconds()

    async def pull_from(self, st: PullState) -> None:
        peers = self.ha.peers()
        own = peers.own_address()
        if not own:
            raise CommandError("this node has no TCP server address to receive files on (run tcp server first)")
        start = S.stamp(self.ha.window_start())[:19]
        # files younger than GRACE are the push's: asking for them too would only send second copies
        end = S.stamp(self.reactor.seconds() - self.grace)[:19]
        reply = await peers.command(st.address, f'get ha files where start_date = "{start}" and end_date = "{end}" '
                                                f'and format = json', timeout=60.0)
        data = reply.data if reply.ok else None
        if not isinstance(data, dict) or "ids" not in data:
            raise PeerError(f"member {st.member} at {st.address} did not list its files: "
                            f"{reply.text or reply.render()[:200]}")
        if str(data.get("member")) != st.member:
            raise PeerError(f"{st.address} says it is member {data.get('member')}, the metadata says {st.member}")
        peer_ids = S.parse_ranges(str(data["ids"]))
        if not peer_ids:
            return
        table = f"tsd_{int(st.member)}"
        almgm = self.ha.almgm()
        local: list[int] = []
        if await almgm.has_table(table):
            _, rows = await almgm.query(f'SELECT "file_id", "status1", "status2" FROM "{table}" WHERE "file_id" >= ?',
                                        (peer_ids[0],))
            local = [int(r[0]) for r in rows if not 0 < tsd.failed_attempts(r[1], r[2]) < tsd.RETRIES]
        wanted = S.missing_ids(peer_ids, local)
        for batch in S.batches(wanted, BATCH):
            st.requested += len(batch)
            reply = await peers.command(st.address, f"ha deliver where ids = {S.format_ranges(batch)} and to = {own}",
                                        timeout=60.0 + 2.0 * len(batch))
            result = reply.data if reply.ok else None
            if not isinstance(result, dict):
                raise PeerError(f"member {st.member} did not deliver: {reply.text or reply.render()[:200]}")
            st.received += len(result.get("sent") or [])
            gone = result.get("missing") or []
            if gone:
                await almgm.create_tsd_table(table)
            for row in gone:
                if isinstance(row, dict) and await almgm.transaction(S.record_missing, table, row, st.member,
                                                                     str(row.get("reason", "no archive"))):
                    st.missing += 1

    def status_rows(self) -> list[dict]:
        return [{"Member": s.member, "Address": s.address, "Pulls": s.runs, "Requested": s.requested,
                 "Received": s.received, "Missing": s.missing,
                 "Last pull": S.stamp(s.last_run)[:19] if s.last_run else "", "Last error": s.last_error}
                for s in sorted(self.states.values(), key=lambda s: int(s.member))]


# --- the serving side (the commands `get ha files` and `ha deliver`) --------------------------


async def list_files(almgm, start: float, end: float | None = None) -> list[int]:
    """Ids of this node's done files registered since `start` (and before `end`)."""
    if not await almgm.has_table("tsd_info"):
        return []
    sql = 'SELECT "file_id" FROM "tsd_info" WHERE "status2" = ? AND "file_time" >= ?'
    params = [S.DONE, S.stamp(start)]
    if end is not None:
        sql += ' AND "file_time" < ?'
        params.append(S.stamp(end))
    _, rows = await almgm.query(sql + ' ORDER BY "file_id"', tuple(params))
    return [int(r[0]) for r in rows]


async def deliver(node, almgm, archive_dir: str, member: str, ids: list[int], to: str) -> dict:
    """Send the archived files of `ids` to `to`; the ones no longer here come back as `missing`."""
    peers = node.component(Peers)
    found: dict[int, S.FileRow] = {}
    for batch in S.batches(ids, 500):
        marks = ", ".join("?" * len(batch))
        _, rows = await almgm.query(f'SELECT {S.ROW_COLUMNS} FROM "tsd_info" WHERE "file_id" IN ({marks})',
                                    tuple(batch))
        for r in rows:
            row = S.file_row(r)
            found[row.file_id] = row
    sent: list[int] = []
    failed: list[dict] = []
    missing: list[dict] = []
    sem = DeferredSemaphore(SERVE_WINDOW)

    async def one(fid: int) -> None:
        row = found.get(fid)
        if row is None or not row.done:
            missing.append({"file_id": fid, "dbms": "", "table": "", "source": "", "hash": f"missing-{member}-{fid}",
                            "instructions": "", "file_time": S.stamp(node.reactor.seconds()),
                            "reason": "no such file in tsd_info"})
            return
        path = await node.in_thread(S.find_archived, archive_dir, row, member)
        if path is None and in_hand(node, row, member):  # committed, being archived now: asked again next time
            failed.append({"file_id": fid, "error": "not archived yet"})
            return
        if path is None:
            missing.append({"file_id": fid, "dbms": row.dbms, "table": row.table, "source": row.source,
                            "hash": row.hash, "instructions": row.instructions,
                            "file_time": S.stamp(row.file_time), "reason": "the archived file is gone"})
            return
        try:
            await peers.send_file(to, path, dest="watch")
        except AnyLogError as e:
            failed.append({"file_id": fid, "error": e.message})
            return
        sent.append(fid)

    await gatherResults([sem.run(lambda fid=fid: _deferred(one(fid))) for fid in ids], consumeErrors=True)
    return {"member": member, "sent": sorted(sent), "missing": missing, "failed": failed}


def _deferred(coro):
    from twisted.internet.defer import Deferred

    return Deferred.fromCoroutine(coro)


def in_hand(node, row: S.FileRow, member: str) -> bool:
    """Whether the operator holds the file now (committed but not archived yet)."""
    op = node.process("Operator")
    if op is None:
        return False
    prefix = ".".join(row.stem(member).split(".")[:7]) + "."
    return any(name.startswith(prefix) for name in op.in_hand)
