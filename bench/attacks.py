"""Peak memory of a node under each attack of the audit, next to a normal 200 MB file in the same run.

Every scenario starts a fresh `twistd -n anylog` node (TCP and REST on loopback), runs, and reads
the node's VmHWM (the most memory it ever held, from /proc).  The baseline is the same node receiving
a normal 200 MB file from a peer; the goal for every attack is a peak under 250 MB.  Each figure is
the median of `--runs` runs; the node must still answer REST after each attack.

Run: .venv/bin/python bench/attacks.py [--runs 3] [--tree PATH]

`--tree` runs the nodes from another checkout of the project (e.g. `git worktree add /tmp/before
main`), to put the figures of the code before a change next to these.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e import attacks as A  # noqa: E402  (after the path is set)

GOAL = 250.0


def idle(node):
    pass


def normal_file(node):
    answer = A.huge_file(node.tcp_port, 200 * A.MB, good=True, name="normal.bin")
    assert answer["ok"], answer


def event_frame(node):
    A.huge_frame(node.tcp_port, {"kind": "event", "id": 0, "event": "x"}, 300 * A.MB)


def unsolicited_reply(node):
    A.huge_frame(node.tcp_port, {"kind": "reply", "id": 0, "re": 9, "ok": True}, 300 * A.MB)


def bad_file(node):
    A.huge_file(node.tcp_port, 300 * A.MB)


def posts(node):
    for _ in range(5):
        A.big_post(node.rest_port, 40 * A.MB)


def agents(node):
    A.many_agents(node.rest_port, 3000)


def flood(node):
    socks = A.idle_flood(node.rest_port, 400, A.HALF_REQUEST) + A.idle_flood(node.tcp_port, 400)
    try:
        started = time.perf_counter()
        status, _ = A.rest_get(node.rest_port, "get status", 10.0)
        rest = f"REST answered in {(time.perf_counter() - started) * 1000:.0f} ms" if status == 200 else \
            "REST did not answer within 10 s"
        started = time.perf_counter()
        try:
            ok = A.peer_command(node.tcp_port, "get status")["ok"]
        except (OSError, ValueError):
            ok = False
        tcp = f"TCP in {(time.perf_counter() - started) * 1000:.0f} ms" if ok else "TCP did not answer"
        return f"{rest}, {tcp} (while flooded)"
    finally:
        for s in socks:
            s.close()


SCENARIOS = [
    ("idle node", idle, None),
    ("normal 200 MB peer file (baseline)", normal_file, None),
    ("300 MB event frame (keyless peer)", event_frame, None),
    ("300 MB reply nobody asked for", unsolicited_reply, None),
    ("300 MB file, wrong md5", bad_file, None),
    ("5 x 40 MB POST", posts, None),
    ("3000 x 8 KB User-Agents", agents, None),
    ("800 idle connections, 256 fds", flood, 256),
]


def run_once(base: Path, i: int, fn, nofile, env):
    node = A.AttackedNode(base, f"n{i}", nofile, env)
    node.start()
    try:
        try:
            note = fn(node)
        except (OSError, AssertionError, ValueError) as e:
            note = f"the attack failed: {type(e).__name__}: {e}"[:100]
        status, _ = A.rest_get(node.rest_port, "get status", 30.0)
        _, peak = node.memory()
        return peak, status == 200, note
    finally:
        node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tree", help="run the nodes from this checkout instead of this one")
    args = parser.parse_args()
    env = {"PYTHONPATH": os.path.abspath(args.tree)} if args.tree else None
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        counter = 0
        for name, fn, nofile in SCENARIOS:
            peaks, answered, notes = [], True, []
            for _ in range(args.runs):
                counter += 1
                peak, up, note = run_once(base, counter, fn, nofile, env)
                peaks.append(peak)
                answered = answered and up
                if note:
                    notes.append(note)
            results.append((name, statistics.median(peaks), answered, notes[-1] if notes else ""))
    baseline = results[1][1]
    print(f"peak RSS (VmHWM) of the node{' from ' + args.tree if args.tree else ''}, median of {args.runs} runs; "
          f"baseline: {results[1][0]}")
    print(f"{'scenario':40} {'peak MB':>8} {'x base':>7} {'< 250':>6} {'answers':>8}")
    for name, peak, up, note in results:
        print(f"{name:40} {peak:8.1f} {peak / baseline:7.2f} {'yes' if peak < GOAL else 'NO':>6} "
              f"{'yes' if up else 'NO':>8}  {note}")


if __name__ == "__main__":
    main()
