"""`run operator`, `exit operator`, `get operator [config|summary|json|sql|inserts|error]`, and
`get stats` / `reset stats where service = operator` (spec §8.2)."""

from __future__ import annotations

from anylog_tw.base.errors import CommandError, OptionError, ServiceError
from anylog_tw.base.registry import FORMAT, Option, command
from anylog_tw.base.reply import Reply
from anylog_tw.commands.files import confine_options
from anylog_tw.ingest import stats as S
from anylog_tw.ingest.ledger_link import LedgerLink
from anylog_tw.ingest.operator import Operator, OperatorConfig
from anylog_tw.ingest.reader import DEFAULT_LIMITS, Limits
from anylog_tw.storage.engines import Databases

# The ingest and storage modules are imported when a command runs, not when commands load: a
# node's command table never depends on the database drivers importing cleanly.
PROCESS = "Operator"

_OPTIONS = (
    Option("policy", help="id of this node's operator policy (its cluster and member)"),
    Option("create_table", kind="bool", default=True, help="create a missing table (from a table policy or the data)"),
    Option("update_tsd_info", kind="bool", default=True,
           help="record every file in almgm.tsd_info (needed for exactly-once and duplicate detection)"),
    Option("archive_json", kind="bool", default=True, help="keep ingested files under archive_dir/YY/MM/DD"),
    Option("compress_json", kind="bool", default=True, help="gzip archived files"),
    Option("archive_sql", kind="bool", default=False,
           help="accepted for compatibility (.sql files are archived with the JSON files, as archive_json says)"),
    Option("compress_sql", kind="bool", default=True, help="accepted for compatibility"),
    Option("limit_tables", kind="list", default=None, help="only these dbms.table (dbms.* for a whole dbms)"),
    Option("threads", kind="int", default=1, help="files in hand at once (1 to 10)"),
    Option("master_node", help="ip:port of the master (shown in get processes)"),
    Option("blockchain", help="accepted for compatibility"),
    Option("company"),
    Option("distributor", kind="bool", default=False, help="not supported: must be false"),
    Option("watch_dir"), Option("err_dir"), Option("archive_dir"), Option("bkup_dir"), Option("distr_dir"),
    Option("blobs_dir", help="where blob columns of mapping policies are written (default: !blobs_dir)"),
    Option("file_type", help="accepted for compatibility (json and json.gz are taken)"),
    Option("rescan", kind="seconds", default=10.0, help="seconds between backstop rescans of the watch dir"),
    Option("inotify", kind="bool", default=True, help="false polls the watch dir instead of INotify"),
    Option("max_line", kind="size", default=None,
           help="longest line (and JSON array file) taken, default 16MB; 0 turns the limit off"),
    Option("max_expanded", kind="size", default=None,
           help="most bytes a .gz file may expand to, default 2GB; 0 turns the limit off"),
    Option("max_ratio", kind="int", default=None,
           help="most expanded bytes per compressed byte of a .gz file, default 200; 0 turns the limit off"),
    Option("durable", kind="bool", default=True,
           help="rows and archived copies are synced to disk before a file is archived or removed (false: "
                "faster, safe across a process crash but not a power loss)"),
)


@command("run operator", grant="admin",
         usage="run operator where policy = ID [and create_table = true and update_tsd_info = true and "
               "archive_json = true and compress_json = true and limit_tables = (d.t, ...) and threads = 1 and "
               "master_node = ip:port and max_line = 16MB and max_expanded = 2GB and max_ratio = 200 and "
               "durable = true]",
         text="Start the operator: JSON files dropped in the watch dir (dbms.table.source.hash.instructions.json, "
              "optionally .gz) become rows in the local dbms, each file recorded in almgm.tsd_info, its rows tagged "
              "with (tsd_name, tsd_id), then archived under archive_dir/YY/MM/DD. A file that fails goes to the "
              "error dir with the reason in its name and in 'get operator error'. A line longer than max_line, or a "
              ".gz expanding past max_expanded or max_ratio, fails the file (err_line, err_expanded). When the disk "
              "or the database is full, ingest pauses and retries; 'get operator' says why. Needs 'connect dbms "
              "almgm' (for tsd_info) and the dbms named in the files.",
         examples=("run operator where policy = !operator_policy and threads = 3",
                   "run operator where create_table = true and update_tsd_info = true and archive_json = true"),
         keywords=("operator", "background processes", "data"), options=_OPTIONS)
async def run_operator(call):
    node = call.node
    node.check_free(PROCESS)
    confine_options(call, "watch_dir", "err_dir", "archive_dir", "blobs_dir")
    o = call.opts
    if not 1 <= o["threads"] <= 10:
        raise OptionError(f"threads is {o['threads']}: use 1 to 10")
    if o["distributor"]:
        raise OptionError("distributor = true is not supported by this node (use 'run ha' for replicas)")
    for entry in o["limit_tables"] or []:
        if entry.count(".") != 1 and entry != "*":
            raise OptionError(f"limit_tables entry {entry!r} must be dbms.table (or dbms.*)")
    limits = _limits(o)
    link = await LedgerLink.open(node)
    cluster, member, company = await link.operator(o["policy"])
    dbs = node.component(Databases)
    if o["update_tsd_info"]:
        almgm = dbs.find("almgm")
        if almgm is None:
            raise CommandError("update_tsd_info needs dbms almgm: connect it first "
                               "('connect dbms almgm where type = sqlite'), or set update_tsd_info = false")
        await almgm.create_tsd_table("tsd_info")
    d = node.dirs
    config = OperatorConfig(
        watch_dir=o["watch_dir"] or d["watch_dir"], err_dir=o["err_dir"] or d["err_dir"],
        archive_dir=o["archive_dir"] or d["archive_dir"], policy=o["policy"] or "", cluster=cluster,
        member=member, company=o["company"] or company, create_table=o["create_table"],
        update_tsd_info=o["update_tsd_info"], archive_json=o["archive_json"], compress_json=o["compress_json"],
        limit_tables=[e.lower() for e in (o["limit_tables"] or [])], threads=o["threads"],
        master_node=o["master_node"] or "", rescan=o["rescan"], use_inotify=o["inotify"], limits=limits,
        durable=o["durable"], blobs_dir=o["blobs_dir"] or d.get("blobs_dir") or "")
    service = Operator(config, link)
    node.add_process(service)
    return f"Operator started (watching {config.watch_dir}, member {member}, {config.threads} thread(s))"


def _limits(o):
    given = {k: o[k] for k in ("max_line", "max_expanded", "max_ratio") if o[k] is not None}
    for key, value in given.items():
        if value < 0:
            raise OptionError(f"{key} is {value}: use a positive value, or 0 to turn the limit off")
    if 0 < given.get("max_line", DEFAULT_LIMITS.max_line) < 1024:
        raise OptionError(f"max_line is {given['max_line']} bytes: a line limit under 1KB would refuse ordinary rows")
    return Limits(**given)


@command("exit operator", grant="admin", usage="exit operator",
         text="Stop the operator; files in hand are finished first, the rest stay in the watch dir.",
         examples=("exit operator",), keywords=("operator", "background processes"))
async def exit_operator(call):
    await call.node.stop_process(PROCESS)
    return "Operator stopped"


_TOPICS = ("config", "summary", "json", "sql", "inserts", "error")


@command("get operator", grant="read", usage="get operator [config|summary|json|sql|inserts|error] [where format = json]",
         text="The operator's state: config (policy, cluster, member), summary (rows, errors, rows/sec), json (JSON "
              "files per table), sql (.sql files per table), inserts (rows per table), error (the last failure of "
              "each kind, JSON or SQL). With no topic: the status (Running, or why ingest is paused: no space left, "
              "and when it tries again), json, sql, inserts and error.",
         examples=("get operator", "get operator summary", "get operator sql", "get operator error where format = json"),
         keywords=("operator", "monitoring"), options=(FORMAT,), nargs=(0, 1), readonly=True)
def get_operator(call):
    topic = call.args[0].lower() if call.args else ""
    if topic and topic not in _TOPICS:
        raise OptionError(f"unknown operator topic {topic!r} (one of: {', '.join(_TOPICS)})")
    node = call.node
    op = node.process(PROCESS)
    if op is None:
        if topic in ("", "config"):
            return _table(("Status",), [["Not declared"]], "Operator")
        raise ServiceError("Operator is not running (start it with 'run operator')")
    if topic == "config":
        return _table(("Status", "Time", "Policy", "Cluster", "Member"), [op.config_row()], "Operator config")
    st = op.stats
    if topic == "summary":
        return _table(S.SUMMARY, [st.summary_row(node.name, op.status(), node.reactor.seconds(), True)],
                      "Operator summary")
    if topic == "json":
        return _table(S.JSON, st.json_rows(), "JSON files")
    if topic == "sql":
        return _table(S.SQL, st.sql_rows(), "SQL files")
    if topic == "inserts":
        return _table(S.INSERTS, st.insert_rows(), "Inserts")
    if topic == "error":
        return _table(S.ERRORS, st.error_rows(), "Errors")
    parts = [("JSON files", S.JSON, st.json_rows()), ("SQL files", S.SQL, st.sql_rows()),
             ("Inserts", S.INSERTS, st.insert_rows()),
             ("Errors", S.ERRORS, st.error_rows())]
    if call.wants_json:
        return Reply.of_json({"Status": op.status(),
                              **{title: [dict(zip(cols, r)) for r in rows] for title, cols, rows in parts}})
    text = "\n\n".join([f"Status: {op.status()}"] +
                       [Reply.of_table(cols, rows, title).render() for title, cols, rows in parts])
    return Reply.of_text(text)


def _table(columns, rows, title):
    return Reply.of_table(columns, rows, title)


_SERVICE = (Option("service", required=True, choices=("operator",), help="the service whose counters: operator"),
            Option("topic", default="summary", help="summary (the counters of get operator)"), FORMAT)


def _operator_stats(call):
    topic = (call.opts.get("topic") or "summary").lower()
    if topic != "summary":
        raise OptionError(f"topic {topic!r}: the operator's statistics topic is 'summary'")
    op = call.node.process(PROCESS)
    if op is None or op.stats is None:
        raise ServiceError("Operator is not running (start it with 'run operator')")
    return op


@command("get stats", grant="read", usage="get stats where service = operator [and topic = summary] [and format = json]",
         text="A service's statistics: for the operator, its summary (as 'get operator summary').",
         examples=("get stats where service = operator and topic = summary",
                   "get stats where service = operator and format = json"),
         keywords=("operator", "monitoring"), options=_SERVICE, readonly=True)
def get_stats(call):
    from anylog_tw.ingest import stats as S

    op = _operator_stats(call)
    node = call.node
    return _table(S.SUMMARY, [op.stats.summary_row(node.name, "Running", node.reactor.seconds(), False)],
                  "Operator summary")


@command("reset stats", grant="write", usage="reset stats where service = operator [and topic = summary]",
         text="Start a service's counters again from zero: for the operator, the rows, files, errors and times of "
              "'get operator' (summary, json, sql, inserts, error). Its configuration and the files it holds are "
              "not touched.",
         examples=("reset stats where service = operator and topic = summary",),
         keywords=("operator", "monitoring"), options=_SERVICE)
def reset_stats(call):
    op = _operator_stats(call)
    op.stats.reset(call.node.reactor.seconds())
    return "Operator statistics reset"
