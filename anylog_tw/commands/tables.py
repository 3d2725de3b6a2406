"""Table commands (spec §1.7): `drop table`, `create table <t>` from its table policy, `backup table`.

`create table tsd_info` and `create table ledger` stay in storage.py: the registry takes the
longest command a line starts with, so those lines never reach `create table <t>` here.
"""

from __future__ import annotations

from anylog_tw.base.errors import CommandError, NotFound, OptionError, ServiceError
from anylog_tw.base.registry import Option, command
from anylog_tw.commands.files import path_check
from anylog_tw.ingest.tsd_admin import TSD_TABLE
from anylog_tw.metadata import policies
from anylog_tw.metadata.layer import metadata
from anylog_tw.storage import backup, policy_ddl, schema
from anylog_tw.storage.engines import Databases

KEYWORDS = ("dbms", "configuration")
TSD_DBMS, LEDGER_DBMS = "almgm", "blockchain"


def system_table(dbms: str, table: str) -> str | None:
    """"tsd" or "ledger" for the tables the node keeps for itself, None for a user table."""
    if dbms == TSD_DBMS and TSD_TABLE.match(table):
        return "tsd"
    if dbms == LEDGER_DBMS and table == "ledger":
        return "ledger"
    return None


def _table(call, text: str, what: str = "table name") -> tuple:
    """(the connected Database, the checked table name) of a call."""
    db = call.node.component(Databases).get(call.opts["dbms"])
    return db, schema.check_name(text, what)


async def _existing(db, table: str) -> None:
    if not await db.has_table(table):
        raise NotFound(f"table '{table}' does not exist in dbms '{db.name}' (see 'get tables where dbms = {db.name}')")


# --- drop table ----------------------------------------------------------------------------------


@command("drop table", grant="admin", usage="drop table <table> where dbms = <dbms> [and system = true]",
         text="Drop a table of a connected dbms with its rows and indexes. Its table policy stays in the metadata "
              "(so 'create table' can make it again) and almgm.tsd_info keeps the files it recorded. The TSD tables "
              "of almgm are never dropped here ('time file drop' keeps their numbering); blockchain.ledger only with "
              "'system = true' and while the blockchain synchronizer is stopped. A file the operator is ingesting "
              "into the table at that moment fails and goes to the error directory.",
         examples=("drop table ping_sensor where dbms = lsl_demo",
                   "drop table ledger where dbms = blockchain and system = true"),
         keywords=KEYWORDS, nargs=(1, 1),
         options=(Option("dbms", required=True, help="the connected dbms that holds the table"),
                  Option("system", kind="bool", default=False, help="true to drop blockchain.ledger")))
async def drop_table(call):
    db, table = _table(call, call.args[0])
    kind = system_table(db.name, table)
    if kind == "tsd":
        raise CommandError(f"{db.name}.{table} is a TSD table: the operator's record of every ingested file. "
                           f"'drop table' does not take it; 'time file drop {table}' does it safely (tsd_info is "
                           f"emptied, keeping its file_id numbering, which the rows of user tables refer to)")
    if kind == "ledger":
        if not call.opts["system"]:
            raise CommandError(f"{db.name}.{table} is the master's policy table; to drop it anyway add "
                               f"'and system = true' (pushes to this master fail until 'create table ledger "
                               f"where dbms = {db.name}')")
        if call.node.process("Blockchain Sync") is not None:
            raise ServiceError(f"{db.name}.{table} is written by the blockchain synchronizer: stop it first "
                               f"('exit synchronizer')")
    await _existing(db, table)
    await db.drop_table(table)
    operator = call.node.process("Operator")
    if operator is not None:  # its cached columns would point its next file at the dropped table
        operator.tables.forget(db.name, table)
    return f"Table {db.name}.{table} dropped"


# --- create table <t> ----------------------------------------------------------------------------


@command("create table", grant="write", usage="create table <table> where dbms = <dbms>",
         text="Create a table from its table policy in the metadata ('blockchain get table where dbms = .. and "
              "name = ..'): the policy's columns and types, in this node's layout (system columns row_id, "
              "insert_timestamp, tsd_name, tsd_id, and the indexes of this engine). Only the column list of the "
              "policy's CREATE TABLE is read; its other statements, constraints and defaults are not run. Nothing "
              "happens if the table exists. 'create table tsd_info' and 'create table ledger' are the system tables.",
         examples=("create table ping_sensor where dbms = lsl_demo",),
         keywords=KEYWORDS + ("metadata",), nargs=(1, 1),
         options=(Option("dbms", required=True, help="the connected dbms to create the table in"),))
async def create_table(call):
    db, table = _table(call, call.args[0])
    if system_table(db.name, table) == "tsd":  # a member's TSD table (tsd_info has its own command)
        created = await db.create_tsd_table(table)
        return f"Table {db.name}.{table} {'created' if created else 'exists'}"
    if await db.has_table(table):
        return f"Table {db.name}.{table} exists"
    ledger = (await metadata(call.node)).ledger
    policy = policies.table_policy(ledger, db.name, table)
    if policy is None:
        raise NotFound(f"no table policy for {db.name}.{table} in the metadata (see 'blockchain get table where "
                       f"dbms = {db.name} and name = {table}'); an operator publishes one when it first ingests "
                       f"the table")
    create = policies.attr(policy, "create")
    pid = policies.attr(policy, "id", "")
    columns = policy_ddl.policy_columns(create, table, f"table policy {pid or db.name + '.' + table}")
    created = await db.create_table(table, columns)
    names = ", ".join(f"{n} {t}" for n, t in columns)
    return f"Table {db.name}.{table} {'created' if created else 'exists'} from policy {pid}: {names}"


# --- backup table --------------------------------------------------------------------------------


@command("backup table", grant="admin", usage="backup table where dbms = <dbms> and table = <table> and dest = <directory>",
         text="Write a table's rows to one data file in dest, named by the node's convention "
              "(dbms.table.0.<hash>.0.json, the hash as 'file hash' computes it) with one JSON object per line: "
              "the data columns, not the system ones. Dropped into an operator's watch dir, the file restores the "
              "rows (a second copy of the same file is a duplicate and is not ingested again). The rows are read "
              "in batches from one consistent snapshot and written under a hidden .part name, renamed when "
              "complete. An empty table writes no file. Tables are not partitioned here: 'partition' is refused.",
         examples=("backup table where dbms = lsl_demo and table = ping_sensor and dest = !bkup_dir",),
         keywords=KEYWORDS + ("data", "archive"),
         options=(Option("dbms", required=True), Option("table", required=True),
                  Option("dest", required=True, help="an existing directory"),
                  Option("partition", help="not supported: tables are not partitioned on this node")))
async def backup_table(call):
    if "partition" in call.given:
        raise OptionError("partitions are not supported on this node (its tables are not partitioned): leave out "
                          "'partition' to back up the whole table")
    db, table = _table(call, call.opts["table"])
    if system_table(db.name, table):
        raise CommandError(f"{db.name}.{table} is a system table, not data an operator could restore from a file")
    await _existing(db, table)
    declared = await db.columns(table)
    columns = backup.data_columns(declared)
    if not columns:
        raise CommandError(f"{db.name}.{table} has only system columns: there is no data to back up")
    has_row_id = backup.ROW_ID in {n.lower() for n, _ in declared}
    node = call.node
    dest = await node.in_thread(backup.check_dest, path_check(call)(call.opts["dest"]))
    sql = backup.select_sql(table, [n for n, _ in columns], has_row_id)
    result = await db.scan(sql, None, backup.write_backup, dest, db.name, table, [t for _, t in columns], has_row_id)
    if result.path is None:
        return f"Table {db.name}.{table} is empty: no backup file written"
    text = f"Backed up {result.rows} rows of {db.name}.{table} to {result.path}"
    return text + await _duplicate_note(node, result.hash)


async def _duplicate_note(node, digest: str) -> str:
    """A warning when this node's operator already ingested a file with this hash (it would refuse this one)."""
    almgm = node.component(Databases).find(TSD_DBMS)
    if almgm is None or not await almgm.has_table("tsd_info"):
        return ""
    _, rows = await almgm.query('SELECT "file_id" FROM "tsd_info" WHERE "file_hash" = ?', (digest,))
    if not rows:
        return ""
    return (f". Note: almgm.tsd_info already records this content as file {rows[0][0]}, so an operator of this "
            f"node takes the backup as a duplicate; 'time file delete {rows[0][0]} from tsd_info' lets it in again")
