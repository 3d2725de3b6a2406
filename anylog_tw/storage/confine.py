"""What a user's `sql` statement may do, by the grant its caller holds, told by the engine itself.

The rule (issue 14, audit C2/H2): `read` reads, `write` may also change data and tables, and only
the node's `owner` may reach outside the database (ATTACH, VACUUM INTO, extensions, pragmas that
change how the database is kept, server files and programs on PostgreSQL).  No decision here
looks at the statement's text to learn whether it writes:

* SQLite reports every action a statement will take while it compiles it, to an authorizer
  (`sqlite3.Connection.set_authorizer`), before anything runs.  `Authorizer` allows the actions of
  a grant and records the ones it denied, so the refusal can name them and the caller can tell
  "needs write" (run it again on the writer) from "needs owner" (refuse).
* PostgreSQL enforces read-only in a `BEGIN READ ONLY` transaction and file and program access by
  the role's privileges (see `pg_powers`).  The one thing read from the text is for a role that
  has those privileges anyway (a superuser): `pg_owner_only` names, with sqlglot's tokenizer,
  what the node then refuses to anyone but its owner, and the docs ask for a non-superuser role.
"""

from __future__ import annotations

import sqlite3

from anylog_tw.base.errors import StorageError
from anylog_tw.base.registry import GRANTS, grant_allows


class SQLRefused(StorageError):
    """A statement the caller's grant does not allow; nothing of it ran."""

    code = "forbidden"
    status = 403


class SQLDeadline(StorageError):
    """A statement stopped at its deadline (or because the node is stopping); its work is undone."""

    code = "timeout"
    status = 408


# --- SQLite -------------------------------------------------------------------------------------

_ACTIONS = ("CREATE_INDEX", "CREATE_TABLE", "CREATE_TEMP_INDEX", "CREATE_TEMP_TABLE", "CREATE_TEMP_TRIGGER",
            "CREATE_TEMP_VIEW", "CREATE_TRIGGER", "CREATE_VIEW", "DELETE", "DROP_INDEX", "DROP_TABLE",
            "DROP_TEMP_INDEX", "DROP_TEMP_TABLE", "DROP_TEMP_TRIGGER", "DROP_TEMP_VIEW", "DROP_TRIGGER",
            "DROP_VIEW", "INSERT", "PRAGMA", "READ", "SELECT", "TRANSACTION", "UPDATE", "ATTACH", "DETACH",
            "ALTER_TABLE", "REINDEX", "ANALYZE", "CREATE_VTABLE", "DROP_VTABLE", "FUNCTION", "SAVEPOINT",
            "RECURSIVE")
_NAMES = {getattr(sqlite3, f"SQLITE_{a}"): a.replace("_", " ") for a in _ACTIONS if hasattr(sqlite3, f"SQLITE_{a}")}

# What a read may do: select, read columns, call functions, recurse, and read pragmas.
_READS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE, sqlite3.SQLITE_FUNCTION,
          sqlite3.SQLITE_PRAGMA}
# What only the owner may do: open other files (ATTACH, and VACUUM, which attaches its target and
# wraps its copy in a transaction of its own).  A transaction a user's statement leaves open is
# refused after the fact (`run_confined`): each statement commits on its own.
_OWNER = {sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH}
_TRANSACTION = {sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT}
# Functions that load code or reach memory by address.
_OWNER_FUNCTIONS = {"load_extension", "fts3_tokenizer"}
# Pragmas that only report: allowed to every grant, with a table or index name as argument or none.
_PRAGMAS_OF_A_NAME = {"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo",
                      "foreign_key_list", "table_list"}
_PRAGMAS_TO_READ = _PRAGMAS_OF_A_NAME | {
    "user_version", "schema_version", "application_id", "page_count", "page_size", "freelist_count",
    "encoding", "journal_mode", "synchronous", "auto_vacuum", "cache_size", "data_version",
    "database_list", "collation_list", "function_list", "module_list", "pragma_list", "compile_options",
    "foreign_keys", "busy_timeout", "query_only", "max_page_count", "integrity_check", "quick_check",
    "foreign_key_check"}


def _pragma_needs(name: str | None, argument: str | None) -> str:
    name = (name or "").lower()
    if name in _PRAGMAS_OF_A_NAME or (name in _PRAGMAS_TO_READ and argument is None):
        return "read"
    return "owner"  # setting a pragma changes how the database is kept (journal, sync, query_only ...)


def needed_grant(action: int, arg1: str | None, arg2: str | None) -> str:
    """The weakest grant that may take this authorizer action."""
    if action in _OWNER or action in _TRANSACTION:
        return "owner"
    if action == sqlite3.SQLITE_FUNCTION:
        return "owner" if (arg2 or "").lower() in _OWNER_FUNCTIONS else "read"
    if action == sqlite3.SQLITE_PRAGMA:
        return _pragma_needs(arg1, arg2)
    if action in _READS:
        return "read"
    return "write"


def describe_action(action: int, arg1: str | None, arg2: str | None) -> str:
    """An authorizer action as a user reads it: `DROP TABLE readings`, `ATTACH of '/tmp/x.db'`."""
    name = _NAMES.get(action, f"action {action}")
    if action == sqlite3.SQLITE_ATTACH:
        return f"ATTACH of {arg1 or 'a temporary file'!r} (also what VACUUM does)"
    if action == sqlite3.SQLITE_FUNCTION:
        return f"the function {arg2}()"
    if action == sqlite3.SQLITE_PRAGMA:
        return f"PRAGMA {arg1}" + (f" = {arg2}" if arg2 is not None and arg1 not in _PRAGMAS_OF_A_NAME else "")
    if action in (sqlite3.SQLITE_TRANSACTION, sqlite3.SQLITE_SAVEPOINT):
        return f"{arg1} (a transaction statement)"
    if arg1 in ("sqlite_master", "sqlite_schema", "sqlite_temp_master") and action != sqlite3.SQLITE_READ:
        return "a change of the schema (CREATE, DROP or ALTER)"
    return f"{name} {arg1 or ''}".strip()


class Authorizer:
    """The SQLite authorizer of one statement for a grant: allows what the grant may do, records the rest.

    `held` is the grant the statement runs with on this connection (a reader runs everything as
    `read` first, whoever asks).  Callable from SQLite's compile step in the statement's thread.
    """

    def __init__(self, held: str):
        self.held = held
        self.denied: list[tuple[int, str | None, str | None]] = []

    def __call__(self, action: int, arg1, arg2, database, trigger) -> int:
        if self.held == "owner" or grant_allows(self.held, needed_grant(action, arg1, arg2)):
            return sqlite3.SQLITE_OK
        self.denied.append((action, arg1, arg2))
        return sqlite3.SQLITE_DENY

    def needs(self) -> str:
        """The grant the denied actions need ("transaction" when all are transaction statements)."""
        if self.denied and all(d[0] in _TRANSACTION for d in self.denied):
            return "transaction"
        wanted = [needed_grant(*d) for d in self.denied if d[0] not in _TRANSACTION]
        return max(wanted, key=GRANTS.index) if wanted else self.held

    def refusal(self, dbms: str, caller: str) -> SQLRefused:
        """The error for a statement whose denied actions the caller's grant does not allow."""
        needs = self.needs()
        if needs == "transaction":
            return transaction_refused(dbms)
        shown = [describe_action(*d) for d in self.denied if needed_grant(*d) == needs]
        what = ", ".join(dict.fromkeys(shown))
        return refusal(dbms, what, needs, caller)


def transaction_refused(dbms: str) -> SQLRefused:
    return SQLRefused(f"dbms '{dbms}': transaction statements are not allowed in 'sql'; each statement commits "
                      f"on its own")


def refusal(dbms: str, what: str, needs: str, caller: str) -> SQLRefused:
    """"not allowed" naming what the statement would do, the grant it needs, and the caller's."""
    if needs == "owner":
        why = ("it reaches outside this dbms (other files, programs or the database's settings), which only "
               "the node's owner may do (the node's own console or a start-up script)")
    else:
        why = f"it changes data or tables, which needs the '{needs}' grant"
    return SQLRefused(f"dbms '{dbms}': not allowed: {what}: {why}; this caller holds '{caller}', so nothing "
                      f"was run")


# --- PostgreSQL -----------------------------------------------------------------------------------

# The roles and attributes that let a PostgreSQL session read or write server files or run programs.
PG_POWER_QUERY = (
    "SELECT r.rolsuper, pg_has_role(current_user, 'pg_read_server_files', 'USAGE'), "
    "pg_has_role(current_user, 'pg_write_server_files', 'USAGE'), "
    "pg_has_role(current_user, 'pg_execute_server_program', 'USAGE') "
    "FROM pg_roles r WHERE r.rolname = current_user")
_POWER_NAMES = ("superuser", "pg_read_server_files", "pg_write_server_files", "pg_execute_server_program")


def pg_powers(row) -> list[str]:
    """The powers over the server's files and programs in a `PG_POWER_QUERY` row (empty: none)."""
    return [name for name, has in zip(_POWER_NAMES, row or ()) if has]


# Functions that read or write server files, run programs, or act on other sessions and the server.
PG_OWNER_FUNCTIONS = frozenset({
    "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_ls_logdir", "pg_ls_waldir",
    "pg_ls_tmpdir", "pg_ls_archive_statusdir", "pg_ls_logicalsnapdir", "pg_ls_logicalmapdir",
    "pg_ls_replslotdir", "lo_import", "lo_export", "pg_file_write", "pg_file_rename", "pg_file_unlink",
    "pg_file_sync", "pg_logdir_ls", "pg_reload_conf", "pg_rotate_logfile", "pg_terminate_backend",
    "pg_cancel_backend", "pg_promote", "set_config", "query_to_xml", "query_to_xmlschema",
    "query_to_xml_and_xmlschema", "cursor_to_xml", "cursor_to_xmlschema", "dblink", "dblink_exec",
    "dblink_connect", "dblink_connect_u", "dblink_send_query", "pg_switch_wal", "pg_create_restore_point",
    "pg_backup_start", "pg_backup_stop", "pg_start_backup", "pg_stop_backup", "pg_import_system_collations",
    "pg_create_physical_replication_slot", "pg_create_logical_replication_slot", "pg_drop_replication_slot",
    "pg_log_backend_memory_contexts"})
# Statements whose first word reaches outside the database (or changes who the session is).
PG_OWNER_STATEMENTS = frozenset({"copy", "do", "load", "call"})
_PG_SESSION_WORDS = frozenset({"role", "authorization"})


def pg_owner_only(sql: str) -> str | None:
    """What in the statement only the owner may run on a powerful role (None: nothing found).

    The statement is split into tokens by sqlglot's PostgreSQL tokenizer, so names inside strings
    and comments do not count and quoted names do.  This only names things for a clear refusal;
    the guarantee on PostgreSQL is a role without these powers (docs/storage.md).
    """
    from sqlglot.dialects.postgres import Postgres
    from sqlglot.errors import TokenError
    from sqlglot.tokens import TokenType

    try:
        tokens = Postgres().tokenize(sql)
    except TokenError as e:
        return f"a statement that cannot be read ({e})"
    words = [(t.text.lower(), t.token_type) for t in tokens]
    strings = {TokenType.STRING, TokenType.NATIONAL_STRING, TokenType.RAW_STRING, TokenType.HEREDOC_STRING,
               TokenType.BYTE_STRING, TokenType.BIT_STRING, TokenType.HEX_STRING}
    names = [w for w, kind in words if kind not in strings]
    if names and names[0] in PG_OWNER_STATEMENTS:
        return names[0].upper()
    for i, w in enumerate(names):
        if w in PG_OWNER_FUNCTIONS:
            return f"the function {w}()"
        if w in ("set", "reset") and i + 1 < len(names) and (
                names[i + 1] in _PG_SESSION_WORDS or names[i + 1:i + 3] == ["session", "authorization"]):
            return f"{w.upper()} {names[i + 1].upper()}"
    return None
