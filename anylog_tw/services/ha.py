"""The HA process (`run ha`): the operators of one cluster hold the same data.

Two halves, each one a periodic task of this service (see `ha_push.py` and `ha_pull.py`):

* push (`run data distributor`): each file the local operator ingested from a device goes to
  every other operator of the cluster, tracked per member and persisted;
* pull (`run data consumer`): this node asks each member for the files it registered in the
  window (`start_date`) and requests those missing from our `tsd_<member>` tables.

The cluster and this node's member id come from the running operator (its policy); the other
members are the operator policies of that cluster in the metadata, read again on every tick so a
member that joins later is served without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.defer import Deferred

from anylog_tw.base import values
from anylog_tw.base.errors import ServiceError
from anylog_tw.base.periodic import Periodic
from anylog_tw.base.process import NodeProcess
from anylog_tw.metadata import policies
from anylog_tw.net.peers import Peers
from anylog_tw.services import ha_state
from anylog_tw.services.ha_pull import Pull
from anylog_tw.services.ha_push import Push
from anylog_tw.storage.engines import Databases

PROCESS = "HA"


@dataclass
class HAConfig:
    push: bool = True
    pull: bool = True
    start_date: str = "-7d"
    push_interval: float = 1.0
    pull_interval: float = 30.0
    stale: float = 600.0
    grace: float = 10.0


class HA(NodeProcess):
    name = PROCESS
    exit_command = "exit ha"

    def __init__(self, config: HAConfig, meta):
        self.config = config
        self.meta = meta
        self.push = None
        self.pull = None
        self._push_task: Periodic | None = None
        self._pull_task: Periodic | None = None
        self._operator = None
        self.cluster = ""
        self.member = "0"
        self.started_at = 0.0

    # -- what the halves ask -------------------------------------------------------------------

    def operator(self):
        op = self.node.process("Operator")
        if op is not self._operator:
            if self._operator is not None and self._on_ingested in self._operator.observers:
                self._operator.observers.remove(self._on_ingested)
            self._operator = op
            if op is not None:
                op.observers.append(self._on_ingested)
                op.config.update_tsd_info = True  # implied by HA: every file has its TSD row
                op.config.archive_json = True  # the archive is what members are served from
                self.cluster, self.member = op.config.cluster, op.config.member
        return op

    def almgm(self):
        db = self.node.component(Databases).find("almgm")
        if db is None:
            raise ServiceError("HA needs dbms almgm (connect dbms almgm where type = sqlite)")
        return db

    def peers(self):
        return self.node.component(Peers)

    def archive_dir(self) -> str:
        op = self.operator()
        return op.config.archive_dir if op is not None else self.node.dirs["archive_dir"]

    def window_start(self) -> float:
        return values.parse_date(self.config.start_date, self.node.reactor.seconds())

    async def cluster_peers(self) -> list[tuple[str, str, str]]:
        """(member, ip:port, name) of the other operators of our cluster, from the metadata."""
        self.operator()
        if not self.cluster or self.meta is None:
            return []

        out = []
        for p in policies.operators_of_cluster(self.meta.ledger, self.cluster):
            member = str(policies.attr(p, "member", ""))
            address = policies.ip_port(p)
            if member.isdigit() and str(int(member)) != self.member and address:
                out.append((str(int(member)), address, str(policies.attr(p, "name", ""))))
        return out

    def wake_push(self) -> None:
        if self._push_task is not None and self._push_task.running:
            self._push_task.call_soon()

    def _on_ingested(self, job, rows: int) -> None:
        if job.tsd_table == "tsd_info" and self.push is not None and job.tsd_id:
            try:
                self.push.offer(ha_state.row_of_job(job, rows))
            except (ValueError, AttributeError):
                self.push.need_fetch = True  # read it from tsd_info instead
            self.wake_push()

    # -- life cycle ----------------------------------------------------------------------------

    def enable(self, push: bool, pull: bool) -> None:
        """`run data distributor` / `run data consumer` on a running HA turn the other half on."""
        if push and self.push is None:
            self.config.push = True
            self._start_push()
        if pull and self.pull is None:
            self.config.pull = True
            self._start_pull()

    def _start_push(self) -> None:
        self.push = Push(self)
        self.push.stale = self.config.stale
        self.push.fetch_every = self.config.push_interval

        async def first_then_tick():
            if not self.push._loaded:
                await self.push.load()
            await self.push.tick()

        self._push_task = Periodic(self.node.reactor, self.config.push_interval, first_then_tick, name="HA push")
        self._push_task.start()

    def _start_pull(self) -> None:
        self.pull = Pull(self)
        self.pull.grace = self.config.grace
        self._pull_task = Periodic(self.node.reactor, self.config.pull_interval, self.pull.tick, name="HA pull")
        self._pull_task.start()

    def startService(self) -> None:
        NodeProcess.startService(self)
        self.started_at = self.node.reactor.seconds()
        self.operator()
        if self.config.push:
            self._start_push()
        if self.config.pull:
            self._start_pull()

    def stopService(self) -> Deferred:
        NodeProcess.stopService(self)
        if self._operator is not None and self._on_ingested in self._operator.observers:
            self._operator.observers.remove(self._on_ingested)

        async def stop() -> None:
            for task in (self._push_task, self._pull_task):
                if task is not None:
                    await task.stop()
            if self.push is not None:
                await self.push.close()

        return Deferred.fromCoroutine(stop())

    def details(self) -> str:
        if not self.cluster:
            return "Not a cluster member (the operator has no cluster policy)"
        members = len(self.push.members) if self.push is not None else len(self.pull.states) if self.pull else 0
        halves = ", ".join(h for h, on in (("push", self.push is not None), ("pull", self.pull is not None)) if on)
        if self.push is not None and not self.push.members:
            return f"Cluster: {self.cluster}, Member: {self.member}: No peer Operators supporting the cluster"
        return f"Cluster: {self.cluster}, Member: {self.member}, Peers: {members}, Running: {halves}"
