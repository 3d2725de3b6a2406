"""The node's web page (issue 20): first render, and the node's CPU per open page, next to baselines.

A node process (REST, TCP, operator) with 100 tables that have ingested data, 20 peers it has talked
to (20 more nodes, in one helper process) and a metadata network of 5 clusters and 20 operators:

1. Server time of the page: `GET /` with `Accept: text/html` (the whole page, rendered with its
   data), median of many requests; baseline: `GET /` with `command: get status`, same connection.
2. First render in headless Chromium: first-contentful-paint of the page, navigation by
   navigation, cache disabled (every asset fetched) and enabled (a reload); target < 300 ms.
3. CPU of the node per open page: the node process's CPU time (user + system, from /proc) over a
   window with one page open and polling, minus the same window with no page (idle, the
   baseline), and next to a REST client asking `get status` every 2 s (the page's cadence);
   target < 1 %.

Medians of several runs.  Run: .venv/bin/python bench/web.py [--runs 5] [--seconds 20]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TABLES, PEERS, CLUSTERS = 100, 20, 5


# -- the processes (run as `python bench/web.py --serve node|peers HOME`) -------------------------------


def serve(kind: str, home: str) -> None:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    if kind == "bare":  # the page's bytes and assets as static files: what the browser alone costs
        from twisted.web import server, static

        site = server.Site(static.File(home))
        site.log = lambda request: None
        print(json.dumps({"rest": reactor.listenTCP(0, site, interface="127.0.0.1").getHost().port}), flush=True)
        reactor.run()
        return

    from anylog_tw.node import Node

    async def start():
        if kind == "peers":
            ports = []
            for i in range(PEERS):
                node = Node(os.path.join(home, f"peer{i}"), name=f"peer{i}", reactor=reactor)
                node.startService()
                reactor.addSystemEventTrigger("before", "shutdown", node.stopService)
                reply = await node.execute("run tcp server where external_ip = 127.0.0.1 and external_port = 0 and "
                                       "bind = true")
                assert reply.ok, reply.render()
                ports.append(node.process("TCP").address[1])
            print(json.dumps(ports), flush=True)
            return
        node = Node(home, name="bench", reactor=reactor)
        node.startService()
        reactor.addSystemEventTrigger("before", "shutdown", node.stopService)  # its threads end with it
        for text in ("run tcp server where external_ip = 127.0.0.1 and external_port = 0 and bind = true",
                     "run rest server where internal_ip = 127.0.0.1 and internal_port = 0",
                     "connect dbms lsl_bench where type = sqlite", "connect dbms almgm where type = sqlite",
                     "run operator where create_table = true and update_tsd_info = true"):
            reply = await node.execute(text)
            assert reply.ok, f"{text}: {reply.render()}"
        print(json.dumps({"rest": node.process("REST").address[1], "pid": os.getpid()}), flush=True)

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(start()))
    reactor.run()


class Process:
    def __init__(self, kind: str, home: str):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", kind, home],
                                     stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.info = json.loads(self.proc.stdout.readline())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            print(f"({self.proc.args[-2]} did not stop within 30 s of SIGTERM: killed)")
            self.proc.kill()
            self.proc.wait(30)


# -- talking to the node --------------------------------------------------------------------------------


def call(conn: http.client.HTTPConnection, method: str = "GET", headers: dict | None = None,
         body: bytes | None = None) -> tuple[int, bytes]:
    conn.request(method, "/", body=body, headers=headers or {})
    response = conn.getresponse()
    return response.status, response.read()


def command(conn, text: str, method: str = "POST") -> str:
    status, body = call(conn, method, {"command": text, "User-Agent": "AnyLog/1.23"})
    assert status == 200, f"{text}: {status} {body[:300]!r}"
    return body.decode()


def populate(port: int, peer_ports: list[int]) -> None:
    """100 tables with data through the operator, 20 peers talked to, 5 clusters of 4 operators."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for t in range(TABLES):
        rows = "\n".join(json.dumps({"timestamp": f"2026-11-28 10:{m:02d}:00", "value": m * 0.5 + t,
                                     "device": f"dev-{m % 3}"}) for m in range(60)).encode()
        status, body = call(conn, "PUT", {"dbms": "lsl_bench", "table": f"sensor_{t:03d}"}, rows)
        assert status == 200, body
    for c in range(CLUSTERS):
        tables = ", ".join(f'{{"dbms": "lsl_bench", "name": "sensor_{t:03d}"}}'
                           for t in range(c * TABLES // CLUSTERS, (c + 1) * TABLES // CLUSTERS))
        command(conn, f'blockchain insert where policy = {{"cluster": {{"name": "cluster-{c}", "company": "bench", '
                      f'"id": "cl{c}", "table": [{tables}]}}}} and local = true')
    for i, peer in enumerate(peer_ports):
        command(conn, f'blockchain insert where policy = {{"operator": {{"name": "op-{i:02d}", "company": "bench", '
                      f'"ip": "127.0.0.1", "port": {peer}, "cluster": "cl{i % CLUSTERS}"}}}} and local = true')
        assert "running" in command(conn, f"run client (127.0.0.1:{peer}) get status")
    deadline = time.monotonic() + 120
    while True:
        rates = json.loads(command(conn, "get ingest rate where series = false and format = json", "GET"))
        if len(rates["tables"]) == TABLES and all(t["rows"] == 60 for t in rates["tables"]):
            break
        assert time.monotonic() < deadline, "the operator did not ingest the 100 files in 2 minutes"
        time.sleep(0.2)
    conn.close()


# -- 1. server time -------------------------------------------------------------------------------------


def server_times(port: int, n: int) -> tuple[float, float, int]:
    """(median ms of the page, median ms of get status, page bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    page, status, size = [], [], 0
    for _ in range(n):
        t = time.perf_counter()
        code, body = call(conn, "GET", {"Accept": "text/html"})
        page.append(time.perf_counter() - t)
        assert code == 200 and b'data-table="lsl_bench.sensor_099"' in body
        size = len(body)
        t = time.perf_counter()
        code, _ = call(conn, "GET", {"command": "get status"})
        status.append(time.perf_counter() - t)
    conn.close()
    return statistics.median(page) * 1000, statistics.median(status) * 1000, size


# -- 2. first render --------------------------------------------------------------------------------------


def browser():
    from tests.e2e.browser import start_browser, why_no_browser

    reason = why_no_browser()
    if reason:
        return None, reason
    return start_browser(tempfile.mkdtemp(prefix="bench-web-")), None


PAINT = ("var n = performance.getEntriesByType('navigation')[0];"
         "var p = performance.getEntriesByName('first-contentful-paint')[0];"
         "return {fcp: p ? p.startTime : null, response: n.responseEnd, dom: n.domContentLoadedEventEnd};")


def bare_copy(port: int, folder: str) -> None:
    """The node's page (as its first render answered it) and the shipped assets, as plain files."""
    import shutil

    from anylog_tw.front.web.page import package_dir

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    _, body = call(conn, "GET", {"Accept": "text/html"})
    conn.close()
    os.makedirs(os.path.join(folder, "web"))
    with open(os.path.join(folder, "index.html"), "wb") as f:
        f.write(body)
    shutil.copytree(package_dir("static").path, os.path.join(folder, "web", "static"))


def first_render(driver, url: str, runs: int, cache: bool) -> dict:
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": not cache})
    out = {"fcp": [], "response": [], "dom": []}
    for _ in range(runs + 1):
        driver.get("about:blank")
        driver.get(url)
        deadline = time.monotonic() + 10
        while True:
            m = driver.execute_script(PAINT)
            if m["fcp"] is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for k in out:
            out[k].append(m[k])
    return {k: statistics.median(v[1:]) for k, v in out.items()}  # the first navigation warms up


# -- 3. CPU per page -------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_percent(pid: int, seconds: float) -> float:
    start, t = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - start) / (time.monotonic() - t) * 100


def rest_poller(port: int, stop: threading.Event) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.wait(2.0):
        call(conn, "GET", {"command": "get status"})
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "HOME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    home = tempfile.mkdtemp(prefix="bench-web-")
    peers = Process("peers", os.path.join(home, "peers"))
    node = Process("node", os.path.join(home, "node"))
    driver = None
    try:
        port, pid = node.info["rest"], node.info["pid"]
        populate(port, peers.info)
        page_ms, status_ms, size = server_times(port, 10 * args.runs)
        print(f"node: {TABLES} tables with data, {PEERS} peers, {CLUSTERS} clusters of {PEERS // CLUSTERS} operators")
        print(f"1. server time, median of {10 * args.runs}: page {page_ms:.1f} ms ({size:,} bytes of HTML); "
              f"baseline get status {status_ms:.2f} ms; ratio {page_ms / status_ms:.0f}")
        driver, reason = browser()
        if driver is None:
            print(f"2-3. skipped: no headless Chromium ({reason})")
            return
        url = f"http://127.0.0.1:{port}/"
        folder = os.path.join(home, "bare")
        bare_copy(port, folder)
        bare = Process("bare", folder)
        try:
            bare_url = f"http://127.0.0.1:{bare.info['rest']}/index.html"
            renders = {}
            for _ in range(2 * args.runs):  # alternate the node and the baseline, cold and warm
                for name, target in (("node", url), ("bare", bare_url)):
                    for cache in (False, True):
                        got = first_render(driver, target, 1, cache)
                        renders.setdefault((name, cache), []).append(got)
        finally:
            bare.stop()

        def med(name, cache, key):
            return statistics.median(r[key] for r in renders[(name, cache)])

        print(f"2. first render in Chromium (first-contentful-paint), median of {2 * args.runs}: cold (nothing "
              f"cached) {med('node', False, 'fcp'):.0f} ms (HTML in {med('node', False, 'response'):.0f} ms), "
              f"assets cached {med('node', True, 'fcp'):.0f} ms; target < 300 ms. Baseline, the same page and "
              f"assets as static files from a bare twisted.web server: {med('bare', False, 'fcp'):.0f} ms cold, "
              f"{med('bare', True, 'fcp'):.0f} ms cached")
        idle, page, rest = [], [], []
        for _ in range(args.runs):  # alternate: idle, page open, REST poller
            driver.get("about:blank")
            idle.append(cpu_percent(pid, args.seconds))
            driver.get(url)
            time.sleep(1.0)  # let the first render's own work pass
            page.append(cpu_percent(pid, args.seconds))
            driver.get("about:blank")
            stop = threading.Event()
            poller = threading.Thread(target=rest_poller, args=(port, stop))
            poller.start()
            rest.append(cpu_percent(pid, args.seconds))
            stop.set()
            poller.join()
        i, p, r = statistics.median(idle), statistics.median(page), statistics.median(rest)
        print(f"3. node CPU, median of {args.runs} x {args.seconds:g} s: idle {i:.2f} %, one page open {p:.2f} % "
              f"-> {p - i:.2f} % per open page (target < 1 %); baseline REST get status every 2 s {r:.2f} % "
              f"(+{r - i:.2f} %)")
    finally:
        if driver is not None:
            driver.quit()
        node.stop()
        peers.stop()


if __name__ == "__main__":
    main()
