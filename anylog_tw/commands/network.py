"""Peer messaging commands: `run tcp server`, `exit tcp`, `get connections`, `run client`,
`set network key`."""

from __future__ import annotations

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from anylog_tw.base.errors import AnyLogError, OptionError, PeerError, ServiceError
from anylog_tw.base.grammar import EQ, GROUP, STRING, WORD
from anylog_tw.base.registry import Option, command, token_text
from anylog_tw.base.reply import Reply, render_table
from anylog_tw.commands._limits import limit_options, read_limits
from anylog_tw.commands.files import path_check
from anylog_tw.commands.query import network_sql
from anylog_tw.front.tcpserver import TCPServer, is_loopback, listen_plan
from anylog_tw.metadata.layer import metadata_destination  # metadata forms of spec 6.2 (issue 5)
from anylog_tw.net import wire
from anylog_tw.net.auth import TLSConfig
from anylog_tw.net.budget import DEFAULT_BUDGET
from anylog_tw.net.destination import Destination, parse_destination
from anylog_tw.net.endpoints import listen_guarded
from anylog_tw.net.limits import ConnectionGuard, ConnectionLimits
from anylog_tw.net.peers import Peers
from anylog_tw.net.transfer import DESTINATIONS

log = Logger()

# Peers keep one connection per pair of nodes: a few per address is plenty; a hello takes milliseconds.
TCP_LIMITS = ConnectionLimits(max_connections=1024, max_per_address=64, idle_timeout=10.0)


# --- run tcp server / exit tcp ---------------------------------------------------------------


@command("run tcp server",
         usage="run tcp server where external_ip = IP and external_port = P [and internal_ip = IP and "
               "internal_port = P and bind = true|false and threads = N and ssl = true and cert = F and key = F "
               "and ca = F and max connections = 1024 and max per address = 64 and idle timeout = 10 and "
               "max reply = 64MB and frame budget = 256MB] | run tcp server [ip] [port] [local_ip] [local_port] "
               "[threads]",
         text="Start the peer messaging server. The external IP and port are the node's identity for peers "
              "(get status shows name@ip:port). With bind = true it listens on the internal IP when both IPs are "
              "given, else on the one given; with bind = false (the default) on every interface. It listens on the "
              "internal port when given, else the external one (0 picks a free port). With ssl = true, peers must "
              "present a certificate signed by the CA, and the node presents its own when it dials out. "
              "Limits: at most 'max connections' peers at once and 'max per address' from one IP; a peer must "
              "finish its hello within 'idle timeout' seconds; a reply body over 'max reply' is refused (the "
              "request fails), and all peers together may make the node hold at most 'frame budget' bytes. "
              "On an interface other than loopback (bind = false listens on all of them) peers must authenticate: "
              "the server refuses to start without a network key (set network key = ..., set network key from "
              "file <path>, --network-key-file or $ANYLOG_NETWORK_KEY) or ssl = true, unless 'auth = none' says "
              "the network is open on purpose (logged as a warning, shown in get processes and test node). "
              "Peers' commands run with 'peer grant' (write by default: queries, data, metadata, HA); admin needs "
              "a network key or ssl = true, as it lets every node holding them run anything here.",
         examples=("run tcp server where external_ip = !external_ip and external_port = 32048",
                   "run tcp server !external_ip 32048 !ip 32048",
                   "run tcp server where external_ip = 10.0.0.5 and external_port = 32048 and ssl = true and "
                   "cert = !pem_dir/node.crt and key = !pem_dir/node.key and ca = !pem_dir/ca.crt",
                   "run tcp server where external_ip = 127.0.0.1 and external_port = 32048 and bind = true"),
         keywords=("network", "background processes", "configuration"), nargs=(0, 5),
         options=(Option("external_ip"), Option("external_port", kind="int"), Option("internal_ip"),
                  Option("internal_port", kind="int"), Option("bind", kind="bool", default=False),
                  Option("threads", kind="int", default=6, help="kept for AnyLog scripts; one reactor serves all"),
                  Option("ssl", kind="bool", default=False), Option("cert"), Option("key"), Option("ca"),
                  *limit_options(TCP_LIMITS),
                  Option("max reply", kind="size", default=wire.MAX_BODY, help="the largest reply body taken"),
                  Option("frame budget", kind="size", default=DEFAULT_BUDGET,
                         help="bytes all peer connections together may make the node hold"),
                  Option("auth", choices=("none",), help="'none': listen beyond loopback without a key or TLS"),
                  Option("peer grant", choices=("read", "write", "admin"), default="write",
                         help="what peers' commands may do (admin needs a network key or ssl = true)")),
         grant="admin")
async def run_tcp_server(call):
    node = call.node
    node.check_free(TCPServer.name)
    opts = dict(call.opts)
    names = ("external_ip", "external_port", "internal_ip", "internal_port", "threads")
    for name, value in zip(names, call.args):
        if name in call.given:
            raise OptionError(f"'{name}' is given both by position and in the where clause")
        opts[name] = _int(name, value) if name.endswith("port") or name == "threads" else value
    plan = listen_plan(opts["external_ip"], opts["external_port"], opts["internal_ip"], opts["internal_port"],
                       opts["bind"], node.dictionary.get("ip", "127.0.0.1"))
    peers = node.component(Peers)
    tls = None
    if opts["ssl"]:
        missing = [k for k in ("cert", "key", "ca") if not opts[k]]
        if missing:
            raise OptionError(f"ssl = true needs {', '.join(missing)} (files of the node's certificate, its "
                              f"private key and the network CA)")

        try:
            tls = TLSConfig(opts["cert"], opts["key"], opts["ca"])
        except ValueError as e:
            raise OptionError(str(e)) from None
    limits = read_limits(opts)
    if opts["max reply"] <= 0 or opts["frame budget"] < opts["max reply"]:
        raise OptionError("'max reply' must be positive and 'frame budget' at least as large (e.g. max reply = "
                          "64MB and frame budget = 256MB)")
    open_on_purpose = _check_authentication(peers, plan.bind_ip, tls, opts["auth"], opts["peer grant"])
    factory = peers.server_factory()
    gate = node.component(ConnectionGuard).gate(TCPServer.name, limits)
    try:
        port = await listen_guarded(node.reactor, plan.bind_ip, plan.port, factory, gate,
                                    tls.options() if tls is not None else None)
    except CannotListenError as e:
        where = f"{plan.bind_ip or '0.0.0.0'}:{plan.port}"
        raise ServiceError(f"the TCP server cannot listen on {where}: {e.socketError}") from None
    peers.tls = tls
    peers.max_reply = opts["max reply"]
    peers.budget.limit = opts["frame budget"]
    peers.peer_grant = opts["peer grant"]
    service = TCPServer(port, factory, peers, plan, opts["threads"], tls is not None, open_on_purpose)
    service.gate = gate
    node.add_process(service)
    if open_on_purpose:
        log.warn("TCP server on {where} with auth = none: anyone who reaches it is a peer holding '{grant}'",
                 where=service.details()[len("Listening on: "):], grant=peers.peer_grant)
    return f"TCP server listening on {service.details()[len('Listening on: '):]}"


HOW_TO_AUTHENTICATE = ("set a network key first (set network key from file <path>, twistd anylog "
                       "--network-key-file <path>, or $ANYLOG_NETWORK_KEY in the node's environment; the same key "
                       "on every node), or use mutual TLS (and ssl = true and cert = .. and key = .. and ca = ..)")


def _check_authentication(peers, bind_ip: str, tls, auth: str | None, peer_grant: str) -> bool:
    """Refuse a server that anyone on the network could use as a peer; True when `auth = none` opens one."""
    proven = peers.network_key is not None or tls is not None
    if peer_grant == "admin" and not proven:
        raise OptionError("peer grant = admin lets every peer run anything here, so peers must prove who they are: "
                          + HOW_TO_AUTHENTICATE)
    if proven or (bind_ip and is_loopback(bind_ip)):
        return False
    if auth == "none":
        return True
    where = bind_ip or "every interface"
    raise OptionError(f"the TCP server would listen on {where} with no authentication, so anyone who reaches it "
                      f"could act as a peer: {HOW_TO_AUTHENTICATE}; or listen on loopback only (bind = true and "
                      f"internal_ip = 127.0.0.1); or add 'and auth = none' to run it open on purpose")


def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise OptionError(f"{name} must be a whole number, not {value!r}") from None


@command("exit tcp", usage="exit tcp", text="Stop the peer messaging server and close the connections it accepted.",
         examples=("exit tcp",), keywords=("network", "background processes"), grant="admin")
async def exit_tcp(call):
    node = call.node
    if node.process(TCPServer.name) is None:
        raise ServiceError("TCP is not running")
    await node.stop_process(TCPServer.name)
    node.component(Peers).tls = None
    return "TCP server stopped"


# --- get connections -------------------------------------------------------------------------


def _listening_rows(node) -> list[tuple]:
    rows = []
    for label, name in (("TCP", "TCP"), ("REST", "REST"), ("Messaging", "Broker")):
        svc = node.process(name)
        if svc is None:
            rows.append((label, "Not declared", "Not declared", "Not declared"))
            continue
        address = getattr(svc, "address", None)
        ext = getattr(svc, "external_address", None) or address
        internal = getattr(svc, "internal_address", None) or ext
        bound = getattr(svc, "bind_address", None) or address
        rows.append((label, *("%s:%s" % a if a else "" for a in (ext, internal, bound))))
    return rows


PEER_COLUMNS = ("Peer", "Name", "Direction", "Status", "Requests Out", "Requests In", "Failures", "Last Error")


@command("get connections", usage="get connections [where format = json]",
         text="Show the node's listening addresses (TCP, REST, Messaging: external, internal and bound), each "
              "listener's connection limits with what it accepted, refused, timed out and dropped to make room, the "
              "file descriptors in use against the process limit, the peer frame budget, and the peer connections: "
              "status (active, not responding, idle), requests each way, failures and the last error. Peers that "
              "stop answering are marked 'not responding' and redialled with backoff.",
         examples=("get connections", "get connections where format = json"),
         keywords=("network", "monitor"), options=(Option("format", choices=("json", "table"), default="table"),),
         readonly=True, grant="read")
def get_connections(call):
    node = call.node
    listening = _listening_rows(node)
    peers = node.component(Peers).rows()
    data = {
        "listening": {r[0]: {"External Address": r[1], "Internal Address": r[2], "Bind Address": r[3]}
                      for r in listening},
        "peers": [dict(zip(PEER_COLUMNS, r)) for r in peers],
    }
    guard = node.component(ConnectionGuard)
    gates = [g.summary() for _, g in sorted(guard.gates.items())]
    fds = guard.summary()
    budget = node.component(Peers).budget
    data["limits"] = {"listeners": gates, "file_descriptors": fds,
                      "frame_budget": {"limit": budget.limit, "used": budget.used, "peak": budget.peak,
                                       "refused": budget.refused}}
    title = render_table(("Type", "External Address", "Internal Address", "Bind Address"), listening) + "\n"
    if gates:
        title += render_table(tuple(gates[0]), [tuple(g.values()) for g in gates]) + "\n"
    title += _limits_line(fds, budget) + "\n\n"
    return Reply.of_table(PEER_COLUMNS, peers, title=title, data=data)


def _limits_line(fds: dict, budget) -> str:
    if fds["soft_limit"] is None:
        text = "File descriptors: no limit on this platform"
    else:
        raised = f", raised from {fds['raised_from']}" if fds["raised_from"] else ""
        text = (f"File descriptors: {fds['open_fds']} open of {fds['soft_limit']} (hard limit {fds['hard_limit']}"
                f"{raised}), {fds['reserve']} kept free")
    return (f"{text}\nPeer frame budget: {budget.used:,} of {budget.limit:,} bytes held (peak {budget.peak:,}, "
            f"{budget.refused} refused)")


# --- run client ------------------------------------------------------------------------------


def _split_client(call) -> tuple[str, str]:
    tokens = call.tokens
    if len(tokens) < 2:
        raise OptionError("usage: run client (<destination>) <command>, e.g. run client (10.0.0.1:32048) get status")
    first = tokens[0]
    if first.kind == GROUP:
        dest_text = first.value
    elif first.kind == WORD:
        dest_text = first.value
    else:
        raise OptionError(f"run client: {first.value!r} is not a destination (write (ip:port) or ip:port)")
    return call.substitute(dest_text), call.text[tokens[1].start:].strip()


@command("run client", usage="run client (<destination>) <command>",
         text="Run a command on other nodes and show their replies. The destination is ip:port, or a list in "
              "parentheses: (ip:port, ip:port), (ip port), (!ip !port); inside the parentheses 'subset = true' "
              "accepts replies from only some nodes and 'timeout = N' waits N seconds (default 20). Replies from "
              "several nodes are shown as [From Node ip:port] blocks, or, when they are JSON, as one object keyed "
              "by ip:port. '!key' is resolved here, '!!key' on the remote node. Without subset, a node that does not "
              "answer fails the command. The remote command runs with no more than the caller holds here "
              "(and no more than the remote node gives its peers): the caller needs the grant the command "
              "needs (a command this node does not know needs admin).",
         examples=("run client 10.0.0.1:32048 get status",
                   "run client (10.0.0.1:32048, 10.0.0.2:32048 and subset = true and timeout = 5) get processes",
                   "run client (!operator_ip !operator_port) get dictionary where format = json",
                   "status = run client (10.0.0.1:32048) get status",
                   "run client (10.0.0.1:32048) echo !!node_name"),
         keywords=("network", "query", "cli"), raw=True, readonly=False, grant="read")
async def run_client(call):
    dest_text, cmd = _split_client(call)
    if cmd.split(None, 1)[0].lower() == "sql":
        return await network_sql(call, dest_text, cmd)  # the network query path (commands/query.py)

    addresses = await metadata_destination(call.node, dest_text)
    dest = Destination(addresses) if addresses is not None else parse_destination(dest_text)
    cmd = call.substitute(cmd)  # !key here, !!key becomes !key for the remote node
    # The remote node runs it as a peer: the caller must hold what it needs here, and the frame
    # carries the caller's grant so the remote runs it with no more (net/peer.py narrows to it).
    call.node.check_grant(cmd, call.origin, "run client", unknown="admin")
    grant = call.origin.grant  # the remote runs it with no more than this (peer.py narrows to it)
    peers = call.node.component(Peers)
    if len(dest.addresses) == 1:
        address = dest.addresses[0]
        try:
            return await peers.command(address, cmd, timeout=dest.timeout, grant=grant)
        except AnyLogError as e:
            raise PeerError(f"no reply from {address}: {e.message}") from None
    results = await DeferredList(
        [Deferred.fromCoroutine(peers.command(a, cmd, timeout=dest.timeout, grant=grant)) for a in dest.addresses],
        consumeErrors=True)
    replies: list[tuple[str, Reply]] = []
    missing: list[str] = []
    for address, (ok, value) in zip(dest.addresses, results):
        if ok:
            replies.append((address, value))
        else:
            why = value.value.message if isinstance(value.value, AnyLogError) else value.getErrorMessage()
            missing.append(f"{address} ({why})")
            replies.append((address, Reply.of_error(why, "peer", 502)))
    if missing and (not dest.subset or len(missing) == len(dest.addresses)):
        raise PeerError(f"no reply from {len(missing)} of {len(dest.addresses)} nodes: {'; '.join(missing)}"
                        + ("" if dest.subset else " (add 'subset = true' to accept partial replies)"))
    return combine(replies)


def combine(replies: list[tuple[str, Reply]]) -> Reply:
    """Several nodes' replies: one JSON object keyed by ip:port when they are JSON, else text blocks."""
    answered = [r for _, r in replies if r.ok]
    if answered and all(r.renders_json() for r in answered):
        return Reply.of_json({address: r.json_data() for address, r in replies})
    blocks = [f"[From Node {address}]\n{r.render()}" for address, r in replies]
    return Reply.of_text("\n\n".join(blocks))


# --- files ---------------------------------------------------------------------------------


@command("file send", usage="file send <local file> <destination> [where dest = watch and name = <name> and timeout = N]",
         text="Copy a local file to other nodes, into the directory of their dictionary key <dest>_dir (watch_dir by "
              "default), under its own name or 'name'. The receiver writes a temporary file, checks size and md5, "
              "fsyncs and renames it; the command returns once every node has acknowledged the file. The same "
              "transfer the publisher and HA use. The destination is ip:port or a list in parentheses.",
         examples=("file send !prep_dir/readings.0.json 10.0.0.1:32048",
                   "file send /data/f.json (10.0.0.1:32048, 10.0.0.2:32048) where dest = bkup"),
         keywords=("network", "file", "ha"), nargs=(2, 2),
         options=(Option("dest", default="watch", choices=DESTINATIONS, help="the peer's <dest>_dir"), Option("name"),
                  Option("timeout", kind="seconds")),
         grant="admin")
async def file_send(call):
    path, destination = call.args
    path = path_check(call)(path)
    text = destination[1:-1] if destination.startswith("(") and destination.endswith(")") else destination
    dest = parse_destination(text)
    peers = call.node.component(Peers)
    opts = call.opts
    results = await DeferredList(
        [Deferred.fromCoroutine(peers.send_file(a, path, dest=opts["dest"], name=opts["name"], timeout=opts["timeout"]))
         for a in dest.addresses], consumeErrors=True)
    failed = [f"{a}: {v.value.message if isinstance(v.value, AnyLogError) else v.getErrorMessage()}"
              for a, (ok, v) in zip(dest.addresses, results) if not ok]
    if failed:
        raise PeerError(f"file {path} not delivered to {len(failed)} of {len(dest.addresses)} nodes: "
                        + "; ".join(failed))
    lines = [f"[From Node {a}] {v.text}" for a, (ok, v) in zip(dest.addresses, results)]
    return "\n".join(lines) if len(lines) > 1 else results[0][1].text


# --- network key -----------------------------------------------------------------------------


@command("set network key", usage="set network key = <key> | set network key from file <path>",
         text="Require peers to prove they know this key (HMAC over both sides' fresh nonces and declared identities "
              "in the hello, in both directions) before they can run anything; peers that cannot are refused and "
              "logged. Set the same key on every node of the network; an empty value (\"\") turns the check off, "
              "which a TCP server listening beyond loopback without TLS refuses (unless it runs with auth = none). "
              "New connections use it. 'from file' reads the key from a file (its first line), so it is in no "
              "script, reply or log; $ANYLOG_NETWORK_KEY in the node's environment and twistd anylog "
              "--network-key-file do the same at start. The key is never shown.",
         examples=("set network key from file !pem_dir/network.key", "set network key = $ANYLOG_NETWORK_KEY",
                   'set network key = ""'),
         keywords=("network", "security", "configuration"), raw=True, grant="admin")
def set_network_key(call):
    tokens = list(call.tokens)
    if len(tokens) == 3 and tokens[0].is_word("from") and tokens[1].is_word("file"):
        key = _read_key_file(call, token_text(tokens[2], call.substitute))
    elif tokens and tokens[0].kind == EQ and len(tokens) == 2:
        key = token_text(tokens[1], call.substitute) if tokens[1].kind != STRING else tokens[1].value
    else:
        raise OptionError("usage: set network key = <key> (one word or a quoted string), or set network key from "
                          "file <path>")
    if key and len(key) < 8:
        raise OptionError("a network key needs at least 8 characters")
    node = call.node
    tcp = node.process(TCPServer.name)
    if not key and tcp is not None and tcp.needs_authentication():
        raise OptionError(f"the TCP server listens on {tcp.bind_address[0]} with no TLS: removing the network key "
                          f"would let anyone who reaches it act as a peer (stop it first with exit tcp, or restart "
                          f"it with auth = none to run it open on purpose)")
    node.component(Peers).set_network_key(key or None)
    return "Network key set" if key else "Network key removed: peers are not authenticated"


def _read_key_file(call, path: str) -> str:
    path = path_check(call)(path)
    try:
        with open(path, encoding="utf-8") as f:
            key = f.readline().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise OptionError(f"cannot read the network key file {path}: {getattr(e, 'strerror', None) or e}") from None
    if not key:
        raise OptionError(f"the network key file {path} is empty (write the key on its first line)")
    return key


__all__ = ["parse_destination", "combine", "Destination"]
