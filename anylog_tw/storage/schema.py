"""Table layout as pure functions: names, types, inference, system columns, indexes and DDL.

Nothing here touches a database, so the operator, the metadata master and the tests can reason
about tables without one.  Three concerns, all about what a table looks like:

* **Names are untrusted.**  dbms, table and column names come from file names and JSON keys;
  `check_name` accepts only `[a-z_][a-z0-9_]*` (after lower-casing, at most 63 characters, the
  PostgreSQL limit) and `quote` always double-quotes, so a name can never change the statement.
* **Types** are five logical types (`integer`, `float`, `boolean`, `timestamp`, `text`) inferred
  from JSON values and widened when rows disagree (integer+float -> float, anything else that
  disagrees -> text, which holds every value losslessly).  `adapt` turns a JSON value into what
  its column stores, or raises when that would lose information.  The type names and the
  conversion rules are base/convert.py's, shared with every way data comes in.
* **Layout** is chosen for ingest speed, the biggest factor in it (measured in issue 6): on
  SQLite the key is the free rowid (`row_id INTEGER PRIMARY KEY`) and the only indexes are the
  time column and `tsd_id`; on PostgreSQL the key is an identity column with no btree behind it
  and the ever-growing columns (insert_timestamp, the time column, tsd_id) get BRIN indexes,
  which cost almost nothing per insert and still serve time ranges and tracing.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from anylog_tw.base import convert, names  # noqa: F401 (names: the one name pattern)
from anylog_tw.base.convert import (BOOLEAN, FLOAT, INTEGER, NAME_PATTERN, TEXT, TIMESTAMP, TYPES,  # noqa: F401
                                    ConversionError, format_timestamp, infer_type, parse_timestamp, widen)
from anylog_tw.base.errors import StorageError

SQLITE = "sqlite"
PSQL = "psql"
ENGINES = (SQLITE, PSQL)

# --- names ------------------------------------------------------------------------------------


def check_name(name: Any, what: str = "name") -> str:
    """The name lower-cased, or a StorageError naming the bad name and the rule it breaks."""
    if not isinstance(name, str):
        raise StorageError(f"{what} must be text, not {type(name).__name__}")
    low = name.strip().lower()
    if not names.is_name(low):
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise StorageError(f"{what} {shown!r} is not allowed: use 1 to 63 letters, digits and '_', "
                           f"starting with a letter or '_'")
    return low


def quote(name: str, what: str = "name") -> str:
    """A checked name, double-quoted: the only way a name enters SQL."""
    return '"' + check_name(name, what) + '"'


def column_name(key: str) -> str:
    """A JSON attribute name turned into a column name by AnyLog's rule (`Temp-C` -> `temp_c`).

    Lower case; space, `-`, `.`, `/`, `\\` and `:` become `_` (base/convert.py `data_name`); a
    key that still is not a plain name (`PM 2.5 (ug/m3)`, `1st`) is refused with the reason,
    never silently renamed: a mapping policy can give it a column name.
    """
    try:
        return convert.data_name(key, "column name")
    except ConversionError as e:
        raise StorageError(e.message) from None


# --- types ------------------------------------------------------------------------------------

def infer_columns(rows: Iterable[Mapping[str, Any]],
                  known: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Column name -> logical type over all rows, in order of first appearance, widened.

    `known` starts the inference from an existing table's types, so the result says which
    columns a new file needs to add (and whether it disagrees with the table).  A column seen
    only with nulls maps to None; `table_columns` gives it the type text.
    """
    types: dict[str, str | None] = dict(known or {})
    for row in rows:
        for key, value in row.items():
            name = column_name(key)
            types[name] = widen(types.get(name), infer_type(value))
    return types


def table_columns(types: Mapping[str, str | None]) -> list[tuple[str, str]]:
    """(name, type) for DDL, nulls-only columns as text, system column names refused."""
    out = []
    for name, kind in types.items():
        name = check_name(name, "column name")
        if name in SYSTEM_COLUMN_NAMES:
            raise StorageError(f"column {name!r} is a system column; rename the attribute")
        if kind is not None and kind not in TYPES:
            raise StorageError(f"column {name!r} has unknown type {kind!r} (one of {', '.join(TYPES)})")
        out.append((name, kind or TEXT))
    return out


def adapt(value: Any, kind: str) -> Any:
    """A JSON value as its column stores it, or a StorageError when that would lose information.

    The rules are base/convert.py's (shared with mapping policies, `.sql` files and messages):
    integer and float columns take numbers and number texts that fit exactly; boolean takes
    true/false, "true"/"false" and 0/1; timestamp takes ISO text (converted to UTC) and epoch
    numbers; text takes anything (numbers and booleans as their JSON text, lists and objects
    as JSON).
    """
    try:
        return convert.convert(value, kind)
    except ConversionError as e:
        raise StorageError(e.message) from None


# --- engine types -----------------------------------------------------------------------------

_ENGINE_TYPES = {
    SQLITE: {INTEGER: "INTEGER", FLOAT: "REAL", BOOLEAN: "BOOLEAN", TIMESTAMP: "TIMESTAMP", TEXT: "TEXT"},
    PSQL: {INTEGER: "BIGINT", FLOAT: "DOUBLE PRECISION", BOOLEAN: "BOOLEAN", TIMESTAMP: "TIMESTAMP",
           TEXT: "TEXT"},
}


def engine_type(engine: str, kind: str) -> str:
    check_engine(engine)
    try:
        return _ENGINE_TYPES[engine][kind]
    except KeyError:
        raise StorageError(f"unknown column type {kind!r} (one of {', '.join(TYPES)})") from None


_INTEGER_TYPE = re.compile(r"\b(tiny|small|medium|big)?int(eger|[248])?\b|\b(small|big)?serial\b")


def logical_type(declared: str) -> str:
    """The logical type of a column as the database declares it (for tables made elsewhere)."""
    d = (declared or "").strip().lower()
    kind = convert.TYPE_WORDS.get(" ".join(d.split("(", 1)[0].split()))
    if kind is not None:
        return kind
    if d.startswith("timestamp") or d in ("date", "datetime"):
        return TIMESTAMP
    if d in ("boolean", "bool"):
        return BOOLEAN
    if _INTEGER_TYPE.search(d):  # a word, so that interval and point are not integers
        return INTEGER
    if any(w in d for w in ("real", "double", "float", "numeric", "decimal")):
        return FLOAT
    return TEXT


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise StorageError(f"unknown database type {engine!r} (one of {', '.join(ENGINES)})")
    return engine


# --- user tables: system columns, indexes, DDL -----------------------------------------------

SYSTEM_COLUMN_NAMES = ("row_id", "insert_timestamp", "tsd_name", "tsd_id")

_SYSTEM_DDL = {
    # The rowid is free on SQLite; the default is UTC text in the format of `format_timestamp`.
    SQLITE: ('"row_id" INTEGER PRIMARY KEY',
             "\"insert_timestamp\" TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))",
             '"tsd_name" TEXT',
             '"tsd_id" INTEGER'),
    # An identity key without a primary-key btree: nothing looks rows up by row_id on the hot path.
    PSQL: ('"row_id" BIGINT GENERATED ALWAYS AS IDENTITY',
           "\"insert_timestamp\" TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc')",
           '"tsd_name" TEXT',
           '"tsd_id" INTEGER'),
}


@dataclass(frozen=True)
class Index:
    name: str
    columns: tuple[str, ...]
    method: str = ""  # "" (btree) or "brin"


def user_indexes(engine: str, table: str, time_columns: Sequence[str] = ()) -> list[Index]:
    """The indexes of a user table: time ranges and tracing, as few as ingest speed allows.

    PostgreSQL: BRIN on insert_timestamp, each time column and tsd_id (all only grow, so the
    block ranges stay tight).  SQLite: a btree on each time column and on tsd_id; none on
    insert_timestamp (it follows the rowid order, so `order by row_id` serves it).
    """
    table = check_name(table, "table name")
    times = [check_name(c, "column name") for c in time_columns]
    if check_engine(engine) == PSQL:
        cols = ["insert_timestamp", *times, "tsd_id"]
        return [Index(_index_name(table, c), (c,), "brin") for c in dict.fromkeys(cols)]
    return [Index(_index_name(table, c), (c,)) for c in dict.fromkeys([*times, "tsd_id"])]


def _index_name(table: str, column: str) -> str:
    name = f"{table}_{column}_idx"
    if len(name) > 63:  # keep it a legal, still unique-enough name
        name = f"{table[:40]}_{hashlib.md5(name.encode()).hexdigest()[:12]}_idx"
    return name


def index_sql(engine: str, table: str, index: Index) -> str:
    using = f" USING {index.method}" if engine == PSQL and index.method else ""
    cols = ", ".join(quote(c, "column name") for c in index.columns)
    return f"CREATE INDEX IF NOT EXISTS {quote(index.name, 'index name')} ON {quote(table, 'table name')}{using} ({cols})"


def create_table_sql(engine: str, table: str, columns: Sequence[tuple[str, str]] | Mapping[str, str | None],
                     time_columns: Sequence[str] | None = None, system: bool = True) -> list[str]:
    """The statements that create a user table (if missing) and its indexes.

    `columns` are (name, logical type) pairs or a mapping from `infer_columns`.  With
    `system`, the four system columns come first and the indexes of `user_indexes` follow; the
    time columns default to every timestamp column of the data.
    """
    check_engine(engine)
    table = check_name(table, "table name")
    pairs = table_columns(columns) if isinstance(columns, Mapping) else table_columns(dict(columns))
    body = list(_SYSTEM_DDL[engine]) if system else []
    body += [f"{quote(name)} {engine_type(engine, kind)}" for name, kind in pairs]
    if not body:
        raise StorageError(f"table {table!r} needs at least one column")
    statements = [f"CREATE TABLE IF NOT EXISTS {quote(table)} ({', '.join(body)})"]
    if system:
        if time_columns is None:
            time_columns = [name for name, kind in pairs if kind == TIMESTAMP]
        statements += [index_sql(engine, table, ix) for ix in user_indexes(engine, table, time_columns)]
    return statements


def add_columns_sql(engine: str, table: str, columns: Sequence[tuple[str, str]]) -> list[str]:
    """`ALTER TABLE ... ADD COLUMN` for each new column (nullable, so old rows stay valid)."""
    check_engine(engine)
    t = quote(table, "table name")
    return [f"ALTER TABLE {t} ADD COLUMN {quote(name, 'column name')} {engine_type(engine, kind)}"
            for name, kind in table_columns(dict(columns))]


# --- system tables ----------------------------------------------------------------------------


def tsd_table_sql(engine: str, table: str = "tsd_info") -> list[str]:
    """`almgm.tsd_info` (spec 4.1), or a peer's `tsd_<member>` (4.2: file_id is the peer's id).

    The hash is the duplicate key (unique index); file_time is indexed for date ranges.
    """
    check_engine(engine)
    table = check_name(table, "table name")
    if table == "tsd_info":
        key = ('"file_id" INTEGER PRIMARY KEY AUTOINCREMENT' if engine == SQLITE
               else '"file_id" SERIAL PRIMARY KEY')
    elif re.fullmatch(r"tsd_\d+", table):
        key = '"file_id" INTEGER PRIMARY KEY'
    else:
        raise StorageError(f"{table!r} is not a TSD table (tsd_info or tsd_<member id>)")
    stamp = "TIMESTAMP NOT NULL"
    body = [key, '"dbms_name" VARCHAR NOT NULL', '"table_name" VARCHAR NOT NULL', '"source" VARCHAR NOT NULL',
            '"file_hash" VARCHAR NOT NULL', '"instructions" VARCHAR NOT NULL', f'"file_time" {stamp}',
            '"rows" INTEGER DEFAULT 0', '"status1" VARCHAR', '"status2" VARCHAR']
    q = quote(table)
    return [f"CREATE TABLE IF NOT EXISTS {q} ({', '.join(body)})",
            f'CREATE UNIQUE INDEX IF NOT EXISTS {quote(table + "_hash_idx")} ON {q} ("file_hash")',
            f'CREATE INDEX IF NOT EXISTS {quote(table + "_time_idx")} ON {q} ("file_time")']


def ledger_table_sql(engine: str) -> list[str]:
    """`blockchain.ledger` (spec 4.4): one row per policy, policy_id unique, date indexed."""
    check_engine(engine)
    if engine == SQLITE:
        key = '"sequence_id" INTEGER PRIMARY KEY AUTOINCREMENT'
        date = "\"date\" TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))"
    else:
        key = '"sequence_id" SERIAL PRIMARY KEY'
        date = "\"date\" TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc')"
    body = [key, '"policy_type" VARCHAR', '"policy_id" VARCHAR NOT NULL', '"company_name" VARCHAR', date,
            '"host" VARCHAR', '"status" VARCHAR', '"policy" VARCHAR']
    return ['CREATE TABLE IF NOT EXISTS "ledger" (' + ", ".join(body) + ")",
            'CREATE UNIQUE INDEX IF NOT EXISTS "ledger_policy_id_idx" ON "ledger" ("policy_id")',
            'CREATE INDEX IF NOT EXISTS "ledger_date_idx" ON "ledger" ("date")']


def insert_sql(table: str, columns: Sequence[str], placeholder: str = "?") -> str:
    """`INSERT INTO "t" ("a", "b") VALUES (?, ?)` with every name checked and quoted."""
    if not columns:
        raise StorageError(f"an insert into {table!r} needs at least one column")
    cols = ", ".join(quote(c, "column name") for c in columns)
    marks = ", ".join([placeholder] * len(columns))
    return f"INSERT INTO {quote(table, 'table name')} ({cols}) VALUES ({marks})"
