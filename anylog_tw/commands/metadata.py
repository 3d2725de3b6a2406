"""Metadata commands: `blockchain get/read/insert/add/push/...` and `get metadata version`.

`create policy` is in `policy_builder.py`, the synchronizer's commands in `metadata_sync.py`."""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.internet.defer import TimeoutError as DeferredTimeout

from anylog_tw.base import grammar, values
from anylog_tw.base.errors import CommandError, OptionError, Timeout
from anylog_tw.base.grammar import JSON, WORD
from anylog_tw.base.registry import FORMAT, Option, command, token_text
from anylog_tw.base.reply import Reply
from anylog_tw.commands.files import path_check
from anylog_tw.metadata.layer import MasterRefused, metadata
from anylog_tw.metadata.ledger import parse_lines, parse_policy, policy_id, to_line, write_atomically
from anylog_tw.metadata.master import DBMS, MasterLedger
from anylog_tw.metadata.query import Outcome, evaluate, parse_query
from anylog_tw.storage.engines import Databases

KEYWORDS = ("metadata", "blockchain")


# --- helpers --------------------------------------------------------------------------------


def policy_text(call, tokens=None) -> str:
    """The policy argument of a raw command: `{...}` (with !refs inside) or `!var` holding JSON."""
    tokens = list(call.tokens if tokens is None else tokens)
    node = call.node
    if not tokens:
        raise CommandError(f"'{call.command.name}' needs a policy: a JSON object or !variable "
                           f"(usage: {call.command.usage})")
    if len(tokens) == 1 and tokens[0].kind == JSON:
        return grammar.substitute_json(tokens[0].value, node.dictionary.get, call.env)
    return " ".join(token_text(t, call.substitute) for t in tokens)


def read_policy(call, tokens=None) -> dict:
    return parse_policy(policy_text(call, tokens))


def outcome_reply(outcome: Outcome) -> Reply:
    if outcome.kind == "table":
        return Reply.of_table(outcome.columns, outcome.value)
    if outcome.kind == "text":
        return Reply.of_text(outcome.value)
    return Reply.of_json(outcome.value)


def _master_store(node):
    """The master's `blockchain.ledger` table, when dbms blockchain is connected; else None."""
    db = node.component(Databases).find(DBMS)
    return MasterLedger(db) if db is not None else None


class Refused(CommandError):
    """The peer was reached and said no: unlike an unreachable peer, trying again will not help."""

    code = "refused"


async def _ask_master(meta, address: str, text: str) -> Reply:
    """A command on the master; PeerError/Timeout when it cannot be reached, Refused when it says no."""
    reply = await meta.ask(address, text)
    if not reply.ok:
        raise Refused(f"{address} refused '{text[:60]}': {reply.text}")
    return reply


# --- queries --------------------------------------------------------------------------------


GET_TEXT = ("Query the local copy of the metadata. The type is one policy type, '(t1, t2)' or '*'. The where "
            "clause is either 'k = v and ...' (keys 'name', '[operator][name]' or 'operator[name]'; "
            "'table[dbms] = x' tests inside a list; 'k with v' tests that a list holds v) or a condition over "
            "'[type][attr]' with ==, !=, <, >, <=, >=, contains, startswith, endswith, childfrom, and, or and "
            "parentheses. 'bring' extracts keys ([type][attr], [*][attr], [] for the whole policy) and literal "
            "text; modifiers .unique .first .recent .json .list .table .table.sort(i) .count .null .ip_port .min "
            ".max .children chain; 'separator = ,' joins the results. 'join (blockchain get t where k = [left][attr])' "
            "pairs each policy with the matching ones (inner join); 'merge (...)' adds their attributes (left join).")


@command("blockchain get", grant="read", usage="blockchain get <type|(t1, t2)|*> [where ...] [bring[.modifiers] keys] "
                                 "[separator = X]",
         text=GET_TEXT,
         examples=("blockchain get operator",
                   "blockchain get operator where company = anylog and port = 32148",
                   "blockchain get cluster where table[dbms] = lsl and table[name] = ping bring [cluster][id]",
                   "blockchain get (operator, query) where [country] == US or [city] contains Jose",
                   "blockchain get operator bring [operator][ip] \":\" [operator][port] separator = ,",
                   "blockchain get operator where [cluster] == abc bring.ip_port",
                   "blockchain get * bring.table [*][name] [*][id]",
                   "blockchain get cluster where name = c1 bring.children.ip_port",
                   "blockchain get bucket join (blockchain get operator where name = [bucket][operator]) "
                   "bring.table [bucket][name] [operator][ip]"),
         keywords=KEYWORDS, raw=True, readonly=True)
async def blockchain_get(call):
    meta = await metadata(call.node)
    return outcome_reply(evaluate(parse_query(call.substitute(call.remainder)), meta.ledger))


@command("blockchain get id", grant="read", usage="blockchain get id <policy>",
         text="The id a policy gets when it has none: the MD5 of its canonical JSON (keys sorted, no spaces) "
              "without date, ledger and id.",
         examples=('blockchain get id {"cluster": {"name": "c1", "company": "acme"}}', "blockchain get id !p"),
         keywords=KEYWORDS, raw=True, readonly=True)
def blockchain_get_id(call):
    return policy_id(read_policy(call))


@command("blockchain read", grant="read", usage="blockchain read <type|(t1, t2)|*> [where ...] [bring ...]",
         text="Like 'blockchain get'. This node makes no local changes to policies, so the copy as received "
              "and the copy in use are the same.",
         examples=("blockchain read operator where name = op1",), keywords=KEYWORDS, raw=True, readonly=True)
async def blockchain_read(call):
    return await blockchain_get(call)


@command("get metadata version", grant="read", usage="get metadata version",
         text="The version of the local metadata: the MD5 of the ledger file. Synchronizers compare it with the "
              "master's.",
         examples=("get metadata version",), keywords=KEYWORDS, readonly=True)
async def get_metadata_version(call):
    return (await metadata(call.node)).ledger.version


@command("get metadata changes since", grant="read", usage="get metadata changes since <version|none>",
         text="What a synchronizer at that metadata version needs: the first line is '#delta <from> <to>' followed "
              "by the lines appended since, when the ledger grew from that version by appends only, or '#full <to>' "
              "followed by the whole ledger.",
         examples=("get metadata changes since 0f343b0931126a20f133d67c2b018a3b", "get metadata changes since none"),
         keywords=KEYWORDS, nargs=(1, 1), readonly=True)
async def get_metadata_changes(call):
    meta = await metadata(call.node)
    since = call.args[0] if call.args[0].lower() != "none" else ""
    kind, version, data = await meta.changes_since(since)
    header = f"#delta {since} {version}" if kind == "delta" else f"#full {version}"
    return Reply.of_text(header + "\n" + data.decode("utf-8", "replace"))


@command("blockchain pull to stdout", grant="read", usage="blockchain pull to stdout",
         text="The whole local ledger as JSON lines: what synchronizers fetch from the master.",
         examples=("blockchain pull to stdout",), keywords=KEYWORDS, readonly=True)
async def blockchain_pull_stdout(call):
    meta = await metadata(call.node)
    _, _, data = await meta.changes_since("")  # the whole file, read under the ledger's lock
    return Reply.of_text(data.decode("utf-8", "replace"))


@command("blockchain pull to json", grant="write", usage="blockchain pull to json <file>",
         text="Copy the whole local ledger, as JSON lines, to a file. A caller other than the node's owner may "
              "only name a file inside the node's home and work directories.",
         examples=("blockchain pull to json !tmp_dir/ledger.json",), keywords=KEYWORDS, nargs=(1, 1))
async def blockchain_pull_json(call):
    path = path_check(call)(call.args[0])
    meta = await metadata(call.node)
    _, _, data = await meta.changes_since("")
    await call.node.in_thread(write_atomically, path, data, False)
    return f"{len(meta.ledger)} policies written to {call.args[0]}"


# --- changes --------------------------------------------------------------------------------


@command("blockchain insert", grant="write", usage="blockchain insert where policy = P [and local = true] [and master = ip:port]",
         text="Add a policy: id and date are added, an operator gets a member number; it is appended to the local "
              "ledger (local = true, the default) and sent to the master with 'blockchain push'. When the master "
              "cannot be reached the policy stays 'ledger: local' and the synchronizer delivers it later.",
         examples=("blockchain insert where policy = !operator_policy and local = true and master = !master_node",
                   "blockchain insert where policy = !p and local = false and master = 10.0.0.25:32048"),
         keywords=KEYWORDS,
         options=(Option("policy", kind="json", required=True), Option("local", kind="bool", default=True),
                  Option("master", help="ip:port of the master"), Option("blockchain", help="not supported")))
async def blockchain_insert(call):
    node = call.node
    meta = await metadata(node)
    if call.opts["blockchain"]:
        raise OptionError("blockchain platforms are not supported: use 'master = ip:port'")
    local, master = call.opts["local"], call.opts["master"]
    if not local and not master:
        raise OptionError("with 'local = false' give 'master = ip:port', or the policy goes nowhere")
    try:
        stored, failure = await meta.insert(parse_policy(call.opts["policy"]), local, master)
    except MasterRefused as e:
        raise Refused(e.message) from None
    pid = next(iter(stored.values()))["id"]
    if failure:
        node.errors.add(call.origin.label, "blockchain insert", f"policy {pid} kept local: {failure}")
        return f"Policy {pid} added locally; the master was not reached ({failure}); it will be pushed again"
    return f"Policy {pid} added" + (" (local and master)" if master and local else " to the master" if master
                                     else " locally")


@command("blockchain add", grant="write", usage="blockchain add <policy>",
         text="Add a policy to the local ledger only (ledger: local).",
         examples=("blockchain add !my_policy", 'blockchain add {"config": {"name": "c1", "port": 32148}}'),
         keywords=KEYWORDS, raw=True)
async def blockchain_add(call):
    meta = await metadata(call.node)
    stored = await meta.add(read_policy(call), "local")
    return f"Policy {next(iter(stored.values()))['id']} added locally"


@command("blockchain push", grant="write", usage="blockchain push <policy>",
         text="Store a policy in this node's ledger as global, and in its 'blockchain.ledger' table when dbms "
              "blockchain is connected: what a master does with what peers send it (peers send it with "
              "'run client (!master_node) blockchain push !policy'). A policy it holds already is "
              "acknowledged, not duplicated.",
         examples=("blockchain push !policy", 'blockchain push {"config": {"name": "c1", "port": 32148}}'),
         keywords=KEYWORDS, raw=True)
async def blockchain_push(call):
    meta = await metadata(call.node)
    stored = meta.ledger.prepare(read_policy(call))
    inner = next(iter(stored.values()))
    pid = inner["id"]
    inner["ledger"] = "global"
    store = _master_store(call.node)
    if pid in meta.ledger:
        added = await _push_to_table(store, stored, call.origin.label)
        return f"Policy {pid} is already in the ledger" + (" (added to the ledger table)" if added else "")
    stored = meta.ledger.complete(stored)  # checked (an operator's member) before anything is stored
    await _push_to_table(store, stored, call.origin.label)
    await meta.add(stored, "global")
    return f"Policy {pid} stored"


async def _push_to_table(store, policy: dict, host: str) -> bool:
    if store is None:
        return False
    await store.ensure_table()
    return await store.push(policy, host=host)


@command("blockchain prepare policy", grant="write", usage="blockchain prepare policy <policy>",
         text="Add id and date to a policy without storing it. Given as !var, the variable is updated too.",
         examples=("blockchain prepare policy !p",), keywords=KEYWORDS, raw=True)
async def blockchain_prepare(call):
    meta = await metadata(call.node)
    prepared = meta.ledger.prepare(read_policy(call))
    text = to_line(prepared)
    tokens = call.tokens
    if len(tokens) == 1 and tokens[0].kind == WORD and tokens[0].value.startswith("!") \
            and tokens[0].value[1:] in call.node.dictionary:
        call.node.set_key(tokens[0].value[1:], text, call.origin)
    return Reply.of_json(prepared)


def _ids_option(value: str) -> list[str]:
    ids = values.split_list(value)
    if not ids:
        raise OptionError("give at least one policy id")
    return ids


@command("blockchain delete policy", grant="admin",
         usage="blockchain delete policy where id = X [and local = true] [and master = ip:port]",
         text="Remove a policy from the local ledger (local = true) and from the master's (master = ip:port).",
         examples=("blockchain delete policy where id = 64283dba96a3e5e5fe4ac8bd2dbd5ed4",
                   "blockchain delete policy where id = !pid and master = !master_node"),
         keywords=KEYWORDS,
         options=(Option("id", required=True), Option("local", kind="bool", default=True), Option("master"),
                  Option("blockchain")))
async def blockchain_delete(call):
    meta = await metadata(call.node)
    ids = _ids_option(call.opts["id"])
    if call.opts["blockchain"]:
        raise OptionError("blockchain platforms are not supported: use 'master = ip:port'")
    parts = []
    if call.opts["master"]:
        await _ask_master(meta, call.opts["master"], "blockchain drop policy where id = " + ",".join(ids))
        parts.append(f"deleted on the master {call.opts['master']}")
    if call.opts["local"]:
        missing = [i for i in ids if i not in meta.ledger]
        if missing and not call.opts["master"]:
            raise CommandError(f"no policy with id {', '.join(missing)} in the local ledger")
        removed = await meta.remove(ids)
        parts.append(f"{removed} removed locally")
    return "Policy " + ", ".join(ids) + ": " + "; ".join(parts)


@command("blockchain drop policy", grant="admin", usage="blockchain drop policy where id = a,b | blockchain drop policy <policy>",
         text="Remove policies from this node's ledger and from its 'blockchain.ledger' table (on a master).",
         examples=("blockchain drop policy where id = 64283dba96a3e5e5fe4ac8bd2dbd5ed4", "blockchain drop policy !p"),
         keywords=KEYWORDS, raw=True)
async def blockchain_drop(call):
    meta = await metadata(call.node)
    positional, clause = grammar.split_where(call.tokens)
    if clause is not None and not positional:
        pairs = dict((k, token_text(v[0], call.substitute)) for k, v in grammar.parse_where(clause))
        if set(pairs) != {"id"}:
            raise OptionError("usage: blockchain drop policy where id = a,b")
        ids = _ids_option(pairs["id"])
    else:
        ids = [next(iter(meta.ledger.prepare(read_policy(call)).values()))["id"]]
    store = _master_store(call.node)
    in_table = await store.drop(ids) if store is not None and await store.has_table() else 0
    removed = await meta.remove(ids)
    if not removed and not in_table:
        raise CommandError(f"no policy with id {', '.join(ids)} in the ledger")
    return f"{removed} policies dropped" + (f" ({in_table} from the ledger table)" if store is not None else "")


@command("blockchain wait for", grant="read", usage="blockchain wait for <policy> [where timeout = 10 seconds]",
         text="Wait until the local copy of the metadata holds the policy (e.g. after pushing it to the master).",
         examples=("blockchain wait for !p", "blockchain wait for !p where timeout = 1 minute"),
         keywords=KEYWORDS, raw=True)
async def blockchain_wait_for(call):
    meta = await metadata(call.node)
    positional, clause = grammar.split_where(call.tokens)
    timeout = 10.0
    if clause is not None:
        for key, value in grammar.parse_where(clause):
            if key != "timeout":
                raise OptionError(f"'blockchain wait for' has no option '{key}' (valid: timeout)")
            try:
                timeout = values.parse_seconds(" ".join(token_text(t, call.substitute) for t in value))
            except grammar.GrammarError as e:
                raise OptionError(f"option 'timeout': {e.message}") from None
    pid = next(iter(meta.ledger.prepare(read_policy(call, positional)).values()))["id"]
    d = meta.when(lambda: pid in meta.ledger)
    d.addTimeout(timeout, call.node.reactor)
    try:
        await d
    except (CancelledError, DeferredTimeout):
        raise Timeout(f"policy {pid} is not in the local metadata after {timeout:g} seconds") from None
    return f"Policy {pid} is in the metadata"


@command("blockchain load metadata", grant="write", usage="blockchain load metadata",
         text="Read the ledger file again (after editing it by hand, or copying one in).",
         examples=("blockchain load metadata",), keywords=KEYWORDS)
async def blockchain_load(call):
    meta = await metadata(call.node)
    parsed = await meta.reload()
    skipped = f"; {len(parsed.errors)} corrupt lines skipped (see 'get error log')" if parsed.errors else ""
    return f"{len(parsed.policies)} policies loaded from {meta.ledger.path}{skipped}"


@command("blockchain seed from", grant="admin", usage="blockchain seed from ip:port",
         text="Copy the metadata from a peer (usually the master) now, keeping local policies it lacks.",
         examples=("blockchain seed from 10.0.0.25:32048",), keywords=KEYWORDS, nargs=(1, 1))
async def blockchain_seed(call):
    meta = await metadata(call.node)
    reply = await _ask_master(meta, call.args[0], "blockchain pull to stdout")
    count, local = await meta.install_master_copy(reply.text or "")
    return f"{count} policies from {call.args[0]}" + (f" ({len(local)} local kept)" if local else "")


@command("blockchain test", grant="read", usage="blockchain test [where format = json]",
         text="Check the local ledger file: lines, policies, corrupt lines (with their numbers) and duplicates.",
         examples=("blockchain test",), keywords=KEYWORDS, options=(FORMAT,), readonly=True)
async def blockchain_test(call):
    meta = await metadata(call.node)
    data = await call.node.in_thread(meta.ledger.read_file)
    parsed = await call.node.in_thread(parse_lines, data.decode("utf-8", "replace"))
    report = {"file": meta.ledger.path, "lines": parsed.lines, "policies": len(parsed.policies),
              "duplicates": parsed.lines - len(parsed.policies) - len(parsed.errors),
              "errors": [f"line {n}: {m}" for n, m in parsed.errors], "valid": not parsed.errors}
    if call.wants_json:
        return Reply.of_json(report)
    rows = [(k, v if not isinstance(v, list) else "; ".join(v) or "none") for k, v in report.items()]
    return Reply.of_table(("Check", "Result"), rows)
