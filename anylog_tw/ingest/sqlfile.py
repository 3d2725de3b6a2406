"""`.sql` files in the watch dir (spec §3.2): INSERTs of the file's table, read by an SQL parser.

AnyLog's operator also takes files of SQL statements named `dbms.table....sql`.  Running a
file's text as it is would run whatever it holds with the node's rights, and PostgreSQL text
fails on SQLite.  So the statements are parsed with sqlglot (the parser the query node uses,
PostgreSQL dialect) and only two kinds are accepted, both about the file's own table:

* `INSERT INTO <table> [(columns)] VALUES (...), ...`: the values must be plain (text,
  numbers, NULL, TRUE/FALSE, a cast of one of these, or `now()` / `CURRENT_TIMESTAMP`); they
  become rows like a JSON file's, converted by the same rules, tagged with the file's
  (tsd_name, tsd_id) and inserted in the file's one transaction;
* `CREATE TABLE IF NOT EXISTS <table> (...)`: read for its column names and types (like a
  table policy); when the table is missing it is created in this node's own layout at the
  start of that same transaction.

Anything else (another table, `DROP`, `UPDATE`, `INSERT ... SELECT`, `ON CONFLICT`, a function
call as a value) sends the whole file to the error dir with the statement and the reason.
System columns in a column list (row_id, insert_timestamp, tsd_name, tsd_id) are the node's to
fill and are dropped.  The file's hash, TSD row and exactly-once rules are a JSON file's.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from anylog_tw.base.convert import format_timestamp, shown
from anylog_tw.base.errors import StorageError
from anylog_tw.base.filename import FileName
from anylog_tw.base.ingest_errors import IngestError
from anylog_tw.ingest import reader
from anylog_tw.ingest.mapping import Batch
from anylog_tw.storage import schema

MAX_BYTES = 64 << 20  # an SQL file is parsed whole: bigger ones are refused (split them)
SYSTEM = set(schema.SYSTEM_COLUMN_NAMES)
_NUMBER = re.compile(r"^\d+$")


def first_pass(path: str, name: FileName):
    """Hash, parse and check a `.sql` file (in a worker thread): a Parsed with its one part."""
    from anylog_tw.ingest.pipeline import Parsed, Part

    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise IngestError("io", f"cannot read {path}: {e}") from None
    if size > (MAX_BYTES // 8 if name.gz else MAX_BYTES):
        raise IngestError("sql", f"{os.path.basename(path)} is {size} bytes: SQL files are parsed whole, up to "
                                 f"{MAX_BYTES >> 20} MB; split it or send JSON")
    data = reader.read_whole(path, name.gz)
    digest = hashlib.md5(f"{name.dbms}.{name.table}".encode("utf-8"))
    digest.update(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise IngestError("sql", f"{os.path.basename(path)} is not UTF-8 text ({e})") from None
    now = format_timestamp(datetime.datetime.now(datetime.timezone.utc))
    statements, create, batch = read_statements(text, name.dbms, name.table, now)
    if not statements:
        raise IngestError("empty", f"{os.path.basename(path)} holds no SQL statement")
    fixed = {c: k for c, k in create or ()}
    part = Part(name.dbms, name.table, batch, list(batch.columns), rows=len(batch), fixed=fixed)
    return Parsed(digest.hexdigest(), statements, {(name.dbms, name.table): part},
                  create={(name.dbms, name.table): create} if create is not None else {})


def read_statements(text: str, dbms: str, table: str, now: str) -> tuple[int, list | None, Batch]:
    """(statement count, the CREATE's columns or None, the INSERTs' rows as a Batch)."""
    try:
        parsed = sqlglot.parse(text, read="postgres")
    except (ParseError, TokenError) as e:
        raise IngestError("sql", f"the file is not SQL the parser can read: {_first_line(str(e))}") from None
    create: list[tuple[str, str]] | None = None
    order: list[str] = []  # every column of the CREATE, system ones included (a positional INSERT's)
    columns: dict[str, int] = {}
    rows: list[dict] = []
    count = 0
    for number, statement in enumerate(parsed, 1):
        if statement is None:
            continue
        count += 1
        where = f"statement {number} ({_short(statement)})"
        if isinstance(statement, exp.Create):
            _check_create(statement, dbms, table, where)
            order, create = _create_columns(statement, where)
        elif isinstance(statement, exp.Insert):
            names, values = _insert(statement, dbms, table, where, order if create is not None else None, now)
            for name in names:
                columns.setdefault(name, len(columns))
            rows += [dict(zip(names, v)) for v in values]
        else:
            raise IngestError("sql", f"{where}: only INSERT INTO {table} and CREATE TABLE IF NOT EXISTS {table} "
                                     f"are taken from a .sql file, not {statement.key.upper()}")
    names = list(columns)
    batch = Batch.of_rows(names, [[r.get(c) for c in names] for r in rows], list(range(1, len(rows) + 1)))
    return count, create, batch


def _same_table(node: exp.Table, dbms: str, table: str) -> bool:
    return node.name.lower() == table and (not node.db or node.db.lower() == dbms) and not node.catalog


def _check_create(statement: exp.Create, dbms: str, table: str, where: str) -> None:
    target = statement.this.this if isinstance(statement.this, exp.Schema) else statement.this
    if (statement.kind or "").upper() != "TABLE" or not isinstance(target, exp.Table):
        raise IngestError("sql", f"{where}: only CREATE TABLE IF NOT EXISTS {table} is taken, not CREATE "
                                 f"{statement.kind}")
    if not _same_table(target, dbms, table):
        raise IngestError("sql", f"{where}: creates {target.sql()}, not the file's table {dbms}.{table}")
    if not statement.args.get("exists"):
        raise IngestError("sql", f"{where}: write CREATE TABLE IF NOT EXISTS (the table may exist already)")
    extra = [k for k, v in statement.args.items() if v and k not in ("this", "kind", "exists")]
    if extra or not isinstance(statement.this, exp.Schema):
        raise IngestError("sql", f"{where}: only a plain column list is taken (found {', '.join(extra) or 'none'})")


def _create_columns(statement: exp.Create, where: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(every column name in order, the data columns with their logical types)."""
    order, out = [], []
    for col in statement.this.expressions:
        if not isinstance(col, exp.ColumnDef):
            continue  # table constraints: this node's layout decides keys and indexes
        name = _checked(col.name, where)
        order.append(name)
        if name in SYSTEM:
            continue
        kind = col.args.get("kind")
        out.append((name, schema.logical_type(kind.sql(dialect="postgres") if kind is not None else "text")))
    if not out:
        raise IngestError("sql", f"{where}: the table has no data column")
    return order, out


def _checked(name: str, where: str) -> str:
    try:
        return schema.check_name(name, "column name")
    except StorageError as e:
        raise IngestError("sql", f"{where}: {e.message}") from None


def _insert(statement: exp.Insert, dbms: str, table: str, where: str, order: list[str] | None, now: str):
    target = statement.this.this if isinstance(statement.this, exp.Schema) else statement.this
    if not isinstance(target, exp.Table) or not _same_table(target, dbms, table):
        raise IngestError("sql", f"{where}: inserts into {statement.this.sql()}, not the file's table {dbms}.{table}")
    extra = [k for k, v in statement.args.items() if v and k not in ("this", "expression")]
    if extra:
        raise IngestError("sql", f"{where}: only INSERT INTO {table} (...) VALUES (...) is taken (found "
                                 f"{', '.join(extra)})")
    if not isinstance(statement.expression, exp.Values):
        raise IngestError("sql", f"{where}: only VALUES rows are taken, not {statement.expression.key.upper()}")
    if isinstance(statement.this, exp.Schema):
        names = [_checked(c.name, where) for c in statement.this.expressions]
    elif order is not None:
        names = order  # positional: the CREATE's full column list, system columns included
    else:
        raise IngestError("sql", f"{where}: name the columns (INSERT INTO {table} (a, b) VALUES ...), or put the "
                                 f"CREATE TABLE before it")
    values = []
    for r, row in enumerate(statement.expression.expressions, 1):
        cells = row.expressions if isinstance(row, exp.Tuple) else [row]
        values.append([_value(c, f"{where}, row {r}", now) for c in cells])
    for r, row in enumerate(values, 1):
        if len(row) != len(names):
            raise IngestError("sql", f"{where}, row {r}: {len(row)} values for {len(names)} columns")
    keep = [i for i, n in enumerate(names) if n not in SYSTEM]
    if len(set(names)) != len(names):
        raise IngestError("sql", f"{where}: a column is named twice")
    return [names[i] for i in keep], [[row[i] for i in keep] for row in values]


def _value(node: exp.Expression, where: str, now: str):
    if isinstance(node, exp.Cast):
        return _value(node.this, where, now)
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        text = node.this
        return int(text) if _NUMBER.match(text) else float(text)
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        return -_value(node.this, where, now)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, (exp.CurrentTimestamp, exp.CurrentDate)) or (
            isinstance(node, exp.Anonymous) and node.name.lower() == "now" and not node.expressions):
        return now
    raise IngestError("sql", f"{where}: {shown(node.sql())} is not a plain value (text, number, NULL, TRUE/FALSE "
                             f"or now())")


def _short(statement: exp.Expression) -> str:
    text = statement.sql(dialect="postgres")
    return text if len(text) <= 60 else text[:57] + "..."


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= 200 else line[:197] + "..."
