"""Network query commands: `run client () sql` (through `run client`), the operators' `query part`,
and the monitoring and control of queries (`query status|explain|destination|stop`, `set query
mode`, `get query execution`, `get datetime`)."""

from __future__ import annotations

import datetime
import functools
import json
import os
import re
import tempfile

from anylog_tw.base import grammar, values
from anylog_tw.base.errors import CommandError, OptionError, StorageError
from anylog_tw.base.registry import FORMAT, Option, command
from anylog_tw.base.reply import Reply
from anylog_tw.commands.files import path_check
from anylog_tw.commands.storage import databases, parse_sql_call
from anylog_tw.metadata.destinations import is_metadata_destination
from anylog_tw.metadata.layer import metadata, metadata_destination
from anylog_tw.net.destination import DEFAULT_TIMEOUT, parse_destination
from anylog_tw.net.peers import Peers
from anylog_tw.query import output, stream, timeexpr
from anylog_tw.query.cursor import Cursors, Rendered
from anylog_tw.query.jobs import QueryJobs
from anylog_tw.query.network import NetworkQuery
from anylog_tw.query.options import parse_options
from anylog_tw.query.part import PartLog, PartRecord, check_select, run_part
from anylog_tw.query.plan import translate
from anylog_tw.storage import schema

KEYWORDS = ("query", "network", "sql")
_DEST_OPTION = re.compile(r"(?:^|[\s,(])(subset|timeout)\s*=\s*([^\s,)]+)", re.IGNORECASE)
_TABLE_FORM = re.compile(r"^\s*(dbms\s*=\s*\S+\s+and\s+table\s*=\s*\S+|table\s*=\s*\S+\s+and\s+dbms\s*=\s*\S+)\s*$",
                         re.IGNORECASE)


def jobs(call) -> QueryJobs:
    return call.node.component(QueryJobs)


async def _destination(call, text: str) -> tuple[list[str] | None, bool, float]:
    """(addresses or None for the metadata's clusters, subset, timeout) of `run client (...)`."""

    subset, timeout = False, DEFAULT_TIMEOUT
    for key, value in _DEST_OPTION.findall(text):
        if key.lower() == "subset":
            subset = value.lower() == "true"  # only the text true enables subset, as in AnyLog
        else:
            timeout = values.parse_seconds(value)
    rest = _DEST_OPTION.sub(" ", text).replace(",", " ").split()
    while rest and rest[0].lower() == "and":
        rest.pop(0)
    while rest and rest[-1].lower() == "and":
        rest.pop()
    rest = " ".join(rest)
    if not rest or _TABLE_FORM.match(rest):
        return None, subset, timeout
    if is_metadata_destination(rest):
        return await metadata_destination(call.node, rest), subset, timeout
    return parse_destination(rest).addresses, subset, timeout


async def network_sql(call, dest_text: str, cmd: str) -> Reply:
    """`run client (<destination>) sql <dbms> [options] "<select>"` on this node as the query node."""

    node = call.node
    tokens = grammar.tokenize(cmd)
    dbms, given, statement = parse_sql_call(tokens[1:], cmd, call.substitute)
    dbms = dbms.lower()
    opts = parse_options(given, dbms)
    if opts.dest == "file":  # the query writes a file here: inside the home unless the owner asks
        call.origin.require("admin", "'sql ... dest = file' (it writes a file on this node)")
        path_check(call)(opts.file)
    if opts.table:
        call.origin.require("write", "'sql ... table = <name>' (it keeps the result in system_query)")
    addresses, subset, timeout = await _destination(call, dest_text)
    meta = await metadata(node)
    peers = node.component(Peers)
    registry = jobs(call)
    job = registry.new(cmd, dbms, statement, "rest" if call.origin.kind == "rest" else "stdout",
                       node.reactor.seconds())

    def is_down(address: str) -> bool:
        st = peers.states.get(address)
        return st is not None and st.status == "not responding"

    # Each operator runs its part with no more than the caller holds here (the frame carries the grant).
    ask = functools.partial(peers.command, grant=call.grant)
    runner = NetworkQuery(registry, ask, meta.ledger, node.reactor, node.in_thread, is_down,
                          peers.own_address() or "")
    try:
        streamed = call.origin.kind == "rest" and not opts.table and opts.dest != "file"
        answer = await runner.run(job, dbms, statement, opts, addresses, subset, timeout,
                                  streams_json=streamed and opts.format in ("json", "json:list"))
    except Exception:
        job.status, job.ended = "Error", node.reactor.seconds()
        raise
    now = stream.now_utc(node.reactor)
    tz = output.zone(opts.timezone)

    def shape(batch):
        return output.format_rows(answer.titles, batch, answer.plan.casts, answer.plan.time_columns, tz, now,
                                  lead=len(answer.plan.extend))

    def statistics(count: int) -> dict:
        job.ended, job.rows = node.reactor.seconds(), count
        job.status = "Completed" if count else "Empty Set"
        stats = output.statistics(count, job.ended - job.started, answer.nodes,
                                  target=answer.target_nodes if answer.partial else None)
        if answer.failover:
            stats["Failover"] = answer.failover
        return stats

    if answer.stream is not None and streamed:
        body = stream.chunks(opts.format, answer.titles, answer.stream, shape, opts.stat, statistics)
        return stream.StreamReply(body, opts.format != "table")
    if answer.stream is not None:
        try:
            answer.rows = [r async for batch in answer.stream for r in stream.rows_of(batch)]
        except Exception:
            job.status = "Error"
            raise
    rows = [list(r) for r in shape(answer.rows)]
    return await _reply(call, answer, opts, rows, statistics(len(rows)))


async def _reply(call, answer, opts, rows, stats) -> Reply:
    node = call.node
    if opts.table:
        await _keep_in_system_query(call, opts, answer.titles, rows)
        return Reply.of_json({"Query.output.all": f"Data in table '{opts.table}'"})
    if opts.dest == "file":
        text = output.render(opts.format, answer.titles, rows, stats if opts.stat else None)
        await node.in_thread(_write_file, path_check(call)(opts.file), text)
        return Reply.of_json({"Reply": "Query output written to file", "Rows": len(rows)})
    if opts.format == "json":  # the data for JSON readers, the text exactly in AnyLog's layout
        if not rows:
            data = {"Statistics": [stats]} if opts.stat else {"reply": "Empty data set"}
        else:
            data = {"Query": [dict(zip(answer.titles, r)) for r in rows]}
            if opts.stat:
                data["Statistics"] = [stats]
        return Reply(data=data, fmt="json",
                     json_text=output.render("json", answer.titles, rows, stats if opts.stat else None))
    return Reply.of_text(output.render(opts.format, answer.titles, rows, stats if opts.stat else None))


def _write_file(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".query-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


async def _keep_in_system_query(call, opts, titles, rows) -> None:
    dbs = databases(call)
    if "system_query" not in dbs.names():
        raise CommandError("table = <name> keeps the result in system_query: connect it first "
                           "(connect dbms system_query where type = sqlite and memory = true)")
    db = dbs.get("system_query")
    name = schema.check_name(opts.table, "table name")
    columns = [re.sub(r"\W+", "_", t).strip("_").lower() or f"col_{i + 1}" for i, t in enumerate(titles)]
    kinds = []
    for i in range(len(titles)):
        found = next((schema.infer_type(r[i]) for r in rows if r[i] is not None), None)
        kinds.append(schema.engine_type(db.engine, found or schema.TEXT))
    table = schema.quote(name, "table name")
    if opts.drop:
        await db.execute(f"DROP TABLE IF EXISTS {table}")
    defs = ", ".join(f"{schema.quote(c, 'column name')} {k}" for c, k in zip(columns, kinds))
    await db.execute(f"CREATE TABLE IF NOT EXISTS {table} ({defs})")
    if rows:
        await db.bulk_insert(name, columns, rows)




# --- the operators' side --------------------------------------------------------------------------


@command("query part",
         usage='query part where dbms = <dbms> and table = <table> and sql = "<select>" [and job = N and node = '
               'ip:port and extend = "key,key" and page = N and timeout = S]',
         text="Run one part of a network query on this operator (what a query node sends): the SELECT, written in "
              "SQLite's dialect, is checked to be one SELECT, put in this dbms's dialect and run read-only. The "
              "reply is the rows as a table, with the dictionary values the query node asked for (extend). With "
              "page = N, at most N rows come back and the rest is read on with 'query next'. A table this node "
              "does not have answers no rows. With titles = [..] (a JSON list) and page = N, each page comes as "
              "text: a JSON header line {\"cursor\", \"rows\"}, then the rows as JSON objects with those keys, "
              "written by the scan (the query node passes them on to a REST client as they are).",
         examples=('query part where dbms = lsl and table = ping and sql = "SELECT COUNT(*) AS \\"c\\" FROM ping"',),
         keywords=KEYWORDS, grant="read", readonly=True,
         options=(Option("dbms", required=True), Option("table", required=True), Option("sql", required=True),
                  Option("job", default=""), Option("node", default=""), Option("extend", default=""),
                  Option("page", kind="int", default=0),
                  Option("titles", default="", help="a JSON list: with page = N, pages come as JSON row objects "
                                                    "with these keys (see 'query next')"),
                  Option("timeout", kind="float", default=0.0, help="the query node's deadline, in seconds")))
async def query_part(call):
    node = call.node
    opts = call.opts
    db = databases(call).get(opts["dbms"])
    record = PartRecord(opts["node"] or call.origin.label, str(opts["job"]), db.name, opts["table"].lower(),
                        started=node.reactor.seconds())
    node.component(PartLog).add(record)
    extend = {k.strip().lower(): node.lookup_for(call.origin)(k.strip().lower()) for k in opts["extend"].split(",") if k.strip()}
    page = opts["page"] if opts["page"] > 0 and not getattr(db, "memory", False) else 0
    titles = _titles(opts["titles"]) if page else None
    cursor = None
    deadlines = [t for t in (opts["timeout"], databases(call).query_timeout) if t]
    timeout = min(deadlines) if deadlines else None  # the smaller of the query node's and this node's
    try:
        try:
            if page:
                check_select(opts["sql"])
                columns, rows, cursor = await node.component(Cursors).start(db, translate(opts["sql"], db.engine),
                                                                            page, timeout, titles)
            else:
                columns, rows = await run_part(db, opts["sql"], timeout)
        except StorageError:
            if not await db.has_table(opts["table"].lower()):  # asked only when the part fails
                return Reply.of_table([], [], data={"extend": extend, "missing": True})
            raise
    except Exception as e:
        record.error = str(e)
        raise
    finally:
        record.seconds = node.reactor.seconds() - record.started
    record.rows = len(rows)
    if isinstance(rows, Rendered):
        return _rendered_reply(rows, cursor)
    return Reply(columns=columns, rows=rows, data={"extend": extend, "cursor": cursor})


def _titles(text: str) -> list[str] | None:
    if not text:
        return None
    try:
        titles = json.loads(text)
    except ValueError:
        titles = None
    if not isinstance(titles, list) or not titles or not all(isinstance(t, str) for t in titles):
        raise OptionError(f"titles must be a JSON list of column titles, not {text[:80]!r}")
    return titles


def _rendered_reply(page: Rendered, cursor: str | None) -> Reply:
    """A rendered page travels as text: a header line, then the row objects (see stream.py)."""
    head = json.dumps({"cursor": cursor, "rows": page.count})
    return Reply.of_text(head + "\n" + page.text.decode("utf-8"))


@command("query next", usage="query next where cursor = <id> [and stop = true]",
         text="The next page of an open network query part (see 'query part ... and page = N'); stop = true "
              "closes it. The reply's data names the cursor again while more rows remain.",
         examples=("query next where cursor = 5f2a9c1e0b7d4e33",), keywords=KEYWORDS, grant="read", readonly=True,
         options=(Option("cursor", required=True), Option("stop", kind="bool", default=False)))
async def query_next(call):
    cursors = call.node.component(Cursors)
    if call.opts["stop"]:
        cursors.close_one(call.opts["cursor"])
        return Reply(columns=[], rows=[], data={"cursor": None})
    rows, cursor = await cursors.next(call.opts["cursor"])
    if isinstance(rows, Rendered):
        return _rendered_reply(rows, cursor)
    return Reply(columns=[], rows=rows, data={"cursor": cursor})


@command("get query execution",
         usage="get query execution [where node = ip:port and job = N and format = json]",
         text="The network query parts this operator ran (the last 500): the query node, its job id, the dbms and "
              "table, the rows returned, the seconds taken and any error. Also 'get operator execution'.",
         examples=("get query execution", "get query execution where job = 3"), keywords=KEYWORDS, grant="read",
         readonly=True, options=(Option("node"), Option("job"), FORMAT))
def get_query_execution(call):
    rows = call.node.component(PartLog).rows(call.opts["node"], call.opts["job"])
    return Reply.of_table(("Node", "Job", "DBMS", "Table", "Rows", "Seconds", "Error", "Started"), rows)


@command("get operator execution", usage="get operator execution [where node = ip:port and job = N]",
         text="The same as 'get query execution' (EdgeLake's name).",
         examples=("get operator execution where job = 3",), keywords=KEYWORDS, grant="read", readonly=True,
         options=(Option("node"), Option("job"), FORMAT))
def get_operator_execution(call):
    return get_query_execution(call)


# --- monitoring and control on the query node -----------------------------------------------------


def _which(call) -> str | None:
    return call.args[0] if call.args else None


@command("query status", usage="query status [<job id>|all]",
         text="Network queries of this node: the job, its status (Completed, Processing, Empty Set, Error), run "
              "time, and per operator part the address, status, rows and seconds. Without an id: the last job.",
         examples=("query status", "query status all", "query status 3"), keywords=KEYWORDS, grant="read",
         readonly=True, nargs=(0, 1))
def query_status(call):
    rows = []
    now = call.node.reactor.seconds()
    for job in jobs(call).get(_which(call)):
        run = (job.ended or now) - job.started
        rows.append((job.id, "", f"['{job.output}']", output.hms(run), "All", len(job.parts), job.status,
                     len(job.parts), job.rows, job.command[:80]))
        for p in job.parts:
            rows.append(("", job.id, "", f"{p.seconds:.3f}", p.address or "-", "", p.status, "", p.rows,
                         f"{p.dbms}.{p.table}" + (f" (tried {', '.join(p.tried)})" if len(p.tried) > 1 else "")
                         + (f" {p.error[:80]}" if p.error else "")))
    return Reply.of_table(("Job", "ID", "Output", "Run Time", "Operator", "Par", "Status", "Blocks", "Rows",
                           "Command"), rows)


@command("query explain", usage="query explain [<job id>|all]",
         text="How a network query was split: the operators' query (as sent, in SQLite's dialect), the merge "
              "table's CREATE and the merge query over it, and the operators chosen.",
         examples=("query explain", "query explain 3"), keywords=KEYWORDS, grant="read", readonly=True, nargs=(0, 1))
def query_explain(call):
    rows = [(j.id, j.dbms, ", ".join(j.tables), j.statement, j.remote_sql, j.local_create or "(pass-through)",
             j.local_sql or "(pass-through)", ", ".join(sorted({p.address for p in j.parts if p.address})))
            for j in jobs(call).get(_which(call))]
    return Reply.of_table(("Job ID", "Remote DBMS", "Remote Table", "Source Command", "Remote Query",
                           "Local Create", "Local Query", "Operators"), rows)


@command("query destination", usage="query destination [<job id>|all]",
         text="Where each part of a network query went: job, operator, dbms, table, command.",
         examples=("query destination", "query destination all"), keywords=KEYWORDS, grant="read", readonly=True,
         nargs=(0, 1))
def query_destination(call):
    rows = [(j.id, p.address, p.dbms, p.table, j.command[:80]) for j in jobs(call).get(_which(call)) for p in j.parts]
    return Reply.of_table(("Job", "Destination", "DBMS", "Table", "Command"), rows)


@command("query stop", usage="query stop [<job id>|all]",
         text="Stop running network queries: the parts still on the wire are cancelled and the job fails with "
              "'stopped'. Without an id: the last job.",
         examples=("query stop", "query stop all", "query stop 4"), keywords=KEYWORDS, grant="read", nargs=(0, 1))
def query_stop(call):
    stopped = [j for j in jobs(call).get(_which(call)) if j.status == "Processing"]
    parts = sum(j.stop() for j in stopped)
    return f"Stopped {len(stopped)} queries ({parts} parts in flight)"


@command("set query mode",
         usage="set query mode using timeout = N seconds [and max_volume = N and send_mode = all|any and "
               "reply_mode = all|any]",
         text="Caps for every network query of this node: the time a part may take (the smallest of this, the "
              "destination's timeout and max_time wins). max_volume, send_mode and reply_mode are accepted and "
              "shown for AnyLog scripts but not enforced: use subset = true to accept partial results.",
         examples=("set query mode using timeout = 30 seconds and max_volume = 2MB",), keywords=KEYWORDS,
         grant="admin", raw=True)
def set_query_mode(call):
    text = call.remainder
    text = text[len("using"):].strip() if text.lower().startswith("using") else text
    mode = jobs(call).mode
    for part in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        key, eq, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not eq or not value:
            raise OptionError(f"set query mode: '{part}' is not key = value")
        if key == "timeout":
            mode.timeout = values.parse_seconds(value)
        elif key == "max_volume":
            mode.max_volume = values.parse_size(value.replace(" ", ""))
        elif key in ("send_mode", "reply_mode"):
            if value.lower() not in ("all", "any"):
                raise OptionError(f"{key} = {value}: use all or any")
            setattr(mode, key, value.lower())
        else:
            raise OptionError(f"set query mode: unknown key '{key}' (timeout, max_volume, send_mode, reply_mode)")
    return "Query mode set"


@command("get query mode", usage="get query mode", text="The caps 'set query mode' set.",
         examples=("get query mode",), keywords=KEYWORDS, grant="read", readonly=True, options=(FORMAT,))
def get_query_mode(call):
    return Reply.of_table(("Key", "Value"), jobs(call).mode.rows())


@command("get datetime", usage="get datetime <timezone> <time expression>",
         text="A time expression (now(), date(), timestamp('now', ...), with +/- N unit) resolved as the query node "
              "resolves it in a WHERE clause, shown in the zone (utc, local, pt, mt, ct, et or a tz-database name).",
         examples=("get datetime utc now()", "get datetime local now() + 3 days", "get datetime et date() + 2 days"),
         keywords=KEYWORDS + ("time",), grant="read", readonly=True, raw=True)
def get_datetime(call):
    text = call.remainder.strip()
    zone_name, _, expression = text.partition(" ")
    if not expression.strip():
        raise OptionError("usage: get datetime <timezone> <expression>, e.g. get datetime utc now() + 1 day")
    now = datetime.datetime.fromtimestamp(call.node.reactor.seconds(), datetime.timezone.utc)
    at = timeexpr.evaluate(expression, now)
    if zone_name.lower() == "utc":
        return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return output.to_zone(timeexpr.format_literal(at), output.zone(zone_name))
