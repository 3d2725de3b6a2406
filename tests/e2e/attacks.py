"""Hostile clients for the fault tests and bench/attacks.py, with blocking sockets (the node is another process).

Each attack is what the security audit reproduced (H4, M3, L1): a huge peer frame, a huge POST,
thousands of distinct User-Agents, hundreds of connections that never finish a request.  `memory`
reads the node's resident and peak memory from /proc.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import time

from tests.e2e.harness import NodeProcess

MB = 1024 * 1024


def memory(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB: what it holds now, and the most it ever held."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def script(tcp_port: int, rest_port: int) -> str:
    return (f"run tcp server where external_ip = 127.0.0.1 and external_port = {tcp_port} and bind = true\n"
            f"run rest server where internal_ip = 127.0.0.1 and internal_port = {rest_port}\n")


class AttackedNode(NodeProcess):
    """A node with TCP and REST on free ports, optionally under a file descriptor limit (prlimit)."""

    def __init__(self, base, name: str, nofile: int | None = None, env: dict | None = None):
        self.tcp_port = self.rest_port = 0  # the kernel picks; read from the node's log once it is ready
        self.nofile = nofile
        NodeProcess.__init__(self, base, name, script(0, 0), env=env)

    def argv(self) -> list[str]:
        argv = NodeProcess.argv(self)
        if self.nofile:
            return ["prlimit", f"--nofile={self.nofile}:{self.nofile}", "--", *argv]
        return argv

    def wait_ready(self, timeout: float = 15.0) -> None:
        NodeProcess.wait_ready(self, timeout)
        self.tcp_port, self.rest_port = self.listening("TCP"), self.listening("REST")
        deadline = time.monotonic() + timeout
        while rest_get(self.rest_port, "get status", 2.0)[0] != 200:  # the script's servers are up
            if time.monotonic() > deadline:
                raise AssertionError(f"REST of {self.name} never answered:\n{self.log()[-2000:]}")
            time.sleep(0.05)

    def memory(self) -> tuple[float, float]:
        return memory(self.proc.pid)


# -- REST -------------------------------------------------------------------------------------------


def rest_get(port: int, command: str, timeout: float = 10.0, agent: str = "AnyLog/1.23") -> tuple[int, bytes]:
    """(status, body) of one GET on a fresh connection; (0, reason) when the node does not answer."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", "/", headers={"command": command, "User-Agent": agent})
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, body
    except OSError as e:
        return 0, str(e).encode()


def big_post(port: int, size: int, timeout: float = 60.0) -> int:
    """POST a body of `size` bytes of commands (one absurdly long line); the status."""
    body = b"get version " + b"A" * (size - 12)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", "/", body=body, headers={"User-Agent": "AnyLog/1.23", "command": "get status"})
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def many_agents(port: int, n: int, size: int = 8000) -> None:
    """`n` GETs, each with its own `size`-byte User-Agent, on one keep-alive connection."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for i in range(n):
        c.request("GET", "/", headers={"command": "get status", "User-Agent": f"a{i}" + "x" * size})
        c.getresponse().read()
    c.close()


# -- peers ------------------------------------------------------------------------------------------


def _frame(header: dict, body: bytes = b"") -> bytes:
    if body:
        header = {**header, "size": len(body)}
    return json.dumps({"v": 1, **header}).encode() + b"\n" + body


def peer(port: int, timeout: float = 10.0) -> tuple[socket.socket, object]:
    """A keyless peer connection past the hello: (socket, its reader)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(_frame({"kind": "hello", "id": 0, "name": "attacker", "nonce": os.urandom(16).hex(),
                      "role": "client"}))
    reader = s.makefile("rb")
    json.loads(reader.readline())  # the node's hello
    return s, reader


def _reply_to(reader, ident: int) -> dict:
    """The node's reply header to request `ident` (with `body`), skipping other frames."""
    while True:
        header = json.loads(reader.readline())
        body = reader.read(header["size"]) if header.get("size") else b""
        if header.get("re") == ident:
            return {**header, "body": body}


def peer_command(port: int, text: str, timeout: float = 10.0) -> dict:
    """Run a command as a keyless peer; the reply header (with `body`)."""
    s, reader = peer(port, timeout)
    try:
        s.sendall(_frame({"kind": "cmd", "id": 1, "cmd": text}))
        return _reply_to(reader, 1)
    finally:
        s.close()


def huge_frame(port: int, header: dict, size: int, chunk: int = MB) -> int:
    """Send `header` announcing a `size`-byte body, then the body; returns the bytes the node took
    before it closed the connection (all of them when it read the body to the end)."""
    s, _ = peer(port)
    sent = 0
    block = b"\x00" * chunk
    try:
        s.sendall(_frame({**header, "size": size}))
        while sent < size:
            n = min(chunk, size - sent)
            s.sendall(block[:n])
            sent += n
    except OSError:
        pass
    finally:
        s.close()
    return sent


def huge_file(port: int, size: int, good: bool = False, name: str = "attack.bin") -> dict:
    """Send a `size`-byte file to the node's prep dir, a fixed destination nothing watches (its md5
    right, or wrong); the node's answer."""
    s, reader = peer(port, timeout=120)
    block = os.urandom(MB)
    md5 = hashlib.md5()
    for done in range(0, size, MB):
        md5.update(block[:min(MB, size - done)])
    digest = md5.hexdigest() if good else "0" * 32
    s.sendall(_frame({"kind": "file", "id": 7, "name": name, "dest": "prep", "md5": digest, "size": size}))
    for done in range(0, size, MB):
        s.sendall(block[:min(MB, size - done)])
    try:
        return _reply_to(reader, 7)
    finally:
        s.close()


# -- connections ------------------------------------------------------------------------------------


def idle_flood(port: int, n: int, first: bytes = b"") -> list[socket.socket]:
    """Open `n` connections that send `first` (half a request, or nothing) and then wait forever."""
    socks = []
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if first:
                s.sendall(first)
            socks.append(s)
        except OSError:
            pass
    return socks


def still_open(socks: list[socket.socket]) -> int:
    """How many of `socks` the node has not closed (what it sent meanwhile, a hello, is read and dropped)."""
    alive = 0
    for s in socks:
        s.setblocking(False)
        try:
            while s.recv(65536):
                pass
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    return alive


HALF_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
