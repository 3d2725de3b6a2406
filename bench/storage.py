"""Bulk insert through the node's storage interface vs the raw driver path, in the same run.

1,000,000 rows x 5 columns (timestamp text, device, value, status, seq), into a fresh table of
the same layout each time, medians of 5 runs (alternating which path goes first):
* SQLite: `SQLiteDatabase.bulk_insert` (writer thread, executemany in one transaction) vs plain
  `sqlite3` executemany in one transaction (WAL, synchronous=NORMAL), on the same disk.
* PostgreSQL: `PostgresDatabase.bulk_insert` (COPY on the writer thread, rows formatted and
  escaped in streamed chunks) vs plain psycopg2 `copy_expert` of a buffer formatted with one
  `%`-format per row (the recipe of twisted-stack.md §2, no escaping), both timed from Python rows
  to commit.  The COPY of an already-built buffer (server side only) is printed as the ceiling.
* SQLite while another thread is busy (the reactor in a burst of messages): 10 transactions of
  1,300 rows, the size of a QoS 1 group-commit file, with a thread spinning in Python the
  whole time; the node's insert against raw `sqlite3` executemany under the same spinning thread.

Usage: .venv/bin/python bench/storage.py [--rows N] [--runs K] [--engine sqlite|psql|both]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time

import psycopg2
from twisted.internet import defer, task

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from anylog_tw.storage.postgres import PostgresDatabase  # noqa: E402
from anylog_tw.storage.sqlite import SQLiteDatabase  # noqa: E402

COLUMNS = ["ts", "device", "value", "status", "seq"]
TYPES = {"ts": "timestamp", "device": "text", "value": "float", "status": "text", "seq": "integer"}
PG = dict(host="127.0.0.1", port=5432, user="anylog")  # the non-superuser role of tools/ensure-postgres


def make_rows(n: int) -> list[tuple]:
    rnd = random.Random(7)
    return [(f"2026-11-28 {i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}", f"dev-{i % 100}",
             round(rnd.random() * 100, 3), "ok" if i % 7 else "warn", i) for i in range(n)]


def plain_ddl(engine: str, table: str) -> str:
    kinds = {"sqlite": {"timestamp": "TIMESTAMP", "text": "TEXT", "float": "REAL", "integer": "INTEGER"},
             "psql": {"timestamp": "TIMESTAMP", "text": "TEXT", "float": "DOUBLE PRECISION", "integer": "BIGINT"}}
    cols = ", ".join(f"{c} {kinds[engine][TYPES[c]]}" for c in COLUMNS)
    return f"CREATE TABLE {table} ({cols})"


# --- SQLite ---------------------------------------------------------------------------------------


def sqlite_raw(path: str, rows: list[tuple], transactions: int = 1, busy: bool = False) -> float:
    """Plain sqlite3: `transactions` times `rows` executemany'd in a transaction of their own."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("DROP TABLE IF EXISTS raw_t")
    conn.execute(plain_ddl("sqlite", "raw_t"))
    with Spinning() if busy else contextlib.nullcontext():
        started = time.perf_counter()
        for _ in range(transactions):
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO raw_t (ts, device, value, status, seq) VALUES (?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
    assert conn.execute("SELECT count(*) FROM raw_t").fetchone()[0] == transactions * len(rows)
    conn.execute("DROP TABLE raw_t")
    conn.close()
    return elapsed


async def node_bulk(db, engine: str, rows: list[tuple], transactions: int = 1, busy: bool = False) -> float:
    """The node's interface, the same way on both engines: seconds for `transactions` bulk_inserts of `rows`."""
    await db.execute("DROP TABLE IF EXISTS node_t")
    await db.execute(plain_ddl(engine, "node_t"))
    with Spinning() if busy else contextlib.nullcontext():
        started = time.perf_counter()
        for _ in range(transactions):
            assert await db.bulk_insert("node_t", COLUMNS, rows) == len(rows)
        elapsed = time.perf_counter() - started
    _, counted = await db.query("SELECT count(*) FROM node_t")
    assert counted[0][0] == transactions * len(rows)
    await db.execute("DROP TABLE node_t")
    return elapsed


class Spinning:
    """A thread spinning in Python while the block runs: it holds the GIL whenever it may, as
    the reactor thread does in a burst of messages."""

    def __enter__(self):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        x = 0
        while not self.stop.is_set():
            for _ in range(1000):
                x += 1

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


SMALL_FILES, SMALL_ROWS = 10, 1300


# --- PostgreSQL -----------------------------------------------------------------------------------


def pg_raw(dbname: str, rows: list[tuple], prebuilt: bool = False) -> float:
    conn = psycopg2.connect(dbname=dbname, **PG)
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS raw_t")
        cur.execute(plain_ddl("psql", "raw_t"))
        conn.commit()
        text = "".join("%s\t%s\t%r\t%s\t%d\n" % r for r in rows) if prebuilt else None
        started = time.perf_counter()
        buf = io.StringIO(text if prebuilt else "".join("%s\t%s\t%r\t%s\t%d\n" % r for r in rows))
        cur.copy_expert("COPY raw_t (ts, device, value, status, seq) FROM STDIN", buf)
        conn.commit()
        elapsed = time.perf_counter() - started
        cur.execute("SELECT count(*) FROM raw_t")
        assert cur.fetchone()[0] == len(rows)
        cur.execute("DROP TABLE raw_t")
        conn.commit()
    conn.close()
    return elapsed


async def read_latency(reactor, db, engine: str, rows: list[tuple]) -> tuple[float, bool]:
    """Seconds a `select count(*)` takes while a bulk insert of `rows` is running, and whether
    it answered before the insert ended (reads do not queue behind ingest)."""
    await db.execute("DROP TABLE IF EXISTS lat_t")
    await db.execute(plain_ddl(engine, "lat_t"))
    insert = defer.ensureDeferred(db.bulk_insert("lat_t", COLUMNS, rows))
    await task.deferLater(reactor, 0.2, lambda: None)
    started = time.perf_counter()
    await db.query("SELECT count(*) FROM lat_t")
    elapsed = time.perf_counter() - started
    before_end = not insert.called
    await insert
    await db.execute("DROP TABLE lat_t")
    return elapsed, before_end


# --- report ---------------------------------------------------------------------------------------


def line(label: str, times: list[float], n: int) -> tuple[float, float]:
    """Print and return (median rate, best rate): the best run is the one the VM disturbed least."""
    med = statistics.median(times)
    runs = ", ".join(f"{n / t:,.0f}" for t in times)
    print(f"  {label:<44} median {n / med:>10,.0f} rows/s   ({med:.2f} s; runs: {runs})")
    return n / med, n / min(times)


def ratio(ours: tuple[float, float], base: tuple[float, float]) -> None:
    print(f"  ratio node/raw = {ours[0] / base[0]:.2f} of medians, {ours[1] / base[1]:.2f} of best runs "
          f"(target >= 0.9)")


def report_latency(samples: list[tuple[float, bool]]) -> None:
    med = statistics.median(t for t, _ in samples)
    early = sum(1 for _, e in samples if e)
    print(f"  select count(*) during a bulk insert: median {med * 1000:.1f} ms, answered before the insert "
          f"ended in {early}/{len(samples)} runs")


async def main(reactor, args) -> None:
    rows = make_rows(args.rows)
    n = len(rows)
    print(f"bench/storage: {n:,} rows x {len(COLUMNS)} columns, {args.runs} runs each, medians "
          f"(2-core VM shared with other work: expect noise)")
    if args.engine in ("sqlite", "both"):
        home = tempfile.mkdtemp(prefix="bench-storage-")
        try:
            db = SQLiteDatabase("bench_storage", reactor, directory=home)
            await db.open()
            raw, node = [], []
            for k in range(args.runs):  # alternate which goes first: the VM's load drifts
                if k % 2:
                    node.append(await node_bulk(db, "sqlite", rows))
                raw.append(sqlite_raw(os.path.join(home, "raw.db"), rows))
                if not k % 2:
                    node.append(await node_bulk(db, "sqlite", rows))
            latency = [await read_latency(reactor, db, "sqlite", rows) for _ in range(args.runs)]
            small = rows[:SMALL_ROWS]
            raw_small, node_small_ = [], []
            for k in range(args.runs):
                if k % 2:
                    node_small_.append(await node_bulk(db, "sqlite", small, SMALL_FILES, busy=True))
                raw_small.append(sqlite_raw(os.path.join(home, "raw.db"), small, SMALL_FILES, busy=True))
                if not k % 2:
                    node_small_.append(await node_bulk(db, "sqlite", small, SMALL_FILES, busy=True))
            await db.close()
            print("SQLite (file, WAL, synchronous=NORMAL, one transaction):")
            base = line("raw sqlite3 executemany", raw, n)
            ours = line("node interface bulk_insert", node, n)
            ratio(ours, base)
            report_latency(latency)
            print(f"SQLite, {SMALL_FILES} transactions of {SMALL_ROWS:,} rows while another thread spins in Python:")
            base = line("raw sqlite3 executemany", raw_small, SMALL_FILES * SMALL_ROWS)
            ours = line("node interface bulk_insert", node_small_, SMALL_FILES * SMALL_ROWS)
            ratio(ours, base)
        finally:
            shutil.rmtree(home, ignore_errors=True)
    if args.engine in ("psql", "both"):
        dbname = "bench_storage"
        db = PostgresDatabase(dbname, reactor, ip=PG["host"], port=PG["port"], user=PG["user"])
        await db.open()  # creates the database when missing
        try:
            raw, ceiling, node = [], [], []
            for k in range(args.runs):  # alternate which goes first: the VM's load drifts
                if k % 2:
                    node.append(await node_bulk(db, "psql", rows))
                raw.append(pg_raw(dbname, rows))
                if not k % 2:
                    node.append(await node_bulk(db, "psql", rows))
                ceiling.append(pg_raw(dbname, rows, prebuilt=True))
            print("PostgreSQL (COPY, one transaction, default server settings):")
            base = line("raw psycopg2 copy_expert (format + COPY)", raw, n)
            line("  ceiling: COPY of a prebuilt buffer only", ceiling, n)
            ours = line("node interface bulk_insert (COPY)", node, n)
            ratio(ours, base)
            report_latency([await read_latency(reactor, db, "psql", rows) for _ in range(args.runs)])
        finally:
            await db.close()
            conn = psycopg2.connect(dbname="postgres", **PG)
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
            conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--engine", choices=("sqlite", "psql", "both"), default="both")
    options = parser.parse_args()
    task.react(lambda reactor: defer.ensureDeferred(main(reactor, options)))
