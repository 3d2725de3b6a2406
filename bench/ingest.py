"""Operator ingest figures (issue 6), each next to its baseline measured in the same run.

1. Throughput: 1,000,000 rows in 200 files (timestamp, device, value, status, seq) moved into
   the watch dir of a node running `run operator`, timed until the last row is committed and the
   last file archived.  Baseline: a plain script reading the same files with orjson and inserting
   them into a table of the same layout with executemany (SQLite) / COPY (PostgreSQL), one
   transaction per file.  Both engines; medians of several runs and the ratio.
2. Latency: one small file dropped into an idle operator until its row is queryable (median).
3. Peak RSS of a node process ingesting one 200 MB file (a fresh process per engine).
4. Durability (issue 16): the same throughput run with `durable = true` (the default: rows,
   TSD marks and archived copies synced before a file is archived) against `durable = false`
   (synced by nobody, as before), alternating in the same run; the ratio is the cost of
   surviving a power loss.
5. Attacks (issue 16): peak RSS of a fresh node process ingesting each hostile file (a .gz
   holding one 200 MB line, a .gz of 1 GB of rows, a 150 MB line, a 100 MB JSON array), next to
   the normal 200 MB file of (3) as the baseline; and the time to read one long line with the
   reader's list-of-pieces against the old `tail + block` loop (kept here as the baseline).
6. Mapping policy (issue 18): the same 1,000,000 rows (keys with a space and a dot, numbers and
   booleans written as text, an epoch-ms time) ingested through a mapping policy of quoted keys
   and typed conversions (`['device id']`, `["pm2.5"]` text -> float, `['ok']` text -> bool,
   `['n']` text -> int), against the default mapping of the same files, alternating in the same
   run; medians, the ratio (goal >= 0.8) and rows per CPU second of the node.  Also shown: the
   same policy reading the epoch-ms `created` as a timestamp (a second indexed timestamp column).

Run: .venv/bin/python bench/ingest.py [--runs 3] [--files 200] [--rows 5000] [--engines sqlite,psql]
     [--skip throughput,latency,rss,durable,attacks,policy]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import orjson
import psycopg2

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from anylog_tw.storage import schema  # noqa: E402

PG = dict(host="127.0.0.1", port=5432, user="anylog")  # the non-superuser role of tools/ensure-postgres
COLUMNS = {"timestamp": "timestamp", "device": "text", "value": "float", "status": "text", "seq": "integer"}


def _iso_ms(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def _write_files(directory: str, files: int, rows: int, table: str, seed: int, row) -> list[str]:
    """`files` files of `rows` JSON rows each, one a millisecond apart; `row(rnd, t, seq)` makes a row."""
    os.makedirs(directory, exist_ok=True)
    rnd = random.Random(seed)
    base = 1_790_000_000
    names = []
    seq = 0
    for f in range(files):
        lines = []
        for _ in range(rows):
            lines.append(orjson.dumps(row(rnd, base + seq * 0.001, seq)))
            seq += 1
        name = f"bench.{table}.src{f}.0.0.json"
        with open(os.path.join(directory, name), "wb") as out:
            out.write(b"\n".join(lines) + b"\n")
        names.append(name)
    return names


def make_files(directory: str, files: int, rows: int, table: str = "readings") -> list[str]:
    return _write_files(directory, files, rows, table, 7, lambda rnd, t, seq: {
        "timestamp": _iso_ms(t), "device": f"dev-{rnd.randrange(100):03d}", "value": round(rnd.uniform(-50, 150), 3),
        "status": rnd.choice(("ok", "warn", "fail")), "seq": seq})


AIR_POLICY = {"mapping": {"id": "air-policy", "table": "air", "schema": {
    "ts": {"type": "timestamp", "bring": "['ts']"},
    "device": {"type": "varchar", "bring": "['device id']"},
    "pm25": {"type": "float", "bring": '["pm2.5"]'},
    "ok": {"type": "bool", "bring": "['ok']"},
    "n": {"type": "int", "bring": "['n']"},
    "created": {"type": "int", "bring": "[created]"},
    "status": {"type": "str", "bring": "['status']"},
    "seq": {"type": "int", "bring": "[seq]"}}}}
# The same, with the epoch-ms `created` read as a timestamp: one more timestamp column, and so one
# more index in this node's layout (every timestamp column is indexed), which the default mapping
# (an integer column) does not have.
AIR_POLICY_EPOCH = {"mapping": dict(AIR_POLICY["mapping"], id="air-epoch", schema=dict(
    AIR_POLICY["mapping"]["schema"], created={"type": "timestamp", "bring": "[created]"}))}


def make_air_files(directory: str, files: int, rows: int) -> list[str]:
    """Rows for the mapping-policy case; the default mapping takes them too (device_id, pm2_5 ...)."""
    return _write_files(directory, files, rows, "air", 11, lambda rnd, t, seq: {
        "ts": _iso_ms(t), "device id": f"dev-{rnd.randrange(100):03d}", "pm2.5": f"{rnd.uniform(0, 150):.2f}",
        "ok": rnd.choice(("true", "false")), "n": str(rnd.randrange(1000)), "created": int(t * 1000),
        "status": rnd.choice(("ok", "warn", "fail")), "seq": seq})


# --- the plain script (baseline) ---------------------------------------------------------------


def _timestamp(v: str) -> str:
    import datetime

    d = datetime.datetime.fromisoformat(v)
    if d.tzinfo is not None:
        d = d.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return d.isoformat(" ")


def plain_sqlite(src: str, names: list[str], path: str) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for sql in schema.create_table_sql("sqlite", "readings", COLUMNS):
        conn.execute(sql)
    ins = schema.insert_sql("readings", ["tsd_name", "tsd_id", *COLUMNS])
    t0 = time.perf_counter()
    for i, name in enumerate(names, 1):
        with open(os.path.join(src, name), "rb") as f:
            objs = [orjson.loads(x) for x in f.read().splitlines() if x.strip()]
        rows = [("0", i, _timestamp(o["timestamp"]), o["device"], o["value"], o["status"], o["seq"]) for o in objs]
        conn.execute("BEGIN")
        conn.executemany(ins, rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def plain_psql(src: str, names: list[str], dbname: str) -> float:
    conn = psycopg2.connect(dbname=dbname, **PG)
    with conn.cursor() as cur:
        for sql in schema.create_table_sql("psql", "readings", COLUMNS):
            cur.execute(sql)
    conn.commit()
    cols = ", ".join(f'"{c}"' for c in ["tsd_name", "tsd_id", *COLUMNS])
    t0 = time.perf_counter()
    for i, name in enumerate(names, 1):
        with open(os.path.join(src, name), "rb") as f:
            objs = [orjson.loads(x) for x in f.read().splitlines() if x.strip()]
        buf = io.StringIO("".join(
            f"0\t{i}\t{_timestamp(o['timestamp'])}\t{o['device']}\t{o['value']!r}\t{o['status']}\t{o['seq']}\n"
            for o in objs))
        with conn.cursor() as cur:
            cur.copy_expert(f"COPY readings ({cols}) FROM STDIN", buf)
        conn.commit()
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


# --- the operator -----------------------------------------------------------------------------


def pg_create(dbname: str) -> None:
    c = psycopg2.connect(dbname="postgres", **PG)
    c.autocommit = True
    with c.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{dbname}"')
    c.close()


def pg_drop(dbname: str) -> None:
    c = psycopg2.connect(dbname="postgres", **PG)
    c.autocommit = True
    with c.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    c.close()


def run_node(mode: str, engine: str, home: str, src: str, names: list[str], threads: int, extra: dict) -> dict:
    """Run the node in this process with the real reactor; returns the measurements."""
    from twisted.internet import reactor, task

    from anylog_tw.node import Node
    from anylog_tw.storage.engines import Databases

    result: dict = {}

    async def main():
        node = Node(home, name="bench", reactor=reactor)
        node.startService()
        dbs = node.component(Databases)
        await dbs.connect("almgm", "sqlite")
        if engine == "sqlite":
            await dbs.connect("bench", "sqlite")
        else:
            await dbs.connect("bench", "psql", ip="127.0.0.1", port=5432, user="anylog", password="",
                              database=extra["dbname"])
        if extra.get("policy"):
            reply = await node.execute(f"blockchain insert where policy = {json.dumps(extra['policy'])} and local = true")
            assert reply.ok, reply.render()
        reply = await node.execute(f"run operator where threads = {threads}" + extra.get("opts", ""))
        assert reply.ok, reply.render()
        op = node.process("Operator")
        watch = node.dictionary["watch_dir"]
        try:
            if mode == "throughput":
                c0 = _cpu()
                t0 = time.perf_counter()
                for name in names:
                    os.rename(os.path.join(src, name), os.path.join(watch, name))
                while op.stats.total_files + op.stats.total_errors < len(names):
                    await task.deferLater(reactor, 0.005, lambda: None)
                result["elapsed"] = time.perf_counter() - t0
                result["cpu"] = _cpu() - c0
                result["rows"] = op.stats.total_rows
                result["errors"] = op.stats.total_errors
            elif mode == "latency":
                db = dbs.get("bench")
                lat = []
                for i in range(extra["samples"]):
                    row = {"timestamp": "2026-11-28T04:00:00Z", "device": "d", "value": 1.5, "status": "ok", "seq": i}
                    name = f"bench.small.s{i}.json"
                    tmp = os.path.join(src, name)
                    with open(tmp, "wb") as f:
                        f.write(orjson.dumps(row) + b"\n")
                    await task.deferLater(reactor, 0.05, lambda: None)  # idle operator
                    t0 = time.perf_counter()
                    os.rename(tmp, os.path.join(watch, name))
                    while True:
                        try:
                            _, rows = await db.query("select count(*) from small where seq = ?", (i,))
                            if rows[0][0]:
                                break
                        except Exception:
                            pass
                        await task.deferLater(reactor, 0.001, lambda: None)
                    lat.append(time.perf_counter() - t0)
                result["latency"] = lat
            elif mode == "rss":
                samples = []
                t0 = time.perf_counter()
                for name in names:
                    os.rename(os.path.join(src, name), os.path.join(watch, name))
                while op.stats.total_files + op.stats.total_errors < len(names):
                    await task.deferLater(reactor, 0.25, lambda: None)
                    with open("/proc/self/status") as f:
                        vm = [line for line in f if line.startswith("VmRSS")][0].split()[1]
                    samples.append((round(time.perf_counter() - t0, 1), int(vm) // 1024))
                result["samples"] = samples
                result["elapsed"] = time.perf_counter() - t0
                result["rows"] = op.stats.total_rows
                result["errors"] = op.stats.total_errors
                # VmHWM, not ru_maxrss: the latter carries the parent's peak over fork+exec.
                with open("/proc/self/status") as f:
                    hwm = [line for line in f if line.startswith("VmHWM")][0].split()[1]
                result["maxrss_mb"] = int(hwm) / 1024
        finally:
            await node.stopService()
        with open(extra["out"], "w") as f:
            json.dump(result, f)

    task.react(lambda _r: __import__("twisted.internet.defer", fromlist=["Deferred"]).Deferred.fromCoroutine(main()))
    return result


def _cpu() -> float:
    """CPU seconds of this process, all its threads (the node's work, whatever else the machine runs)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def spawn(mode: str, engine: str, work: str, src: str, names: list[str], threads: int, extra: dict) -> dict:
    home = os.path.join(work, "home")
    names_file = os.path.join(work, "names.json")
    out_file = os.path.join(work, "result.json")
    with open(names_file, "w") as f:
        json.dump(names, f)
    extra = dict(extra, out=out_file)
    subprocess.run([sys.executable, __file__, "--child", mode, engine, home, src, str(threads), json.dumps(extra),
                    names_file], check=True)
    with open(out_file) as f:
        return json.load(f)


def _old_iter_lines(path: str, size: int):
    """The reader before issue 16, kept as the baseline: the tail is re-copied for every block."""
    tail = b""
    with open(path, "rb") as f:
        while True:
            block = f.read(size)
            if not block:
                break
            block = tail + block
            cut = block.rfind(b"\n")
            if cut < 0:
                tail = block
                continue
            body, tail = block[:cut + 1], block[cut + 1:]
            yield body
    if tail:
        yield tail


def _attack_files(directory: str) -> dict[str, str]:
    import gzip

    mib = 1 << 20
    made = {}
    path = os.path.join(directory, "bench.bombline.0.0.0.json.gz")
    with gzip.open(path, "wb", compresslevel=9) as z:
        z.write(b'{"a": "')
        for _ in range(200):
            z.write(b"x" * mib)
        z.write(b'"}\n')
    made["gz, one 200 MB line"] = path
    path = os.path.join(directory, "bench.bombrows.0.0.0.json.gz")
    with gzip.open(path, "wb", compresslevel=9) as z:
        block = b'{"seq": 1, "value": 2}\n' * (mib // 23)
        for _ in range(1024):
            z.write(block)
    made["gz, 1 GB of rows"] = path
    path = os.path.join(directory, "bench.longline.0.0.0.json")
    with open(path, "wb") as f:
        f.write(b'{"a": "' + b"y" * (150 * mib) + b'"}\n')
    made["150 MB line"] = path
    path = os.path.join(directory, "bench.array.0.0.0.json")
    with open(path, "wb") as f:
        f.write(b"[" + b",".join([b'{"seq": 1, "value": 2.5, "device": "dev-001"}'] * (100 * mib // 46)) + b"]")
    made["100 MB JSON array"] = path
    return made


def attacks(base: str, engine: str, big_mb: int) -> None:
    from anylog_tw.ingest import reader

    work = os.path.join(base, "attacks")
    os.makedirs(work)
    for label, path in _attack_files(work).items():
        src = os.path.join(work, "src-" + os.path.basename(path))
        os.makedirs(src)
        os.rename(path, os.path.join(src, os.path.basename(path)))
        run_dir = os.path.join(work, "run-" + os.path.basename(path))
        os.makedirs(run_dir)
        r = spawn("rss", engine, run_dir, src, [os.path.basename(path)], 1, {"dbname": ""})
        print(f"attack {label:22s}: peak RSS {r['maxrss_mb']:.0f} MB (goal < 250 MB; baseline: the normal "
              f"{big_mb} MB file below), refused: {r['errors'] == 1}, {r['elapsed']:.1f} s")
        shutil.rmtree(src, ignore_errors=True)
    for mb in (50, 100, 200):
        path = os.path.join(work, f"line{mb}.json")
        with open(path, "wb") as f:
            f.write(b"z" * (mb << 20) + b"\n")
        t0 = time.perf_counter()
        for _ in reader.iter_chunks(path, False, reader.CHUNK, reader.Limits(max_line=0)):
            pass
        new = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in _old_iter_lines(path, reader.CHUNK):
            pass
        old = time.perf_counter() - t0
        os.unlink(path)
        print(f"one {mb} MB line read: {new:.2f} s | old tail + block loop {old:.2f} s | ratio {old / new:.1f}x")


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=3)
    ap.add_argument("--engines", default="sqlite,psql")
    ap.add_argument("--big-mb", type=int, default=200)
    ap.add_argument("--skip", default="", help="comma list of: throughput,latency,rss,durable,attacks,policy")
    ap.add_argument("--opts", default="", help="more operator options, e.g. ' and compress_json = false'")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    engines = args.engines.split(",")
    base = tempfile.mkdtemp(prefix="bench-ingest-")
    try:
        master = os.path.join(base, "files")
        names = make_files(master, args.files, args.rows)
        total = args.files * args.rows
        print(f"{total:,} rows in {args.files} files ({args.rows} rows each), operator threads = {args.threads}, "
              f"{args.runs} runs, medians")
        if "throughput" not in skip:
            for engine in engines:
                ours, plain = [], []
                for run in range(args.runs):
                    work = os.path.join(base, f"{engine}-{run}")
                    src = os.path.join(work, "src")
                    shutil.copytree(master, src)
                    dbname = "bench_" + uuid.uuid4().hex[:8]
                    if engine == "psql":
                        pg_create(dbname)
                    try:
                        if engine == "sqlite":
                            t = plain_sqlite(src, names, os.path.join(work, "plain.db"))
                        else:
                            t = plain_psql(src, names, dbname)
                        plain.append(total / t)
                        if engine == "psql":
                            pg_drop(dbname)
                            pg_create(dbname)
                        r = spawn("throughput", engine, work, src, names, args.threads, {"dbname": dbname, "opts": args.opts})
                        if r["rows"] != total or r["errors"]:
                            print(f"  !! {engine} run {run}: {r['rows']} rows, {r['errors']} errors")
                        ours.append(r["rows"] / r["elapsed"])
                    finally:
                        if engine == "psql":
                            pg_drop(dbname)
                        shutil.rmtree(work, ignore_errors=True)
                    print(f"  {engine} run {run + 1}: operator {ours[-1]:,.0f} rows/s, plain script {plain[-1]:,.0f} rows/s")
                mo, mp = median(ours), median(plain)
                paired = median([o / p for o, p in zip(ours, plain)])
                goal = 150_000 if engine == "psql" else 100_000
                print(f"{engine:6s} throughput: operator {mo:,.0f} rows/s | plain script {mp:,.0f} rows/s | "
                      f"ratio {mo / mp:.2f} (median of per-run ratios {paired:.2f}; goal >= 0.8) | "
                      f"goal {goal:,} rows/s")
        if "durable" not in skip:
            for engine in engines:
                rates: dict[bool, list[float]] = {False: [], True: []}
                for run in range(args.runs):
                    for durable in ((False, True) if run % 2 == 0 else (True, False)):
                        work = os.path.join(base, f"dur-{engine}-{run}-{durable}")
                        src = os.path.join(work, "src")
                        shutil.copytree(master, src)
                        dbname = "bench_" + uuid.uuid4().hex[:8]
                        if engine == "psql":
                            pg_create(dbname)
                        try:
                            opts = args.opts + f" and durable = {str(durable).lower()}"
                            r = spawn("throughput", engine, work, src, names, args.threads,
                                      {"dbname": dbname, "opts": opts})
                        finally:
                            if engine == "psql":
                                pg_drop(dbname)
                            shutil.rmtree(work, ignore_errors=True)
                        if r["rows"] != total or r["errors"]:
                            print(f"  !! {engine} run {run}: {r['rows']} rows, {r['errors']} errors")
                        rates[durable].append(r["rows"] / r["elapsed"])
                    print(f"  {engine} run {run + 1}: durable {rates[True][-1]:,.0f} rows/s, "
                          f"not durable {rates[False][-1]:,.0f} rows/s")
                on, off = median(rates[True]), median(rates[False])
                paired = median([a / b for a, b in zip(rates[True], rates[False])])
                print(f"{engine:6s} durable ingest: {on:,.0f} rows/s | durable = false {off:,.0f} rows/s | "
                      f"ratio {on / off:.2f} (median of per-run ratios {paired:.2f}; goal >= 0.9)")
        if "policy" not in skip:
            air = os.path.join(base, "air")
            air_names = make_air_files(air, args.files, args.rows)
            for engine in engines:
                default, mapped, epoch = [], [], []
                cpu: dict[str, list] = {"default": [], "policy": [], "epoch": []}
                for run in range(args.runs):
                    for kind, policy, out in (("default", None, default), ("policy", AIR_POLICY, mapped),
                                              ("epoch", AIR_POLICY_EPOCH, epoch)):
                        pid = policy["mapping"]["id"] if policy else "0"
                        names_ = [n.replace(".0.0.json", f".0.{pid}.json") for n in air_names]
                        work = os.path.join(base, f"air-{engine}-{kind}-{run}")
                        src = os.path.join(work, "src")
                        os.makedirs(src)
                        for a, b in zip(air_names, names_):
                            shutil.copyfile(os.path.join(air, a), os.path.join(src, b))
                        dbname = "bench_" + uuid.uuid4().hex[:8]
                        if engine == "psql":
                            pg_create(dbname)
                        try:
                            extra = {"dbname": dbname, "opts": args.opts}
                            if policy:
                                extra["policy"] = policy
                            r = spawn("throughput", engine, work, src, names_, args.threads, extra)
                        finally:
                            if engine == "psql":
                                pg_drop(dbname)
                            shutil.rmtree(work, ignore_errors=True)
                        if r["rows"] != total or r["errors"]:
                            print(f"  !! {engine} {kind} run {run}: {r['rows']} rows, {r['errors']} errors")
                        out.append(r["rows"] / r["elapsed"])
                        cpu[kind].append(r["rows"] / r["cpu"])
                    print(f"  {engine} run {run + 1}: default mapping {default[-1]:,.0f} rows/s, mapping policy "
                          f"{mapped[-1]:,.0f} rows/s, with the epoch timestamp {epoch[-1]:,.0f} rows/s; per CPU second "
                          f"of the node {cpu['default'][-1]:,.0f} / {cpu['policy'][-1]:,.0f} / {cpu['epoch'][-1]:,.0f}")
                md, mm, me = median(default), median(mapped), median(epoch)
                paired = median([m / d for m, d in zip(mapped, default)])
                paired_e = median([m / d for m, d in zip(epoch, default)])
                cd, cm, ce = (median(cpu[k]) for k in ("default", "policy", "epoch"))
                print(f"{engine:6s} mapping policy: {mm:,.0f} rows/s | default mapping {md:,.0f} rows/s | ratio "
                      f"{mm / md:.2f} (median of per-run ratios {paired:.2f}; goal >= 0.8) | with the epoch "
                      f"timestamp column {me:,.0f} rows/s, ratio {me / md:.2f} ({paired_e:.2f})")
                print(f"{engine:6s} rows per CPU second of the node: mapping policy {cm:,.0f} | default mapping "
                      f"{cd:,.0f} | ratio {cm / cd:.2f} | with the epoch timestamp column {ce:,.0f}, ratio {ce / cd:.2f}")
        if "latency" not in skip:
            for engine in engines:
                work = os.path.join(base, f"lat-{engine}")
                src = os.path.join(work, "src")
                os.makedirs(src)
                dbname = "bench_" + uuid.uuid4().hex[:8]
                if engine == "psql":
                    pg_create(dbname)
                try:
                    r = spawn("latency", engine, work, src, [], 1, {"dbname": dbname, "samples": 21})
                finally:
                    if engine == "psql":
                        pg_drop(dbname)
                lat = r["latency"]
                print(f"{engine:6s} small-file latency (drop -> queryable): median {median(lat) * 1000:.1f} ms, "
                      f"max {max(lat) * 1000:.1f} ms over {len(lat)} files (goal < 50 ms; EdgeLake 1.4-2.8 s)")
        if "attacks" not in skip:
            attacks(base, engines[0], args.big_mb)
        if "rss" not in skip:
            rows_big = args.big_mb * (1 << 20) // 113
            big_dir = os.path.join(base, "big")
            os.makedirs(big_dir)
            big_name = "bench.big.0.0.0.json"
            with open(os.path.join(big_dir, big_name), "wb") as out:
                rnd = random.Random(3)
                chunk = []
                for i in range(rows_big):
                    chunk.append(orjson.dumps({"timestamp": "2026-11-28T04:00:00.123Z", "device": f"dev-{i % 977}",
                                               "value": rnd.random() * 100, "status": "ok", "seq": i}))
                    if len(chunk) == 50000:
                        out.write(b"\n".join(chunk) + b"\n")
                        chunk = []
                if chunk:
                    out.write(b"\n".join(chunk) + b"\n")
            size_mb = os.path.getsize(os.path.join(big_dir, big_name)) / (1 << 20)
            for engine in engines:
                work = os.path.join(base, f"rss-{engine}")
                src = os.path.join(work, "src")
                shutil.copytree(big_dir, src)
                dbname = "bench_" + uuid.uuid4().hex[:8]
                if engine == "psql":
                    pg_create(dbname)
                try:
                    r = spawn("rss", engine, work, src, [big_name], 1, {"dbname": dbname})
                finally:
                    if engine == "psql":
                        pg_drop(dbname)
                    shutil.rmtree(work, ignore_errors=True)
                if os.environ.get("BENCH_VERBOSE"):
                    print(r.get("samples"))
                print(f"{engine:6s} one {size_mb:.0f} MB file ({r['rows']:,} rows): peak RSS {r['maxrss_mb']:.0f} MB "
                      f"(goal < 250 MB), {r['rows'] / r['elapsed']:,.0f} rows/s")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, engine, home, src, threads, extra, names_file = sys.argv[2:9]
        with open(names_file) as f:
            names_ = json.load(f)
        run_node(mode, engine, home, src, names_, int(threads), json.loads(extra))
    else:
        main()
