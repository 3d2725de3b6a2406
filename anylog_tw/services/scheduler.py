"""The scheduler: tasks that run a command (or a function) every N seconds.

One `Scheduler` holds its tasks in a heap keyed by their next run time and keeps exactly one
`callLater` armed for the earliest of them.  A tick pops only what is due, so a scheduler with
10,000 tasks costs nothing between runs (EdgeLake wakes every 10 s and walks every task; we do
not).  Stopped and removed tasks are dropped from the heap lazily: each task carries a
generation number, and a heap entry whose generation is not the task's current one is stale.

Timing rules (the `help schedule` text says the same to users):

* a task runs first at its `start` time, or one interval after it was declared;
* later runs stay on the grid `start + k * interval`; slots missed while the node was busy or
  the scheduler was off are collapsed into one run;
* a task still running when it falls due again is not started twice: that slot is skipped
  (and counted);
* a failing run is logged and counted, and the task keeps its schedule;
* adding, stopping, resuming or removing a task takes effect at once (the timer is re-armed).

Time comes from the clock handed in (the node's reactor, or a `task.Clock` in tests).
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import math
import re
from typing import Any, Awaitable, Callable

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from anylog_tw.base.origin import LOCAL, Origin
from anylog_tw.base.timefmt import format_instant, format_utc

MIN_INTERVAL = 0.1  # seconds: below this a task would keep the reactor busy for nothing
RESULT_CHARS = 200  # how much of an error a task keeps as its last result




def format_interval(seconds: float) -> str:
    """`30 seconds`, `5 minutes`, `1 hour`, `1.5 seconds`: the interval as a user would type it."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    n = f"{seconds:g}"
    return f"{n} second{'s' if seconds != 1 else ''}"


_TIME_MARKS = re.compile(r"TIME\((PREVIOUS|CURRENT)\)", re.IGNORECASE)


def expand_time_marks(command: str, previous: float, current: float) -> str:
    """Replace `TIME(PREVIOUS)` and `TIME(CURRENT)` with the last and the current run times.

    A scheduled query written `... where timestamp >= 'TIME(PREVIOUS)' and timestamp <
    'TIME(CURRENT)'` then reads each row once, as in AnyLog.
    """
    if "TIME(" not in command.upper():
        return command
    return _TIME_MARKS.sub(lambda m: format_instant(previous if m.group(1).upper() == "PREVIOUS" else current),
                           command)


def next_slot(due: float, interval: float, now: float) -> float:
    """The first time on the grid `due + k * interval` (k >= 1) that is after `now`."""
    nxt = due + interval
    if nxt <= now:
        nxt = due + (math.floor((now - due) / interval) + 1) * interval
        if nxt <= now:  # float rounding
            nxt += interval
    return nxt


class Task:
    """One scheduled task and its counters (what `get scheduler` shows)."""

    __slots__ = ("id", "name", "command", "function", "interval", "next_run", "last_run", "last_result",
                 "runs", "failures", "skipped", "active", "running", "removed", "generation", "created",
                 "system", "scheduler_id", "owner")

    def __init__(self, task_id: int, name: str, interval: float, next_run: float, created: float,
                 command: str = "", function: Callable[[], Any] | None = None, system: bool = False,
                 scheduler_id: int = 1, owner: Origin = LOCAL):
        self.id = task_id
        self.name = name
        self.command = command
        self.function = function
        self.interval = interval
        self.next_run = next_run
        self.last_run: float | None = None
        self.last_result = ""
        self.runs = 0
        self.failures = 0
        self.skipped = 0
        self.active = True
        self.running = False
        self.removed = False
        self.generation = 0
        self.created = created
        self.system = system
        self.scheduler_id = scheduler_id
        self.owner = owner  # the origin of the command that declared it (a peer's task runs as that peer)

    @property
    def status(self) -> str:
        if self.running:
            return "running"
        return "active" if self.active else "stopped"

    @property
    def what(self) -> str:
        if self.command:
            return self.command
        fn = self.function
        return f"<{getattr(fn, '__qualname__', None) or getattr(fn, '__name__', repr(fn))}>"

    def as_dict(self) -> dict:
        return {"scheduler": self.scheduler_id, "id": self.id, "name": self.name, "status": self.status,
                "interval": self.interval, "next_run": format_utc(self.next_run) if self.active else "",
                "last_run": format_utc(self.last_run), "last_result": self.last_result, "runs": self.runs,
                "failures": self.failures, "skipped": self.skipped, "command": self.what}

    def __repr__(self) -> str:
        return f"<Task {self.scheduler_id}/{self.id} {self.name!r} every {self.interval}s {self.status}>"


# What runs a task: given the task and the time of its previous run (its declaration time before
# the first run), an awaitable of (ok, result text).
Runner = Callable[[Task, float], Awaitable[tuple[bool, str]]]


class Scheduler:
    """The tasks of one scheduler id, their heap, and the one timer armed for the earliest."""

    log = Logger()

    def __init__(self, scheduler_id: int, clock, runner: Runner, system: bool = False):
        self.id = scheduler_id
        self.clock = clock
        self.runner = runner
        self.system = system
        self.running = False
        self._tasks: dict[str, Task] = {}  # by lower-cased name
        self._by_id: dict[int, Task] = {}
        self._heap: list[tuple[float, int, int, Task]] = []  # (time, seq, generation, task)
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._timer = None
        self._in_tick = False
        self._inflight: set[Deferred] = set()
        self.ticks = 0

    # -- the tasks ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_id)

    def tasks(self) -> list[Task]:
        return sorted(self._by_id.values(), key=lambda t: t.id)

    def find(self, name: str | None = None, task_id: int | None = None) -> Task | None:
        by_name = self._tasks.get(name.lower()) if name is not None else None
        by_id = self._by_id.get(task_id) if task_id is not None else None
        if name is not None and task_id is not None:
            return by_name if by_name is by_id else None
        return by_name if name is not None else by_id

    def add(self, interval: float, command: str = "", name: str | None = None, start: float | None = None,
            function: Callable[[], Any] | None = None, system: bool = False, owner: Origin = LOCAL) -> Task:
        """Declare a task; it runs first at `start`, or one interval from now."""
        if not interval or interval < MIN_INTERVAL or math.isinf(interval) or math.isnan(interval):
            raise ValueError(f"the interval must be at least {MIN_INTERVAL} seconds, not {interval}")
        if not command and function is None:
            raise ValueError("a task needs a command or a function")
        if name is not None and name.strip() and name.lower() in self._tasks:
            raise KeyError(name)
        task_id = next(self._ids)
        if name is None or not name.strip():
            name = f"task{task_id}"
            while name.lower() in self._tasks:
                name += "_"
        now = self.clock.seconds()
        first = start if start is not None else now + interval
        task = Task(task_id, name, interval, first, now, command=command, function=function, system=system,
                    scheduler_id=self.id, owner=owner)
        self._tasks[name.lower()] = task
        self._by_id[task_id] = task
        self._push(task)
        return task

    def stop_task(self, task: Task) -> None:
        """The task runs no more until resumed (a run in flight finishes)."""
        task.active = False
        task.generation += 1
        self._arm()

    def resume_task(self, task: Task) -> None:
        """Active again, at its planned time if still ahead, else the next slot of its grid."""
        if task.active:
            return
        task.active = True
        now = self.clock.seconds()
        if task.next_run <= now:
            task.next_run = next_slot(task.next_run, task.interval, now)
        self._push(task)

    def init_task(self, task: Task, start: float | None = None) -> None:
        """Move the next run to `start` (default: one interval from now), e.g. to quiet an alert."""
        task.next_run = start if start is not None else self.clock.seconds() + task.interval
        if task.active:
            self._push(task)

    def remove_task(self, task: Task) -> None:
        task.removed = True
        task.active = False
        task.generation += 1
        self._tasks.pop(task.name.lower(), None)
        self._by_id.pop(task.id, None)
        self._arm()

    def run_task_now(self, task: Task) -> Deferred:
        """Run the task once, now, off its schedule; a task that is running is not started twice."""
        if task.running:
            raise RuntimeError(f"task '{task.name}' is running")
        return self._start(task)

    # -- running -----------------------------------------------------------------------------

    def start(self) -> None:
        self.running = True
        self._arm()

    def stop(self) -> Deferred:
        """Stop the timer now; the Deferred fires when the runs in flight have ended."""
        self.running = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        return self.wait_idle()

    def wait_idle(self) -> Deferred:
        return DeferredList(list(self._inflight), consumeErrors=True)

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    @property
    def next_due(self) -> float | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def _push(self, task: Task) -> None:
        task.generation += 1
        heapq.heappush(self._heap, (task.next_run, next(self._seq), task.generation, task))
        if len(self._heap) > 64 and len(self._heap) > 2 * len(self._by_id):
            self._compact()
        self._arm()

    @staticmethod
    def _stale(entry) -> bool:
        _, _, generation, task = entry
        return generation != task.generation or not task.active

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap and self._stale(heap[0]):
            heapq.heappop(heap)

    def _compact(self) -> None:
        self._heap = [e for e in self._heap if not self._stale(e)]
        heapq.heapify(self._heap)

    def _arm(self) -> None:
        """Keep one timer armed for the earliest live task (none when idle, stopped or ticking)."""
        if self._in_tick:
            return
        due = self.next_due if self.running else None
        timer = self._timer
        if due is None:
            if timer is not None and timer.active():
                timer.cancel()
            self._timer = None
            return
        delay = max(0.0, due - self.clock.seconds())
        if timer is not None and timer.active():
            if timer.getTime() != due:
                timer.reset(delay)
            return
        self._timer = self.clock.callLater(delay, self._tick)

    def _tick(self) -> None:
        """Start every due task, put each back at its next slot, and re-arm for the earliest."""
        self._timer = None
        self.ticks += 1
        now = self.clock.seconds()
        heap = self._heap
        due: list[Task] = []
        self._in_tick = True
        try:
            while heap and heap[0][0] <= now:
                when, _, generation, task = heapq.heappop(heap)
                if generation != task.generation or not task.active:
                    continue
                task.next_run = next_slot(when, task.interval, now)
                task.generation += 1
                heapq.heappush(heap, (task.next_run, next(self._seq), task.generation, task))
                due.append(task)
            for task in due:
                if not task.active or not self.running:
                    continue  # stopped by a task that ran before it in this tick
                if task.running:
                    task.skipped += 1
                    self.log.debug("scheduler {sid} task {name} is still running: slot skipped",
                                   sid=self.id, name=task.name)
                    continue
                self._start(task)
        finally:
            self._in_tick = False
            self._arm()

    def _start(self, task: Task) -> Deferred:
        d = Deferred.fromCoroutine(self._run(task))
        if not d.called:
            self._inflight.add(d)
            d.addBoth(self._finished, d)
        return d

    def _finished(self, result, d: Deferred):
        self._inflight.discard(d)
        return result

    async def _run(self, task: Task) -> bool:
        previous = task.last_run
        task.running = True
        task.runs += 1
        task.last_run = self.clock.seconds()
        try:
            ok, text = await self.runner(task, previous if previous is not None else task.created)
        except Exception as e:  # the runner's own failure: counted like any other
            self.log.failure("scheduler {sid} task {name} failed", sid=self.id, name=task.name)
            ok, text = False, f"{type(e).__name__}: {e}"
        finally:
            task.running = False
        before = task.last_result
        if ok:
            task.last_result = "ok"
            if before not in ("", "ok"):
                self.log.info("scheduler {sid} task {name} succeeds again", sid=self.id, name=task.name)
        else:
            task.failures += 1
            task.last_result = (text or "error")[:RESULT_CHARS]
            if task.last_result != before:  # a task failing every second logs once, not every second
                self.log.warn("scheduler {sid} task {name} failed: {error}", sid=self.id, name=task.name,
                              error=task.last_result)
        return ok


async def call_function(fn: Callable[[], Any]) -> Any:
    """Call a sync or async function (or one returning a Deferred) and wait for its result."""
    result = fn()
    if inspect.isawaitable(result):
        result = await result
    return result
