"""`time file rename|new|add|update|tables|drop|delete`: the TSD bookkeeping by hand (spec §1.7, §4.1, §4.2).

The TSD rows are what make ingest exactly-once, so each command that changes them says in its
help and in its reply what the change means for the files the rows record.  The reading
commands are `get tsd list|details|summary|errors` (commands/ha_cluster.py).
"""

from __future__ import annotations

import datetime
import os
import re

from anylog_tw.base.errors import CommandError, OptionError, ServiceError
from anylog_tw.base.registry import FORMAT, Option, command, read_options, token_text
from anylog_tw.base.reply import Reply
from anylog_tw.commands.files import path_check
from anylog_tw.ingest import fileops, tsd, tsd_admin
from anylog_tw.storage import schema
from anylog_tw.storage.engines import Databases

KEYWORDS = ("tsd", "operator", "data")
OPERATOR, HA = "Operator", "HA"


def _almgm(node):
    db = node.component(Databases).find("almgm")
    if db is None:
        raise ServiceError("dbms almgm is not connected: the TSD tables live there "
                           "(connect dbms almgm where type = sqlite)")
    return db


def _status(text: str | None) -> str | None:
    """A status argument: "" (or none given) leaves the column empty."""
    return text if text else None


def _shown(value) -> str:
    return "none" if value in (None, "") else repr(value)


# --- rename ------------------------------------------------------------------------------------------------

_RENAME_OPTIONS = (
    Option("dbms", help="the dbms segment (default: the file name's)"),
    Option("table", help="the table segment (default: the file name's)"),
    Option("source", help="the source segment (default: the file name's, else 0)"),
    Option("hash", help="the hash segment (default: computed from the file, as the operator does)"),
    Option("instructions", help="the mapping policy id (default: the file name's, else 0)"),
)


@command("time file rename", grant="write",
         usage="time file rename <file> [to dbms = D and table = T and source = S and hash = H and instructions = I]",
         text="Rename a JSON data file (.json or .json.gz) in its directory to the naming convention "
              "dbms.table.source.hash.instructions.json. Parts not given are kept from the file's name (source and "
              "instructions are 0 when it has none); the hash is computed from the content (MD5 of 'dbms.table' and "
              "the data, as the operator computes it) unless given. A file whose name does not follow the convention "
              "needs dbms and table. An existing file of the new name is never replaced, and a registered "
              "(8-segment) name is refused. Rename files before they go into the watch dir. The reply is the new "
              "path, so 'new_name = time file rename ...' keeps it.",
         examples=("time file rename !prep_dir/lsl_demo.ping_sensor.json",
                   "time file rename !prep_dir/lsl_demo.ping_sensor.json to table = heat_sensor",
                   ("new_name = time file rename !prep_dir/readings.json to dbms = lsl and table = ping and "
                   "source = dev7")),
         keywords=KEYWORDS + ("file",), options=_RENAME_OPTIONS, raw=True)
async def time_file_rename(call):
    tokens = list(call.tokens)
    cut = next((i for i, t in enumerate(tokens) if i > 0 and t.is_word("to", "where")), None)
    positional = tokens if cut is None else tokens[:cut]
    if len(positional) != 1:
        raise OptionError(f"'time file rename' takes one file, then 'to key = value ...' (usage: {call.command.usage})")
    if cut is not None and cut + 1 == len(tokens):
        raise OptionError(f"'{tokens[cut].value}' must be followed by 'key = value' (usage: {call.command.usage})")
    path = path_check(call)(token_text(positional[0], call.substitute))
    opts, _ = read_options(call.command, None if cut is None else tokens[cut + 1:], call.substitute)
    plan = tsd_admin.plan_rename(path, opts["dbms"], opts["table"], opts["source"], opts["hash"],
                                 opts["instructions"])
    return await call.node.in_thread(tsd_admin.rename_file, path, plan)


# --- new / add / update ---------------------------------------------------------------------------------

_NEW_TEXT = ("Register a data file in its TSD table, from its name. A short name "
             "(dbms.table.source.hash.instructions.json) goes to tsd_info; a name a cluster peer registered "
             "(8 segments) goes to tsd_<member> under that member's file_id, and only as done (the operator must be "
             "running, to know this node's own member; a pending row there would keep the HA pull from fetching "
             "the file). status2 defaults to 'pending': when the file reaches the operator it takes "
             "the row over and ingests the file once. status2 'done' records the file as ingested: the operator "
             "then never ingests it (a copy is a duplicate). A hash already recorded is refused, never overwritten.")


async def _register(call, check_file: bool):
    node = call.node
    path = path_check(call)(call.args[0]) if check_file else call.args[0]  # `new` reads no file
    name = tsd_admin.parse_name(path)
    if check_file and not await node.in_thread(os.path.isfile, path):
        raise CommandError(f"no file {path!r}: 'time file add' registers only a file that exists "
                           f"('time file new' takes the name alone)")
    if name.member == "@":
        raise CommandError(f"{path!r} names rows the streamer inserted (member '@'): it has no TSD row to register")
    file_id = None
    table = "tsd_info"
    if name.registered:
        op = node.process(OPERATOR)
        if op is None:
            raise ServiceError(f"{path!r} is a registered (8-segment) name of member {name.member}: start the operator "
                               f"first, so this node's own member is known")
        table = tsd.tsd_table(name.member, op.config.member)
        if table == "tsd_info":
            raise CommandError(f"{path!r} was registered by this node (member {name.member}, file_id {name.tsd_id}): "
                               f"its tsd_info row is the operator's to make; drop the file in the watch dir instead")
        file_id = name.tsd_id
    file_hash = name.hash
    if file_hash == "0":
        if not check_file:
            raise CommandError(f"{path!r} has no hash in its name: give it one ('time file rename {path}') or use "
                               f"'time file add', which computes it from the file")
        file_hash = await node.in_thread(fileops.hash_file, path, name.dbms, name.table)
    status1 = _status(call.args[1] if len(call.args) > 1 else None)
    status2 = _status(call.args[2] if len(call.args) > 2 else None)
    if table != "tsd_info" and status2 != tsd.DONE:
        # a pending row of a peer's file reads as "in progress" to the HA pull, which would never ask for it
        raise CommandError(f"a peer's file ({table}) can only be recorded as done here (status2 done): the HA pull "
                           f"fetches the files of member {name.member} that this node does not have")
    db = _almgm(node)
    await db.create_tsd_table(table)
    now = datetime.datetime.fromtimestamp(node.reactor.seconds(), datetime.UTC)
    row = await db.transaction(tsd_admin.add_row, table, name, file_hash, schema.format_timestamp(now), status1,
                               status2, file_id)
    what = ("recorded as ingested: the operator never ingests this file" if row.done else
            "the operator ingests the file once when it arrives")
    return (f"{name.dbms}.{name.table} file (hash {file_hash}) registered in {table} as file_id {row.file_id}, "
            f"status1 {_shown(row.status1)}, status2 {_shown(row.status2)}: {what}")


@command("time file new", grant="write", usage="time file new <file> [status1] [status2]", text=_NEW_TEXT,
         examples=("time file new !prep_dir/lsl_demo.ping_sensor.0.c490e6000d9487962d890a7cba2e1e74.0.json",
                   ('time file new !prep_dir/lsl_demo.ping_sensor.0.c490e6000d9487962d890a7cba2e1e74.0.json '
                   '"From Publisher 778299-2"')),
         keywords=KEYWORDS, nargs=(1, 3))
async def time_file_new(call):
    return await _register(call, check_file=False)


@command("time file add", grant="write", usage="time file add <file> [status1] [status2]",
         text=_NEW_TEXT + " 'add' also checks that the file exists, and computes the hash when the name has none.",
         examples=("time file add !prep_dir/lsl_demo.ping_sensor.0.c490e6000d9487962d890a7cba2e1e74.0.json",
                   "time file add !prep_dir/lsl_demo.ping_sensor.json"),
         keywords=KEYWORDS, nargs=(1, 3))
async def time_file_add(call):
    return await _register(call, check_file=True)


@command("time file update", grant="write", usage="time file update <hash> [status1] [status2] [where table = tsd_info|tsd_N]",
         text="Set the status fields of the TSD row with this hash (\"\" empties status1; a status not given is "
              "kept). status2 is the operator's own record: 'done' means ingested. Setting a done file's status2 to "
              "anything else makes the operator ingest the same file again if it is dropped again (its earlier "
              "rows, tagged with the row's tsd_id, are replaced, not duplicated); setting status2 'done' on a file "
              "not ingested means it is never ingested.",
         examples=(('time file update 6c78d0b005a86933ba44573c09365ad5 "From Publisher 778299-2" '
                   '"File delivered to backup"'),
                   "time file update 6c78d0b005a86933ba44573c09365ad5 checked where table = tsd_7"),
         keywords=KEYWORDS, nargs=(1, 3),
         options=(Option("table", default="tsd_info", help="the TSD table of the row"),))
async def time_file_update(call):
    if len(call.args) < 2:
        raise OptionError(f"give status1 and/or status2 to set (usage: {call.command.usage})")
    table = tsd_admin.check_tsd_table(call.opts["table"])
    status1 = call.args[1]  # "" empties it
    status2 = call.args[2] if len(call.args) > 2 else None
    if status2 == "":
        raise OptionError("status2 cannot be empty: it is the operator's record of the file ('done' when ingested)")
    db = _almgm(call.node)
    if table not in await db.tables():
        raise CommandError(f"almgm has no table {table} (see 'time file tables')")
    before, after = await db.transaction(tsd_admin.update_statuses, table, call.args[0], status1, status2)
    text = (f"{table} file_id {after.file_id} ({after.dbms}.{after.tbl}, hash {after.file_hash}): "
            f"status1 {_shown(after.status1)}, status2 {_shown(after.status2)}")
    if before.done and not after.done:
        text += (". It is no longer recorded as ingested: dropped again, the file is ingested again, and its "
                 f"{before.rows} earlier rows (tsd_id {after.file_id}) are replaced")
    elif after.done and not before.done:
        text += ". It is now recorded as ingested: the operator never ingests this file"
    return text


# --- tables / drop / delete ---------------------------------------------------------------------------


@command("time file tables", grant="read", usage="time file tables [where format = json]",
         text="The TSD tables of this node (in dbms almgm): tsd_info for the files this operator registered, "
              "tsd_<member> for those of each cluster peer, with their files, files done and rows.",
         examples=("time file tables",), keywords=KEYWORDS + ("monitoring",), options=(FORMAT,), readonly=True)
async def time_file_tables(call):
    db = _almgm(call.node)
    tables = tsd_admin.tsd_tables(await db.tables())
    counts = await db.transaction(tsd_admin.table_counts, tables)
    return Reply.of_table(("TSD table", "Files", "Done", "Rows"), counts, "TSD tables")


def _no_ingest(node, what: str) -> None:
    running = [p for p in (OPERATOR, HA) if node.process(p) is not None]
    if running:
        raise ServiceError(f"{what} is refused while {' and '.join(running)} run(s): the files in hand would fail; "
                           f"stop first ({', '.join('exit ' + p.lower() for p in running)})")


@command("time file drop", grant="write", usage="time file drop <tsd table>|all",
         text="Drop a TSD table of almgm (tsd_<member>), or all of them. tsd_info is emptied rather than dropped, "
              "so its file_id numbering goes on and the tsd_id tags of rows already ingested are never reused. "
              "The files those rows recorded are forgotten: a file of tsd_info dropped again is ingested again "
              "and its rows duplicated; a peer's file (tsd_<member>, pulled again by HA) replaces the rows "
              "tagged with its member and file_id. Only TSD tables are taken, all or none, and only "
              "while the operator and HA are stopped.",
         examples=("time file drop tsd_123", "time file drop all"), keywords=KEYWORDS, nargs=(1, 1))
async def time_file_drop(call):
    which = call.args[0].strip().lower()
    if which != "all":
        which = tsd_admin.check_tsd_table(which)
    _no_ingest(call.node, "dropping TSD tables")
    db = _almgm(call.node)
    have = tsd_admin.tsd_tables(await db.tables())
    if which != "all" and which not in have:
        raise CommandError(f"almgm has no table {which} (see 'time file tables')")
    tables = have if which == "all" else [which]
    for t in tables:
        columns = {name for name, _ in await db.columns(t)}
        if not {"file_id", "file_hash", "status2"} <= columns:
            raise CommandError(f"almgm.{t} does not have the TSD columns (file_id, file_hash, status2): it is not "
                               f"dropped")
    if not tables:
        return "No TSD tables to drop"
    done = await db.transaction(tsd_admin.drop_tables, tables)
    parts = [f"{'emptied' if t == 'tsd_info' else 'dropped'} {t} ({n} rows)" for t, n in done]
    forgotten = sum(n for _, n in done)
    text = "; ".join(parts)
    text = text[0].upper() + text[1:]
    if forgotten:
        text += f". The {forgotten} files they recorded are no longer known"
        if any(t == "tsd_info" and n for t, n in done):
            text += ": a file of tsd_info dropped again is ingested again, and its rows duplicated"
    return text


@command("time file delete", grant="write", usage="time file delete <row id> from <tsd table>",
         text="Delete one row (file_id) of a TSD table. The file's rows stay in their table (tagged with its "
              "tsd_id), but the file is forgotten: in tsd_info, dropped again it is ingested again and its rows "
              "duplicated; in a tsd_<member> table, HA pulls it again from that member and its rows are replaced "
              "(a peer's member and file_id name one file for good). A row that is not done may be in "
              "the operator's hands: it is refused while the operator runs.",
         examples=("time file delete 16 from tsd_info", "time file delete 126 from tsd_129"),
         keywords=KEYWORDS, nargs=(3, 3))
async def time_file_delete(call):
    raw_id, word, name = call.args
    if word.lower() != "from":
        raise OptionError(f"expected 'from' after the row id, got {word!r} (usage: {call.command.usage})")
    if not re.fullmatch(r"[0-9]{1,18}", raw_id) or int(raw_id) == 0:
        raise OptionError(f"row id {raw_id!r} must be a positive number (the file_id of 'get tsd details')")
    table = tsd_admin.check_tsd_table(name)
    db = _almgm(call.node)
    if table not in await db.tables():
        raise CommandError(f"almgm has no table {table} (see 'time file tables')")
    busy = call.node.process(OPERATOR) is not None
    row = await db.transaction(tsd_admin.delete_row, table, int(raw_id), busy)
    text = (f"Deleted file_id {row.file_id} from {table} ({row.dbms}.{row.tbl}, hash {row.file_hash}, "
            f"status2 {_shown(row.status2)})")
    if row.done and table == "tsd_info":
        text += (f". Its {row.rows} rows stay in {row.dbms}.{row.tbl} (tsd_id {row.file_id}); the file is no longer "
                 f"known, so dropped again it is ingested again and its rows duplicated")
    elif row.done:
        text += (f". Its {row.rows} rows stay in {row.dbms}.{row.tbl} until HA pulls the file again from member "
                 f"{table[4:]}, which replaces them")
    return text
