"""HA with real processes: a master and two operators of one cluster, as `twistd -n anylog` nodes.

Files are dropped in A's watch dir; B must hold the same rows, each exactly once, after B was
down for a while and after A was killed with SIGKILL in the middle of replicating.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.e2e.harness import free_port, wait_for

PERIOD = 1  # seconds between metadata syncs
HA = "run ha where push_interval = 0.5 seconds and pull_interval = 2 seconds\n"


def tcp(port: int) -> str:
    return f"run tcp server where external_ip = 127.0.0.1 and external_port = {port} and bind = true\n"


def sync(master_port: int) -> str:
    return (f"run blockchain sync where source = master and time = {PERIOD} seconds and dest = file and "
            f"connection = 127.0.0.1:{master_port}\n")


def rows_of(i: int, n: int = 4) -> bytes:
    return b"".join(json.dumps({"seq": i * 100 + k, "value": k * 1.5, "tag": f"f{i}"}).encode() + b"\n"
                    for k in range(n))


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


def count(node, table: str = "ping") -> int:
    rows = query(node, f"select count(*) as n from {table}")
    return rows[0]["n"] if rows else -1


def content(node) -> list:
    return query(node, "select seq, value, tag from ping order by seq")


@pytest.fixture
def cluster(nodes):
    master_port = free_port()
    nodes("master", tcp(master_port))
    ports = {"opa": free_port(), "opb": free_port()}
    script = {name: tcp(port) + sync(master_port) + "connect dbms almgm where type = sqlite\n"
                                                    "connect dbms lsl where type = sqlite\n"
              for name, port in ports.items()}
    ops = {name: nodes(name, script[name]) for name in ports}
    policies = [{"cluster": {"id": "c1", "name": "c1", "company": "t", "table": [{"dbms": "lsl", "name": "ping"}]}}]
    policies += [{"operator": {"id": name, "name": name, "company": "t", "ip": "127.0.0.1", "port": port,
                               "cluster": "c1", "member": i}}
                 for i, (name, port) in enumerate(sorted(ports.items()), 1)]
    a = ops["opa"]
    for p in policies:
        reply = a.command(f"blockchain insert where policy = {json.dumps(p)} and master = 127.0.0.1:{master_port}")
        assert "added" in reply, reply
    for node in ops.values():
        wait_for(lambda: node.command("blockchain get operator bring.count") == "2", 2 * PERIOD + 8,
                 f"{node.name} to see the operators", interval=0.1)
    for name, node in ops.items():
        start = f"run operator where policy = {name} and rescan = 1 second\n" + HA
        for line in start.splitlines():
            reply = node.command(line)
            assert "started" in reply, reply
        node.script_path.write_text(node.script_path.read_text() + start)  # a restart starts them too
    return ops["opa"], ops["opb"]


def test_files_dropped_on_a_appear_on_b_with_identical_rows(cluster):
    a, b = cluster
    for i in range(20):
        drop(a.home, f"lsl.ping.s{i}.json", rows_of(i))
    wait_for(lambda: count(a) == 80, 20, "rows on A", interval=0.2)
    wait_for(lambda: count(b) == 80, 20, "rows on B", interval=0.2)
    assert content(a) == content(b)
    tsd_b = query(b, "select file_id, file_hash, rows from tsd_1 order by file_id", "almgm")
    tsd_a = query(a, "select file_id, file_hash, rows from tsd_info order by file_id", "almgm")
    assert tsd_a == tsd_b and len(tsd_a) == 20
    wait_for(lambda: json.loads(a.command("get ha where format = json"))["Push"][0]["Files pending"] == 0, 10,
             "A's push to drain", interval=0.2)
    same = json.loads(b.command("test cluster data where format = json"))
    assert {r["Same"] for r in same} == {"yes"}, same
    assert "Traceback" not in a.log() + b.log()


def test_b_stopped_while_100_files_are_dropped_on_a_catches_up(cluster):
    a, b = cluster
    drop(a.home, "lsl.ping.first.json", rows_of(0))
    wait_for(lambda: count(b) == 4, 20, "the first file on B", interval=0.2)
    b.stop()
    for i in range(1, 101):
        drop(a.home, f"lsl.ping.b{i}.json", rows_of(i))
    wait_for(lambda: count(a) == 404, 30, "every row on A", interval=0.3)
    pending = json.loads(a.command("get ha where format = json"))["Push"][0]
    assert pending["Files pending"] == 100 and pending["Status"] == "down", pending
    b.log_path.unlink()
    b.start()
    wait_for(lambda: count(b) == 404, 60, "B to catch up", interval=0.3)
    assert content(a) == content(b)
    assert query(b, "select count(*) as n from tsd_1", "almgm")[0]["n"] == 101
    assert os.listdir(b.home / "data" / "error") == []
    assert "Traceback" not in a.log() + b.log()


def test_a_killed_in_the_middle_of_replication_loses_and_duplicates_nothing(cluster):
    a, b = cluster
    for i in range(150):
        drop(a.home, f"lsl.ping.k{i}.json", rows_of(i))
    wait_for(lambda: count(b) >= 40, 30, "replication to be under way", interval=0.05)
    a.kill()  # SIGKILL: no shutdown, whatever was in flight is cut
    assert count(b) < 600, "replication finished before the kill: the test proves nothing"
    a.log_path.unlink()
    a.start()
    wait_for(lambda: count(a) == 600, 60, "every row on A", interval=0.3)
    wait_for(lambda: count(b) == 600, 60, "every row on B", interval=0.3)
    for node in (a, b):
        assert query(node, "select count(distinct seq) as n from ping")[0]["n"] == 600
    assert content(a) == content(b)
    assert query(a, "select count(*) as n from tsd_info", "almgm")[0]["n"] == 150
    assert query(b, "select count(*) as n from tsd_1", "almgm")[0]["n"] == 150
    assert os.listdir(b.home / "data" / "error") == []
