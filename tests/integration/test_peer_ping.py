"""The system scheduler's peer ping brings a peer that came back out of "not responding"."""

from __future__ import annotations

from twisted.internet import reactor

from anylog_tw.net.peers import Peers
from anylog_tw.node import Node
from anylog_tw.services import housekeeping
from tests.e2e.harness import free_port
from tests.helpers import poll


async def test_a_peer_back_up_is_marked_active_by_the_ping(tmp_path):
    a = Node(str(tmp_path / "a"), name="a", reactor=reactor)
    b = Node(str(tmp_path / "b"), name="b", reactor=reactor)
    a.startService()
    b.startService()
    port = free_port()
    address = f"127.0.0.1:{port}"
    try:
        start_b = f"run tcp server where external_ip = 127.0.0.1 and external_port = {port} and bind = true"
        assert (await b.execute(start_b)).ok
        assert f"Listening on: {address}, Threads Pool" in b.process("TCP").details()  # one address when equal
        assert (await a.execute(f"run client {address} get status")).ok
        peers = a.component(Peers)
        assert peers.states[address].status == "active"
        assert (await b.execute("exit tcp")).ok
        await b.component(Peers).close()
        await poll(lambda: b.process("TCP") is None, what="B's TCP server to stop")

        async def refused():
            reply = await a.execute(f"run client {address} get status")
            return not reply.ok and peers.states[address].status == "not responding"

        for _ in range(3):  # the first try may only find the old connection closed
            if await refused():
                break
        assert peers.states[address].status == "not responding"
        assert (await b.execute(start_b)).ok
        assert await housekeeping.ping_peers(a) == 1
        assert peers.states[address].status == "active"
    finally:
        await a.stopService()
        await b.stopService()
