"""Peer messaging commands: `run tcp server`, `exit tcp`, `get connections`, `run client`,
`set network key`."""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.error import CannotListenError

from anylog_tw.base import grammar, values
from anylog_tw.base.errors import AnyLogError, GrammarError, OptionError, PeerError, ServiceError
from anylog_tw.base.grammar import EQ, GROUP, STRING, WORD
from anylog_tw.base.registry import Option, command, token_text
from anylog_tw.base.reply import Reply, render_table
from anylog_tw.commands.files import path_check
from anylog_tw.front.tcpserver import TCPServer, listen_plan
from anylog_tw.metadata.layer import metadata_destination  # metadata forms of spec 6.2 (issue 5)
from anylog_tw.net.auth import TLSConfig
from anylog_tw.net.endpoints import BACKLOG, tcp_server_endpoint
from anylog_tw.net.peers import Peers, canonical

DEFAULT_TIMEOUT = 20.0


# --- run tcp server / exit tcp ---------------------------------------------------------------


@command("run tcp server",
         usage="run tcp server where external_ip = IP and external_port = P [and internal_ip = IP and "
               "internal_port = P and bind = true|false and threads = N and ssl = true and cert = F and key = F "
               "and ca = F] | run tcp server [ip] [port] [local_ip] [local_port] [threads]",
         text="Start the peer messaging server. The external IP and port are the node's identity for peers "
              "(get status shows name@ip:port). With bind = true it listens on the internal IP when both IPs are "
              "given, else on the one given; with bind = false (the default) on every interface. It listens on the "
              "internal port when given, else the external one (0 picks a free port). With ssl = true, peers must "
              "present a certificate signed by the CA, and the node presents its own when it dials out.",
         examples=("run tcp server where external_ip = !external_ip and external_port = 32048",
                   "run tcp server !external_ip 32048 !ip 32048",
                   "run tcp server where external_ip = 10.0.0.5 and external_port = 32048 and ssl = true and "
                   "cert = !pem_dir/node.crt and key = !pem_dir/node.key and ca = !pem_dir/ca.crt"),
         keywords=("network", "background processes", "configuration"), nargs=(0, 5),
         options=(Option("external_ip"), Option("external_port", kind="int"), Option("internal_ip"),
                  Option("internal_port", kind="int"), Option("bind", kind="bool", default=False),
                  Option("threads", kind="int", default=6, help="kept for AnyLog scripts; one reactor serves all"),
                  Option("ssl", kind="bool", default=False), Option("cert"), Option("key"), Option("ca")))
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
    factory = peers.server_factory()
    if tls is not None:
        from twisted.internet.endpoints import SSL4ServerEndpoint

        endpoint = SSL4ServerEndpoint(node.reactor, plan.port, tls.options(), backlog=BACKLOG,
                                      interface=plan.bind_ip)
    else:
        endpoint = tcp_server_endpoint(node.reactor, plan.bind_ip, plan.port)
    try:
        port = await endpoint.listen(factory)
    except CannotListenError as e:
        where = f"{plan.bind_ip or '0.0.0.0'}:{plan.port}"
        raise ServiceError(f"the TCP server cannot listen on {where}: {e.socketError}") from None
    peers.tls = tls
    service = TCPServer(port, factory, peers, plan, opts["threads"], tls is not None)
    node.add_process(service)
    return f"TCP server listening on {service.details()[len('Listening on: '):]}"


def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise OptionError(f"{name} must be a whole number, not {value!r}") from None


@command("exit tcp", usage="exit tcp", text="Stop the peer messaging server and close the connections it accepted.",
         examples=("exit tcp",), keywords=("network", "background processes"))
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
         text="Show the node's listening addresses (TCP, REST, Messaging: external, internal and bound) and its "
              "peer connections: status (active, not responding, idle), requests each way, failures and the last "
              "error. Peers that stop answering are marked 'not responding' and redialled with backoff.",
         examples=("get connections", "get connections where format = json"),
         keywords=("network", "monitor"), options=(Option("format", choices=("json", "table"), default="table"),),
         readonly=True)
def get_connections(call):
    node = call.node
    listening = _listening_rows(node)
    peers = node.component(Peers).rows()
    data = {
        "listening": {r[0]: {"External Address": r[1], "Internal Address": r[2], "Bind Address": r[3]}
                      for r in listening},
        "peers": [dict(zip(PEER_COLUMNS, r)) for r in peers],
    }
    title = render_table(("Type", "External Address", "Internal Address", "Bind Address"), listening) + "\n"
    return Reply.of_table(PEER_COLUMNS, peers, title=title, data=data)


# --- run client ------------------------------------------------------------------------------


@dataclass
class Destination:
    addresses: list[str]
    subset: bool = False
    timeout: float = DEFAULT_TIMEOUT


def parse_destination(text: str) -> Destination:
    """The inside of `run client (...)`, with references already resolved.

    `ip:port, ip:port`, `ip port, ip port`, `ip:port ip:port`, plus options `subset = true` and
    `timeout = N` anywhere, separated by commas or `and`.
    """
    tokens = grammar.tokenize(text.replace(",", " "))
    addresses: list[str] = []
    dest = Destination(addresses)
    i, n = 0, len(tokens)
    while i < n:
        tok = tokens[i]
        if tok.is_word("and"):
            i += 1
            continue
        if i + 1 < n and tokens[i + 1].kind == EQ:
            key = tok.value.lower()
            if i + 2 >= n:
                raise GrammarError(f"'{key} =' has no value in the destination")
            value = tokens[i + 2].value
            if key == "subset":
                dest.subset = values.parse_bool(value)
            elif key == "timeout":
                dest.timeout = values.parse_seconds(value)
                if dest.timeout <= 0:
                    raise OptionError("timeout must be more than 0 seconds")
            else:
                raise OptionError(f"'{key}' in the destination: only ip:port lists with subset and timeout are "
                                  f"supported here (destinations from metadata come with the metadata commands)")
            i += 3
            continue
        if tok.kind not in (WORD, STRING):
            raise OptionError(f"{tok.value!r} is not a destination (write ip:port or ip port)")
        word = tok.value
        if ":" not in word:
            nxt = tokens[i + 1] if i + 1 < n else None
            if nxt is not None and nxt.kind == WORD and nxt.value.isdigit():
                word = f"{word}:{nxt.value}"
                i += 1
            elif word.lower() in ("blockchain", "operator", "query", "master", "publisher", "dbms", "table"):
                raise OptionError(f"destination '{text}': destinations from metadata ('{word} ...') are not "
                                  f"supported yet; give ip:port addresses")
        address = canonical(word)
        if address not in addresses:
            addresses.append(address)
        i += 1
    if not addresses:
        raise OptionError("run client: the destination lists no node (write e.g. (10.0.0.1:32048) or "
                          "(!ip !port)); network SQL routing with () comes with the query commands")
    return dest


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
    return call.node.substitute(dest_text), call.text[tokens[1].start:].strip()


@command("run client", usage="run client (<destination>) <command>",
         text="Run a command on other nodes and show their replies. The destination is ip:port, or a list in "
              "parentheses: (ip:port, ip:port), (ip port), (!ip !port); inside the parentheses 'subset = true' "
              "accepts replies from only some nodes and 'timeout = N' waits N seconds (default 20). Replies from "
              "several nodes are shown as [From Node ip:port] blocks, or, when they are JSON, as one object keyed "
              "by ip:port. '!key' is resolved here, '!!key' on the remote node. Without subset, a node that does not "
              "answer fails the command.",
         examples=("run client 10.0.0.1:32048 get status",
                   "run client (10.0.0.1:32048, 10.0.0.2:32048 and subset = true and timeout = 5) get processes",
                   "run client (!operator_ip !operator_port) get dictionary where format = json",
                   "status = run client (10.0.0.1:32048) get status",
                   "run client (10.0.0.1:32048) echo !!node_name"),
         keywords=("network", "query", "cli"), raw=True, readonly=False)
async def run_client(call):
    dest_text, cmd = _split_client(call)

    addresses = await metadata_destination(call.node, dest_text)
    dest = Destination(addresses) if addresses is not None else parse_destination(dest_text)
    cmd = call.node.substitute(cmd)  # !key here, !!key becomes !key for the remote node
    peers = call.node.component(Peers)
    if len(dest.addresses) == 1:
        address = dest.addresses[0]
        try:
            return await peers.command(address, cmd, timeout=dest.timeout)
        except AnyLogError as e:
            raise PeerError(f"no reply from {address}: {e.message}") from None
    results = await DeferredList(
        [Deferred.fromCoroutine(peers.command(a, cmd, timeout=dest.timeout)) for a in dest.addresses],
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
         options=(Option("dest", default="watch", help="the peer's <dest>_dir"), Option("name"),
                  Option("timeout", kind="seconds")))
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


@command("set network key", usage="set network key = <key>",
         text="Require peers to prove they know this key (HMAC over fresh nonces in the hello, in both directions) "
              "before they can run anything; peers that cannot are refused and logged. Set the same key on every "
              "node of the network; an empty value (\"\") turns the check off. New connections use it. Write "
              "'set network key = $ANYLOG_NETWORK_KEY' to keep the key out of scripts and the event log.",
         examples=("set network key = $ANYLOG_NETWORK_KEY", 'set network key = ""'),
         keywords=("network", "security", "configuration"), raw=True)
def set_network_key(call):
    tokens = list(call.tokens)
    if not tokens or tokens[0].kind != EQ or len(tokens) != 2:
        raise OptionError("usage: set network key = <key> (one word or a quoted string)")
    key = token_text(tokens[1], call.node.substitute) if tokens[1].kind != STRING else tokens[1].value
    if key and len(key) < 8:
        raise OptionError("a network key needs at least 8 characters")
    call.node.component(Peers).set_network_key(key or None)
    return "Network key set" if key else "Network key removed: peers are not authenticated"


__all__ = ["parse_destination", "combine", "Destination"]
