"""The synchronizer ("Blockchain Sync"): keeps the node's ledger current from the master.

Protocol, over ordinary commands sent to the master (`Metadata.ask`):

1. `get metadata version` -> the MD5 of the master's ledger file.
2. Only when that differs from the version of the master copy we hold:
   `get metadata changes since <our version>` -> either `#delta <ours> <theirs>` and the lines
   the master appended since our version (its file only grew since), or `#full <theirs>` and the
   whole ledger (our version is unknown to it: it rewrote its file, restarted, or we have none).
   A master without that command gets `blockchain pull to stdout` instead (the whole ledger).
3. A delta is appended to our file (fsynced) and merged in memory: a policy we hold as `local`
   is replaced where it stands by the master's `global` copy.  A whole ledger is merged with our
   own `local` policies that it lacks, written as `blockchain.json.new`, fsynced and renamed over
   `blockchain.json` (the previous file kept as `.old`), then installed: a node killed at any
   point has the old ledger or the new.
4. Each local policy the master lacks is sent again with `blockchain push <policy>`; once the
   master has it, the next sync brings it back as `ledger: global`.

A failure (master down, refused, timed out) is recorded in `get synchronizer` and the error log;
the loop goes on with the local copy.  `source = dbms` is the master's own mode: the ledger file
is rebuilt from its `blockchain.ledger` table when that changed.
"""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.internet.defer import Deferred, succeed

from anylog_tw.base.errors import AnyLogError, PeerError
from anylog_tw.base.periodic import Periodic
from anylog_tw.base.process import NodeProcess
from anylog_tw.metadata.layer import Metadata, metadata
from anylog_tw.metadata.ledger import to_line
from anylog_tw.metadata.master import DBMS, MasterLedger
from anylog_tw.storage.engines import Databases

VERSION_COMMAND = "get metadata version"
PULL_COMMAND = "blockchain pull to stdout"
CHANGES_COMMAND = "get metadata changes since"


def text_version(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


class Synchronizer(NodeProcess):
    name = "Blockchain Sync"
    exit_command = "exit synchronizer"

    def __init__(self, source: str, interval: float, connection: str = "", dests: tuple[str, ...] = ("file",)):
        self.source = source
        self.interval = interval
        self.connection = connection
        self.dests = dests
        self.calls = 0
        self.loads = 0  # whole ledgers loaded
        self.deltas = 0  # change sets applied
        self.pushed = 0
        self.version = ""  # MD5 of the master copy loaded last
        self.state = "Starting"
        self.last_failure = ""
        self.last_failure_at: float | None = None
        self.last_load_at: float | None = None
        self.periodic: Periodic | None = None
        self._sent: dict[str, str] = {}  # local policy id -> master version when it was last pushed

    # -- life cycle --------------------------------------------------------------------------

    def startService(self) -> None:
        NodeProcess.startService(self)
        self.periodic = Periodic(self.node.reactor, self.interval, self.sync_once, name="blockchain sync")
        self.periodic.start()

    def stopService(self) -> Deferred:
        """Fires when the sync in flight, if any, has ended (the node stays reachable meanwhile)."""
        NodeProcess.stopService(self)
        return self.periodic.stop() if self.periodic is not None else succeed(None)

    def sync_now(self) -> Deferred:
        """Run one sync now; while one runs, one more right after it (requests are coalesced)."""
        return self.periodic.call_soon() if self.periodic is not None else succeed(False)

    # -- one sync ----------------------------------------------------------------------------

    async def sync_once(self) -> bool:
        """One round; True when a new ledger was loaded.  Never raises: failures are recorded."""
        self.calls += 1
        try:
            if self.source == "dbms":
                loaded = await self._from_dbms()
            else:
                loaded = await self._from_master()
        except AnyLogError as e:
            self._failed(e.message)
            return False
        except Exception as e:  # a bug: keep the loop alive, keep the traceback
            self.log.failure("blockchain sync failed")
            self._failed(f"{type(e).__name__}: {e}")
            return False
        self.state = "Synchronized"
        return loaded

    def _failed(self, message: str) -> None:
        self.state = f"Failed to connect to {self.source} using: {self.connection or 'the local dbms'}"
        self.last_failure = message
        self.last_failure_at = self.node.reactor.seconds()
        self.node.errors.add("blockchain sync", self.connection or self.source, message)
        self.log.warn("blockchain sync from {source} ({connection}) failed: {message}", source=self.source,
                      connection=self.connection, message=message)

    async def _ask(self, meta, command: str) -> str:
        reply = await meta.ask(self.connection, command)
        if not reply.ok:
            raise PeerError(f"the master at {self.connection} answered '{command}' with: {reply.text}")
        return reply.text if reply.text is not None else reply.render()

    async def _from_master(self) -> bool:
        meta = await metadata(self.node)
        version = (await self._ask(meta, VERSION_COMMAND)).strip()
        loaded = False
        if version != self.version:
            await self._fetch(meta)
            loaded = True
        await self._push_local(meta)
        return loaded

    async def _fetch(self, meta) -> None:
        """Ask for what changed since our version: a delta when the master's file only grew since,
        else the whole ledger (also from a master that does not know the changes command)."""
        reply = await meta.ask(self.connection, f"{CHANGES_COMMAND} {self.version or 'none'}")
        if not reply.ok and reply.error_code == "unknown_command":
            await self._install(meta, await self._ask(meta, PULL_COMMAND))
            return
        if not reply.ok:
            raise PeerError(f"the master at {self.connection} answered '{CHANGES_COMMAND}' with: {reply.text}")
        header, _, data = (reply.text or "").partition("\n")
        words = header.split()
        if len(words) == 3 and words[0] == "#delta" and words[1] == self.version:
            count = await meta.apply_delta(data.encode("utf-8"))
            self.version = words[2]
            self.deltas += 1
            self.last_load_at = self.node.reactor.seconds()
            self.log.info("ledger delta from {source}: {count} policies", source=self.source, count=count)
            if "dbms" in self.dests:
                await self._copy_to_dbms(meta)
            return
        if len(words) == 2 and words[0] == "#full":
            await self._install(meta, data)
            return
        raise PeerError(f"the master at {self.connection} sent a change set this node cannot read: {header[:80]!r}")

    async def _from_dbms(self) -> bool:
        meta = await metadata(self.node)
        db = self.node.component(Databases).get(DBMS)
        text = await MasterLedger(db).dump()
        if text_version(text) == self.version:
            return False
        await self._install(meta, text)
        return True

    async def _install(self, meta, text: str) -> None:
        count, local = await meta.install_master_copy(text)
        self.version = text_version(text)
        self.loads += 1
        self.last_load_at = self.node.reactor.seconds()
        self.log.info("ledger loaded from {source}: {count} policies ({local} local only)", source=self.source,
                      count=count, local=len(local))
        if "dbms" in self.dests and self.source != "dbms":
            await self._copy_to_dbms(meta)

    async def _copy_to_dbms(self, meta) -> None:
        """`dest = dbms`: keep the node's own `blockchain.ledger` table in step with the file."""
        master = MasterLedger(self.node.component(Databases).get(DBMS))
        await master.ensure_table()
        await master.push_many(meta.ledger.all())

    async def _push_local(self, meta) -> None:
        """Send the master our local policies.  A policy is sent once per master version: while
        the master's ledger has not changed since, sending it again cannot help (a refusal is
        reported once; a policy the master holds as its own local one is not sent forever)."""
        for policy in list(meta.ledger.local_policies()):
            pid = next(iter(policy.values()))["id"]
            if self._sent.get(pid) == self.version:
                continue
            reply = await meta.ask(self.connection, "blockchain push " + to_line(policy))
            self._sent[pid] = self.version
            if reply.ok:
                self.pushed += 1
                continue
            message = f"the master refused local policy {pid}: {reply.text}"
            self.last_failure = message
            self.last_failure_at = self.node.reactor.seconds()
            self.node.errors.add("blockchain sync", self.connection, message)
            self.log.warn("{message}", message=message)

    # -- status ------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        meta = self.node.component(Metadata)
        now = self.node.reactor.seconds()
        return {
            "Status": self.state,
            "Source": self.source,
            "Connection": self.connection,
            "Dest": ",".join(self.dests),
            "Interval": f"{self.interval:g} seconds",
            "Version": self.version,
            "Calls": self.calls,
            "Loads": self.loads,
            "Deltas": self.deltas,
            "Pushed": self.pushed,
            "Policies": len(meta.ledger),
            "Since last load": "" if self.last_load_at is None else f"{now - self.last_load_at:.0f} seconds",
            "Last failure": self.last_failure,
        }

    def details(self) -> str:
        where = f" using {self.connection}" if self.connection else ""
        return f"Sync every {self.interval:g} seconds from {self.source}{where}: {self.state}"
