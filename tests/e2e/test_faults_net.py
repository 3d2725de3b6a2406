"""Fault injection against a real `twistd -n anylog` process: what the audit did to the node (H4, M3, L1).

Each test attacks a node process and checks that it stays up and answers, and that its memory stays
under a bound: the peak (VmHWM, the most it ever held) under 250 MB, as for a normal 200 MB file,
and nothing pinned after the attack.  `exit` of every process mid-work is in
tests/integration/test_exit_midwork.py; bench/attacks.py prints the peaks next to a baseline.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e import attacks as A

PEAK = 250.0  # MB: the goal for every attack


@pytest.fixture
def attacked(tmp_path):
    started = []

    def start(name: str = "victim", nofile: int | None = None) -> A.AttackedNode:
        node = A.AttackedNode(tmp_path, name, nofile)
        started.append(node)
        return node.start()

    yield start
    for node in started:
        node.stop()


def alive(node: A.AttackedNode) -> None:
    status, body = A.rest_get(node.rest_port, "get status", 10.0)
    assert status == 200 and b"running" in body, (status, body, node.log()[-2000:])


def test_a_300_mb_peer_frame_is_never_held_in_memory(attacked):
    """A keyless peer announces 300 MB bodies: an event (refused at the header), a reply nobody asked
    for (read and dropped) and a file (streamed to disk, refused for its md5, removed)."""
    node = attacked()
    _, before = node.memory()
    assert A.huge_frame(node.tcp_port, {"kind": "event", "id": 0, "event": "x"}, 300 * A.MB) < 300 * A.MB
    assert A.huge_frame(node.tcp_port, {"kind": "reply", "id": 0, "re": 9, "ok": True}, 300 * A.MB) == 300 * A.MB
    answer = A.huge_file(node.tcp_port, 300 * A.MB)
    assert not answer["ok"] and b"md5 mismatch" in answer["body"]
    alive(node)
    rss, peak = node.memory()
    assert peak < before + 64 and peak < PEAK, (before, peak)
    assert list(node.home.rglob("*.part")) == []  # the refused file's temp copy is gone
    log = node.log()
    assert "event frame: a body of 314572800 bytes is over the 65536 byte limit" in log
    assert "no request waits for it" in log


def test_400_idle_connections_under_a_256_file_limit_do_not_lock_users_out(attacked):
    """Half-sent requests on REST and silent sockets on TCP, 800 in all, against 256 descriptors: REST
    and the peer port still answer, the longest-waiting connections were dropped, no EMFILE."""
    node = attacked(nofile=256)
    rest = A.idle_flood(node.rest_port, 400, A.HALF_REQUEST)
    tcp = A.idle_flood(node.tcp_port, 400)
    try:
        alive(node)
        reply = A.peer_command(node.tcp_port, "get status")
        assert reply["ok"] and b"running" in reply["body"]
        status, body = A.rest_get(node.rest_port, "get connections where format = json")
        limits = json.loads(body)["limits"]
        gates = {g["Listener"]: g for g in limits["listeners"]}
        assert gates["REST"]["Dropped"] > 0 and gates["TCP"]["Dropped"] > 0
        fds = limits["file_descriptors"]
        assert fds["soft_limit"] == 256 and fds["open_fds"] <= 256 - fds["reserve"] + 8
        assert A.still_open(rest) < 256
        assert "EMFILE" not in node.log()
    finally:
        for s in rest + tcp:
            s.close()


def test_a_40_mb_post_pins_nothing(attacked):
    """Five 40 MB POSTs (one command line each): refused with a short error, memory given back."""
    node = attacked()
    rss_before, _ = node.memory()
    for _ in range(5):
        assert A.big_post(node.rest_port, 40 * A.MB) == 400
    alive(node)
    rss, peak = node.memory()
    assert peak < PEAK and rss < rss_before + 30, (rss_before, rss, peak)
    status, body = A.rest_get(node.rest_port, "get error log where format = json")
    assert status == 200 and len(body) < 100_000


def test_thousands_of_user_agents_keep_rest_calls_small(attacked):
    node = attacked()
    rss_before, _ = node.memory()
    A.many_agents(node.rest_port, 3000)
    status, body = A.rest_get(node.rest_port, "get rest calls where format = json")
    assert status == 200 and len(body) < 50_000
    rows = json.loads(body)
    assert sum(int(r["Processed"]) for r in rows) >= 3000
    rss, _ = node.memory()
    assert rss < rss_before + 20, (rss_before, rss)
