"""A master, a publisher and two operators in two clusters, as `twistd -n anylog` processes.

The policies are inserted once (through the publisher, pushed to the master) and reach every node
through its synchronizer.  Files are dropped in the publisher's watch dir; the operators' databases
are asked over their consoles.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from anylog_tw.base.filename import file_hash
from anylog_tw.ingest import routing
from tests.e2e.harness import free_port, wait_for

PERIOD = 1  # seconds between metadata syncs


def tcp(port: int) -> str:
    return f"run tcp server where external_ip = 127.0.0.1 and external_port = {port} and bind = true\n"


def sync(master_port: int) -> str:
    return (f"run blockchain sync where source = master and time = {PERIOD} seconds and dest = file and "
            f"connection = 127.0.0.1:{master_port}\n")


def operator_script(port: int, master_port: int) -> str:
    return (tcp(port) + sync(master_port) + "connect dbms almgm where type = sqlite\n"
            "connect dbms lsl where type = sqlite\n")


def rows_of(i: int, n: int = 4) -> bytes:
    return b"".join(json.dumps({"seq": i * 100 + k, "value": k}).encode() + b"\n" for k in range(n))


def drop(home: Path, name: str, data: bytes) -> None:
    watch = home / "data" / "watch"
    tmp = watch / ("." + name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, watch / name)


def count(node, table: str) -> int:
    text = node.command(f'sql lsl "select count(*) as n from {table}"')
    try:
        return json.loads(text)["Query"][0]["n"]
    except (ValueError, KeyError, IndexError):
        return -1  # no table yet


def files_in(path: Path) -> list[str]:
    return sorted(f for f in os.listdir(path) if not f.startswith(".")) if path.is_dir() else []


@pytest.fixture
def network(nodes):
    master_port = free_port()
    master = nodes("master", tcp(master_port))
    ports = {"op1": free_port(), "op2": free_port()}
    ops = {name: nodes(name, operator_script(port, master_port)) for name, port in ports.items()}
    pub = nodes("pub", tcp(free_port()) + sync(master_port))
    policies = [
        {"cluster": {"id": "c1", "name": "c1", "company": "t", "table": [{"dbms": "lsl", "name": "ping"},
                                                                           {"dbms": "lsl", "name": "both"}]}},
        {"cluster": {"id": "c2", "name": "c2", "company": "t", "table": [{"dbms": "lsl", "name": "both"}]}},
        {"operator": {"id": "op1", "name": "op1", "company": "t", "ip": "127.0.0.1", "port": ports["op1"],
                      "cluster": "c1", "member": 1}},
        {"operator": {"id": "op2", "name": "op2", "company": "t", "ip": "127.0.0.1", "port": ports["op2"],
                      "cluster": "c2", "member": 2}},
    ]
    for p in policies:
        reply = pub.command(f"blockchain insert where policy = {json.dumps(p)} and master = 127.0.0.1:{master_port}")
        assert "added" in reply, reply
    for node in list(ops.values()) + [pub]:
        wait_for(lambda: node.command("blockchain get operator bring.count") == "2", 2 * PERIOD + 8,
                 f"{node.name} to see the operators", interval=0.1)
    for name, node in ops.items():
        reply = node.command(f"run operator where policy = {name} and rescan = 1 second")
        assert "Operator started" in reply, reply
        # A restart runs the script again: let it start the operator too.
        node.script_path.write_text(node.script_path.read_text() + f"run operator where policy = {name} and "
                                                                   f"rescan = 1 second\n")
    reply = pub.command("run publisher where retry = 1 second and rescan = 1 second")
    assert "Publisher started" in reply, reply
    return master, pub, ops


def test_a_table_goes_to_its_cluster_and_a_shared_table_is_split(network):
    _, pub, ops = network
    expected = {"op1": 0, "op2": 0}
    for i in range(10):
        drop(pub.home, f"lsl.ping.p{i}.0.0.json", rows_of(i))
    for i in range(20):
        data = rows_of(i, 2)
        drop(pub.home, f"lsl.both.b{i}.0.0.json", data)
        cluster = routing.rank(file_hash("lsl", "both", [data]), ["c1", "c2"])[0]
        expected["op1" if cluster == "c1" else "op2"] += 2
    wait_for(lambda: count(ops["op1"], "ping") == 40, 20, "lsl.ping in op1", interval=0.2)
    wait_for(lambda: (count(ops["op1"], "both"), count(ops["op2"], "both")) == (expected["op1"], expected["op2"]),
             20, "lsl.both split between op1 and op2", interval=0.2)
    assert expected["op1"] > 0 and expected["op2"] > 0
    assert count(ops["op2"], "ping") == -1  # op2 never saw a ping file: it has no such table
    wait_for(lambda: files_in(pub.home / "data" / "watch") == [], 10, "the publisher's watch dir to empty")
    assert len(files_in(pub.home / "data" / "bkup")) == 30
    state = json.loads(pub.command("get publisher where format = json"))
    assert state["Summary"]["Files sent"] == 30 and state["Summary"]["Failures"] == 0
    sent = {o["Operator"]: o["Files"] for o in state["Operators"]}
    assert sum(sent.values()) == 30 and len(sent) == 2


def test_an_operator_stopped_while_files_keep_coming_gets_each_file_once(network):
    _, pub, ops = network
    op1 = ops["op1"]
    for i in range(5):
        drop(pub.home, f"lsl.ping.a{i}.0.0.json", rows_of(i))
    wait_for(lambda: count(op1, "ping") == 20, 20, "the first files in op1", interval=0.2)
    op1.stop()
    for i in range(5, 25):
        drop(pub.home, f"lsl.ping.b{i}.0.0.json", rows_of(i))
    wait_for(lambda: json.loads(pub.command("get publisher summary where format = json"))["Waiting for an operator"]
             == 20, 15, "twenty files waiting for op1", interval=0.2)
    pending = json.loads(pub.command("get publisher pending where format = json"))
    assert pending[0]["Files"] == 20 and "every operator of cluster c1 is down" in pending[0]["Waiting because"]
    for i in range(25, 30):  # still coming
        drop(pub.home, f"lsl.ping.c{i}.0.0.json", rows_of(i))
    op1.log_path.unlink()  # the harness waits for "ready" in the log: start from an empty one
    op1.start()
    wait_for(lambda: count(op1, "ping") == 120, 40, "every file in op1", interval=0.3)
    distinct = json.loads(op1.command('sql lsl "select count(distinct seq) as n from ping"'))["Query"][0]["n"]
    assert distinct == 120  # each file's rows exactly once
    wait_for(lambda: files_in(pub.home / "data" / "watch") == [], 10, "the publisher's watch dir to empty")
    assert len(files_in(pub.home / "data" / "bkup")) == 30
    tsd = json.loads(op1.command('sql almgm "select count(*) as n from tsd_info"'))["Query"][0]["n"]
    assert tsd == 30
    assert files_in(op1.home / "data" / "error") == []
    assert "Traceback" not in pub.log() and "Traceback" not in op1.log()
