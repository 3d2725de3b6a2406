"""Peer messaging figures, each next to its baseline measured in the same run.

    .venv/bin/python bench/peer.py [--runs 5] [--rt 3000] [--pipelined 20000] [--mb 100]

Three server processes are started (a node with `run tcp server`, a bare Twisted LineReceiver
echo server, a raw socket sink); the client side runs in this process.  Figures:

- sequential command round trips on one connection vs LineReceiver ping-pong (target >= 0.7);
- pipelined commands per second (target >= 20,000);
- a 100 MB file sent to the node's watch dir (md5 computed by the sender, size + md5 checked,
  fsync and rename by the receiver) vs a raw blocking socket send of the same bytes (target
  >= 200 MB/s).

Medians of --runs runs; the round-trip ratio is the median of each run's figure over the baseline
measured right before it (the machine is shared: pairs cancel its drift). Run it a few times.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


# --- servers (run in child processes) --------------------------------------------------------


def serve_node(home: str) -> None:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    from anylog_tw.node import Node

    node = Node(home, name="bench-server", reactor=reactor, environ={})

    async def start():
        node.startService()
        reply = await node.execute("run tcp server where external_ip = 127.0.0.1 and external_port = 0 and bind = true")
        assert reply.ok, reply.text
        print(node.process("TCP").external_address[1], flush=True)

    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(start()))
    reactor.run()


def serve_proto(home: str) -> None:
    """The node's peer protocol with commands answered without running them: the protocol's own cost."""
    from anylog_tw.net import peer, wire

    def answer(self, header, body):
        self._write(wire.encode_text_reply(header["id"], header["cmd"][5:].encode()))

    peer.PeerProtocol._on_cmd = answer
    serve_node(home)


def serve_line() -> None:
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint
    from twisted.internet.protocol import Factory
    from twisted.protocols.basic import LineReceiver

    class Echo(LineReceiver):
        delimiter = b"\n"

        def connectionMade(self):
            self.transport.setTcpNoDelay(True)

        def lineReceived(self, line):
            self.sendLine(line)

    def listening(port):
        print(port.getHost().port, flush=True)

    TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Factory.forProtocol(Echo)).addCallback(listening)
    reactor.run()


def serve_sink() -> None:
    """Reads connections to the end, then answers with the byte count (the raw-socket ceiling)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    print(s.getsockname()[1], flush=True)
    buf = bytearray(1024 * 1024)
    while True:
        c, _ = s.accept()
        total = 0
        while True:
            n = c.recv_into(buf)
            if not n:
                break
            total += n
        c.sendall(str(total).encode())
        c.close()


def spawn(mode: str, *args: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", mode, *args], stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, port


# --- client measurements -------------------------------------------------------------------------


def line_pingpong(reactor, port: int, n: int):
    from twisted.internet.defer import Deferred
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.protocols.basic import LineReceiver

    class Ping(LineReceiver):
        delimiter = b"\n"

        def __init__(self):
            self.left = n
            self.done = Deferred()
            self.msg = b"x" * 100

        def connectionMade(self):
            self.transport.setTcpNoDelay(True)

        def go(self):
            self.start = time.perf_counter()
            self.sendLine(self.msg)

        def lineReceived(self, line):
            self.left -= 1
            if self.left:
                self.sendLine(self.msg)
            else:
                self.done.callback(time.perf_counter() - self.start)
                self.transport.loseConnection()

    async def run():
        proto = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), Ping())
        proto.go()
        elapsed = await proto.done
        return n / elapsed

    return Deferred.fromCoroutine(run())


async def node_sequential(peers, address: str, n: int) -> float:
    await peers.command(address, "echo warm")
    start = time.perf_counter()
    for _ in range(n):
        reply = await peers.command(address, "echo " + "x" * 95)
    assert reply.ok
    return n / (time.perf_counter() - start)


async def node_pipelined(peers, address: str, n: int) -> float:
    from twisted.internet.defer import gatherResults

    proto = await peers.connection(address)
    start = time.perf_counter()
    replies = await gatherResults([proto.request("echo x") for _ in range(n)])
    elapsed = time.perf_counter() - start
    assert all(r.ok for r in replies)
    return n / elapsed


async def node_file(peers, address: str, path: str, watch: str, size: int, with_md5: str | None) -> float:
    name = f"bench-{time.monotonic_ns()}.bin"
    start = time.perf_counter()
    await peers.send_file(address, path, name=name, md5=with_md5, timeout=600)
    elapsed = time.perf_counter() - start
    os.unlink(os.path.join(watch, name))
    return size / elapsed / 1e6


def raw_socket_send(port: int, path: str, size: int) -> float:
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s, open(path, "rb") as f:
        while True:
            block = f.read(1024 * 1024)
            if not block:
                break
            s.sendall(block)
        s.shutdown(socket.SHUT_WR)
        got = int(s.recv(64))
    assert got == size
    return size / (time.perf_counter() - start) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", nargs="+")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rt", type=int, default=3000)
    ap.add_argument("--pipelined", type=int, default=20000)
    ap.add_argument("--mb", type=int, default=100)
    args = ap.parse_args()
    if args.serve:
        mode = args.serve[0]
        {"node": lambda: serve_node(args.serve[1]), "proto": lambda: serve_proto(args.serve[1]),
         "line": serve_line, "sink": serve_sink}[mode]()
        return

    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    from anylog_tw.net.peers import Peers
    from anylog_tw.node import Node

    work = tempfile.mkdtemp(prefix="bench-peer-")
    server_home = os.path.join(work, "server")
    procs = []
    results: dict[str, list[float]] = {}

    async def bench():
        node_proc, node_port = spawn("node", server_home)
        line_proc, line_port = spawn("line")
        sink_proc, sink_port = spawn("sink")
        proto_proc, proto_port = spawn("proto", os.path.join(work, "proto"))
        procs.extend([node_proc, line_proc, sink_proc, proto_proc])
        client = Node(os.path.join(work, "client"), name="bench-client", reactor=reactor, environ={})
        peers = client.component(Peers)
        address = f"127.0.0.1:{node_port}"
        path = os.path.join(work, "payload.bin")
        size = args.mb * 1024 * 1024
        with open(path, "wb") as f:
            for _ in range(args.mb):
                f.write(os.urandom(1024 * 1024))
        digest = hashlib.md5(open(path, "rb").read()).hexdigest()
        watch = os.path.join(server_home, "data", "watch")
        for _ in range(args.runs):
            results.setdefault("line", []).append(await line_pingpong(reactor, line_port, args.rt))
            results.setdefault("seq", []).append(await node_sequential(peers, address, args.rt))
            results.setdefault("proto", []).append(await node_sequential(peers, f"127.0.0.1:{proto_port}", args.rt))
            results.setdefault("pipe", []).append(await node_pipelined(peers, address, args.pipelined))
            results.setdefault("raw", []).append(raw_socket_send(sink_port, path, size))
            results.setdefault("file", []).append(await node_file(peers, address, path, watch, size, None))
            results.setdefault("file_md5", []).append(await node_file(peers, address, path, watch, size, digest))
        await peers.close()

    def finish(result):
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)
        if reactor.running:
            reactor.stop()
        return result

    d = None

    def go():
        nonlocal d
        d = Deferred.fromCoroutine(bench())
        d.addBoth(finish)
        d.addErrback(lambda f: (f.printTraceback(), None))

    reactor.callWhenRunning(go)
    reactor.run()
    if "line" not in results or len(results.get("file_md5", [])) < args.runs:
        sys.exit("bench failed")

    def med(key):
        return statistics.median(results[key])

    print(f"peer messaging bench: {args.runs} runs, medians (all runs in brackets)")
    def paired(key):  # each run's figure over the baseline measured right next to it
        return statistics.median(a / b for a, b in zip(results[key], results["line"]))

    print(f"  sequential round trips, 100 B: {med('seq'):9,.0f} rt/s   baseline LineReceiver ping-pong "
          f"{med('line'):9,.0f} rt/s   ratio {paired('seq'):.2f} (median of paired runs; target >= 0.70)")
    print(f"      runs: node {[round(x) for x in results['seq']]} line {[round(x) for x in results['line']]}")
    print(f"  same, protocol only (peer answers without running the command): {med('proto'):9,.0f} rt/s   "
          f"ratio {paired('proto'):.2f}   runs {[round(x) for x in results['proto']]}")
    print(f"  pipelined commands ({args.pipelined}):  {med('pipe'):9,.0f} cmd/s  (target >= 20,000)  "
          f"runs {[round(x) for x in results['pipe']]}")
    print(f"  file {args.mb} MB, md5 by sender:    {med('file'):7,.0f} MB/s   with md5 given: "
          f"{med('file_md5'):7,.0f} MB/s   baseline raw socket {med('raw'):7,.0f} MB/s   "
          f"ratio {med('file') / med('raw'):.2f} (target >= 200 MB/s)")
    print(f"      runs: file {[round(x) for x in results['file']]} md5 given {[round(x) for x in results['file_md5']]}"
          f" raw {[round(x) for x in results['raw']]}")


if __name__ == "__main__":
    main()
