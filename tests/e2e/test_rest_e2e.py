"""REST end to end: twistd node processes, a destination through a peer, PUT files, buffers written at stop."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from tests.e2e.harness import free_port, wait_for


def http(port: int, method: str = "GET", headers: dict | None = None, body: bytes | None = None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_rest_node_processes(nodes):
    """A REST call with a destination reaches the peer; PUT writes files; buffered rows are written at stop."""
    tcp_a, tcp_b, rest_a = free_port(), free_port(), free_port()
    peer = nodes("beta", f"run tcp server where external_ip = 127.0.0.1 and external_port = {tcp_b} and bind = true\n")
    node = nodes("alpha", f"run tcp server where external_ip = 127.0.0.1 and external_port = {tcp_a} and bind = true\n"
                          f"run rest server where internal_ip = 127.0.0.1 and internal_port = {rest_a}\n"
                          f"set buffer threshold where time = 1 hour and volume = 1MB\n")
    assert http(rest_a, headers={"command": "get status"}) == (200, f"alpha@127.0.0.1:{tcp_a} running".encode())
    code, body = http(rest_a, headers={"command": "get status", "destination": f"127.0.0.1:{tcp_b}"})
    assert (code, body) == (200, f"beta@127.0.0.1:{tcp_b} running".encode())

    code, body = http(rest_a, "PUT", {"dbms": "lsl_demo", "table": "ping"}, b'{"v": 1}\r\n{"v": 2}\r\n')
    assert code == 200, body
    watch = node.home / "data" / "watch"
    assert os.listdir(watch) == [f"lsl_demo.ping.0.{json.loads(body)['AnyLog.hash']}.0.json"]

    code, body = http(rest_a, "PUT", {"dbms": "lsl_demo", "table": "stream", "mode": "streaming"}, b'[{"v": 3}]')
    assert code == 200
    assert "Running" in node.command("get processes") and len(os.listdir(watch)) == 1
    assert "shutting down" in node.command("exit node")
    assert node.wait_exit() == 0
    wait_for(lambda: len(os.listdir(watch)) == 2, 5, "the buffered row to be written at stop")
    [streamed] = [n for n in os.listdir(watch) if n.startswith("lsl_demo.stream.")]
    assert (watch / streamed).read_bytes() == b'{"v":3}\n'
    peer.stop()
