"""Scheduler figures, each next to a baseline measured in the same run (medians of --runs).

1. With 10,000 tasks declared and none due, the cost of one scheduler tick (the heap peek and
   the re-armed `callLater`), target < 1 ms.  Baselines: a bare `callLater` + `cancel` round on
   the same reactor, one empty `heappush` + `heappop`, and an EdgeLake-style tick that walks the
   whole task list to find what is due.
2. With 10,000 tasks declared, 1,000 of them due at the same moment: all 1,000 must start in one
   tick (checked), and the tick's duration is compared with running the same 1,000 commands
   straight through `node.execute` (what the tasks do, without any scheduler).

Run: .venv/bin/python bench/scheduler.py [--runs 7]
"""

from __future__ import annotations

import argparse
import heapq
import statistics
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet.defer import ensureDeferred

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TASKS = 10_000
DUE = 1_000
REPEAT = 2_000  # idle ticks timed per run


def _reactor():
    from twisted.internet import reactor  # the real one: its callLater is what a node pays

    return reactor


def idle_tick_us() -> float:
    """One tick with nothing due, 10,000 tasks declared, on the real reactor's timer heap."""
    from anylog_tw.services.scheduler import Scheduler

    async def never(task, previous):
        raise AssertionError("nothing is due")

    reactor = _reactor()
    sched = Scheduler(1, reactor, never)
    for i in range(TASKS):
        sched.add(3600 + i, command="get status", name=f"t{i}")
    sched.start()
    start = time.perf_counter()
    for _ in range(REPEAT):
        sched._tick()
    elapsed = time.perf_counter() - start
    assert sched.ticks == REPEAT and all(t.runs == 0 for t in sched.tasks())
    sched.stop()
    return elapsed / REPEAT * 1e6


def calllater_round_us() -> float:
    reactor = _reactor()
    noop = lambda: None  # noqa: E731
    start = time.perf_counter()
    for _ in range(REPEAT):
        reactor.callLater(3600, noop).cancel()
    return (time.perf_counter() - start) / REPEAT * 1e6


def heap_op_us() -> float:
    heap: list = []
    start = time.perf_counter()
    for i in range(REPEAT):
        heapq.heappush(heap, (float(i), i))
        heapq.heappop(heap)
    return (time.perf_counter() - start) / REPEAT * 1e6


def list_scan_tick_us() -> float:
    """What a tick costs when it walks every task (EdgeLake's loop, minus its 10 s sleep)."""
    now = time.time()
    tasks = [{"next": now + 3600 + i, "active": True} for i in range(TASKS)]
    runs = 50
    start = time.perf_counter()
    for _ in range(runs):
        due = [t for t in tasks if t["active"] and t["next"] <= now]
    assert not due
    return (time.perf_counter() - start) / runs * 1e6


def _node():
    from twisted.internet.testing import MemoryReactorClock

    from anylog_tw.node import Node

    return Node(tempfile.mkdtemp(), name="bench", reactor=MemoryReactorClock())


def due_tick_ms() -> tuple[float, int]:
    """1,000 of 10,000 tasks due at once: the duration of the one tick that starts them all."""
    from anylog_tw.services.scheduler_service import Schedulers

    node = _node()
    sched = node.component(Schedulers).start(1)
    for i in range(TASKS):
        when = 60.0 if i < DUE else 3600.0 + i
        sched.add(60, command="echo tick", name=f"t{i}", start=when)
    node.reactor.advance(59.999)
    ticks_before = sched.ticks
    start = time.perf_counter()
    node.reactor.advance(0.001)
    elapsed = time.perf_counter() - start
    started = sum(1 for t in sched.tasks() if t.runs == 1)
    assert sched.ticks - ticks_before == 1, "the due tasks took more than one tick"
    assert started == DUE and all(t.last_result == "ok" for t in sched.tasks()[:DUE])
    return elapsed * 1e3, started


def direct_execute_ms() -> float:
    node = _node()
    results = []
    start = time.perf_counter()
    for _ in range(DUE):
        ensureDeferred(node.execute("echo tick")).addCallback(results.append)
    elapsed = time.perf_counter() - start
    assert len(results) == DUE
    return elapsed * 1e3


def median(fn, runs: int) -> float:
    return statistics.median(fn() for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs

    tick = median(idle_tick_us, runs)
    round_ = median(calllater_round_us, runs)
    heap = median(heap_op_us, runs)
    scan = median(list_scan_tick_us, runs)
    due_runs = [due_tick_ms() for _ in range(runs)]
    due = statistics.median(ms for ms, _ in due_runs)
    started = min(n for _, n in due_runs)
    direct = median(direct_execute_ms, runs)

    print(f"scheduler bench: {TASKS:,} tasks declared, medians of {runs} runs")
    print(f"  idle tick (nothing due)         {tick:9.2f} us   target < 1000 us: "
          f"{'OK' if tick < 1000 else 'MISSED'}")
    print(f"    baseline callLater+cancel     {round_:9.2f} us   ratio {tick / round_:6.2f}x")
    print(f"    baseline heappush+heappop     {heap:9.2f} us   ratio {tick / heap:6.2f}x")
    print(f"    list scan of {TASKS:,} tasks     {scan:9.2f} us   ratio {scan / tick:6.1f}x slower than the heap")
    print(f"  {DUE:,} tasks due at once        {due:9.2f} ms   started in one tick: {started:,}/{DUE:,}")
    print(f"    baseline {DUE:,} node.execute     {direct:9.2f} ms   ratio {due / direct:6.2f}x "
          f"(scheduling overhead {(due - direct) / DUE * 1e3:.1f} us per task)")


if __name__ == "__main__":
    main()
