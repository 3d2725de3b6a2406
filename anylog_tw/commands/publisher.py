"""`run publisher`, `exit publisher`, `get publisher`, `set data distribution`, `get publisher distribution`."""

from __future__ import annotations

from anylog_tw.base.errors import CommandError, OptionError, ServiceError
from anylog_tw.base.names import is_name
from anylog_tw.base.registry import FORMAT, Option, command
from anylog_tw.base.reply import Reply
from anylog_tw.commands.files import confine_options
from anylog_tw.ingest.distribution import Distribution
from anylog_tw.ingest.publisher import Publisher, PublisherConfig
from anylog_tw.metadata.layer import metadata
from anylog_tw.net.peers import Peers, canonical

PROCESS = "Publisher"

_OPTIONS = (
    Option("watch_dir", help="the directory of files to publish (default !watch_dir)"),
    Option("bkup_dir", help="where delivered files are kept (default !bkup_dir)"),
    Option("err_dir", help="where bad files go (default !err_dir)"),
    Option("error_dir", help="the same as err_dir (AnyLog's spelling for the publisher)"),
    Option("delete_json", kind="bool", default=False, help="delete delivered files instead of keeping them"),
    Option("compress_json", kind="bool", default=False, help="gzip the delivered files kept in bkup_dir"),
    Option("delete_sql", kind="bool", default=False, help="accepted for compatibility (no SQL files are published)"),
    Option("compress_sql", kind="bool", default=False, help="accepted for compatibility"),
    Option("company", help="accepted for compatibility (routing reads the clusters, not the company)"),
    Option("master_node", help="ip:port of the master (shown in get processes)"),
    Option("per_operator", kind="int", default=4, help="transfers in flight to one operator (1 to 64)"),
    Option("max_in_flight", kind="int", default=32, help="transfers in flight overall (1 to 1024)"),
    Option("retry", kind="seconds", default=30.0, help="longest wait between retries of pending files"),
    Option("rescan", kind="seconds", default=10.0, help="seconds between backstop rescans of the watch dir"),
    Option("inotify", kind="bool", default=True, help="false polls the watch dir instead of INotify"),
)


@command("run publisher", grant="admin",
         usage="run publisher [where watch_dir = D and bkup_dir = D and err_dir = D and delete_json = false and "
               "compress_json = false and master_node = ip:port and per_operator = 4]",
         text="Start the publisher: each JSON file dropped in the watch dir (dbms.table[.source[.hash[.instructions]]]"
              ".json, optionally .gz) is sent to an operator that hosts its table: a 'set data distribution' rule "
              "first, else the clusters hosting the table in the metadata (several clusters: the files are spread "
              "over them by their hash), one live operator per cluster. A file leaves the watch dir only once the "
              "operator acknowledged it; then it is deleted (delete_json) or kept in bkup_dir (gzipped with "
              "compress_json). Files with no live operator wait and are retried. Bad files go to the error dir.",
         examples=("run publisher",
                   "run publisher where delete_json = true and master_node = !master_node",
                   "run publisher where watch_dir = !watch_dir and bkup_dir = !bkup_dir and compress_json = true"),
         keywords=("publisher", "background processes", "data"), options=_OPTIONS)
async def run_publisher(call):
    node = call.node
    node.check_free(PROCESS)
    confine_options(call, "watch_dir", "bkup_dir", "err_dir", "error_dir")
    o = call.opts
    if o["err_dir"] and o["error_dir"] and o["err_dir"] != o["error_dir"]:
        raise OptionError("err_dir and error_dir are the same option: give one of them")
    if not 1 <= o["per_operator"] <= 64:
        raise OptionError(f"per_operator is {o['per_operator']}: use 1 to 64")
    if not 1 <= o["max_in_flight"] <= 1024:
        raise OptionError(f"max_in_flight is {o['max_in_flight']}: use 1 to 1024")
    if o["retry"] <= 0 or o["rescan"] <= 0:
        raise OptionError("retry and rescan must be more than 0 seconds")
    master = ""
    if o["master_node"]:
        try:
            master = canonical(o["master_node"])
        except OptionError as e:
            raise OptionError(f"master_node: {e.message}") from None
    d = node.dirs
    config = PublisherConfig(
        watch_dir=o["watch_dir"] or d["watch_dir"], bkup_dir=o["bkup_dir"] or d["bkup_dir"],
        err_dir=o["err_dir"] or o["error_dir"] or d["err_dir"], delete_json=o["delete_json"],
        compress_json=o["compress_json"], master_node=master, company=o["company"] or "",
        per_operator=o["per_operator"], max_in_flight=o["max_in_flight"], retry_max=o["retry"],
        retry_initial=min(1.0, o["retry"]), rescan=o["rescan"], use_inotify=o["inotify"])
    op = node.process("Operator")
    if op is not None and _same(getattr(op.config, "watch_dir", ""), config.watch_dir):
        raise ServiceError(f"the Operator watches {config.watch_dir} already: a publisher and an operator cannot "
                           f"share a watch dir (give the publisher its own watch_dir)")
    meta = await metadata(node)
    service = Publisher(config, meta, node.component(Peers), node.component(Distribution))
    node.add_process(service)
    return f"Publisher started (watching {config.watch_dir})"


def _same(a: str, b: str) -> bool:
    import os

    return bool(a) and os.path.realpath(a) == os.path.realpath(b)


@command("exit publisher", grant="admin", usage="exit publisher",
         text="Stop the publisher; transfers in flight finish first, the other files stay in the watch dir and are "
              "sent when the publisher runs again.",
         examples=("exit publisher",), keywords=("publisher", "background processes"))
async def exit_publisher(call):
    await call.node.stop_process(PROCESS)
    return "Publisher stopped"


_TOPICS = ("summary", "operators", "pending", "tables", "config")


@command("get publisher", grant="read", usage="get publisher [summary|operators|pending|tables|config] [where format = json]",
         text="The publisher's state: summary (files and bytes sent, failures, bad files, the last error), operators "
              "(per operator: files and bytes sent, transfers in flight and waiting, failures, last error), pending "
              "(files not yet delivered per table, and why they wait), tables (files delivered per table), config. "
              "With no topic: summary, operators and pending.",
         examples=("get publisher", "get publisher operators", "get publisher where format = json"),
         keywords=("publisher", "monitoring"), options=(FORMAT,), nargs=(0, 1), readonly=True)
def get_publisher(call):
    topic = call.args[0].lower() if call.args else ""
    if topic and topic not in _TOPICS:
        raise OptionError(f"unknown publisher topic {topic!r} (one of: {', '.join(_TOPICS)})")
    pub = call.node.process(PROCESS)
    if pub is None:
        if topic in ("", "config"):
            return Reply.of_table(("Status",), [["Not declared"]], "Publisher")
        raise ServiceError("Publisher is not running (start it with 'run publisher')")
    parts = []
    if topic in ("", "summary"):
        summary = {"Status": "Running", **pub.stats.summary(), "Pending files": len(pub.known),
                   "Waiting for an operator": len(pub.pending)}
        parts.append(("Summary", tuple(summary), [list(summary.values())]))
    if topic in ("", "operators"):
        parts.append(("Operators", ("Operator", "Status", "Files", "Bytes", "In flight", "Queued", "Failures",
                                    "Last error"), pub.operator_rows()))
    if topic in ("", "pending"):
        parts.append(("Pending", ("DBMS", "Table", "Files", "Waiting because"), pub.pending_rows()))
    if topic == "tables":
        parts.append(("Tables", ("DBMS", "Table", "Files sent"), pub.stats.table_rows()))
    if topic == "config":
        c = pub.config
        parts.append(("Config", ("Watch dir", "Bkup dir", "Err dir", "Delete json", "Compress json", "Master node",
                                 "Per operator", "Max in flight"),
                      [[c.watch_dir, c.bkup_dir, c.err_dir, c.delete_json, c.compress_json, c.master_node,
                        c.per_operator, c.max_in_flight]]))
    if len(parts) == 1:
        title, cols, rows = parts[0]
        if call.wants_json:
            return Reply.of_json([dict(zip(cols, r)) for r in rows] if title != "Summary"
                                 else dict(zip(cols, rows[0])))
        return Reply.of_table(cols, rows, title)
    if call.wants_json:
        out = {}
        for title, cols, rows in parts:
            out[title] = dict(zip(cols, rows[0])) if title == "Summary" else [dict(zip(cols, r)) for r in rows]
        return Reply.of_json(out)
    return Reply.of_text("\n\n".join(Reply.of_table(cols, rows, title).render() for title, cols, rows in parts))


@command("set data distribution", grant="admin",
         usage="set data distribution where dbms = D and table = T|* and dest = ip:port [and dest = ip:port ...] "
               "[and remove = true]",
         text="Route the files of dbms.table (table = * for every table of the dbms) to these operators, before the "
              "metadata is asked. With several destinations each file goes to one of them, spread by the file's "
              "hash, to the next one when one is down. Given again, the destinations are added. remove = true drops "
              "the destinations named, or the whole rule when no dest is given.",
         examples=("set data distribution where dbms = lsl and table = ping and dest = 10.0.0.5:32048",
                   "set data distribution where dbms = lsl and table = * and dest = 10.0.0.5:32048 and "
                   "dest = 10.0.0.6:32048",
                   "set data distribution where dbms = lsl and table = ping and remove = true"),
         keywords=("publisher", "configuration"),
         options=(Option("dbms", required=True), Option("table", required=True), Option("dest", repeat=True),
                  Option("remove", kind="bool", default=False)))
def set_data_distribution(call):
    o = call.opts
    dbms, table = o["dbms"].lower(), o["table"].lower()
    if not is_name(dbms):
        raise OptionError(f"dbms {o['dbms']!r} is not a valid name (letters, digits and '_', not starting with a "
                          f"digit)")
    if table != "*" and not is_name(table):
        raise OptionError(f"table {o['table']!r} is not a valid name (or * for every table of {dbms})")
    dests = [canonical(d) for dest in o["dest"] for d in dest.split(",") if d.strip()]
    dist = call.node.component(Distribution)
    if o["remove"]:
        if not dist.remove(dbms, table, dests):
            raise CommandError(f"no distribution rule for {dbms}.{table}"
                               + (f" with {', '.join(dests)}" if dests else "") + " (see 'get publisher distribution')")
        _reroute(call.node)
        return f"Distribution of {dbms}.{table} " + (f"without {', '.join(dests)}" if dests else "removed")
    if not dests:
        raise OptionError("set data distribution needs dest = ip:port (or remove = true)")
    dist.add(dbms, table, dests)
    _reroute(call.node)
    return f"Distribution of {dbms}.{table}: {', '.join(dist.rules[(dbms, table)])}"


def _reroute(node) -> None:
    pub = node.process(PROCESS)
    if pub is not None and pub.running:
        pub.retry_now()


@command("get publisher distribution", grant="read", usage="get publisher distribution [where format = json]",
         text="The 'set data distribution' rules: the operators each dbms.table (or dbms.*) is sent to.",
         examples=("get publisher distribution",), keywords=("publisher", "monitoring"), options=(FORMAT,),
         readonly=True)
def get_publisher_distribution(call):
    rows = call.node.component(Distribution).rows()
    return Reply.of_table(("DBMS", "Table", "Destinations"), rows, "Data distribution")
