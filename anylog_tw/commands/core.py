"""Commands about the node itself: status, processes, dictionary, logs, scripts, name, exit."""

from __future__ import annotations

import platform
import time

import twisted

from anylog_tw import __version__, layout
from anylog_tw.commands.grammar import EQ
from anylog_tw.commands.registry import FORMAT, Option, command, token_text
from anylog_tw.commands.reply import Reply
from anylog_tw.errors import CommandError

LIMIT = Option("limit", kind="int", default=100, help="how many entries, newest last (0 = all)")


def node_address(node) -> str:
    """The node's identity for peers: its TCP server's external address when one runs."""
    tcp = node.process("TCP")
    address = getattr(tcp, "external_address", None) if tcp is not None else None
    if address:
        return f"{address[0]}:{address[1]}"
    return node.dictionary.get("external_ip") or node.dictionary.get("ip", "127.0.0.1")


@command("get status", usage="get status [where format = json]",
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


@command("get processes", usage="get processes [where format = json]",
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


@command("get dictionary", usage="get dictionary [substring] [where format = json]",
         text="Show the node's dictionary: the values that '!key' stands for. With a substring, only the keys that "
              "contain it (e.g. 'get dictionary _dir' lists the work directories).",
         examples=("get dictionary", "get dictionary _dir", "get dictionary where format = json"),
         keywords=("configuration", "dictionary"), options=(FORMAT,), nargs=(0, 1), readonly=True)
def get_dictionary(call):
    part = call.args[0].lower() if call.args else ""
    items = sorted((k, v) for k, v in call.node.dictionary.items() if part in k.lower())
    return Reply.of_table(("Key", "Value"), items, data=dict(items))


def _words(call) -> str:
    return " ".join(token_text(t, call.node.substitute) for t in call.tokens)


@command("echo", usage="echo <text>",
         text="Print the text, with dictionary references (!key) and environment variables ($VAR) resolved.",
         examples=("echo hello", "echo node !node_name is ready"), keywords=("cli", "script"),
         raw=True, readonly=True)
def echo(call):
    return _words(call)


@command("print", usage="print <text>", text="Same as echo: print the text with references resolved.",
         examples=("print !watch_dir",), keywords=("cli", "script"), raw=True, readonly=True)
def print_(call):
    return _words(call)


@command("process", usage="process <script file>",
         text="Run the commands of a script file in order. Lines starting with # are comments; <...> wraps a "
              "command over several lines. A failing line is logged with its line number and the script goes on.",
         examples=("process !local_scripts/operator.al", "process conf/demo.al"),
         keywords=("script", "configuration"), nargs=(1, 1))
async def process_script(call):
    path = call.node.resolve_script(call.args[0])
    ran, failed = await call.node.run_script(path, origin=None)
    if failed:
        return Reply.of_text(f"Script {path}: {ran} commands, {failed} failed (see 'get error log')")
    return f"Script {path}: {ran} commands"


@command("get node name", usage="get node name", text="Show the node's name.",
         examples=("get node name",), keywords=("node", "configuration"), readonly=True)
def get_node_name(call):
    return call.node.name


@command("set node name", usage="set node name <name>",
         text="Change the node's name (shown in the prompt, in get status and to peers).",
         examples=("set node name operator1",), keywords=("node", "configuration"), raw=True)
def set_node_name(call):
    words = [token_text(t, call.node.substitute) for t in call.tokens if t.kind != EQ]
    if len(words) != 1 or not words[0].strip():
        raise CommandError("usage: set node name <name> (one word, e.g. 'set node name operator1')")
    call.node.set_name(words[0])
    return ""


@command("get version", usage="get version", text="Show the node's software version.",
         examples=("get version",), keywords=("node", "monitor"), readonly=True)
def get_version(call):
    return (f"anylog-tw Version: {__version__} (Twisted {twisted.__version__}, "
            f"Python {platform.python_version()})")


def _log_reply(log, limit: int, with_result: bool) -> Reply:
    rows = []
    for number, when, origin, cmd, result in log.entries(limit or None):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(when))
        rows.append((number, stamp, origin, cmd, result) if with_result else (number, stamp, origin, cmd))
    columns = ("ID", "Time", "Origin", "Command", "Result") if with_result else ("ID", "Time", "Origin", "Command")
    return Reply.of_table(columns, rows)


@command("get event log", usage="get event log [where limit = N and format = json]",
         text="The commands the node ran, newest last (bounded: the oldest entries fall off).",
         examples=("get event log", "get event log where limit = 10"), keywords=("monitor", "log"),
         options=(LIMIT, FORMAT), readonly=True)
def get_event_log(call):
    return _log_reply(call.node.events, call.opts["limit"], True)


@command("get error log", usage="get error log [where limit = N and format = json]",
         text="The errors the node met (failed commands, failed script lines, ingest failures), newest last.",
         examples=("get error log", "get error log where format = json"), keywords=("monitor", "log"),
         options=(LIMIT, FORMAT), readonly=True)
def get_error_log(call):
    return _log_reply(call.node.errors, call.opts["limit"], True)


@command("reset error log", usage="reset error log", text="Empty the error log.",
         examples=("reset error log",), keywords=("log",))
def reset_error_log(call):
    call.node.errors.clear()
    return ""


@command("reset event log", usage="reset event log", text="Empty the event log.",
         examples=("reset event log",), keywords=("log",))
def reset_event_log(call):
    call.node.events.clear()
    return ""


@command("create work directories", usage="create work directories",
         text="Create AnyLog's work directories under the node's home (watch, archive, error, dbms ...). "
              "The node does this at start; the command repairs a deleted directory.",
         examples=("create work directories",), keywords=("configuration", "node"))
def create_work_directories(call):
    created = layout.create_work_directories(call.node.home)
    return f"Created {len(created)} directories" if created else "All work directories exist"


@command("exit node", usage="exit node",
         text="Stop every background process and end the node process (exit code 0).",
         examples=("exit node",), keywords=("node", "background processes"))
def exit_node(call):
    call.node.shutdown()
    return f"Node {call.node.name} is shutting down"
