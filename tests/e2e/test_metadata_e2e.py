"""A master and three nodes as `twistd -n anylog` processes, synchronizing the metadata over TCP."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.harness import free_port, wait_for

PERIOD = 1  # seconds between syncs


def tcp_script(port: int) -> str:
    return f"run tcp server where external_ip = 127.0.0.1 and external_port = {port} and bind = true\n"


def sync_script(port: int, master_port: int) -> str:
    return tcp_script(port) + (f"run blockchain sync where source = master and time = {PERIOD} seconds and "
                               f"dest = file and connection = 127.0.0.1:{master_port}\n")


@pytest.fixture
def network(nodes):
    master_port = free_port()
    master = nodes("master", tcp_script(master_port))
    members = [nodes(f"node{i}", sync_script(free_port(), master_port)) for i in range(1, 4)]
    return master, master_port, members


def within(seconds: float, predicate, what: str):
    return wait_for(predicate, seconds, what, interval=0.1)


def test_a_policy_inserted_on_one_node_is_seen_by_all_within_two_periods(network):
    master, master_port, (n1, n2, n3) = network
    reply = n1.command('blockchain insert where policy = {"operator": {"name": "op1", "ip": "127.0.0.1", '
                       f'"port": 9999, "cluster": "c1"}}}} and master = 127.0.0.1:{master_port}')
    assert "added (local and master)" in reply, reply
    inserted = time.monotonic()
    for n in (n2, n3):
        within(2 * PERIOD + 2, lambda: n.command("blockchain get operator bring [operator][name]") == "op1",
               f"{n.name} to see the policy")
    assert time.monotonic() - inserted < 2 * PERIOD + 2
    version = master.command("get metadata version")
    assert len(version) == 32
    info = json.loads(n2.command("get synchronizer where format = json"))
    assert info["Version"] == version and info["Policies"] == 1 and info["Status"] == "Synchronized"
    member = n3.command("blockchain get operator bring [operator][member]")
    assert member == master.command("blockchain get operator bring [operator][member]")
    assert "Blockchain Sync" in n1.command("get processes")


def test_master_down_then_back(network):
    master, master_port, (n1, n2, _) = network
    n1.command('blockchain insert where policy = {"config": {"id": "early"}} and master = '
               f"127.0.0.1:{master_port}")
    within(2 * PERIOD + 2, lambda: n2.command("blockchain get config bring [config][id]") == "early",
           "the first policy to reach node2")
    master.stop()
    # The nodes go on with their local copy and report the failure.
    within(2 * PERIOD + 3, lambda: "Failed to connect" in n2.command("get synchronizer"), "a reported failure")
    assert n2.command("blockchain get config bring [config][id]") == "early"
    reply = n2.command('blockchain insert where policy = {"config": {"id": "offline"}} and master = '
                       f"127.0.0.1:{master_port}")
    assert "will be pushed again" in reply, reply
    assert n2.command("blockchain get config where id = offline bring [config][ledger]") == "local"
    # The master comes back: the local policy reaches it, then every node, as global.
    master.log_path.unlink()  # the harness waits for "ready" in the log: start from an empty one
    master.start()
    within(4 * PERIOD + 5, lambda: "offline" in master.command("blockchain get config bring [config][id] "
                                                                "separator = ,"), "the local policy to reach the master")
    within(2 * PERIOD + 3, lambda: n2.command("blockchain get config where id = offline bring [config][ledger]")
           == "global", "the policy to come back global")
    within(2 * PERIOD + 3, lambda: n1.command("blockchain get config bring.count") == "2", "node1 to see both")
    assert "Traceback" not in n2.log()
