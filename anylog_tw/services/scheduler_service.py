"""The node's schedulers: scheduler 0 (system) and the user's 1..10, and the "Scheduler" process.

`Schedulers` is the node's component (`node.component(Schedulers)`): it owns one `Scheduler`
per id and runs their tasks through `node.execute`, so a task is exactly what a user would type.
`SchedulerService` is the row "Scheduler" of `get processes`; the node adds it when it starts,
so scheduler 0 is always there.

Other areas add housekeeping to scheduler 0 with `add_system_task`::

    from anylog_tw.services.scheduler_service import Schedulers

    schedulers = node.component(Schedulers)
    schedulers.add_system_task("metadata ping", 60, ping_not_responding_peers)   # async or plain fn
    schedulers.add_system_task("archive clean", 86400, "delete archive where days = 30")  # a command
    schedulers.remove_system_task("metadata ping")

A system task shows in `get scheduler 0` and can be stopped, resumed, run and re-timed with the
`task ...` commands like any other, but only its owner removes it.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from anylog_tw.base.deadline import with_deadline
from anylog_tw.base.errors import AnyLogError
from anylog_tw.base.process import NodeProcess
from anylog_tw.services import housekeeping
from anylog_tw.services.scheduler import Scheduler, Task, call_function, expand_time_marks

SYSTEM = 0
MAX_ID = 10  # as in AnyLog: scheduler ids 0..10
STOP_WAIT = 10.0  # seconds the node waits for task runs in flight when it stops


class Schedulers:
    """Every scheduler of the node, by id; built on first use as `node.component(Schedulers)`."""

    log = Logger()

    def __init__(self, node):
        self.node = node
        self._schedulers: dict[int, Scheduler] = {}
        self.scheduler(SYSTEM, create=True)

    def scheduler(self, sid: int, create: bool = False) -> Scheduler | None:
        found = self._schedulers.get(sid)
        if found is None and create:
            found = self._schedulers[sid] = Scheduler(sid, self.node.reactor, self._runner(sid),
                                                      system=sid == SYSTEM)
        return found

    def all(self) -> list[Scheduler]:
        return [self._schedulers[k] for k in sorted(self._schedulers)]

    def running_ids(self) -> list[int]:
        return [s.id for s in self.all() if s.running]

    def details(self) -> str:
        """`Schedulers IDs in use: [0 (system)] [1 (user)]`, as AnyLog's `get processes` shows."""
        ids = " ".join(f"[{sid} ({'system' if sid == SYSTEM else 'user'})]" for sid in self.running_ids())
        return f"Schedulers IDs in use: {ids}" if ids else "No scheduler running"

    # -- life cycle --------------------------------------------------------------------------

    def start(self, sid: int) -> Scheduler:
        sched = self.scheduler(sid, create=True)
        sched.start()
        return sched

    def stop(self, sid: int) -> Deferred:
        """Stop one scheduler's timer at once; the Deferred fires when its runs in flight end."""
        sched = self._schedulers.get(sid)
        return sched.stop() if sched is not None else Deferred.fromCoroutine(_nothing())

    def stop_all(self, wait: float = STOP_WAIT) -> Deferred:
        """Stop every scheduler; wait at most `wait` seconds for the runs in flight."""
        inflight = sum(s.inflight for s in self.all())
        pending = [s.stop() for s in self.all()]

        def gave_up() -> None:
            self.log.warn("stopped waiting for {n} scheduled task run(s) after {wait} seconds", n=inflight,
                          wait=wait)

        return with_deadline(DeferredList(pending, consumeErrors=True), wait, self.node.reactor, gave_up)

    def close(self) -> None:
        """The node is stopping: no timer stays armed (the "Scheduler" process did the waiting)."""
        for sched in self.all():
            sched.stop()

    # -- system tasks ------------------------------------------------------------------------

    def add_system_task(self, name: str, interval_seconds: float, action: str | Callable[[], Any],
                        start: float | None = None) -> Task:
        """Run `action` on scheduler 0 every `interval_seconds` (first at `start`, else one interval
        from now).  `action` is a command (text) or a function, plain or async; its failures are
        logged and counted like a user task's.  A task of the same name is replaced.
        """
        sched = self.scheduler(SYSTEM, create=True)
        old = sched.find(name=name)
        if old is not None:
            sched.remove_task(old)
        if isinstance(action, str):
            return sched.add(interval_seconds, command=action, name=name, start=start, system=True)
        return sched.add(interval_seconds, function=action, name=name, start=start, system=True)

    def remove_system_task(self, name: str) -> bool:
        sched = self.scheduler(SYSTEM, create=True)
        task = sched.find(name=name)
        if task is None:
            return False
        sched.remove_task(task)
        return True

    # -- running a task ----------------------------------------------------------------------

    def _runner(self, sid: int):
        async def run(task: Task, previous: float) -> tuple[bool, str]:
            # A task runs with the grant (and the limits) of whoever scheduled it, never more.
            label = f"scheduler {sid} task {task.name}"
            if task.owner.kind not in ("local", "stdin", "script"):  # says whose rights the task runs with
                label = f"{task.owner} ({label})"
            origin = task.owner.narrowed(task.owner.grant, label, "peer" if task.owner.kind == "peer" else "scheduler")
            if task.command:
                text = expand_time_marks(task.command, previous, self.node.reactor.seconds())
                reply = await self.node.execute(text, origin)
                return reply.ok, "" if reply.ok else (reply.text or "error")
            try:
                await call_function(task.function)
            except AnyLogError as e:
                self.node.errors.add(origin.label, task.what, e.message)
                return False, e.message
            except Exception as e:
                self.log.failure("{origin} failed", origin=origin)
                message = f"{type(e).__name__}: {e} (the traceback is in the log)"
                self.node.errors.add(origin.label, task.what, message)
                return False, message
            return True, ""

        return run


class SchedulerService(NodeProcess):
    """The row "Scheduler" of `get processes`: starts scheduler 0 with the node, stops them all."""

    name = "Scheduler"
    exit_command = "exit scheduler"

    @property
    def schedulers(self) -> Schedulers:
        return self.node.component(Schedulers)

    def startService(self) -> None:
        NodeProcess.startService(self)
        sched = self.schedulers.scheduler(SYSTEM, create=True)
        if not sched.running:
            sched.start()

        housekeeping.install(self.schedulers, self.node)

    def stopService(self) -> Deferred:
        NodeProcess.stopService(self)
        return self.schedulers.stop_all()

    def details(self) -> str:
        return self.schedulers.details()


def attach(node) -> SchedulerService:
    """The node's "Scheduler" process, added if missing (the node calls this as it starts)."""
    service = node.process(SchedulerService.name)
    if service is None:
        service = SchedulerService()
        service.setServiceParent(node)
    return service


async def _nothing() -> None:
    return None
