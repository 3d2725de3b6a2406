"""REST figures (issue 7), each next to its baseline measured in the same run.

1. `get status` requests per second at concurrency 10 (wrk -t1 -c10, keep-alive) against a node
   process running `run rest server`.  Baseline: a bare twisted.web resource answering a constant,
   in its own process, loaded the same way.  Target: at least 0.6 of the baseline.
2. PUT ingest of newline-delimited JSON (file mode: parsed, checked, hashed, written and fsynced
   into the watch dir before the reply) in MB/s, one client sending 8 MB bodies back to back.
   Baselines: the bare twisted.web resource taking the same bodies and throwing them away (the
   HTTP limit), and a plain write + fsync of the same bytes (the disk limit).  Target: 50 MB/s.

Runs alternate between the node and the baseline; medians of several runs and the ratios.
Run: .venv/bin/python bench/rest.py [--runs 5] [--seconds 3] [--mb 8] [--bodies 6]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import orjson

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


# -- the servers (run as `python bench/rest.py --serve bare|node HOME`) ---------------------------------


def serve(kind: str, home: str) -> None:
    from twisted.internet import reactor
    from twisted.web import resource, server

    if kind == "bare":
        class Constant(resource.Resource):
            isLeaf = True

            def render_GET(self, request):
                request.setHeader(b"content-type", b"text/plain")
                return b"bench@127.0.0.1 running"

            def render_PUT(self, request):
                request.content.read()
                request.setHeader(b"content-type", b"application/json")
                return b'{"AnyLog.status": "Success"}'

        site = server.Site(Constant())
        site.log = lambda request: None
        port = reactor.listenTCP(0, site, backlog=1024, interface="127.0.0.1")
        print(port.getHost().port, flush=True)
    else:
        from twisted.internet.defer import Deferred

        from anylog_tw.node import Node

        node = Node(home, name="bench", reactor=reactor)
        node.startService()

        async def start():
            reply = await node.execute("run rest server where internal_ip = 127.0.0.1 and internal_port = 0")
            assert reply.ok, reply.render()
            print(node.process("REST").address[1], flush=True)

        reactor.callWhenRunning(lambda: Deferred.fromCoroutine(start()))
    reactor.run()


class Server:
    def __init__(self, kind: str, home: str):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", kind, home],
                                     stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.port = int(self.proc.stdout.readline())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


# -- measurements ---------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(port: int, seconds: float, headers: dict[str, str], pid: int | None = None) -> tuple[float, float]:
    """(requests per second, server CPU microseconds per request)."""
    before = cpu_seconds(pid) if pid else 0.0
    args = ["wrk", "-t1", "-c10", f"-d{seconds}s", "--latency"]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    out = subprocess.run(args + [f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"wrk saw {non2xx.group(1)} error responses:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    cpu = (cpu_seconds(pid) - before) / total * 1e6 if pid else 0.0
    return rate, cpu


def ndjson_body(megabytes: float, tag: int) -> bytes:
    rows = []
    size = 0
    i = 0
    while size < megabytes * 1024 * 1024:
        row = orjson.dumps({"timestamp": "2026-11-28T10:00:00.000Z", "device": f"dev-{i % 100:03d}",
                            "value": i * 0.5, "status": "ok", "seq": i, "run": tag})
        rows.append(row)
        size += len(row) + 1
        i += 1
    return b"\n".join(rows) + b"\n"


def put_rate(port: int, bodies: list[bytes]) -> float:
    """MB/s of PUTs sent back to back on one keep-alive connection (reply awaited each time)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    total = 0
    started = time.perf_counter()
    for body in bodies:
        conn.request("PUT", "/", body=body, headers={"dbms": "bench", "table": "rest_put", "mode": "file",
                                                     "User-Agent": "AnyLog/1.23"})
        response = conn.getresponse()
        answer = response.read()
        if response.status != 200:
            raise SystemExit(f"PUT failed: {response.status} {answer[:300]!r}")
        total += len(body)
    elapsed = time.perf_counter() - started
    conn.close()
    return total / elapsed / 1e6


def disk_rate(directory: str, bodies: list[bytes]) -> float:
    started = time.perf_counter()
    total = 0
    for i, body in enumerate(bodies):
        path = os.path.join(directory, f"raw{i}.json")
        with open(path, "wb") as f:
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        total += len(body)
    elapsed = time.perf_counter() - started
    for i in range(len(bodies)):
        os.unlink(os.path.join(directory, f"raw{i}.json"))
    return total / elapsed / 1e6


def line(label: str, values: list[float], unit: str) -> float:
    med = statistics.median(values)
    print(f"  {label:<44} median {med:>10,.1f} {unit}   runs: {', '.join(f'{v:,.0f}' for v in values)}")
    return med


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--mb", type=float, default=8)
    parser.add_argument("--bodies", type=int, default=6)
    parser.add_argument("--only", choices=("get", "put"), help="run one of the two figures")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "HOME"))
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    work = tempfile.mkdtemp(prefix="bench-rest-")
    bare = Server("bare", work)
    node = Server("node", os.path.join(work, "home"))
    try:
        if args.only != "put":
            if shutil.which("wrk") is None:
                print("get status: skipped, wrk is not installed (apt-get install -y wrk)")
            else:
                get_figure(args, bare, node)
        if args.only != "get":
            put_figure(args, bare, node, work)
    finally:
        bare.stop()
        node.stop()
        shutil.rmtree(work, ignore_errors=True)


def get_figure(args, bare: Server, node: Server) -> None:
    headers = {"User-Agent": "AnyLog/1.23", "command": "get status"}
    wrk(bare.port, 1, headers)  # warm up both (wrk wants whole seconds)
    wrk(node.port, 1, headers)
    rps_bare, rps_node, cpu_bare, cpu_node, ratios = [], [], [], [], []
    for _ in range(args.runs):
        rate, cpu = wrk(bare.port, args.seconds, headers, bare.proc.pid)
        rps_bare.append(rate)
        cpu_bare.append(cpu)
        rate, cpu = wrk(node.port, args.seconds, headers, node.proc.pid)
        rps_node.append(rate)
        cpu_node.append(cpu)
        ratios.append(rps_node[-1] / rps_bare[-1])
    print("get status, wrk -t1 -c10 (keep-alive)")
    b = line("bare twisted.web resource (baseline)", rps_bare, "req/s")
    n = line("anylog-tw REST 'get status'", rps_node, "req/s")
    print(f"  ratio of medians {n / b:.2f}, median of paired ratios {statistics.median(ratios):.2f} (target >= 0.6)")
    cb = line("bare server CPU per request", cpu_bare, "us")
    cn = line("anylog-tw server CPU per request", cpu_node, "us")
    print(f"  CPU ratio (bare / anylog-tw) {cb / cn:.2f}: the throughput ratio on an idle machine")


def put_figure(args, bare: Server, node: Server, work: str) -> None:
    put_bare, put_node, disk = [], [], []
    tag = 0
    watch = os.path.join(work, "home", "data", "watch")
    for _ in range(args.runs):
        bodies = []
        for _ in range(args.bodies):
            tag += 1
            bodies.append(ndjson_body(args.mb, tag))
        put_bare.append(put_rate(bare.port, bodies))
        put_node.append(put_rate(node.port, bodies))
        disk.append(disk_rate(work, bodies))
        for name in os.listdir(watch):
            os.unlink(os.path.join(watch, name))
    print(f"PUT NDJSON, {args.bodies} x {args.mb:g} MB bodies back to back, file mode (fsynced into the watch dir)")
    hb = line("bare twisted.web PUT sink (HTTP baseline)", put_bare, "MB/s")
    db = line("write + fsync of the same bytes (disk baseline)", disk, "MB/s")
    pn = line("anylog-tw PUT (parse, check, md5, write, fsync)", put_node, "MB/s")
    print(f"  ratio to HTTP baseline {pn / hb:.2f}, to disk baseline {pn / db:.2f} (target >= 50 MB/s)")


if __name__ == "__main__":
    main()
