"""Publisher figures (issue 8), each next to its baseline measured in the same run.

    .venv/bin/python bench/publisher.py [--runs 3] [--files 1000] [--kb 100] [--per-operator 4]

1,000 files of 100 KB (JSON rows: timestamp, device, value, status, seq) leave the watch dir of a
publisher node (this process) for a remote node (a child process), four ways per run:

  A. raw:       `peers.send_file` of each file, `per_operator` in flight, into a node that only
                receives (its TCP server, no operator): the peer transfer's own rate;
  B. publisher: the same files dropped in the publisher's watch dir, routed by a distribution rule
                to that node, timed until the last file is acknowledged and moved to bkup_dir;
  C. raw -> db: A again, but into a node running `run operator` (SQLite), timed until every
                file's rows are committed (tsd_info says done);
  D. pub -> db: B into a second, fresh operator node found through the metadata (a cluster policy
                hosting the table and an operator policy), timed until every file is committed.

B/A is the publisher's cost on the transfer alone (target >= 0.7); D/C is its cost on the path
into a remote operator's database (target >= 0.7), where the operator's ingest is the limit.
Medians of --runs runs; the machine is shared, so run it a few times.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


# --- the remote node (a child process) ------------------------------------------------------------


def serve(home: str, operator: bool) -> None:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    from anylog_tw.node import Node

    node = Node(home, name="bench-remote", reactor=reactor, environ={})

    async def start():
        node.startService()
        for text in ["run tcp server where external_ip = 127.0.0.1 and external_port = 0 and bind = true"] + (
                ["connect dbms almgm where type = sqlite", "connect dbms bench where type = sqlite",
                 "run operator"] if operator else []):
            reply = await node.execute(text)
            assert reply.ok, reply.render()
        print(node.process("TCP").external_address[1], flush=True)

    reactor.addSystemEventTrigger("before", "shutdown", node.stopService)
    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(start()))
    reactor.run()


class Remote:
    def __init__(self, base: str, name: str, operator: bool):
        self.home = os.path.join(base, name)
        os.makedirs(self.home, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", self.home] + (["--operator"] if operator
                                                                                        else []),
                                     stdout=subprocess.PIPE, stderr=open(os.path.join(self.home, "log"), "w"),
                                     text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the remote node did not start; see {self.home}/log")
        self.address = f"127.0.0.1:{int(line)}"
        self.watch = os.path.join(self.home, "data", "watch")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


# --- data -----------------------------------------------------------------------------------------


def make_files(directory: str, files: int, kb: int) -> int:
    rnd = random.Random(8)
    total = 0
    seq = 0
    for i in range(files):
        lines = []
        size = 0
        while size < kb * 1024:
            row = {"timestamp": f"2026-11-28T04:{seq // 60 % 60:02d}:{seq % 60:02d}.{seq % 1000:03d}Z",
                   "device": f"dev{rnd.randrange(50)}", "value": round(rnd.random() * 100, 4),
                   "status": rnd.choice(["ok", "warn", "fail"]), "seq": seq}
            seq += 1
            line = json.dumps(row) + "\n"
            lines.append(line)
            size += len(line)
        data = "".join(lines).encode()
        with open(os.path.join(directory, f"bench.readings.dev{i % 10}.0.0.json".replace(".0.0.json",
                                                                                        f"_{i}.0.0.json")), "wb") as f:
            f.write(data)
        total += len(data)
    return total


def link_all(src: str, dest: str) -> None:
    for name in os.listdir(src):
        os.link(os.path.join(src, name), os.path.join(dest, name))


# --- the measurements (in the reactor) ------------------------------------------------------------


async def poll(predicate, timeout: float = 600.0, interval: float = 0.01):
    from twisted.internet import reactor, task

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out")
        await task.deferLater(reactor, interval, lambda: None)


async def committed(node, address: str) -> int:
    from anylog_tw.net.peers import Peers

    reply = await node.component(Peers).command(
        address, "sql almgm \"select count(*) as n from tsd_info where status2 = 'done'\"", timeout=30)
    try:
        return json.loads(reply.render())["Query"][0]["n"]
    except (ValueError, KeyError, IndexError):
        return -1


async def wait_committed(node, address: str, files: int) -> None:
    from twisted.internet import reactor, task

    while await committed(node, address) < files:
        await task.deferLater(reactor, 0.1, lambda: None)


async def raw_send(node, src: str, address: str, in_flight: int) -> None:
    from twisted.internet.defer import Deferred, DeferredList, DeferredSemaphore

    from anylog_tw.net.peers import Peers

    peers = node.component(Peers)
    sem = DeferredSemaphore(in_flight)
    names = sorted(os.listdir(src))
    await DeferredList([sem.run(lambda n=n: Deferred.fromCoroutine(peers.send_file(address, os.path.join(src, n))))
                        for n in names], fireOnOneErrback=True, consumeErrors=True)


async def publish(node, per_operator: int, setup) -> None:
    await setup()
    reply = await node.execute(f"run publisher where per_operator = {per_operator} and delete_json = false")
    assert reply.ok, reply.render()


async def one_run(base: str, src: str, files: int, per_operator: int, run_id: int, with_db: bool) -> dict:
    from anylog_tw.metadata.layer import metadata
    from anylog_tw.node import Node
    from anylog_tw.net.peers import Peers

    out = {}
    sink = Remote(base, f"sink{run_id}", operator=False)
    op_raw = Remote(base, f"opraw{run_id}", operator=True) if with_db else None
    op_pub = Remote(base, f"oppub{run_id}", operator=True) if with_db else None
    from twisted.internet import reactor

    node = Node(os.path.join(base, f"pub{run_id}"), name="bench-pub", reactor=reactor, environ={})
    node.startService()
    try:
        await node.component(Peers).command(sink.address, "get status")  # connections made before timing
        for r in (op_raw, op_pub):
            if r is not None:
                await node.component(Peers).command(r.address, "get status")
        # A. raw transfer into a receiving node
        t = time.perf_counter()
        await raw_send(node, src, sink.address, per_operator)
        out["A"] = time.perf_counter() - t
        assert len(os.listdir(sink.watch)) == files
        for name in os.listdir(sink.watch):
            os.unlink(os.path.join(sink.watch, name))
        # B. the publisher into the same node
        pub_watch = node.dictionary["watch_dir"]

        async def rule():
            await node.execute(f"set data distribution where dbms = bench and table = * and dest = {sink.address}")

        link_all(src, pub_watch)  # the files are there before the clock starts, as for A
        t = time.perf_counter()
        await publish(node, per_operator, rule)
        # `known` first: listing 1,000 files every 10 ms on the reactor thread would slow what is measured
        await poll(lambda: not node.process("Publisher").known and not os.listdir(pub_watch))
        out["B"] = time.perf_counter() - t
        assert len(os.listdir(sink.watch)) == files
        await node.execute("exit publisher")
        await node.execute("set data distribution where dbms = bench and table = * and remove = true")
        shutil.rmtree(node.dictionary["bkup_dir"])
        if not with_db:
            return out
        # C. raw transfer into an operator, until committed
        t = time.perf_counter()
        await raw_send(node, src, op_raw.address, per_operator)
        await wait_committed(node, op_raw.address, files)
        out["C"] = time.perf_counter() - t
        # D. the publisher into another operator, found through the metadata
        meta = await metadata(node)
        host, port = op_pub.address.split(":")

        async def policies():
            await meta.add({"cluster": {"id": f"bc{run_id}", "name": "bench", "company": "bench",
                                        "table": [{"dbms": "bench", "name": "readings"}]}})
            await meta.add({"operator": {"id": f"bo{run_id}", "name": "bench-op", "company": "bench", "ip": host,
                                         "port": int(port), "cluster": f"bc{run_id}", "member": 1}})

        link_all(src, pub_watch)
        t = time.perf_counter()
        await publish(node, per_operator, policies)
        await wait_committed(node, op_pub.address, files)
        out["D"] = time.perf_counter() - t
        await node.execute("exit publisher")
    finally:
        await node.stopService()
        for r in (sink, op_raw, op_pub):
            if r is not None:
                r.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--kb", type=int, default=100)
    ap.add_argument("--per-operator", type=int, default=4)
    ap.add_argument("--no-db", action="store_true", help="only A and B (the transfer), not C and D")
    ap.add_argument("--serve")
    ap.add_argument("--operator", action="store_true")
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.operator)
        return

    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    base = tempfile.mkdtemp(prefix="bench-publisher-")
    src = os.path.join(base, "src")
    os.makedirs(src)
    total = make_files(src, args.files, args.kb)
    mb = total / 1e6
    results: list[dict] = []

    async def all_runs():
        try:
            for i in range(args.runs):
                try:
                    r = await one_run(base, src, args.files, args.per_operator, i, not args.no_db)
                except BaseException:
                    import traceback

                    traceback.print_exc()
                    raise
                results.append(r)
                print(f"run {i + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(r.items())), flush=True)
        finally:
            reactor.stop()

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(all_runs()))
    reactor.run()
    shutil.rmtree(base, ignore_errors=True)
    if len(results) < args.runs:
        raise SystemExit("a run failed")

    def med(k):  # median seconds of phase k
        return statistics.median(r[k] for r in results)

    print(f"\n{args.files} files, {mb:.1f} MB, {args.per_operator} transfers in flight; medians of {args.runs} runs")
    print(f"{'path':<48}{'files/s':>10}{'MB/s':>9}")
    names = {"A": "A raw send_file -> receiving node", "B": "B publisher -> receiving node",
             "C": "C raw send_file -> operator db (committed)", "D": "D publisher -> operator db (committed)"}
    for k in "ABCD":
        if k in results[0]:
            print(f"{names[k]:<48}{args.files / med(k):>10.0f}{mb / med(k):>9.1f}")
    print(f"\nB/A (publisher vs raw transfer)          {med('A') / med('B'):.2f}   target >= 0.7")
    if "C" not in results[0]:
        return
    print(f"D/C (into the operator's db, vs raw)      {med('C') / med('D'):.2f}   target >= 0.7")
    print(f"D/A (into the db, vs raw transfer alone)  {med('A') / med('D'):.2f}")


if __name__ == "__main__":
    main()
