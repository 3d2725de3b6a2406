"""Fault injection on a running operator (issue 16): compressed bombs and long lines are refused with
their reason, a disk that fills up during ingest pauses it without losing or doubling a row, and
durable ingest syncs before a file leaves the watch dir.  Real reactor, real files, real SQLite;
the disk-full test mounts a small tmpfs (it needs root, and is skipped without it)."""

from __future__ import annotations

import errno
import gzip
import json
import os
import subprocess

import pytest
import pytest_twisted
from twisted.internet import reactor

from anylog_tw.node import Node
from anylog_tw.storage.engines import Databases
from tests.helpers import poll

MIB = 1 << 20


def rows_file(first: int, n: int, pad: int = 0) -> bytes:
    return b"".join(json.dumps({"seq": i, "value": i * 0.5, "note": "x" * pad}).encode() + b"\n"
                    for i in range(first, first + n))


def put(directory: str, name: str, data: bytes) -> None:
    tmp = os.path.join(directory, "." + name + ".part")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, os.path.join(directory, name))


def files_under(path: str) -> list[str]:
    out = []
    for root, _, files in os.walk(path):
        out += [os.path.relpath(os.path.join(root, f), path) for f in files]
    return sorted(out)


async def make_node(home: str) -> Node:
    node = Node(home, name="op", reactor=reactor)
    node.startService()
    dbs = node.component(Databases)
    await dbs.connect("almgm", "sqlite")
    await dbs.connect("lsl", "sqlite")
    return node


async def start_operator(node: Node, options: str = "") -> None:
    reply = await node.execute("run operator where rescan = 1 second" + (f" and {options}" if options else ""))
    assert reply.ok, reply.render()


async def count(node: Node, sql: str, dbms: str = "lsl") -> int:
    _, rows = await node.component(Databases).get(dbms).query(sql)
    return rows[0][0]


@pytest_twisted.async_yield_fixture
async def node(tmp_path):
    node = await make_node(str(tmp_path / "home"))
    yield node
    await node.stopService()


# --- bombs and long lines ------------------------------------------------------------------------


async def test_bombs_and_long_lines_go_to_the_error_dir_with_their_reason(node, tmp_path):
    """Each attack fails only its own file, named err_expanded / err_line; the good file beside them lands."""
    await start_operator(node, "max_line = 1MB and max_expanded = 64MB")
    watch, err = node.dictionary["watch_dir"], node.dictionary["err_dir"]
    bomb = tmp_path / "bomb.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as z:  # 96 MB of short lines in ~100 KB
        for _ in range(96):
            z.write(b'{"seq": 1, "value": 2}\n' * (MIB // 23))
    put(watch, "lsl.ratio.s.0.0.json.gz", bomb.read_bytes())
    big = tmp_path / "big.gz"
    with gzip.open(big, "wb", compresslevel=1) as z:  # 80 MB, ratio under 200: stopped by max_expanded
        for i in range(80 * MIB // 4096):
            z.write(b"{\"h\": \"" + os.urandom(2040).hex().encode() + b"\"}\n")
    put(watch, "lsl.expanded.s.0.0.json.gz", big.read_bytes())
    put(watch, "lsl.line.s.0.0.json", b'{"a": 1}\n{"a": "' + b"y" * (2 * MIB) + b'"}\n')
    put(watch, "lsl.array.s.0.0.json", b"[" + b",".join([b'{"a": 1}'] * (MIB // 8)) + b"]")
    put(watch, "lsl.good.s.0.0.json", rows_file(0, 10))
    await poll(lambda: len(os.listdir(err)) == 4 and not os.listdir(watch), 60, what="four failures")
    reasons = sorted(name.split(".err_")[1].split(".")[0] + ":" + name.split(".")[1] for name in os.listdir(err))
    assert reasons == ["expanded:expanded", "expanded:ratio", "line:array", "line:line"], os.listdir(err)
    await poll(lambda: node.process("Operator").stats.total_files == 1, 10, what="the good file")
    assert await count(node, "select count(*) from good") == 10
    assert not await node.component(Databases).get("lsl").has_table("ratio")


# --- durability ----------------------------------------------------------------------------------


async def test_durable_ingest_syncs_rows_then_the_mark_then_the_archive(node, monkeypatch):
    """The order that makes a power loss safe: rows synced, TSD row marked and synced, archive synced,
    and only then is the source removed."""
    events = []
    dbs = node.component(Databases)
    for name in ("lsl", "almgm"):
        db = dbs.get(name)
        real = db.sync

        async def sync(real=real, name=name):
            await real()
            events.append(("sync", name))

        monkeypatch.setattr(db, "sync", sync)
    from anylog_tw.ingest import archive, tsd

    real_done, real_archive = tsd.mark_done, archive.archive

    def mark_done(*args):
        events.append(("mark_done",))
        return real_done(*args)

    def archived(*args):
        events.append(("archive", args[-1]))
        return real_archive(*args)

    monkeypatch.setattr(tsd, "mark_done", mark_done)
    monkeypatch.setattr(archive, "archive", archived)
    await start_operator(node)
    put(node.dictionary["watch_dir"], "lsl.ping.s.0.0.json", rows_file(0, 5))
    await poll(lambda: node.process("Operator").stats.total_files == 1, 10, what="the file")
    assert events == [("sync", "lsl"), ("mark_done",), ("sync", "almgm"), ("archive", True)]
    assert dbs.get("lsl").syncs >= 1 and dbs.get("almgm").syncs >= 1


async def test_many_callers_share_one_fsync(node):
    db = node.component(Databases).get("lsl")
    await db.execute("create table t (a int)")
    before = db.syncs
    from twisted.internet.defer import Deferred, gatherResults

    await gatherResults([Deferred.fromCoroutine(db.sync()) for _ in range(50)])
    assert 1 <= db.syncs - before <= 2


# --- disk full -----------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 12 MB tmpfs mounted for this test, unmounted after it."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: str) -> int:
    """Write until the file system says it is full; the bytes written."""
    total = 0
    with open(path, "wb") as f:
        block = b"\0" * 65536
        while True:
            try:
                f.write(block)
                f.flush()
                total += len(block)
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break
        try:
            os.fsync(f.fileno())
        except OSError:
            pass
    for size in (4096, 512, 64, 1):  # the last crumbs too
        try:
            with open(path, "ab") as f:
                while True:
                    f.write(b"\0" * size)
                    f.flush()
        except OSError:
            pass
    return total


async def test_a_disk_filled_during_ingest_pauses_it_and_loses_and_doubles_nothing(small_disk):
    home = str(small_disk / "home")
    node = await make_node(home)
    try:
        await start_operator(node, "compress_json = true")
        op = node.process("Operator")
        op.pause.longest = 0.5  # retry fast in the test
        watch, err = node.dictionary["watch_dir"], node.dictionary["err_dir"]
        staging = os.path.join(home, "staging")
        os.makedirs(staging)
        files = 40
        for i in range(files):  # ready before the disk fills: renaming them in needs no space
            put(staging, f"lsl.ping.s{i}.0.0.json", rows_file(i * 200, 200, pad=40))
        for i in range(5):
            os.rename(os.path.join(staging, f"lsl.ping.s{i}.0.0.json"), os.path.join(watch, f"lsl.ping.s{i}.0.0.json"))
        await poll(lambda: op.stats.total_files == 5, 20, what="the first files")
        filler = str(small_disk / "filler")
        await node.in_thread(fill, filler)
        for i in range(5, files):
            os.rename(os.path.join(staging, f"lsl.ping.s{i}.0.0.json"), os.path.join(watch, f"lsl.ping.s{i}.0.0.json"))
        await poll(lambda: op.pause.since is not None, 30, what="ingest to pause")
        status = op.status()
        assert status.startswith("Paused: no space left"), status
        reply = await node.execute("get operator")
        assert "Paused: no space left" in reply.render()
        test = (await node.execute("test node where format = json")).render()
        assert "ingest paused: no space left" in test, test
        paused_files = op.stats.total_files
        assert os.listdir(err) == []  # nothing was taken for a bad file
        os.unlink(filler)
        await poll(lambda: op.stats.total_files == files, 60, what="every file after space came back")
        assert op.pause.since is None and op.status() == "Running"
        assert paused_files < files
        assert await count(node, "select count(*) from ping") == files * 200
        assert await count(node, "select count(distinct seq) from ping") == files * 200
        assert await count(node, "select count(*) from tsd_info where status2 = 'done'", "almgm") == files
        assert os.listdir(err) == [] and os.listdir(watch) == []
        archived = files_under(node.dictionary["archive_dir"])
        assert len(archived) == files and all(n.endswith(".json.gz") for n in archived)
        leftovers = [n for n in files_under(home) if n.endswith((".tmp", ".part")) and "staging" not in n]
        assert leftovers == []
    finally:
        await node.stopService()
