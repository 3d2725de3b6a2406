"""Fault injection on real `twistd -n anylog` processes (issue 16).

* Compressed bombs and a very long line: the node stays up, its peak RSS (VmHWM) stays under
  250 MB, and each file lands in the error dir with its reason.
* SIGKILL during group commit: after the restart every row of every file is there exactly once.
* A publisher shipping a table to a two-member HA cluster whose members are SIGKILLed and
  restarted mid-stream: every row once on every member.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path

import pytest

from tests.e2e.harness import free_port, wait_for

MIB = 1 << 20
RSS_BOUND_MB = 250
PERIOD = 1
HA = "run ha where push_interval = 0.5 seconds and pull_interval = 2 seconds\n"


def tcp(port: int) -> str:
    return f"run tcp server where external_ip = 127.0.0.1 and external_port = {port} and bind = true\n"


def sync(master_port: int) -> str:
    return (f"run blockchain sync where source = master and time = {PERIOD} seconds and dest = file and "
            f"connection = 127.0.0.1:{master_port}\n")


DBMS = "connect dbms almgm where type = sqlite\nconnect dbms lsl where type = sqlite\n"


def rows_of(i: int, n: int = 4) -> bytes:
    return b"".join(json.dumps({"seq": i * 100 + k, "value": k}).encode() + b"\n" for k in range(n))


def drop(home: Path, name: str, data: bytes) -> None:
    watch = home / "data" / "watch"
    tmp = watch / ("." + name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, watch / name)


def query(node, sql: str, dbms: str = "lsl"):
    text = node.command(f'sql {dbms} "{sql}"')
    try:
        return json.loads(text)["Query"]
    except (ValueError, KeyError):
        return None


def count(node, sql: str = "select count(*) as n from ping", dbms: str = "lsl") -> int:
    rows = query(node, sql, dbms)
    return rows[0]["n"] if rows else -1


def peak_rss_mb(node) -> float:
    with open(f"/proc/{node.proc.pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmHWM")).split()[1]) / 1024


def files_in(path: Path) -> list[str]:
    return sorted(f for f in os.listdir(path) if not f.startswith(".")) if path.is_dir() else []


# --- memory bounds -------------------------------------------------------------------------------


def test_bombs_and_a_long_line_keep_the_node_up_and_under_its_memory_bound(nodes, tmp_path):
    node = nodes("bomb", DBMS + "run operator where rescan = 1 second\n")
    err = node.home / "data" / "error"
    attacks = tmp_path / "attacks"
    attacks.mkdir()
    line = attacks / "lsl.line.s.0.0.json.gz"  # 200 MB in one line, in ~200 KB
    with gzip.open(line, "wb", compresslevel=9) as z:
        z.write(b'{"a": "')
        for _ in range(200):
            z.write(b"x" * MIB)
        z.write(b'"}\n')
    rows = attacks / "lsl.rows.s.0.0.json.gz"  # 1 GB of short rows in ~1 MB
    with gzip.open(rows, "wb", compresslevel=9) as z:
        block = b'{"seq": 1, "value": 2}\n' * (MIB // 23)
        for _ in range(1024):
            z.write(block)
    plain = attacks / "lsl.plain.s.0.0.json"  # 150 MB in one line, not compressed
    with open(plain, "wb") as f:
        f.write(b'{"a": "')
        for _ in range(150):
            f.write(b"y" * MIB)
        f.write(b'"}\n')
    seen = []
    for n, path in enumerate((line, rows, plain), 1):
        drop(node.home, path.name, path.read_bytes())
        wait_for(lambda: len(files_in(err)) == n, 60, f"{path.name} in the error dir", interval=0.2)
        assert node.command("get status").startswith("bomb@") or "running" in node.command("get status").lower()
        seen.append(peak_rss_mb(node))
        assert seen[-1] < RSS_BOUND_MB, f"peak RSS {seen[-1]:.0f} MB after {path.name}"
    reasons = sorted(f.split(".err_")[1].split(".")[0] for f in files_in(err))
    assert reasons == ["expanded", "expanded", "line"], files_in(err)  # the one-line bomb trips the ratio first
    drop(node.home, "lsl.good.s.0.0.json", rows_of(1))
    wait_for(lambda: count(node, "select count(*) as n from good") == 4, 20, "a good file after the attacks",
             interval=0.2)
    assert node.proc.poll() is None


# --- SIGKILL during group commit -----------------------------------------------------------------


def test_sigkill_during_group_commit_loses_and_doubles_nothing(nodes):
    node = nodes("gc", DBMS + "run operator where rescan = 1 second and threads = 2\n")
    files = 300
    for i in range(files):
        drop(node.home, f"lsl.ping.k{i}.0.0.json", rows_of(i))
    wait_for(lambda: count(node) >= 100, 30, "ingest under way", interval=0.02)
    node.kill()  # SIGKILL, whatever commit is in flight
    done_before = len([f for f in (node.home / "data" / "watch").iterdir() if not f.name.startswith(".")])
    assert done_before > 0, "every file was in before the kill: the test proves nothing"
    node.start()
    wait_for(lambda: count(node) == files * 4, 60, "every row after the restart", interval=0.3)
    assert count(node, "select count(distinct seq) as n from ping") == files * 4
    assert count(node, "select count(*) as n from tsd_info where status2 = 'done'", "almgm") == files
    assert files_in(node.home / "data" / "error") == []
    assert "Traceback" not in node.log()


# --- exactly once across a cluster ---------------------------------------------------------------


@pytest.fixture
def shipped(nodes):
    """A master, a publisher, and two operators of one HA cluster hosting lsl.ping."""
    master_port = free_port()
    nodes("master", tcp(master_port))
    ports = {"opa": free_port(), "opb": free_port()}
    ops = {name: nodes(name, tcp(port) + sync(master_port) + DBMS) for name, port in ports.items()}
    pub = nodes("pub", tcp(free_port()) + sync(master_port))
    policies = [{"cluster": {"id": "c1", "name": "c1", "company": "t", "table": [{"dbms": "lsl", "name": "ping"}]}}]
    policies += [{"operator": {"id": name, "name": name, "company": "t", "ip": "127.0.0.1", "port": port,
                               "cluster": "c1", "member": i}}
                 for i, (name, port) in enumerate(sorted(ports.items()), 1)]
    for p in policies:
        reply = pub.command(f"blockchain insert where policy = {json.dumps(p)} and master = 127.0.0.1:{master_port}")
        assert "added" in reply, reply
    for node in [*ops.values(), pub]:
        wait_for(lambda: node.command("blockchain get operator bring.count") == "2", 2 * PERIOD + 8,
                 f"{node.name} to see the operators", interval=0.1)
    for name, node in ops.items():
        start = f"run operator where policy = {name} and rescan = 1 second\n" + HA
        for line in start.splitlines():
            assert "started" in node.command(line)
        node.script_path.write_text(node.script_path.read_text() + start)  # a restart starts them too
    assert "Publisher started" in pub.command("run publisher where retry = 1 second and rescan = 1 second")
    return pub, ops["opa"], ops["opb"]


def test_members_killed_mid_stream_end_with_every_row_once_on_every_member(shipped):
    pub, a, b = shipped
    files, batch = 240, 30
    sent = 0
    for round_ in range(files // batch):
        for i in range(sent, sent + batch):
            drop(pub.home, f"lsl.ping.p{i}.0.0.json", rows_of(i))
        sent += batch
        if round_ % 2 == 1:  # kill the member that is receiving, mid-stream, then bring it back
            victim = (a, b)[(round_ // 2) % 2]
            wait_for(lambda: count(victim) >= 0, 10, "a table on the victim", interval=0.05)
            time.sleep(0.05 * (round_ % 3))  # a different moment of the stream each time
            victim.kill()
            victim.start()
    total = files * 4
    for node in (a, b):
        wait_for(lambda: count(node) >= total, 120, f"every row on {node.name}", interval=0.5)
    wait_for(lambda: files_in(pub.home / "data" / "watch") == [], 30, "the publisher to ship everything")
    for node in (a, b):
        assert count(node, "select count(distinct seq) as n from ping") == total, node.name
        assert count(node) == total, f"{node.name} holds {count(node) - total} rows twice"
    time.sleep(3)  # a late HA copy would double rows now: look again after two pulls
    for node in (a, b):
        assert count(node) == total and count(node, "select count(distinct seq) as n from ping") == total
        assert "Traceback" not in node.log()
