"""Self-tests (spec §8.4): `test node`, `test network [metadata]`, `test cluster setup|databases`.
The status commands that only read this node (`get ip list`, pools, threads, metadata info) are
in `node_info.py`.

Every network question has a deadline: a node or a service that does not answer becomes a row
that says why, never a hang.  The plain-data parts live in `anylog_tw/commands/_probes.py`.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, ensureDeferred, gatherResults
from twisted.internet.error import ConnectError

from anylog_tw.base import layout
from anylog_tw.base.errors import AnyLogError, CommandError, OptionError, ServiceError
from anylog_tw.base.registry import FORMAT, Option, command
from anylog_tw.base.reply import Reply
from anylog_tw.commands import _probes as diag
from anylog_tw.metadata import policies
from anylog_tw.metadata.layer import metadata
from anylog_tw.net.http_client import Request
from anylog_tw.net.http_exchange import exchange
from anylog_tw.net.peers import Peers
from anylog_tw.storage.engines import Databases

KEYWORDS = ("monitor", "test", "network")
_NETWORK_ERRORS = (OSError, ConnectError)
TIMEOUT = Option("timeout", kind="seconds", default=10.0, help="how long to wait for each answer")


# --- asking with a deadline ------------------------------------------------------------------------


async def timed(node, make: Callable[[], Awaitable[Any]], timeout: float) -> tuple[Any, str, float]:
    """(value, "", ms) or (None, why, ms): `make()` given `timeout` seconds; never raises."""
    clock = node.reactor
    started = clock.seconds()
    d = ensureDeferred(make())
    d.addTimeout(timeout, clock)
    try:
        value = await d
    except (TimeoutError, CancelledError):
        return None, f"no answer within {timeout:g} s", _ms(clock, started)
    except AnyLogError as e:
        return None, e.message, _ms(clock, started)
    except _NETWORK_ERRORS as e:  # a refused or broken socket: the reason is the answer
        return None, str(e).strip() or type(e).__name__, _ms(clock, started)
    return value, "", _ms(clock, started)


def _ms(clock, started: float) -> float:
    return round((clock.seconds() - started) * 1000, 1)


def _peers(node):
    return node.component(Peers)


async def ask(node, address: str, text: str, timeout: float) -> tuple[Reply | None, str, float]:
    """A command run on a peer: (reply, "", ms), or (None, why, ms) when it did not answer or refused."""
    reply, why, ms = await timed(node, lambda: _peers(node).command(address, text, timeout=timeout), timeout)
    if reply is not None and not reply.ok:
        return None, f"answered with an error: {reply.text}", ms
    return reply, why, ms


async def local_ledger(node):
    return (await metadata(node)).ledger


def _first_line(reply: Reply) -> str:
    text = reply.render().strip()
    return text.splitlines()[0][:100] if text else ""


# --- test node -----------------------------------------------------------------------------------


async def _check_tcp(node, timeout: float) -> list[list]:
    tcp = node.process("TCP")
    if tcp is None:
        return [["TCP server", "off", "not running: peers cannot reach this node (run tcp server where ...)"]]
    if getattr(tcp, "open_on_purpose", False) and not tcp.peers.network_key and not tcp.tls:  # peersec
        return [["TCP authentication", diag.WARNING, f"auth = none: anyone who reaches {tcp.bind_address[0]} is a "
                                                     f"peer (set network key from file <path>, or ssl = true)"],
                *await _check_tcp_answer(node, tcp, timeout)]
    return await _check_tcp_answer(node, tcp, timeout)


async def _check_tcp_answer(node, tcp, timeout: float) -> list[list]:
    own = "%s:%d" % tcp.external_address
    internal = "%s:%d" % tcp.internal_address
    reply, why, ms = await ask(node, own, "get status", timeout)
    if reply is None and internal != own:
        inner, _, inner_ms = await ask(node, internal, "get status", timeout)
        if inner is not None:
            return [["TCP server", diag.WARNING, (f"the external address {own} does not answer from here ({why}); "
                                                  f"the internal {internal} does in {inner_ms} ms (NAT?)")]]
    if reply is None:
        bound = "%s:%d" % tcp.bind_address
        return [["TCP server", diag.FAILED, f"listening on {bound}, but {own} does not answer: {why}"]]
    text = _first_line(reply)
    if not text.startswith(f"{node.name}@"):
        return [["TCP server", diag.FAILED, f"{own} is another node: it answered '{text}'"]]
    return [["TCP server", diag.OK, f"{own} answered '{text}' in {ms} ms"]]


async def _http_get(node, url: str, timeout: float) -> int:
    """The status of a GET, through the `rest get` client (its deadline, body bound and wording)."""
    request = Request("GET", url, (("User-Agent", "anylog-tw test node"),), None, timeout, 64 * 1024)
    return (await exchange(node.reactor, request, "get")).code


async def _tcp_connect(node, host: str, port: int) -> None:
    from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
    from twisted.internet.protocol import Protocol

    proto = await connectProtocol(HostnameEndpoint(node.reactor, host, port), Protocol())
    proto.transport.loseConnection()


async def _check_rest(node, timeout: float) -> list[list]:
    rest = node.process("REST")
    if rest is None:
        return [["REST server", "off", "not running: applications cannot reach this node (run rest server ...)"]]
    host, port = rest.address
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if rest.api.config.ssl:  # the certificate is the clients' business: check that it accepts connections
        _, why, ms = await timed(node, lambda: _tcp_connect(node, host, port), timeout)
        if why:
            return [["REST server", diag.FAILED, f"{where} does not accept connections: {why}"]]
        return [["REST server", diag.OK, f"{where} accepts connections in {ms} ms (HTTPS, certificate not checked)"]]
    if rest.api.config.auth_none:  # the opt-out is loud everywhere the operator looks
        return [["REST server", diag.WARNING, f"{where} runs WITHOUT authentication (auth = none): anyone who "
                 f"reaches it can read and write (docs/security.md)"]]
    code, why, ms = await timed(node, lambda: _http_get(node, f"http://{where}/health", timeout), timeout + 1)
    if why:
        return [["REST server", diag.FAILED, f"http://{where}/health: {why}"]]
    if code != 200:
        return [["REST server", diag.FAILED, f"http://{where}/health answered HTTP {code}"]]
    return [["REST server", diag.OK, f"http://{where}/health answered in {ms} ms"]]


async def _check_ledger(node, timeout: float) -> list[list]:
    ledger, why, _ = await timed(node, lambda: local_ledger(node), timeout)
    if ledger is None:
        return [["Metadata", diag.FAILED, f"the ledger did not load: {why}"]]
    rows = []
    if ledger.load_errors:
        lineno, message = ledger.load_errors[0]
        rows.append(["Metadata", diag.FAILED, (f"{len(ledger.load_errors)} lines of {ledger.path} skipped (line "
                                               f"{lineno}: {message}); {len(ledger)} policies loaded")])
    elif not len(ledger):
        rows.append(["Metadata", diag.WARNING, f"the ledger {ledger.path} has no policies yet"])
    else:
        rows.append(["Metadata", diag.OK, f"{len(ledger)} policies, version {ledger.version}"])
    sync = node.process("Blockchain Sync")
    if sync is None:
        rows.append(["Blockchain Sync", "off", "not running: the ledger changes by local inserts only"])
    elif sync.state == "Synchronized":
        rows.append(["Blockchain Sync", diag.OK, f"synchronized with {sync.connection or sync.source}"])
    else:
        rows.append(["Blockchain Sync", diag.FAILED, f"{sync.state}: {sync.last_failure or 'no sync yet'}"])
    return rows


async def _check_dbms(node, timeout: float) -> list[list]:
    dbs = node.component(Databases)
    if not dbs.names():
        return [["DBMS", diag.WARNING, "no dbms connected (connect dbms <name> where type = sqlite)"]]

    async def one(name: str) -> list:
        db = dbs.get(name)
        _, why, ms = await timed(node, lambda: db.query("SELECT 1"), timeout)
        kind = db.describe().get("Type", "")
        if why:
            return [f"DBMS {name}", diag.FAILED, f"{kind}: {why}"]
        return [f"DBMS {name}", diag.OK, f"{kind}: answered in {ms} ms"]

    return list(await gatherResults([Deferred.fromCoroutine(one(n)) for n in dbs.names()]))


async def _check_directories(node, timeout: float) -> list[list]:
    dirs = [(key, node.dirs.get(key, "")) for key in layout.DIRECTORIES]
    problems, why, _ = await timed(node, lambda: node.in_thread(diag.check_directories, dirs), timeout)
    if problems is None:
        return [["Work directories", diag.FAILED, f"could not check them: {why}"]]
    if not problems:
        return [["Work directories", diag.OK, f"{len(dirs)} present and writable under {node.home}"]]
    return [[f"Work directory {key}", diag.FAILED, f"{path}: {problem}" if path else problem]
            for key, path, problem in problems]


async def _check_operator(node, timeout: float) -> list[list]:
    op = node.process("Operator")
    if op is None:
        return [["Operator", "off", "not running: files in the watch dir are not ingested (run operator where ...)"]]
    status = op.status()
    if status != "Running":
        return [["Operator", diag.FAILED, f"ingest {status[0].lower()}{status[1:]}"]]
    return [["Operator", diag.OK, f"running, {len(op.queue)} files queued, {len(op.in_hand)} in hand"]]


@command("test node", grant="read", usage="test node [where timeout = 5 seconds and format = json]",
         text="Check this node's own setup and say what is wrong: the TCP server answers 'get status' at its own "
              "address over the peer protocol, the REST server answers /health, the ledger loads without skipped "
              "lines, the synchronizer is current, every connected dbms answers, the work directories exist and "
              "are writable, the operator is ingesting (not paused for want of space). One row per check: ok, warning, failed, or off (not running).",
         examples=("test node", "test node where timeout = 2 seconds and format = json"), keywords=KEYWORDS,
         options=(Option("timeout", kind="seconds", default=5.0, help="how long each check may take"), FORMAT),
         readonly=True)
async def test_node(call):
    timeout = _positive(call.opts["timeout"])
    checks = (_check_tcp, _check_rest, _check_ledger, _check_dbms, _check_directories, _check_operator)
    found = await gatherResults([Deferred.fromCoroutine(check(call.node, timeout)) for check in checks])
    rows = [row for rows in found for row in rows]
    return Reply.of_table(("Check", "Result", "Detail"), rows, title=f"Node {call.node.name}")


def _positive(timeout: float) -> float:
    if timeout <= 0:
        raise OptionError("timeout must be more than 0 seconds")
    return timeout


# --- test network ------------------------------------------------------------------------------


async def _network(call, metadata: bool) -> Reply:
    node = call.node
    timeout = _positive(call.opts["timeout"])
    only = diag.parse_with(call.args, metadata)
    ledger = await local_ledger(node)
    targets = diag.node_targets(ledger, only=only)
    if not targets:
        if only:
            raise CommandError(f"no node in the metadata matches '{only}'")
        raise CommandError("the metadata has no node policies (master, operator, query, publisher) to test: insert "
                           "them, or sync from the master (run blockchain sync)")
    pending: dict[str, Deferred] = {}

    async def probe(address: str) -> tuple:
        status = Deferred.fromCoroutine(ask(node, address, "get status", timeout))
        version = Deferred.fromCoroutine(ask(node, address, "get metadata version", timeout)) if metadata else None
        reply, why, ms = await status
        theirs = ""
        if version is not None:
            answer, vwhy, _ = await version
            theirs = answer.render().strip() if answer is not None else f"({vwhy})" if reply is not None else ""
        return (_first_line(reply) if reply is not None else None), why, ms, theirs

    for t in targets:
        if t["address"] and t["address"] not in pending:
            pending[t["address"]] = Deferred.fromCoroutine(probe(t["address"]))
    answers = dict(zip(pending, await gatherResults(list(pending.values()))))
    columns, rows = diag.network_rows(targets, answers, ledger.version, metadata)
    if metadata:
        return Reply.of_table(columns, rows, title=f"Local metadata version: {ledger.version}")
    return Reply.of_table(columns, rows)


@command("test network", grant="read", usage="test network [with <node type>|<ip:port>] [where timeout = 10 seconds and format = json]",
         text="Ask every node of the metadata (the master, operator, query and publisher policies) for 'get status' "
              "over the peer protocol, all at once, each with the timeout. One row per node: address, type, name, "
              "Status '+' when it answered, its reply or why it did not answer, and the round trip in ms. "
              "'with operator' (or another type, or an ip:port) tests only those nodes.",
         examples=("test network", "test network with operator", "test network with 10.0.0.1:32048",
                   "test network where timeout = 3 seconds and format = json"),
         keywords=KEYWORDS, nargs=(0, 2), options=(TIMEOUT, FORMAT), readonly=True)
async def test_network(call):
    return await _network(call, metadata=False)


@command("test network metadata", grant="read",
         usage="test network metadata [version] [with <node type>|<ip:port>] [where timeout = 10 seconds and "
               "format = json]",
         text="Like 'test network', and each node's 'get metadata version' next to ours: 'Same' says whether it "
              "holds the same ledger as this node ('NO': it is behind, ahead, or synchronizes from elsewhere).",
         examples=("test network metadata", "test network metadata version", "test network metadata with operator"),
         keywords=KEYWORDS + ("metadata",), nargs=(0, 3), options=(TIMEOUT, FORMAT), readonly=True)
async def test_network_metadata(call):
    return await _network(call, metadata=True)


# --- test cluster setup | databases -----------------------------------------------------------------


async def _members(node) -> tuple[Any, list[tuple[str, str, str]]]:
    """This operator and its cluster's operators: [(member, ip:port, name)]."""
    op = node.process("Operator")
    if op is None or not op.config.cluster:
        raise ServiceError("this node is not an operator of a cluster (run operator where policy = <id>)")
    ledger = await local_ledger(node)
    return op, [(str(policies.attr(p, "member", "")), policies.ip_port(p) or "", str(policies.attr(p, "name", "")))
                for p in policies.operators_of_cluster(ledger, op.config.cluster)]


@command("test cluster setup", grant="read", usage="test cluster setup [where format = json]",
         text="Whether this node is set up to be an HA member: the operator and the two halves of HA (Distributor: "
              "push, Consumer: pull) running, the operator's name, member and cluster id from its policy, the "
              "cluster policy and its operators in the metadata, and almgm.tsd_info defined.",
         examples=("test cluster setup", "test cluster setup where format = json"),
         keywords=("ha", "cluster", "test"), options=(FORMAT,), readonly=True)
async def test_cluster_setup(call):
    node = call.node
    op = node.process("Operator")
    ha = node.process("HA")
    ledger = await local_ledger(node)
    own = ledger.by_id(op.config.policy) if op is not None and op.config.policy else None
    cluster = op.config.cluster if op is not None else ""
    rows = [["Operator", ("Running" + ("" if cluster else ": not a cluster member")) if op is not None
             else "Not running (run operator where policy = <id>)"],
            ["Distributor", "Running" if ha is not None and ha.push is not None else "Not running (run ha)"],
            ["Consumer", "Running" if ha is not None and ha.pull is not None else "Not running (run ha)"],
            ["Operator Name", str(policies.attr(own, "name", "")) if own else ""],
            ["Member ID", op.config.member if cluster else ""],
            ["Cluster ID", cluster]]
    if cluster:
        found = [c for c in ledger.of_type("cluster") if policies.attr(c, "id") == cluster]
        rows.append(["Cluster policy", f"{policies.attr(found[0], 'name', '')}" if found else "Not in the metadata"])
        members = [f"{policies.attr(p, 'member', '')} {policies.ip_port(p) or '(no address)'}"
                   for p in policies.operators_of_cluster(ledger, cluster)]
        rows.append(["Cluster operators", f"{len(members)}: {', '.join(members)}"])
    almgm = node.component(Databases).find("almgm")
    if almgm is None:
        rows.append(["almgm.tsd_info", "Not Defined (almgm is not connected)"])
    else:
        has, why, _ = await timed(node, lambda: almgm.has_table("tsd_info"), 10.0)
        rows.append(["almgm.tsd_info", f"Not Defined ({why})" if why else "Defined" if has else "Not Defined"])
    return Reply.of_table(("Functionality", "Details"), rows, data=dict(rows))


@command("test cluster databases", grant="read", usage="test cluster databases [where timeout = 10 seconds and format = json]",
         text="Ask every operator of this cluster (this one included) for its connected dbms, all at once, and show "
              "one row per dbms with '+' under each member that has it: a blank is a dbms that member lacks, '?' a "
              "member that did not answer (the last row says why).",
         examples=("test cluster databases", "test cluster databases where timeout = 3 seconds"),
         keywords=("ha", "cluster", "test"), options=(TIMEOUT, FORMAT), readonly=True)
async def test_cluster_databases(call):
    node = call.node
    timeout = _positive(call.opts["timeout"])
    op, members = await _members(node)
    question = "get databases where format = json"

    async def names(member: str, address: str) -> set[str] | str:
        if member == op.config.member:
            reply, why, _ = await timed(node, lambda: node.execute(question, call.origin.narrowed(
                "read", "test cluster databases")), timeout)
        elif not address:
            return "no address in its policy"
        else:
            reply, why, _ = await ask(node, address, question, timeout)
        data = reply.json_data() if reply is not None else None
        if not isinstance(data, list):
            return why or "not a list of databases"
        return {str(d.get("Logical DBMS", "")) for d in data if isinstance(d, dict)}

    found = await gatherResults([Deferred.fromCoroutine(names(m, a)) for m, a, _ in members])
    columns, rows = diag.presence_grid([(f"Member {m} {a}".strip(), have) for (m, a, _), have in zip(members, found)])
    return Reply.of_table(columns, rows, title=f"Cluster {op.config.cluster}")
