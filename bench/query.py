"""Network query figures (issue 17), each next to its baseline measured in the same run.

A query node (REST on) and operator processes (`twistd -n anylog`, the e2e harness), each
operator on SQLite with its own rows, one cluster per operator.

1. Aggregate with GROUP BY over 4 operators of --rows rows each, through REST: the total time
   next to the slowest operator's own time for its part (the part's seconds the operator records,
   `get query execution`).  Target: total <= 1.3 x slowest + 30 ms.
2. Pass-through of --rows rows in total from 2 operators to a REST client (rows streamed in pages):
   rows/s end to end (target >= 150,000) next to one operator's local `sql` of its half through
   its own REST server (`sql lsl limit = <half>`: `sql` cuts at 10,000 rows by default); and the query
   node's peak RSS (VmHWM, target < 200 MB).
3. `select count(*)` over the 4 operators through REST at concurrency 10: queries/s (target >=
   300) over the big tables and over 1,000-row tables (the query path's own cost), next to one
   operator's local `sql` count(*) through its REST server, and `get status` through the query
   node's REST server, at the same concurrency.

Medians of --runs runs.  Run: .venv/bin/python bench/query.py [--runs 5] [--rows 1000000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.e2e.harness import NodeProcess, free_port  # noqa: E402

TABLE = "CREATE TABLE ping (timestamp TIMESTAMP, device_name TEXT, value FLOAT)"
FILL = ("insert into ping (timestamp, device_name, value) with recursive c(i) as (select 0 union all select i + 1 "
        "from c where i < {last}) select strftime('%Y-%m-%d %H:%M:%f', '2026-07-19', '+' || i || ' seconds'), "
        "'dev' || (i % 50), (i % 1000) * 0.5 from c")
AGGREGATE = "select device_name, count(*), avg(value), min(value), max(value) from ping group by device_name"


def tcp(port: int) -> str:
    return f"run tcp server where external_ip = 127.0.0.1 and external_port = {port} and bind = true\n"


def rest(port: int) -> str:
    return f"run rest server where internal_ip = 127.0.0.1 and internal_port = {port} and timeout = 600\n"


def get(port: int, command: str, network: bool = False) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {"User-Agent": "AnyLog/1.23", "command": command}
    if network:
        headers["destination"] = "network"
    conn.request("GET", "/", headers=headers)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def vm_hwm(node) -> float:
    for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(base: Path, rows: int, started: list) -> tuple:
    ports = {name: (free_port(), free_port()) for name in ("q", "op1", "op2", "op3", "op4")}
    q = NodeProcess(base, "q", tcp(ports["q"][0]) + rest(ports["q"][1])).start()
    started.append(q)
    ops = {}
    for name in ("op1", "op2", "op3", "op4"):
        node = NodeProcess(base, name, tcp(ports[name][0]) + rest(ports[name][1]) +
                           "connect dbms lsl where type = sqlite\n").start()
        started.append(node)
        node.command(f'sql lsl "{TABLE}"')
        reply = node.command(f'sql lsl "{FILL.format(last=rows - 1)}"')
        assert not reply.startswith("Error"), reply
        node.command(f'sql lsl "{TABLE.replace("ping", "small")}"')
        reply = node.command(f'sql lsl "{FILL.replace("into ping", "into small").format(last=999)}"')
        assert not reply.startswith("Error"), reply
        ops[name] = node
    policies = [{"table": {"name": t, "dbms": "lsl", "create": TABLE.replace("ping", t)}} for t in ("ping", "small")]
    for i, name in enumerate(("op1", "op2", "op3", "op4"), 1):
        policies.append({"cluster": {"id": f"c{i}", "name": f"c{i}", "company": "b",
                                     "table": [{"dbms": "lsl", "name": t} for t in ("ping", "small")]}})
        policies.append({"operator": {"id": name, "name": name, "company": "b", "ip": "127.0.0.1",
                                      "port": ports[name][0], "cluster": f"c{i}", "main": True}})
    for p in policies:
        assert "added" in q.command(f"blockchain insert where policy = {json.dumps(p)} and local = true")
    return q, ops, ports


def aggregate(q, ops, ports, job: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    status, body = get(ports["q"][1], f'sql lsl "{AGGREGATE}"', network=True)
    total = time.perf_counter() - t0
    assert status == 200 and len(json.loads(body)["Query"]) == 50, body[:300]
    own = []
    for node in ops.values():
        out = json.loads(node.command(f"get query execution where job = {job} and format = json"))
        own.append(float(out[-1]["Seconds"]))
    return total, max(own)


def pass_through(q, ports, half: int) -> tuple[float, float]:
    sql = f"select timestamp, device_name, value from ping where rowid <= {half}"
    t0 = time.perf_counter()
    status, body = get(ports["q"][1], f'sql lsl "{sql}"', network=True)
    network = time.perf_counter() - t0
    tail = body[body.rfind(b'"Statistics"'):]
    assert status == 200 and b'"Count": %d' % (2 * half) in tail, (status, body[-300:])
    t0 = time.perf_counter()
    status, body = get(ports["op1"][1], f'sql lsl limit = {half} "{sql}"')
    local = time.perf_counter() - t0
    assert status == 200 and b'"Count": %d' % half in body[-200:], body[-300:]
    return 2 * half / network, half / local


def concurrent(port: int, command: str, network: bool, total: int = 600, workers: int = 10) -> float:
    def one(_):
        status, _body = get(port, command, network)
        assert status == 200, _body[:200]

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(20)))  # warm the connections and the paths
        t0 = time.perf_counter()
        list(pool.map(one, range(total)))
        return total / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    started: list[NodeProcess] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            t0 = time.time()
            q, ops, ports = start(Path(tmp), args.rows, started)
            print(f"4 operators x {args.rows} rows loaded in {time.time() - t0:.0f} s")
            agg = [aggregate(q, ops, ports, job) for job in range(1, args.runs + 1)]  # the node's first jobs
            total, own = statistics.median(a[0] for a in agg), statistics.median(a[1] for a in agg)
            print(f"1. group-by aggregate over 4 x {args.rows} rows: total {total * 1000:.0f} ms, slowest operator's "
                  f"own part {own * 1000:.0f} ms (median of {args.runs}); total / (1.3 x own + 30 ms) = "
                  f"{total / (1.3 * own + 0.03):.2f} (target <= 1)")
            counts = [concurrent(ports["q"][1], 'sql lsl "select count(*) from ping"', True) for _ in range(args.runs)]
            small = [concurrent(ports["q"][1], 'sql lsl "select count(*) from small"', True)
                     for _ in range(args.runs)]
            floor = [concurrent(ports["q"][1], "get status", False) for _ in range(args.runs)]
            local = [concurrent(ports["op1"][1], 'sql lsl "select count(*) from ping"', False, total=200)
                     for _ in range(args.runs)]
            print(f"3. select count(*) over 4 operators via REST, concurrency 10: {statistics.median(counts):.0f} "
                  f"queries/s over {args.rows} rows each, {statistics.median(small):.0f}/s over 1,000 rows each "
                  f"(target >= 300); baselines: one operator's local count(*) of its {args.rows} rows via its "
                  f"REST {statistics.median(local):.0f}/s, get status via REST {statistics.median(floor):.0f}/s")
            for name in ("op3", "op4"):
                q.command(f"blockchain delete policy where id = {name}")
            q.command("blockchain delete policy where id = c4")
            half = args.rows // 2
            passes = [pass_through(q, ports, half) for _ in range(args.runs)]
            rate, base = statistics.median(p[0] for p in passes), statistics.median(p[1] for p in passes)
            print(f"2. pass-through of {2 * half} rows from 2 operators to a REST client: {rate:,.0f} rows/s "
                  f"(target >= 150,000); baseline one operator's local sql of its {half} rows via its REST: "
                  f"{base:,.0f} rows/s; ratio {rate / base:.2f}; query node peak RSS {vm_hwm(q):.0f} MB "
                  f"(target < 200)")
        finally:
            for node in started:
                node.stop()


if __name__ == "__main__":
    main()
