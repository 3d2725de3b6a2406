"""Node foundation figures, each next to a baseline measured in the same run.

- `node.execute("get status")` in-process, per second, vs a bare dict dispatch to a function
  returning the same text (the raw limit of Python dispatch).
- `twistd -n anylog` to a ready console (prompt received), vs `twistd -n web` to its port
  accepting a connection (bare twistd start-up on the same machine).
- Idle RSS of the node vs the bare `twistd -n web`.

Run: .venv/bin/python bench/node.py [--runs 5]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet.defer import ensureDeferred

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TWISTD = str(Path(sys.executable).parent / "twistd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def execute_rate(n: int) -> float:
    from twisted.internet.testing import MemoryReactorClock

    from anylog_tw.node import Node

    node = Node(tempfile.mkdtemp(), name="bench", reactor=MemoryReactorClock())
    results = []
    append = results.append
    start = time.perf_counter()
    for _ in range(n):
        ensureDeferred(node.execute("get status")).addCallback(append)
    elapsed = time.perf_counter() - start
    assert len(results) == n and results[-1].render() == "bench@127.0.0.1 running"
    return n / elapsed


def dispatch_rate(n: int) -> float:
    table = {("get", "status"): lambda name: f"{name}@127.0.0.1 running"}
    results = []
    append = results.append
    start = time.perf_counter()
    for _ in range(n):
        append(table[tuple("get status".split())]("bench"))
    elapsed = time.perf_counter() - start
    return n / elapsed


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_prompt(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                data = b""
                while b"> " not in data and time.monotonic() < deadline:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if b"> " in data:
                    return
        except OSError:
            time.sleep(0.005)
    raise RuntimeError("no console prompt")


def wait_accept(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.005)
    raise RuntimeError("port never accepted")


def start_node() -> tuple[float, int]:
    home = tempfile.mkdtemp()
    port = free_port()
    script = Path(home) / "start.al"
    script.write_text(f"run console where port = {port}\n")
    t0 = time.monotonic()
    proc = subprocess.Popen([TWISTD, "-n", "--pidfile=", "--logfile", f"{home}/log", "anylog", "--home", home,
                             "--script", str(script), "--no-stdin"], cwd=home)
    try:
        wait_prompt(port, t0 + 20)
        elapsed = time.monotonic() - t0
        time.sleep(1.0)  # idle
        return elapsed, rss_kb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def start_bare() -> tuple[float, int]:
    home = tempfile.mkdtemp()
    port = free_port()
    t0 = time.monotonic()
    proc = subprocess.Popen([TWISTD, "-n", "--pidfile=", "--logfile", f"{home}/log", "web", "--listen",
                             f"tcp:{port}:interface=127.0.0.1", "--path", home], cwd=home)
    try:
        wait_accept(port, t0 + 20)
        elapsed = time.monotonic() - t0
        time.sleep(1.0)
        return elapsed, rss_kb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--n", type=int, default=50_000)
    args = parser.parse_args()

    node_rates = [execute_rate(args.n) for _ in range(args.runs)]
    base_rates = [dispatch_rate(args.n) for _ in range(args.runs)]
    startups = [start_node() for _ in range(args.runs)]
    bares = [start_bare() for _ in range(args.runs)]

    node_rate, base_rate = statistics.median(node_rates), statistics.median(base_rates)
    start_s, bare_s = statistics.median(s for s, _ in startups), statistics.median(s for s, _ in bares)
    rss, bare_rss = statistics.median(r for _, r in startups), statistics.median(r for _, r in bares)
    print(f"# bench/node.py: medians of {args.runs} runs")
    print(f"{'figure':44} {'anylog-tw':>12} {'baseline':>12} {'ratio':>7}  target")
    print(f"{'execute(get status) per second':44} {node_rate:>12,.0f} {base_rate:>12,.0f} "
          f"{node_rate / base_rate:>7.3f}  >= 20,000/s (baseline: bare dict dispatch)")
    print(f"{'start-up to ready console (s)':44} {start_s:>12.3f} {bare_s:>12.3f} "
          f"{start_s / bare_s:>7.2f}  < 1.5 s (baseline: twistd -n web to accept)")
    print(f"{'idle RSS (MB)':44} {rss / 1024:>12.1f} {bare_rss / 1024:>12.1f} "
          f"{rss / bare_rss:>7.2f}  < 60 MB (baseline: twistd -n web)")


if __name__ == "__main__":
    main()
