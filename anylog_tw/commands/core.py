"""Commands about the node itself: status, processes, dictionary, logs, scripts, name, exit."""

from __future__ import annotations

import platform

import twisted
from anylog_tw import __version__
from anylog_tw.base import layout
from anylog_tw.base.errors import CommandError, GrammarError
from anylog_tw.base.grammar import EQ, WORD
from anylog_tw.base.registry import FORMAT, Option, command, token_text
from anylog_tw.base.reply import Reply
from anylog_tw.base.timefmt import format_utc
from anylog_tw.commands.files import path_check

LIMIT = Option("limit", kind="int", default=100, help="how many entries, newest last (0 = all)")


def node_address(node) -> str:
    """The node's identity for peers: its TCP server's external address when one runs."""
    tcp = node.process("TCP")
    address = getattr(tcp, "external_address", None) if tcp is not None else None
    if address:
        return f"{address[0]}:{address[1]}"
    return node.dictionary.get("external_ip") or node.dictionary.get("ip", "127.0.0.1")


@command("get status", grant="read", usage="get status [where format = json]",
         text="Show that the node is running, with its name and TCP address (name@ip:port).",
         examples=("get status", "get status where format = json"),
         keywords=("monitor", "node"), options=(FORMAT,), readonly=True)
def get_status(call):
    node = call.node
    assigned = f"{node.name}@{node_address(node)}"
    if call.wants_json:
        return Reply.of_json({"assigned_name": assigned, "status": "running",
                              "uptime": round(node.uptime(), 3), "version": __version__})
    return f"{assigned} running"


@command("get processes", grant="read", usage="get processes [where format = json]",
         text="List the background processes (TCP, REST, Operator, Publisher, Blockchain Sync, Scheduler, HA, "
              "Console) with their status, Running or Not declared, and details.",
         examples=("get processes", "get processes where format = json"),
         keywords=("monitor", "background processes"), options=(FORMAT,), readonly=True)
def get_processes(call):
    rows = []
    data = {}
    for name, svc in call.node.processes():
        if svc is None:
            status, details = "Not declared", ""
        else:
            status, details = "Running", svc.details() if hasattr(svc, "details") else ""
        rows.append((name, status, details))
        data[name] = {"Status": status, "Details": details} if details else {"Status": status}
    return Reply.of_table(("Process", "Status", "Details"), rows, data=data)


@command("get dictionary", grant="read", usage="get dictionary [substring] [where format = json]",
         text="Show the node's dictionary: the values that '!key' stands for. With a substring, only the keys that "
              "contain it (e.g. 'get dictionary _dir' lists the work directories).",
         examples=("get dictionary", "get dictionary _dir", "get dictionary where format = json"),
         keywords=("configuration", "dictionary"), options=(FORMAT,), nargs=(0, 1), readonly=True)
def get_dictionary(call):
    part = call.args[0].lower() if call.args else ""
    items = sorted((k, "***" if layout.is_secret_key(k) else v)  # secrets never leave the node in a reply
                   for k, v in call.node.dictionary.items() if part in k.lower())
    return Reply.of_table(("Key", "Value"), items, data=dict(items))


def _words(call) -> str:
    return " ".join(token_text(t, call.substitute) for t in call.tokens)


@command("echo", grant="read", usage="echo <text>",
         text="Print the text, with dictionary references (!key) and environment variables ($VAR) resolved.",
         examples=("echo hello", "echo node !node_name is ready"), keywords=("cli", "script"),
         raw=True, readonly=True)
def echo(call):
    return _words(call)


@command("print", grant="read", usage="print <text>", text="Same as echo: print the text with references resolved.",
         examples=("print !watch_dir",), keywords=("cli", "script"), raw=True, readonly=True)
def print_(call):
    return _words(call)


@command("process", grant="admin", usage="process <script file>",
         text="Run the commands of a script file in order. Lines starting with # are comments; <...> wraps a "
              "command over several lines. A failing line is logged with its line number and the script goes on.",
         examples=("process !local_scripts/operator.al", "process conf/demo.al"),
         keywords=("script", "configuration"), nargs=(1, 1))
async def process_script(call):
    path = path_check(call)(call.node.resolve_script(call.args[0]))  # inside the home unless the owner asks
    # The script's lines run with the caller's grant: `process` never widens what its caller holds.
    ran, failed = await call.node.run_script(path, origin=call.origin)
    if failed:
        return Reply.of_text(f"Script {path}: {ran} commands, {failed} failed (see 'get error log')")
    return f"Script {path}: {ran} commands"


@command("get node name", grant="read", usage="get node name", text="Show the node's name.",
         examples=("get node name",), keywords=("node", "configuration"), readonly=True)
def get_node_name(call):
    return call.node.name


@command("set node name", grant="admin", usage="set node name <name>",
         text="Change the node's name (shown in the prompt, in get status and to peers).",
         examples=("set node name operator1",), keywords=("node", "configuration"), raw=True)
def set_node_name(call):
    words = [token_text(t, call.substitute) for t in call.tokens if t.kind != EQ]
    if len(words) != 1 or not words[0].strip():
        raise CommandError("usage: set node name <name> (one word, e.g. 'set node name operator1')")
    call.node.set_name(words[0])
    return ""


@command("get version", grant="read", usage="get version", text="Show the node's software version.",
         examples=("get version",), keywords=("node", "monitor"), readonly=True)
def get_version(call):
    return (f"anylog-tw Version: {__version__} (Twisted {twisted.__version__}, "
            f"Python {platform.python_version()})")


def _log_reply(log, limit: int, with_result: bool) -> Reply:
    rows = []
    for number, when, origin, cmd, result in log.entries(limit or None):
        stamp = format_utc(when)
        rows.append((number, stamp, origin, cmd, result) if with_result else (number, stamp, origin, cmd))
    columns = ("ID", "Time", "Origin", "Command", "Result") if with_result else ("ID", "Time", "Origin", "Command")
    return Reply.of_table(columns, rows)


@command("get event log", grant="read", usage="get event log [where limit = N and format = json]",
         text="The commands the node ran, newest last (bounded: the oldest entries fall off).",
         examples=("get event log", "get event log where limit = 10"), keywords=("monitor", "log"),
         options=(LIMIT, FORMAT), readonly=True)
def get_event_log(call):
    return _log_reply(call.node.events, call.opts["limit"], True)


@command("get error log", grant="read", usage="get error log [where limit = N and format = json]",
         text="The errors the node met (failed commands, failed script lines, ingest failures), newest last.",
         examples=("get error log", "get error log where format = json"), keywords=("monitor", "log"),
         options=(LIMIT, FORMAT), readonly=True)
def get_error_log(call):
    return _log_reply(call.node.errors, call.opts["limit"], True)


@command("reset error log", grant="admin", usage="reset error log", text="Empty the error log.",
         examples=("reset error log",), keywords=("log",))
def reset_error_log(call):
    call.node.errors.clear()
    return ""


@command("reset event log", grant="admin", usage="reset event log", text="Empty the event log.",
         examples=("reset event log",), keywords=("log",))
def reset_event_log(call):
    call.node.events.clear()
    return ""


@command("create work directories", grant="admin", usage="create work directories",
         text="Create AnyLog's work directories under the node's home (watch, archive, error, dbms ...). "
              "The node does this at start; the command repairs a deleted directory.",
         examples=("create work directories",), keywords=("configuration", "node"))
def create_work_directories(call):
    created = layout.create_work_directories(call.node.home)
    return f"Created {len(created)} directories" if created else "All work directories exist"


@command("exit node", grant="admin", usage="exit node",
         text="Stop every background process and end the node process (exit code 0).",
         examples=("exit node",), keywords=("node", "background processes"))
def exit_node(call):
    call.node.shutdown()
    return f"Node {call.node.name} is shutting down"


def _condition_value(call, tok) -> str:
    """A condition operand: like any value, but a key missing from the dictionary reads as empty."""
    try:
        return token_text(tok, call.substitute)
    except GrammarError:
        return ""


def _truthy(value: str) -> bool:
    return value.strip().lower() not in ("", "false", "0")


@command("if", grant="read", usage="if [not] <value> [==|!=|>|<|>=|<= <value>] then <command>",
         text="Run the command only when the condition holds. A value alone is true unless it is empty, false "
              "or 0; a dictionary key that is not set reads as empty, so 'if not !x then ...' runs when x is "
              "missing. Comparisons are numeric when both sides are numbers. Scripts use it to stay idempotent: "
              "insert a policy only when it is not there yet.",
         examples=("if not !operator_id then blockchain insert where policy = !operator and local = true",
                   "if !node_name == demo then echo demo node",
                   "if !count.int > 10 then echo many"),
         keywords=("script", "cli"), raw=True)
async def if_(call):
    tokens = call.tokens
    then = next((i for i, t in enumerate(tokens) if t.kind == WORD and t.value.lower() == "then"), None)
    if then is None or then + 1 >= len(tokens):
        raise CommandError("usage: if [not] <value> [== <value>] then <command>")
    cond = list(tokens[:then])
    negate = bool(cond) and cond[0].kind == WORD and cond[0].value.lower() == "not"
    if negate:
        cond = cond[1:]
    if len(cond) == 1:
        holds = _truthy(_condition_value(call, cond[0]))
    elif len(cond) == 3 and cond[1].value in _COMPARE:
        left, right = _condition_value(call, cond[0]), _condition_value(call, cond[2])
        try:
            left_v, right_v = float(left), float(right)
        except ValueError:
            left_v, right_v = left, right
        holds = _COMPARE[cond[1].value](left_v, right_v)
    else:
        raise CommandError("the condition of 'if' is one value, or 'value <op> value' with ==, !=, >, <, >=, <=")
    if negate:
        holds = not holds
    if not holds:
        return ""
    return await call.node.execute(call.text[tokens[then + 1].start:], call.origin)


_COMPARE = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b, "<": lambda a, b: a < b, ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b,
}
