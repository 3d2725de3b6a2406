"""What the security model costs (issue 14): the grant check against the same run without it.

1. `node.execute("get status")` in one process, as a REST reader would send it: commands per
   CPU second with the check, and with the check made to always pass (`Origin.allows`), in
   alternating rounds of the same process.  Target: the check costs at most 2 %.
2. REST `get status` (wrk -t1 -c10, keep-alive) against two node processes, one with the check
   and one without, loaded in alternating runs: requests per second and the server's CPU
   microseconds per request (the steadier of the two on a shared machine).  Target: at most 2 %.

Run: .venv/bin/python bench/security.py [--runs 7] [--seconds 3] [--calls 20000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from twisted.internet.defer import ensureDeferred

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import rest  # noqa: E402  (bench/rest.py: the same servers and load)
from rest import Server, wrk  # noqa: E402


def without_check() -> None:
    """The node as it would be with no grant check: the comparison `Node._dispatch` makes always passes."""
    from anylog_tw.base.origin import Origin

    Origin.allows = lambda self, needed: True


def serve(kind: str, home: str) -> None:
    """bench/rest.py's node server, with the check made to always pass when `kind` is nocheck."""
    if kind == "nocheck":
        without_check()
    rest.serve("node", home)


class NodeServer(Server):
    def __init__(self, kind: str, home: str):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", kind, home],
                                     stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.port = int(self.proc.stdout.readline())


def execute_rate(node, origin, calls: int) -> float:
    """Commands per CPU second of this process (steadier than per wall second on a shared machine)."""
    started = time.process_time()
    for _ in range(calls):
        d = ensureDeferred(node.execute("get status", origin))
        if not d.called or not d.result.ok:
            raise SystemExit(f"get status did not answer at once: {d.result!r}")
    return calls / (time.process_time() - started)


def execute_figure(args, work: str) -> None:
    from twisted.internet.testing import MemoryReactorClock

    from anylog_tw.base.origin import Origin
    from anylog_tw.node import Node

    node = Node(os.path.join(work, "inproc"), name="bench", reactor=MemoryReactorClock())
    reader = Origin("REST 127.0.0.1:1 (bench)", "read", "rest")
    checked = Origin.allows
    execute_rate(node, reader, args.calls)  # warm up
    on, off = [], []
    for _ in range(args.runs):
        Origin.allows = checked
        on.append(execute_rate(node, reader, args.calls))
        without_check()
        off.append(execute_rate(node, reader, args.calls))
    Origin.allows = checked
    ratios = [a / b for a, b in zip(on, off)]
    print("node.execute('get status') as a REST reader, one process, alternating rounds")
    print(f"  with the check     median {statistics.median(on):>10,.0f}/s   runs: {', '.join(f'{v:,.0f}' for v in on)}")
    print(f"  without (baseline) median {statistics.median(off):>10,.0f}/s   runs: {', '.join(f'{v:,.0f}' for v in off)}")
    print(f"  ratio median {statistics.median(ratios):.3f} (runs {min(ratios):.3f}-{max(ratios):.3f}); "
          f"cost {100 * (1 - statistics.median(ratios)):+.1f} %  (target: at most 2 %)")


def rest_figure(args, work: str) -> None:
    checked = NodeServer("node", os.path.join(work, "checked"))
    plain = NodeServer("nocheck", os.path.join(work, "plain"))
    headers = {"User-Agent": "AnyLog/1.23", "command": "get status"}
    try:
        wrk(checked.port, 1, headers)
        wrk(plain.port, 1, headers)
        rates, cpus = {"on": [], "off": []}, {"on": [], "off": []}
        for i in range(args.runs):
            order = (("on", checked), ("off", plain)) if i % 2 == 0 else (("off", plain), ("on", checked))
            for key, server in order:
                rate, cpu = wrk(server.port, args.seconds, headers, server.proc.pid)
                rates[key].append(rate)
                cpus[key].append(cpu)
    finally:
        checked.stop()
        plain.stop()
    print("REST get status, wrk -t1 -c10, two node processes, alternating runs")
    for key, label in (("on", "with the check"), ("off", "without (baseline)")):
        print(f"  {label:<18} median {statistics.median(rates[key]):>8,.0f} req/s, "
              f"{statistics.median(cpus[key]):6.1f} µs CPU/request   runs: "
              f"{', '.join(f'{v:,.0f}' for v in rates[key])}")
    rate_ratio = statistics.median(rates["on"]) / statistics.median(rates["off"])
    cpu_ratio = statistics.median(cpus["on"]) / statistics.median(cpus["off"])
    print(f"  throughput ratio {rate_ratio:.3f} (cost {100 * (1 - rate_ratio):+.1f} %); CPU per request ratio "
          f"{cpu_ratio:.3f} (cost {100 * (cpu_ratio - 1):+.1f} %)  (target: at most 2 %)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "HOME"))
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    work = tempfile.mkdtemp(prefix="bench-security-")
    try:
        execute_figure(args, work)
        if shutil.which("wrk") is None:
            print("REST get status: skipped, wrk is not installed (apt-get install -y wrk)")
        else:
            rest_figure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
