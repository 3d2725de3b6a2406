"""The columns of a `table` policy (spec §5.4), read from its `create` text as pure functions.

A table policy carries the DDL of the node that published it: PostgreSQL's or SQLite's, ours or
AnyLog's (`SERIAL`, `CHAR(3)`, `DEFAULT NOW()`, `|` for `"`).  Running that text as it is would
fail on the other engine, and would run whatever else a policy holds (`DROP ...`) with the
node's rights.  So `create table <t>` reads only the column names and types of the policy's
`CREATE TABLE` statement for that table, and creates the table with this node's own layout
(schema.py: system columns, types and indexes of this engine).
"""

from __future__ import annotations

import re

from anylog_tw.base.errors import StorageError
from anylog_tw.storage import schema

_NAME = r'(?:"[^"]+"|[\w$]+)'
_CREATE = re.compile(rf"^\s*create\s+table\s+(?:if\s+not\s+exists\s+)?({_NAME}(?:\s*\.\s*{_NAME})*)\s*\(",
                     re.IGNORECASE)
# Words that start a table constraint rather than a column.
_TABLE_CONSTRAINTS = {"constraint", "primary", "unique", "foreign", "check", "exclude", "like"}
# Words that end a column's type and start its constraints.
_COLUMN_CONSTRAINTS = {"not", "null", "default", "primary", "unique", "check", "references", "constraint",
                       "collate", "generated", "autoincrement", "as"}


def _scan(text: str):
    """(index, character, depth) of each character outside quoted text and comments."""
    depth = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in ("'", '"', "`"):
            j = i + 1
            while j < n and not (text[j] == c and not text.startswith(c * 2, j)):
                j += 2 if text.startswith(c * 2, j) else 1
            i = j + 1
            continue
        if text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        yield i, c, depth
        i += 1


def _split(text: str, sep: str) -> list[str]:
    """The text cut at `sep` where it stands outside quotes, comments and parentheses."""
    parts, start = [], 0
    for i, c, depth in _scan(text):
        if c == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p for p in (p.strip() for p in parts) if p]


def _unquote(name: str) -> str:
    name = name.strip()
    return name[1:-1] if len(name) >= 2 and name[0] == name[-1] and name[0] in '"`' else name


def _body(statement: str, open_at: int) -> str | None:
    """The text inside the parenthesis that opens at `open_at`, or None when it never closes."""
    for i, c, depth in _scan(statement[open_at:]):
        if c == ")" and depth == 0:
            return statement[open_at + 1:open_at + i]
    return None


def _column(item: str) -> tuple[str, str] | None:
    """(name, declared type) of one column definition; None for a table constraint."""
    m = re.match(r'\s*("[^"]+"|`[^`]+`|[^\s(]+)\s*(.*)$', item, re.DOTALL)
    if m is None:
        return None
    raw, rest = m.group(1), m.group(2)
    if raw[0] not in '"`' and raw.lower() in _TABLE_CONSTRAINTS:
        return None
    words = []
    for word in re.findall(r"[^\s(]+(?:\([^)]*\))?|\([^)]*\)", rest):
        if word.lower() in _COLUMN_CONSTRAINTS:
            break
        words.append(word)
    return _unquote(raw), " ".join(words)


def policy_columns(create: str, table: str, where: str = "the table policy") -> list[tuple[str, str]]:
    """(column, logical type) of the `CREATE TABLE <table>` statement in a policy's `create` text.

    The system columns (row_id, insert_timestamp, tsd_name, tsd_id) are left out: every engine
    makes its own.  Types map with `schema.logical_type` (`varchar(20)` -> text, `int` ->
    integer, `timestamp with time zone` -> timestamp ...); a column without a type is text.
    Raises StorageError naming what is missing or wrong.
    """
    if not isinstance(create, str) or not create.strip():
        raise StorageError(f"{where} has no 'create' statement")
    table = schema.check_name(table, "table name")
    text = create.replace("|", '"')  # EdgeLake writes " as | inside policies
    found = None
    for statement in _split(text, ";"):
        m = _CREATE.match(statement)
        if m and _unquote(re.split(r"\s*\.\s*", m.group(1))[-1]).lower() == table:
            found = statement, m.end() - 1
            break
    if found is None:
        raise StorageError(f"{where} has no CREATE TABLE statement for table '{table}'")
    body = _body(*found)
    if body is None:
        raise StorageError(f"{where}: the column list of CREATE TABLE {table} is not closed")
    columns: dict[str, str] = {}
    for item in _split(body, ","):
        parsed = _column(item)
        if parsed is None:
            continue
        name = schema.check_name(parsed[0], f"column name (in {where})")
        if name in schema.SYSTEM_COLUMN_NAMES:
            continue
        if name in columns:
            raise StorageError(f"{where} declares column '{name}' twice")
        columns[name] = schema.logical_type(parsed[1]) if parsed[1] else schema.TEXT
    if not columns:
        raise StorageError(f"{where} declares no data columns for table '{table}' (only system columns)")
    return list(columns.items())
