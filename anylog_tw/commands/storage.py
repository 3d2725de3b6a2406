"""Storage commands: connect and disconnect dbms, list databases, tables and columns, `sql`,
and the system tables (`create table tsd_info`, `create table ledger`)."""

from __future__ import annotations

import time

from anylog_tw.base import values
from anylog_tw.base.errors import GrammarError, OptionError
from anylog_tw.base.grammar import EQ, STRING, WORD
from anylog_tw.base.registry import FORMAT, Option, command, token_text
from anylog_tw.base.reply import Reply
from anylog_tw.commands import _sql_reply
from anylog_tw.storage import schema
from anylog_tw.storage.deadline import DEFAULT_ROW_LIMIT
from anylog_tw.storage.engines import Databases

KEYWORDS = ("dbms", "sql", "configuration")


def databases(call) -> Databases:
    return call.node.component(Databases)


@command("connect dbms", grant="admin",
         usage="connect dbms <name> where type = sqlite [and memory = true] | "
               "connect dbms <name> where type = psql and ip = <ip> and port = <port> and user = <user> "
               "and password = <password> [and database = <database>]",
         text="Connect a logical database (dbms) to this node. SQLite keeps it in the file "
              "<dbms_dir>/<name>.dbms, or in RAM with memory = true. PostgreSQL uses the database named after "
              "the dbms unless 'database' names another, and creates it when it is missing. A server that cannot "
              "be reached is an error at once.",
         examples=("connect dbms lsl_demo where type = sqlite",
                   "connect dbms system_query where type = sqlite and memory = true",
                   "connect dbms almgm where type = psql and ip = 127.0.0.1 and port = 5432 and user = postgres "
                   "and password = secret"),
         keywords=KEYWORDS, nargs=(1, 1),
         options=(Option("type", choices=schema.ENGINES, required=True, help="sqlite or psql"),
                  Option("memory", kind="bool", default=False, help="SQLite only: keep the database in RAM"),
                  Option("ip", help="PostgreSQL server address (default 127.0.0.1)"),
                  Option("port", kind="int", help="PostgreSQL server port (default 5432)"),
                  Option("user", help="PostgreSQL user (default postgres)"),
                  Option("password", help="PostgreSQL password"),
                  Option("database", help="PostgreSQL database (default: the dbms name)")))
async def connect_dbms(call):
    name = schema.check_name(call.args[0], "dbms name")
    engine = call.opts["type"]
    opts = {k: call.opts[k] for k in ("ip", "port", "user", "password", "database") if k in call.given}
    if engine == schema.SQLITE:
        if opts:
            raise OptionError(f"type = sqlite does not take {', '.join(sorted(opts))} (those are for psql)")
        opts = {"memory": call.opts["memory"]}
    elif "memory" in call.given:
        raise OptionError("memory = true is for type = sqlite only")
    db = await databases(call).connect(name, engine, **opts)
    where = db.describe()
    return f"Connected dbms '{name}' ({engine}: {where['Storage'] or where['IP:Port']})"


@command("disconnect dbms", grant="admin", usage="disconnect dbms <name>",
         text="Close a connected dbms. Its data stays (the file or the PostgreSQL database); connect it again "
              "to use it.",
         examples=("disconnect dbms lsl_demo",), keywords=KEYWORDS, nargs=(1, 1))
async def disconnect_dbms(call):
    await databases(call).disconnect(call.args[0])
    return f"Disconnected dbms '{call.args[0].lower()}'"


@command("get databases", grant="read", usage="get databases [where format = json]",
         text="List the connected dbms: their type, owner, server address, configuration and storage.",
         examples=("get databases", "get databases where format = json"),
         keywords=KEYWORDS + ("monitor",), options=(FORMAT,), readonly=True)
def get_databases(call):
    columns = ("Logical DBMS", "Database Type", "Owner", "IP:Port", "Configuration", "Storage")
    rows = []
    for name in databases(call).names():
        d = databases(call).get(name).describe()
        rows.append((name, d["Type"], d["Owner"], d["IP:Port"], d["Configuration"], d["Storage"]))
    return Reply.of_table(columns, rows, title="List of DBMS connections")


@command("get tables", grant="read", usage="get tables where dbms = <name>|* [and format = json]",
         text="List the tables of a connected dbms ('*': of every connected dbms).",
         examples=("get tables where dbms = lsl_demo", "get tables where dbms = * and format = json"),
         keywords=KEYWORDS, readonly=True,
         options=(Option("dbms", required=True, help="the dbms, or * for all"), FORMAT))
async def get_tables(call):
    dbs = databases(call)
    names = dbs.names() if call.opts["dbms"] == "*" else [dbs.get(call.opts["dbms"]).name]
    rows = []
    for name in names:
        rows += [(name, table) for table in await dbs.get(name).tables()]
    return Reply.of_table(("Database", "Table name"), rows)


@command("get table columns", grant="read", usage="get table columns where dbms = <name> and table = <table> [and format = json]",
         text="List a table's columns with their types as the database declares them.",
         examples=("get table columns where dbms = lsl_demo and table = ping_sensor",),
         keywords=KEYWORDS, readonly=True,
         options=(Option("dbms", required=True), Option("table", required=True), FORMAT))
async def get_table_columns(call):
    db = databases(call).get(call.opts["dbms"])
    columns = await db.columns(call.opts["table"])
    return Reply.of_table(("Column Name", "Column Type"), columns, title=f"Schema for table {db.name}.{call.opts['table'].lower()}")


def _system_table_options(default: str):
    return (Option("dbms", default=default, help=f"the dbms (default {default}); it must be connected"),)


@command("create table tsd_info", grant="admin", usage="create table tsd_info where dbms = almgm",
         text="Create the node's ingest log, almgm.tsd_info: one row per ingested file (id, dbms, table, source, "
              "hash (unique), instructions, time, rows, two status columns). Nothing happens if it exists.",
         examples=("create table tsd_info where dbms = almgm",), keywords=KEYWORDS + ("high availability",),
         options=_system_table_options("almgm"))
async def create_tsd_info(call):
    db = databases(call).get(call.opts["dbms"])
    created = await db.create_tsd_table("tsd_info")
    return f"Table {db.name}.tsd_info {'created' if created else 'exists'}"


@command("create table ledger", grant="admin", usage="create table ledger where dbms = blockchain",
         text="Create the master's policy table, blockchain.ledger (sequence id, policy type, policy id (unique), "
              "company, date, host, status, policy JSON). Nothing happens if it exists.",
         examples=("create table ledger where dbms = blockchain",), keywords=KEYWORDS + ("metadata",),
         options=_system_table_options("blockchain"))
async def create_ledger(call):
    db = databases(call).get(call.opts["dbms"])
    created = await db.create_ledger_table()
    return f"Table {db.name}.ledger {'created' if created else 'exists'}"


# --- sql ---------------------------------------------------------------------------------------

SQL_FORMAT = Option("format", choices=("json", "table"), help="json (default) or table")


def parse_sql_call(tokens, text: str, sub) -> tuple[str, dict[str, str], str]:
    """`<dbms> [key = value [and] ...] "<statement>"` -> (dbms, options, statement).

    The statement is the quoted string, taken as written, or else the rest of the line.
    """
    if not tokens or tokens[0].kind != WORD:
        raise GrammarError('sql needs a dbms and a statement: sql <dbms> [format = json|table] "<statement>"')
    dbms = token_text(tokens[0], sub)
    opts: dict[str, str] = {}
    i = 1
    while i + 2 < len(tokens) and tokens[i].kind == WORD and tokens[i + 1].kind == EQ:
        key = tokens[i].value.lower()
        if key in opts:
            raise OptionError(f"option '{key}' is given twice")
        opts[key] = token_text(tokens[i + 2], sub)
        i += 3
        if i < len(tokens) and tokens[i].is_word("and"):
            i += 1
    rest = tokens[i:]
    if not rest:
        raise GrammarError(f'sql {dbms}: no statement (write it in quotes: sql {dbms} "select ...")')
    if len(rest) == 1 and rest[0].kind == STRING:
        statement = rest[0].value
    else:
        statement = text[rest[0].start:].strip()
    if not statement.strip():
        raise GrammarError(f"sql {dbms}: the statement is empty")
    return dbms, opts, statement


SQL_OPTIONS = (SQL_FORMAT,
               Option("timeout", kind="seconds", help="seconds the statement may run (default: the node's "
                                                      "'set query timeout', 20 s)"),
               Option("limit", kind="int", help=f"rows the reply holds at most (default {DEFAULT_ROW_LIMIT})"))


def sql_options(given: dict[str, str], default_timeout: float) -> tuple[str, float, int]:
    """(format, timeout, limit) from the options written before the statement."""
    known = {opt.name: opt for opt in SQL_OPTIONS}
    values = {"format": "json", "timeout": default_timeout, "limit": DEFAULT_ROW_LIMIT}
    for key, text in given.items():
        if key not in known:
            raise OptionError(f"'sql' has no option '{key}' here (valid options: {', '.join(known)}); network "
                              f"options belong to 'run client () sql ...'")
        values[key] = known[key].convert(text)
    if values["timeout"] <= 0:
        raise OptionError("option 'timeout' must be more than 0 seconds")
    if values["limit"] < 1:
        raise OptionError("option 'limit' must be at least 1 row")
    return values["format"], values["timeout"], values["limit"]


@command("sql", usage='sql <dbms> [format = json|table] [timeout = <seconds>] [limit = <rows>] "<statement>"',
         text="Run an SQL statement on a connected dbms of this node. A query answers {\"Query\": [rows], "
              "\"Statistics\": [{\"Count\", \"Time\", \"Nodes\"}]} (format = json, the default) or a text table "
              "(format = table); other statements answer the number of rows they changed. A caller with the read "
              "grant only reads (the database engine refuses anything else); writing needs the write grant; "
              "ATTACH, VACUUM, pragmas that set, extensions, and server files or programs on PostgreSQL are for "
              "the node's owner. The statement stops after 'timeout' seconds (default 20, or 'set query "
              "timeout'), and the reply holds at most 'limit' rows (default 10000; Statistics says when rows "
              "were cut). One statement per call, each committed on its own: BEGIN/COMMIT are refused.",
         examples=('sql lsl_demo "select count(*) from ping_sensor"',
                   'sql lsl_demo format = table "select * from ping_sensor order by row_id limit 10"',
                   'sql lsl_demo timeout = 60 and limit = 50000 "select * from ping_sensor"',
                   'sql almgm "select file_id, table_name, rows from tsd_info"'),
         keywords=KEYWORDS + ("query",), options=SQL_OPTIONS, raw=True, grant="read")
async def sql(call):
    dbms, given, statement = parse_sql_call(call.tokens, call.text, call.substitute)
    dbs = databases(call)
    fmt, timeout, limit = sql_options(given, dbs.query_timeout)
    db = dbs.get(dbms)
    shape = _sql_reply.shaper(fmt, db.name, limit, time.monotonic())
    return await db.statement(statement, grant=call.grant, timeout=timeout, limit=limit, shape=shape)


@command("set query timeout", usage="set query timeout = <seconds>",
         text="How long a user's sql statement on this node may run before it is stopped with an error (default "
              "20 seconds). One statement can ask for another limit with 'sql <dbms> timeout = <seconds> ...'. "
              "Ingest never waits for user queries, whatever the limit.",
         examples=("set query timeout = 60",), keywords=KEYWORDS + ("query", "configuration"),
         raw=True, grant="admin")
def set_query_timeout(call):
    tokens = call.tokens
    if len(tokens) < 2 or tokens[0].kind != EQ:
        raise GrammarError("usage: set query timeout = <seconds>")
    seconds = values.parse_seconds(" ".join(token_text(t, call.substitute) for t in tokens[1:]))
    if seconds <= 0:
        raise OptionError("the query timeout must be more than 0 seconds")
    databases(call).query_timeout = seconds
    return f"Query timeout set to {seconds:g} seconds"
