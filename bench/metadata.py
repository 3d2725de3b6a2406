"""Metadata figures with 100,000 policies, each next to a baseline measured in the same run.

1. Lookups `blockchain get operator where name = <x>` (by type and equality):
   - the query module (parse + evaluate over the ledger's indexes), per second;
   - the whole command path (`node.execute`, registry, Reply) on a memory reactor, per second;
   - baseline: a plain Python list comprehension over the same 100,000 dicts, per second.
2. A node 100,000 policies behind catching up:
   - `install_master_copy` alone (parse in a thread, merge, write aside, fsync, rename, index);
   - a full sync round over real TCP on loopback, master and node in one process
     (`get metadata version`, `get metadata changes since none`, install);
   - then one new policy on the master: the delta sync round that brings it;
   - baseline: the raw work of the same size, `json.loads` of every line plus writing and fsyncing
     the bytes once.

Run: .venv/bin/python bench/metadata.py [--runs 5] [--policies 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet.defer import ensureDeferred

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LOOKUPS = 20000


def make_policies(n: int) -> list[dict]:
    rnd = random.Random(1)
    countries = ["US", "DE", "FR", "IL", "JP", "BR"]
    out = []
    for i in range(n):
        if i % 10 == 9:
            out.append({"cluster": {"name": f"cluster{i}", "company": "acme", "table": [
                {"dbms": "lsl", "name": f"t{i % 300}"}], "id": f"c{i:08d}", "date": "2026-01-01T00:00:00.000000Z",
                "ledger": "global"}})
        else:
            out.append({"operator": {"name": f"op{i}", "company": "acme", "ip": f"10.{i // 65536}.{i // 256 % 256}."
                                     f"{i % 256}", "port": 32148, "rest_port": 32149, "cluster": f"c{(i // 10):08d}",
                                     "country": rnd.choice(countries), "city": "San Jose", "member": i % 255 + 1,
                                     "id": f"o{i:08d}", "date": "2026-01-01T00:00:00.000000Z", "ledger": "global"}})
    return out


def text_of(policies: list[dict]) -> str:
    return "".join(json.dumps(p, separators=(",", ":")) + "\n" for p in policies)


def median_ratio(results: list[float]) -> float:
    return statistics.median(results)


# --- 1. lookups ------------------------------------------------------------------------------


def lookup_rates(policies: list[dict], text: str, n: int) -> tuple[float, float, float]:
    from twisted.internet.testing import MemoryReactorClock

    from anylog_tw.metadata.layer import Metadata
    from anylog_tw.metadata.ledger import Ledger
    from anylog_tw.metadata.query import evaluate, parse_query
    from anylog_tw.node import Node

    home = tempfile.mkdtemp()
    ledger = Ledger(os.path.join(home, "unused.json"))
    ledger.install(json.loads("[" + ",".join(text.splitlines()) + "]"), text.encode())
    rnd = random.Random(2)
    names = [f"op{rnd.randrange(len(policies))}" for _ in range(n)]
    evaluate(parse_query("operator where name = op1"), ledger)  # builds the (operator, name) index once

    start = time.perf_counter()
    for name in names:
        out = evaluate(parse_query(f"operator where name = {name}"), ledger)
    query_rate = n / (time.perf_counter() - start)

    node = Node(home, name="bench", reactor=MemoryReactorClock())
    meta = node.component(Metadata)
    meta.ledger = ledger
    meta.loaded = True
    replies = []
    start = time.perf_counter()
    for name in names:
        ensureDeferred(node.execute(f"blockchain get operator where name = {name}")).addCallback(replies.append)
    command_rate = n / (time.perf_counter() - start)
    assert all(r.ok for r in replies) and len(replies) == n

    base_n = max(20, n // 1000)
    start = time.perf_counter()
    for name in names[:base_n]:
        found = [p for p in policies if "operator" in p and p["operator"].get("name") == name]
    base_rate = base_n / (time.perf_counter() - start)
    assert found and out.value
    return query_rate, command_rate, base_rate


# --- 2. catching up --------------------------------------------------------------------------


def raw_catch_up(text: str, path: str) -> float:
    start = time.perf_counter()
    for line in text.splitlines():
        json.loads(line)
    with open(path, "wb") as f:
        f.write(text.encode())
        f.flush()
        os.fsync(f.fileno())
    return time.perf_counter() - start


async def install_time(reactor, text: str) -> float:
    from anylog_tw.metadata.layer import metadata
    from anylog_tw.node import Node

    node = Node(tempfile.mkdtemp(), name="bench", reactor=reactor, environ={})
    meta = await metadata(node)
    await meta.add({"config": {"id": "local-one"}})
    start = time.perf_counter()
    count, local = await meta.install_master_copy(text)
    elapsed = time.perf_counter() - start
    assert count == len(text.splitlines()) + 1 and len(local) == 1
    return elapsed


async def sync_time(reactor, text: str) -> float:
    from anylog_tw.node import Node

    master = Node(tempfile.mkdtemp(), name="master", reactor=reactor, environ={})
    node = Node(tempfile.mkdtemp(), name="node", reactor=reactor, environ={})
    for n in (master, node):
        n.startService()
        reply = await n.execute("run tcp server where external_ip = 127.0.0.1 and external_port = 0 and bind = true")
        assert reply.ok, reply.text
    os.makedirs(os.path.dirname(master.dictionary["blockchain_file"]), exist_ok=True)
    with open(master.dictionary["blockchain_file"], "w") as f:
        f.write(text)
    host, port = master.process("TCP").external_address
    try:
        await master.execute("blockchain load metadata")
        # the connection itself is not what is measured: open it first
        reply = await node.execute(f"run client ({host}:{port}) get status")
        assert reply.ok, reply.text
        reply = await node.execute(f"run blockchain sync where source = master and time = 3600 seconds and dest = file "
                               f"and connection = {host}:{port}")
        assert reply.ok, reply.text
        sync = node.process("Blockchain Sync")
        await sync.stopService()  # stop the loop: drive one round by hand, timed
        start = time.perf_counter()
        sync.version = ""
        loaded = await sync.sync_once()
        elapsed = time.perf_counter() - start
        assert loaded and sync.status == "Synchronized", sync.last_failure
        reply = await node.execute("blockchain get operator bring.count")
        assert int(reply.text) == sum(1 for line in text.splitlines() if line.startswith('{"operator"'))
        # Steady state: one new policy on the master reaches the node as a delta.
        reply = await master.execute('blockchain push {"config": {"id": "one-more"}}')
        assert reply.ok, reply.text
        start = time.perf_counter()
        loaded = await sync.sync_once()
        delta = time.perf_counter() - start
        assert loaded and sync.deltas == 1 and sync.status == "Synchronized", sync.last_failure
        return elapsed, delta
    finally:
        await node.stopService()
        await master.stopService()


async def catch_up(reactor, text: str, runs: int) -> tuple[list[float], ...]:
    installs, syncs, deltas, raws = [], [], [], []
    scratch = tempfile.mkdtemp()
    for _ in range(runs):
        raws.append(raw_catch_up(text, os.path.join(scratch, "raw.json")))
        installs.append(await install_time(reactor, text))
        full, delta = await sync_time(reactor, text)
        syncs.append(full)
        deltas.append(delta)
    return installs, syncs, deltas, raws


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--policies", type=int, default=100_000)
    args = parser.parse_args()
    policies = make_policies(args.policies)
    text = text_of(policies)
    print(f"{args.policies:,} policies, {len(text) / 1e6:.1f} MB of ledger text, {args.runs} runs (medians)")

    rates = [lookup_rates(policies, text, LOOKUPS) for _ in range(args.runs)]
    q, c, b = (statistics.median(r[i] for r in rates) for i in range(3))
    print("\nblockchain get operator where name = <x>   (target >= 10,000/s)")
    print(f"  query module (parse + indexed evaluate)  {q:>12,.0f} /s   x{q / b:,.0f} baseline")
    print(f"  full command path (node.execute)         {c:>12,.0f} /s   x{c / b:,.0f} baseline")
    print(f"  baseline: list comprehension over dicts  {b:>12,.1f} /s")

    from twisted.internet import task
    from twisted.internet.defer import Deferred

    result = {}

    def run(reactor):
        async def go():
            result["v"] = await catch_up(reactor, text, args.runs)

        return Deferred.fromCoroutine(go())

    try:
        task.react(run)
    except SystemExit as e:
        if e.code:
            raise
    installs, syncs, deltas, raws = result["v"]
    i, s, r = statistics.median(installs), statistics.median(syncs), statistics.median(raws)
    d = statistics.median(deltas)
    print(f"\nA node {args.policies:,} policies behind catching up   (target < 2 s)")
    print(f"  install_master_copy (parse, merge, write aside, swap, index)  {i:6.3f} s   x{i / r:.2f} baseline")
    print(f"  full sync round over TCP (version, pull, install)             {s:6.3f} s   x{s / r:.2f} baseline")
    print(f"  baseline: json.loads of every line + write and fsync once     {r:6.3f} s")
    print(f"\nOne new policy on the {args.policies:,}-policy master (steady state)")
    print(f"  sync round by delta (version, changes since, append, merge)   {d * 1000:6.1f} ms   x{s / d:,.0f} faster "
          f"than the whole-ledger round")


if __name__ == "__main__":
    main()
