"""A network query's plan: the operators' query and the query node's merge, as SQL text.

The operators' query is written in SQLite's dialect, the portable form: an operator on SQLite runs
it as is, one on PostgreSQL turns it into its own dialect with sqlglot (`translate`), which also
spells out the null ordering SQLite implies, so both engines sort a column the same way.  The
merge runs over `system_query` (SQLite in memory by default) on the partial rows the operators
returned, prefixed by the `extend` values of the reply they came in.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

from anylog_tw.query import timeseries
from anylog_tw.query.errors import QueryError
from anylog_tw.query.statement import Cast

ENGINE_DIALECTS = {"sqlite": "sqlite", "psql": "postgres", "postgres": "postgres", "postgresql": "postgres"}
# logical type of a merge column -> declared type per engine (SQLite: none, values kept as sent)
_PSQL_TYPES = {"integer": "BIGINT", "float": "DOUBLE PRECISION", "timestamp": "TIMESTAMP", "text": "TEXT",
               "boolean": "BOOLEAN", None: "TEXT"}


@dataclass(frozen=True)
class Extend:
    """One `extend` column: `@ip`, `@port`, `@dbms_name`, `@table_name` (known to the query node)
    or `+key` (the operator's dictionary value), titled by `title`."""

    kind: str
    name: str
    title: str


@dataclass
class Plan:
    statement: str
    table: str
    remote: exp.Select                 # the operators' query, over `table`
    remote_columns: list[str]          # names of the columns each operator returns, in order
    remote_types: list[str | None]     # their logical types (for a typed merge table)
    titles: list[str] | None           # output titles; None: `*` passed through, titles from the reply
    casts: list[tuple[Cast, ...]]
    extend: tuple[Extend, ...] = ()
    local: exp.Select | None = None    # the merge query over the table `__merge__`; None: pass-through
    limit: int | None = None
    period: timeseries.Period | None = None
    increments: timeseries.Buckets | None = None
    time_columns: list[bool] = field(default_factory=list)   # which titles hold stored timestamps
    _written: dict = field(default_factory=dict, repr=False, compare=False)  # SQL text already generated

    @property
    def pass_through(self) -> bool:
        return self.local is None

    @property
    def local_columns(self) -> list[str]:
        return [f"extend_{i + 1}" for i in range(len(self.extend))] + self.remote_columns

    def output_titles(self, reply_columns: list[str] | None = None) -> list[str]:
        if self.titles is not None:
            return [e.title for e in self.extend] + self.titles
        return [e.title for e in self.extend] + list(reply_columns or [])

    # --- the operators' side ---------------------------------------------------------------

    def remote_sql(self, table: str | None = None) -> str:
        """The operators' statement (SQLite dialect) over `table` (default: the main table)."""
        if self.period is not None:
            raise QueryError("the period's end is not known yet: run the leading query first")
        key = ("remote", table or self.table)
        if key not in self._written:
            self._written[key] = _over(self.remote, table or self.table).sql(dialect="sqlite", identify=True)
        return self._written[key]

    def leading_sql(self, table: str | None = None) -> str:
        """The period's leading query: the latest time inside its bound."""
        if self.period is None:
            raise QueryError("this query has no period")
        return self.period.leading(table or self.table).sql(dialect="sqlite", identify=True)

    def with_period_end(self, end: str | None) -> "Plan | None":
        """The plan once the period's end is known; None when no operator has data (empty result)."""
        if self.period is None:
            return self
        if end is None:
            return None
        remote = self.remote.copy()
        target = next(n for n in remote.find_all(exp.Anonymous) if n.name.lower() == "period")
        target.replace(self.period.window(end))
        return dataclasses.replace(self, remote=remote, period=None, _written={})

    # --- the query node's side -------------------------------------------------------------

    def local_create(self, name: str, engine: str = "sqlite") -> str:
        dialect = _dialect(engine)
        types = [None] * len(self.extend) + self.remote_types
        cols = []
        for col, typ in zip(self.local_columns, types):
            if dialect == "sqlite":
                cols.append(f'"{col}" INTEGER' if typ == "integer" else f'"{col}"')
            else:
                cols.append(f'"{col}" {_PSQL_TYPES.get(typ, "TEXT")}')
        return f'CREATE TABLE {_quote(name)} ({", ".join(cols)})'

    def local_insert(self, name: str) -> str:
        marks = ", ".join("?" for _ in self.local_columns)
        return f"INSERT INTO {_quote(name)} VALUES ({marks})"

    def local_sql(self, name: str, engine: str = "sqlite") -> str:
        if self.local is None:
            raise QueryError("a pass-through query has no merge query")
        key = ("local", name, engine)
        if key not in self._written:
            # Each query names its merge table (`query_N`): the text is written once per engine
            # over the placeholder and the name put in, unless the placeholder's quoted text
            # also appears elsewhere (inside a literal), where only the tree knows which is which.
            template = self._written.get(("local", engine))
            if template is None:
                template = self._written[("local", engine)] = self.local.sql(dialect=_dialect(engine), identify=True)
            if template.count(_QUOTED_PLACEHOLDER) == 1:
                self._written[key] = template.replace(_QUOTED_PLACEHOLDER, _quote(name))
            else:
                self._written[key] = _over(self.local, name).sql(dialect=_dialect(engine), identify=True)
            while len(self._written) > 64:  # one entry per query name otherwise
                self._written.pop(next(k for k in self._written if len(k) == 3 and k[0] == "local"))
        return self._written[key]


def _dialect(engine: str) -> str:
    try:
        return ENGINE_DIALECTS[engine]
    except KeyError:
        raise QueryError(f"no SQL dialect for the engine '{engine}' (sqlite or psql)") from None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


PLACEHOLDER = "<table>"  # not a possible table name: replaced by the real one when SQL is written
_QUOTED_PLACEHOLDER = '"<table>"'


def _over(tree: exp.Select, table: str) -> exp.Select:
    """A copy of `tree` reading `table` where it reads the placeholder."""
    out = tree.copy()
    for t in out.find_all(exp.Table):
        if t.name == PLACEHOLDER:
            t.set("this", exp.to_identifier(table, quoted=True))
    return out


def placeholder_table() -> exp.Table:
    return exp.Table(this=exp.to_identifier(PLACEHOLDER, quoted=True))


@functools.lru_cache(maxsize=512)
def translate(sql: str, engine: str) -> str:
    """The operators' portable statement in the engine's own dialect (what an operator runs)."""
    dialect = _dialect(engine)
    if dialect == "sqlite":
        return sql
    try:
        return sqlglot.transpile(sql, read="sqlite", write=dialect, identify=True)[0]
    except sqlglot.errors.SqlglotError as e:
        raise QueryError(f"SQL Failure: the statement cannot be translated for {engine}: {e}") from None
