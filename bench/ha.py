"""HA figures (issue 10), each next to its baseline measured in the same run.

A master and two operators of one cluster (A, member 1; B, member 2) run as `twistd` processes
(the e2e harness), each on SQLite.  Commit times are the rows' `insert_timestamp` (set by the
database inside the insert transaction, millisecond precision, one clock: same machine).

1. Replication lag of small files: one 5-row file at a time dropped on A, the next once B has it.
   Lag = B's commit - A's commit of the same file (tsd_id on A = tsd_id of tsd_1 on B).  Shown
   next to A's own latency (drop -> A's commit) of the same files.
2. Sustained: N files dropped on A at once.  Baseline: A's ingest rate with HA off (files/s from
   the first drop to A's last commit).  Then with HA on: A's rate and B's rate over the same
   burst, and B's rate / A's rate (target >= 0.8).

Run: .venv/bin/python bench/ha.py [--runs 3] [--files 200] [--rows 10] [--lag-files 30]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.e2e.harness import NodeProcess, free_port, wait_for  # noqa: E402


def tcp(port: int) -> str:
    return f"run tcp server where external_ip = 127.0.0.1 and external_port = {port} and bind = true\n"


def drop(home: Path, name: str, data: bytes) -> None:
    watch = home / "data" / "watch"
    tmp = watch / ("." + name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, watch / name)


def rows_of(i: int, n: int) -> bytes:
    return b"".join(json.dumps({"seq": i * 1000 + k, "value": k * 0.5, "dev": f"d{k % 7}"}).encode() + b"\n"
                    for k in range(n))


def query(node, sql: str, dbms: str = "lsl"):
    text = node.command(f'sql {dbms} "{sql}"')
    try:
        return json.loads(text)["Query"]
    except (ValueError, KeyError):
        return None


def count(node, table: str) -> int:
    rows = query(node, f"select count(*) as n from {table}")
    return rows[0]["n"] if rows else -1


def epoch(text: str) -> float:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.timezone.utc).timestamp()


def commits(node, table: str) -> dict[int, float]:
    rows = query(node, f"select tsd_id, max(insert_timestamp) as t from {table} group by tsd_id")
    return {r["tsd_id"]: epoch(r["t"]) for r in rows or []}


def start_cluster(base: Path, started: list) -> tuple:
    master_port = free_port()
    master = NodeProcess(base, "master", tcp(master_port)).start()
    started.append(master)
    ports = {"opa": free_port(), "opb": free_port()}
    ops = {}
    for name, port in ports.items():
        node = NodeProcess(base, name, tcp(port) + "connect dbms almgm where type = sqlite\n"
                                                   "connect dbms lsl where type = sqlite\n"
                           f"run blockchain sync where source = master and time = 1 second and dest = file and "
                           f"connection = 127.0.0.1:{master_port}\n").start()
        started.append(node)
        ops[name] = node
    policies = [{"cluster": {"id": "c1", "name": "c1", "company": "t", "dbms": "lsl"}}]
    policies += [{"operator": {"id": n, "name": n, "company": "t", "ip": "127.0.0.1", "port": p, "cluster": "c1",
                               "member": i}} for i, (n, p) in enumerate(sorted(ports.items()), 1)]
    for p in policies:
        assert "added" in ops["opa"].command(f"blockchain insert where policy = {json.dumps(p)} and "
                                             f"master = 127.0.0.1:{master_port}")
    for node in ops.values():
        wait_for(lambda: node.command("blockchain get operator bring.count") == "2", 15, "policies", 0.1)
    for name, node in ops.items():
        assert "started" in node.command(f"run operator where policy = {name} and threads = 2")
    return ops["opa"], ops["opb"]


def ha_on(a, b, since: str) -> None:
    for node in (a, b):
        reply = node.command(f'run ha where start_date = "{since}" and push_interval = 0.5 seconds and '
                             f'pull_interval = 5 seconds')
        assert "started" in reply, reply


def ha_off(a, b) -> None:
    for node in (a, b):
        node.command("exit ha")


def lag_run(a, b, table: str, files: int) -> tuple[list[float], list[float]]:
    drops = {}
    for i in range(files):
        drops[i] = time.time()
        drop(a.home, f"lsl.{table}.l{i}.json", rows_of(i, 5))
        wait_for(lambda: count(b, table) == 5 * (i + 1), 20, "the file on B", 0.002)
    on_a, on_b = commits(a, table), commits(b, table)
    lags = [on_b[t] - on_a[t] for t in on_a if t in on_b]
    firsts = sorted(on_a.items())
    local = [t - drops[k] for k, (_, t) in enumerate(firsts) if k in drops]
    return lags, local


def cpu(node) -> float:
    """CPU seconds (user + system) the node's process has used."""
    fields = Path(f"/proc/{node.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def burst(a, b, table: str, files: int, rows: int, with_b: bool, usage: dict) -> tuple[float, float | None]:
    ca, cb = cpu(a), cpu(b)
    t0 = time.time()
    for i in range(files):
        drop(a.home, f"lsl.{table}.b{i}.json", rows_of(i, rows))
    wait_for(lambda: count(a, table) == files * rows, 120, "A's rows", 0.05)
    rate_a = files / (max(commits(a, table).values()) - t0)
    if not with_b:
        usage.setdefault("alone", []).append((cpu(a) - ca) / files * 1000)
        return rate_a, None
    wait_for(lambda: count(b, table) == files * rows, 120, "B's rows", 0.05)
    rate_b = files / (max(commits(b, table).values()) - t0)
    if with_b:  # A's push is done when B has every file
        wait_for(lambda: json.loads(a.command("get ha where format = json"))["Push"][0]["Files pending"] == 0,
                 60, "A's push to drain", 0.1)
    usage.setdefault("a", []).append((cpu(a) - ca) / files * 1000)
    usage.setdefault("b", []).append((cpu(b) - cb) / files * 1000)
    return rate_a, rate_b


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--rows", type=int, default=10)
    ap.add_argument("--lag-files", type=int, default=30)
    ap.add_argument("--dir", default=None, help="where the nodes live (e.g. /dev/shm: no disk, fsync is free)")
    args = ap.parse_args()
    started: list = []
    with tempfile.TemporaryDirectory(prefix="ha-bench-", dir=args.dir) as base:
        try:
            a, b = start_cluster(Path(base), started)
            alone, with_a, with_b, ratios, lags, local = [], [], [], [], [], []
            usage: dict[str, list[float]] = {}
            for run in range(args.runs):
                ra, _ = burst(a, b, f"alone{run}", args.files, args.rows, False, usage)
                alone.append(ra)
                time.sleep(1.1)  # the window (whole seconds) starts after the baseline files: B never gets them
                since = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
                ha_on(a, b, since)
                wait_for(lambda: json.loads(a.command("get ha where format = json"))["Push"][0]["Files pending"]
                         == 0, 60, "A's push to be idle", 0.1)
                lg, lc = lag_run(a, b, f"lag{run}", args.lag_files)
                lags += lg
                local += lc
                ra, rb = burst(a, b, f"ha{run}", args.files, args.rows, True, usage)
                with_a.append(ra)
                with_b.append(rb)
                ratios.append(rb / alone[-1])
                ha_off(a, b)
                print(f"run {run + 1}: A alone {alone[-1]:.0f} files/s; with HA A {ra:.0f}, B {rb:.0f} files/s; "
                      f"lag median {statistics.median(lg) * 1000:.1f} ms", flush=True)
            ms = [x * 1000 for x in lags]
            print()
            print(f"replication lag, small files (A's commit -> B's commit), {len(ms)} files: "
                  f"median {statistics.median(ms):.1f} ms, p90 {sorted(ms)[int(len(ms) * 0.9)]:.1f} ms "
                  f"(target < 100 ms); baseline A's own drop -> commit median "
                  f"{statistics.median(local) * 1000:.1f} ms")
            print(f"sustained, {args.files} files x {args.rows} rows: baseline A alone median "
                  f"{statistics.median(alone):.0f} files/s; with HA A {statistics.median(with_a):.0f} files/s, "
                  f"B {statistics.median(with_b):.0f} files/s; B / A alone = {statistics.median(ratios):.2f} "
                  f"(target >= 0.8), B / A with HA = "
                  f"{statistics.median([x / y for x, y in zip(with_b, with_a)]):.2f}")
            med = {k: statistics.median(v) for k, v in usage.items()}
            print(f"CPU per file (ms, user + system, the console polls included): A alone {med['alone']:.2f}, "
                  f"A with HA {med['a']:.2f} (push costs {med['a'] - med['alone']:.2f}), B {med['b']:.2f}; "
                  f"{os.cpu_count()} cores shared by both nodes")
        finally:
            for node in reversed(started):
                node.stop()


if __name__ == "__main__":
    main()
