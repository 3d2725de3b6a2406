"""Message ingestion figures (issue 19), each next to its baseline measured in the same run.

1. Mosquitto → rows in the table, QoS 0 and QoS 1.  A node process (`run msg client` with the
   acceptance case 1 rules, `run operator`, SQLite) subscribes with a persistent session, leaves,
   N messages are queued for it in a Mosquitto of our own, and the clock runs from its
   `run msg client` until the last row is committed.  Baseline: a bare paho-mqtt subscriber
   (its own network loop) that only parses each message's JSON, draining the same queue the same
   way.  Target: at least 1.0 of the baseline.
2. The node as a broker: 10 `mosquitto_pub` clients publish N messages (QoS 0 and 1) to
   `run message broker`; the clock runs until the last row is committed; and the node's peak RSS.
   Baseline: the same 10 publishers into Mosquitto, with the bare paho subscriber parsing what it
   forwards.

Runs alternate between the measured process and its baseline; medians of several runs and ratios.
Run: .venv/bin/python bench/mqtt.py [--runs 3] [--messages 50000] [--broker-messages 50000]
     [--only mosquitto|broker] [--qos 0|1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# This file's folder must not be on the path: its name would shadow twisted-mqtt's `mqtt` package.
sys.path[:] = [ROOT] + [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

TOPIC = "bench"
RULES = ('topic = (name = bench and dbms = "bring [metadata][company]" and table = '
         '"bring [metadata][machine_name] _ [metadata][serial_number]" and column.timestamp.timestamp = "bring [ts]" '
         'and column.value = (type = int and value = "bring [value]"))')


def message(i: int) -> str:
    return json.dumps({"value": i, "ts": 1607959427550 + i, "protocol": "modbus", "measurement": "temp02",
                       "metadata": {"company": "Anylog", "machine_name": "cutter 23", "serial_number": "1234567890"}})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int) -> None:
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on {port}")


class Mosquitto:
    def __init__(self, directory: str):
        self.port = free_port()
        conf = os.path.join(directory, "mosquitto.conf")
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false",
                 "max_queued_messages 0", "max_queued_bytes 0", "queue_qos0_messages true"]
        if os.geteuid() == 0:
            lines.append("user root")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def write_shares(n: int, clients: int, directory: str) -> list[str]:
    """n messages split over `clients` files, one message a line (for mosquitto_pub -l)."""
    paths = []
    share = n // clients
    for c in range(clients):
        path = os.path.join(directory, f"messages-{c}.txt")
        with open(path, "w") as f:
            f.writelines(message(c * share + i) + "\n" for i in range(share))
        paths.append(path)
    return paths


def publishers(port: int, paths: list[str], qos: int) -> list[subprocess.Popen]:
    return [subprocess.Popen(f"mosquitto_pub -h 127.0.0.1 -p {port} -t {TOPIC} -q {qos} -l < {path}", shell=True)
            for path in paths]


def fill(port: int, n: int, qos: int, directory: str) -> None:
    for p in publishers(port, write_shares(n, 1, directory), qos):
        if p.wait() != 0:
            raise RuntimeError("mosquitto_pub failed")


def peak_rss_mb() -> int:
    with open("/proc/self/status") as f:
        return int([line for line in f if line.startswith("VmHWM")][0].split()[1]) // 1024


# -- the measured processes (python bench/mqtt.py --serve KIND ...) -------------------------------------


def serve_bare(port: int, n: int, qos: int, live: bool) -> None:
    """The baseline: paho's own loop, parse each message's JSON; 'ready', then wait for 'go' on stdin."""
    import orjson
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-bare", clean_session=False)
    got = [0]
    done = [0.0]

    def on_message(c, u, m):
        orjson.loads(m.payload)
        got[0] += 1
        if got[0] == n:
            done[0] = time.perf_counter()
            c.disconnect()

    client.on_message = on_message
    client.connect("127.0.0.1", port, keepalive=60)
    client.subscribe(TOPIC, qos)
    client.loop(0.2)
    client.loop(0.2)
    if not live:
        client.disconnect()
        client.loop(0.1)
    print("ready", flush=True)
    sys.stdin.readline()
    t0, c0 = time.perf_counter(), time.process_time()
    if not live:
        client.connect("127.0.0.1", port, keepalive=60)
    client.loop_forever()
    print(json.dumps({"seconds": done[0] - t0, "cpu": time.process_time() - c0}), flush=True)


def serve_node(mode: str, port: int, n: int, qos: int, home: str) -> None:
    """The node: `run msg client` (mode 'mosquitto') or `run message broker` + a local client ('broker')."""
    from twisted.internet import reactor, task, threads
    from twisted.internet.defer import Deferred

    from anylog_tw.msg.clients import MsgClients
    from anylog_tw.node import Node
    from anylog_tw.storage.engines import Databases

    async def ok(node, text):
        reply = await node.execute(text)
        assert reply.ok, f"{text}: {reply.render()}"
        return reply

    async def main():
        node = Node(home, name="bench", reactor=reactor)
        node.startService()
        dbs = node.component(Databases)
        await dbs.connect("almgm", "sqlite")
        await dbs.connect("anylog", "sqlite")
        await ok(node, "set buffer threshold where time = 1 second and volume = 2MB")
        await ok(node, "run operator")
        op = node.process("Operator")
        clients = node.component(MsgClients)
        if mode == "mosquitto":
            run = (f"run msg client where broker = 127.0.0.1 and port = {port} and client_id = bench-node and "
                   f"qos = {qos} and {RULES}")
            await ok(node, run)
            await ok(node, "exit msg client all")
        else:
            await ok(node, "run message broker where internal_ip = 127.0.0.1 and internal_port = 0")
            await ok(node, f"run msg client where broker = local and {RULES}")
            print(json.dumps({"port": node.process("Broker").address[1]}), flush=True)
        print("ready", flush=True)
        await threads.deferToThread(sys.stdin.readline)
        t0, c0 = time.perf_counter(), time.process_time()
        if mode == "mosquitto":
            await ok(node, run)
        while sum(c.counts.messages for c in clients.clients.values()) < n:
            await task.deferLater(reactor, 0.005, lambda: None)
        received = time.perf_counter() - t0
        await ok(node, "flush buffers")
        flushed = time.perf_counter() - t0
        while op.stats.total_rows < n:
            await task.deferLater(reactor, 0.005, lambda: None)
        result = {"seconds": time.perf_counter() - t0, "cpu": time.process_time() - c0, "received": received,
                  "flushed": flushed, "rows": op.stats.total_rows,
                  "errors": sum(c.counts.errors for c in clients.clients.values()), "rss_mb": peak_rss_mb()}
        print(json.dumps(result), flush=True)
        await node.stopService()
        reactor.stop()

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(main()).addErrback(
        lambda f: (print(json.dumps({"error": f.getTraceback()}), flush=True), reactor.stop())))
    reactor.run()


# -- the harness ------------------------------------------------------------------------------------------


def measure(kind: list[str], before_go, after_go=None) -> dict:
    """Start a measured process, wait for 'ready', run `before_go`, say go, read its result."""
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", *kind], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        info = {}
        while True:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{kind[0]} exited early")
            if line.strip() == "ready":
                break
            info.update(json.loads(line))
            if "error" in info:
                raise RuntimeError(info["error"])
        context = before_go(info)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        if after_go is not None:
            after_go(context)
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{kind[0]} exited without a result")
        result = json.loads(line)
        if "error" in result:
            raise RuntimeError(result["error"])
        proc.wait(60)
        return result
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def from_mosquitto(kind: str, n: int, qos: int) -> dict:
    work = tempfile.mkdtemp(prefix="bench-mqtt-")
    broker = Mosquitto(work)
    try:
        if kind == "bare":
            args = ["bare", str(broker.port), str(n), str(qos), "0"]
        else:
            args = ["mosquitto", str(broker.port), str(n), str(qos), os.path.join(work, "home")]
        return measure(args, lambda info: fill(broker.port, n, qos, work))
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def ten_publishers(kind: str, n: int, qos: int) -> dict:
    """10 publishers start when the measured process is told to go (a live stream, not a queue)."""
    work = tempfile.mkdtemp(prefix="bench-mqtt-")
    broker = Mosquitto(work) if kind == "bare" else None
    try:
        if kind == "bare":
            args = ["bare", str(broker.port), str(n), str(qos), "1"]
        else:
            args = ["broker", "0", str(n), str(qos), os.path.join(work, "home")]
        paths = write_shares(n, 10, work)
        return measure(args, lambda info: broker.port if broker is not None else info["port"],
                       lambda port: _run_all(publishers(port, paths, qos)))
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def _run_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError("mosquitto_pub failed")


def profiled(run, path: str) -> None:
    """cProfile of the main thread to `path`, and of every thread started meanwhile to `path.tN`:
    the operator inserts and adapts rows in pool threads, which a main-thread profile does not see."""
    import cProfile
    import threading

    threads: list[cProfile.Profile] = []

    def start(*_):
        sys.setprofile(None)
        threads.append(cProfile.Profile())
        threads[-1].enable()

    threading.setprofile(start)
    try:
        cProfile.runctx("run()", globals(), {"run": run}, path)
    finally:
        threading.setprofile(None)
        for i, prof in enumerate(threads):
            prof.disable()
            prof.dump_stats(f"{path}.t{i}")


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        kind, port, n, qos = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        run = (lambda: serve_bare(port, n, qos, sys.argv[6] == "1")) if kind == "bare" else (
            lambda: serve_node(kind, port, n, qos, sys.argv[6]))
        if os.environ.get("BENCH_PROFILE"):  # where the time goes: python bench/mqtt.py with BENCH_PROFILE=file
            profiled(run, f"{os.environ['BENCH_PROFILE']}.{kind}")
        else:
            run()
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--broker-messages", type=int, default=50_000)
    parser.add_argument("--only", choices=("mosquitto", "broker"), help="one of the two figures")
    parser.add_argument("--qos", type=int, choices=(0, 1), help="one QoS only")
    args = parser.parse_args()
    qoss = (0, 1) if args.qos is None else (args.qos,)
    print(f"bench/mqtt.py: {args.runs} runs, medians; {args.messages:,} messages from Mosquitto, "
          f"{args.broker_messages:,} from 10 publishers")
    for qos in qoss if args.only != "broker" else ():
        node, bare, extra = [], [], {}
        for _ in range(args.runs):
            b = from_mosquitto("bare", args.messages, qos)
            r = from_mosquitto("node", args.messages, qos)
            assert r["rows"] == args.messages and not r["errors"], r
            bare.append(args.messages / b["seconds"])
            node.append(args.messages / r["seconds"])
            extra.setdefault("received", []).append(args.messages / r["received"])
            # After the last message: the buffer's file written, then the operator's rows in the table.
            extra.setdefault("flush_ms", []).append((r["flushed"] - r["received"]) * 1e3)
            extra.setdefault("operator_ms", []).append((r["seconds"] - r["flushed"]) * 1e3)
            extra.setdefault("node_cpu", []).append(r["cpu"] / args.messages * 1e6)
            extra.setdefault("bare_cpu", []).append(b["cpu"] / args.messages * 1e6)
        nm, bm = statistics.median(node), statistics.median(bare)
        nc, bc = statistics.median(extra["node_cpu"]), statistics.median(extra["bare_cpu"])
        print(f"Mosquitto QoS {qos} -> rows: node {nm:,.0f} msg/s (received {statistics.median(extra['received']):,.0f}"
              f" msg/s); bare paho subscriber {bm:,.0f} msg/s; ratio {nm / bm:.2f}; CPU a message: node {nc:.1f} us, "
              f"bare {bc:.1f} us (ratio {bc / nc:.2f}); runs node {[round(x) for x in node]}, "
              f"bare {[round(x) for x in bare]}; after the last message: flush {statistics.median(extra['flush_ms']):.0f} ms, "
              f"operator {statistics.median(extra['operator_ms']):.0f} ms")
    for qos in qoss if args.only != "mosquitto" else ():
        node, bare, rss, cpu = [], [], [], []
        for _ in range(args.runs):
            b = ten_publishers("bare", args.broker_messages, qos)
            r = ten_publishers("node", args.broker_messages, qos)
            assert r["rows"] == args.broker_messages and not r["errors"], r
            bare.append(args.broker_messages / b["seconds"])
            node.append(args.broker_messages / r["seconds"])
            rss.append(r["rss_mb"])
            cpu.append(r["cpu"] / args.broker_messages * 1e6)
        nm, bm = statistics.median(node), statistics.median(bare)
        print(f"10 publishers QoS {qos} -> node broker -> rows: {nm:,.0f} msg/s, peak RSS {max(rss)} MB, node CPU a "
              f"message {statistics.median(cpu):.1f} us; Mosquitto + bare paho subscriber {bm:,.0f} msg/s; "
              f"ratio {nm / bm:.2f}")


if __name__ == "__main__":
    main()
