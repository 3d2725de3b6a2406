"""Two `twistd -n anylog` processes talking over the peer protocol: commands, and a 100 MB file."""

from __future__ import annotations

import hashlib
import os
import socket

from tests.e2e.harness import free_port, wait_for


def tcp_script(port: int, extra: str = "") -> str:
    return f"{extra}run tcp server where external_ip = 127.0.0.1 and external_port = {port} and bind = true\n"


def test_two_processes_exchange_commands_and_a_100mb_file(nodes, tmp_path):
    pa, pb = free_port(), free_port()
    a = nodes("alpha", tcp_script(pa))
    b = nodes("beta", tcp_script(pb))
    assert a.command("get status") == f"alpha@127.0.0.1:{pa} running"
    assert a.command(f"run client 127.0.0.1:{pb} get status") == f"beta@127.0.0.1:{pb} running"
    assert b.command(f"run client (127.0.0.1 {pa}) get node name") == "alpha"
    out = a.command(f"run client (127.0.0.1:{pb}, 127.0.0.1:{pa}) get node name")
    assert out == f"[From Node 127.0.0.1:{pb}]\nbeta\n\n[From Node 127.0.0.1:{pa}]\nalpha"
    a.command(f"who = run client 127.0.0.1:{pb} get node name")
    assert a.command("echo !who") == "beta"

    src = a.home / "data" / "prep" / "big.bin"  # inside the home: the console holds admin, not owner
    h = hashlib.md5()
    with open(src, "wb") as f:
        for _ in range(100):
            block = os.urandom(1024 * 1024)
            h.update(block)
            f.write(block)
    out = a.command(f"file send {src} 127.0.0.1:{pb}")
    assert out == f"received big.bin ({100 * 1024 * 1024} bytes)", out
    landed = b.home / "data" / "watch" / "big.bin"
    got = hashlib.md5()
    with open(landed, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            got.update(block)
    assert got.hexdigest() == h.hexdigest()
    assert list((b.home / "data" / "tmp").iterdir()) == []
    conns = a.command("get connections")
    assert f"127.0.0.1:{pb}" in conns and "active" in conns


def test_unreachable_peer_and_garbage_on_the_port(nodes):
    """A dead address fails fast; random bytes at the port are refused and the node serves on."""
    pa, dead = free_port(), free_port()
    a = nodes("alpha", tcp_script(pa))
    out = a.command(f"run client 127.0.0.1:{dead} get status")
    assert out.startswith("Error:") and "not reachable" in out
    with socket.create_connection(("127.0.0.1", pa), timeout=5) as s:
        s.sendall(os.urandom(4096) + b"\n")
        s.settimeout(5)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert b'"kind":"error"' in data  # answered with an error frame, then closed
    assert a.command(f"run client 127.0.0.1:{pa} get node name") == "alpha"
    wait_for(lambda: "refusing peer" in a.log(), 5, "the refusal in the log")
